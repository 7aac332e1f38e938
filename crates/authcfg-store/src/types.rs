//! Values that store calls take and return, beyond the model's wire types.

use authcfg_model::{AuditOutcome, Credentials, CredentialsSummary, DataSource, DataSourceId};
use serde::Serialize;
use time::OffsetDateTime;

use crate::Argon2Params;

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    /// The items of this page, in the listing's order.
    pub items: Vec<T>,
    /// The cursor of the next page, or `None` when this page is the last.
    /// Pass it back as the `after` argument of the same listing.
    pub next_cursor: Option<String>,
}

/// A data source with the summary of its credentials, as
/// [`Store::list_datasources_with_credentials`](crate::Store::list_datasources_with_credentials)
/// returns them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataSourceWithCredentials {
    /// The data source.
    pub datasource: DataSource,
    /// The summary of its stored credentials, without any secret, or `None`
    /// when none are stored. It equals the result of
    /// [`Store::credentials_summary`](crate::Store::credentials_summary).
    pub credentials: Option<CredentialsSummary>,
}

/// Credentials opened for use by the token exchange.
#[derive(Debug)]
pub struct UnsealedCredentials {
    /// The plaintext credentials; secret fields stay [`authcfg_model::SecretString`]s.
    ///
    /// # Security
    ///
    /// These are the live secrets of the data source. Use them for one
    /// request and drop them; never log them or return them to a client.
    pub credentials: Credentials,
    /// The credentials version these values belong to.
    pub version: u64,
    /// The data source they belong to.
    pub datasource_id: DataSourceId,
}

/// An audit event to record. It must not contain a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct NewAuditEvent {
    /// The actor: an API token id, or `cli` for the command line.
    pub actor: String,
    /// The action, such as `datasource.create`.
    pub action: String,
    /// The data source concerned, if any.
    pub datasource: Option<String>,
    /// Whether it succeeded.
    pub outcome: AuditOutcome,
    /// Details without secrets, such as an upstream HTTP status.
    pub detail: Option<serde_json::Value>,
}

/// The lifecycle state of a data key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DataKeyState {
    /// New secrets are sealed with this key.
    Active,
    /// A rotation replaced this key; rows sealed with it are being re-encrypted.
    Retiring,
    /// No row uses this key any more and its wrapped material was erased.
    Retired,
}

/// Status of one data key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DataKeyStatus {
    /// The key id, which sealed values carry in their associated data.
    pub id: String,
    /// The lifecycle state.
    pub state: DataKeyState,
    /// Number of credentials rows sealed with this key.
    pub rows: u64,
    /// When the key was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the key was retired, if it was.
    #[serde(with = "time::serde::rfc3339::option")]
    pub retired_at: Option<OffsetDateTime>,
}

/// The report of [`Store::key_status`](crate::Store::key_status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeyStatus {
    /// The id of the data key that seals new values.
    pub active_key_id: String,
    /// Every data key, oldest first, with the rows it seals.
    pub data_keys: Vec<DataKeyStatus>,
    /// The Argon2id parameters of the current master key.
    pub argon2: Argon2Params,
    /// When the store was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the master key was last set (at creation or by a master key change).
    #[serde(with = "time::serde::rfc3339")]
    pub master_key_changed_at: OffsetDateTime,
}

/// Progress of a data key rotation, reported after each batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationProgress {
    /// Rows re-encrypted so far by this call.
    pub done: u64,
    /// Rows that needed re-encryption when this call started.
    pub total: u64,
}

/// The result of a data key rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RotationReport {
    /// The new active data key.
    pub new_key_id: String,
    /// The keys retired by this call.
    pub retired_key_ids: Vec<String>,
    /// Rows re-encrypted by this call.
    pub reencrypted: u64,
    /// Credentials rows per data key id after the rotation.
    pub rows_per_key: Vec<(String, u64)>,
}
