//! Wire types of access control and auditing: API token roles, token
//! metadata and audit events.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The role of an API token: the routes and data sources it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Every route, for every data source.
    Admin,
    /// Reading and fetching authorization headers for the data sources listed
    /// on the token, and nothing else.
    Consumer,
}

impl Role {
    /// Returns the wire name, such as `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Consumer => "consumer",
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Metadata of an API token. The token value itself is shown once, when it
/// is created, and stored only as a hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiTokenInfo {
    /// Public identifier of the token, used in audit events and to revoke it.
    pub id: String,
    /// Operator-chosen label, such as the pipeline that uses the token.
    pub label: String,
    /// The token's role.
    pub role: Role,
    /// For a consumer token, the names of the data sources it may use.
    #[serde(default)]
    pub datasources: Vec<String>,
    /// When the token was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the token was last used, if ever.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub last_used_at: Option<OffsetDateTime>,
    /// When the token was revoked, if it was.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

/// Whether an audited action succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// The action was carried out.
    Success,
    /// The action failed, and `detail` gives the reason.
    Failure,
    /// The caller was not allowed to perform the action.
    Denied,
}

/// One entry of the audit log. It never contains a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    /// Increasing sequence number.
    pub id: i64,
    /// When the action happened.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The actor: an API token id, or `cli` for the command line.
    pub actor: String,
    /// The action, such as `datasource.create` or `authorization.issue`.
    #[cfg_attr(feature = "openapi", schema(example = "authorization.issue"))]
    pub action: String,
    /// The data source concerned, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datasource: Option<String>,
    /// Whether it succeeded.
    pub outcome: AuditOutcome,
    /// Details without secrets, such as the upstream HTTP status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
}
