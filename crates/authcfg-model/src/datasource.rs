//! Data sources: a named external API with its auth config, and the request
//! types that create and update one.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::auth::check_http_url;
use crate::error::{quote, Collector};
use crate::{AuthConfig, AuthMethod, ClientAuthMethod, GrantType, Patch, ValidationErrors};

/// Longest accepted data source name, in characters.
pub const MAX_NAME_LEN: usize = 64;

/// Longest accepted description, in bytes.
const MAX_DESCRIPTION_LEN: usize = 1024;

/// The stable identifier of a data source. It never changes and is never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
#[cfg_attr(feature = "openapi", schema(value_type = String, format = Uuid))]
pub struct DataSourceId(pub Uuid);

impl fmt::Display for DataSourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for DataSourceId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// An external API and how to authenticate to it.
///
/// This is a response type: unlike the request types it accepts unknown
/// fields, so that a client keeps reading responses that gain a field, and a
/// server can add fields beside it (such as a credentials summary).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DataSource {
    /// Stable identifier, assigned on creation.
    pub id: DataSourceId,
    /// Unique name: 1 to 64 lowercase letters, digits, `-` and `_`, starting
    /// with a letter. It becomes part of environment variable names.
    #[cfg_attr(feature = "openapi", schema(example = "crm-prod"))]
    pub name: String,
    /// Free text for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Base URL of the data source's API, for the pipelines that call it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = "https://api.example.com/v2"))]
    pub base_url: Option<String>,
    /// How to authenticate.
    pub auth: AuthConfig,
    /// When the data source was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the data source last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Incremented by every update; an update names the version it read.
    pub version: u64,
}

impl DataSource {
    /// Checks the name, description, base URL and auth config.
    ///
    /// # Errors
    ///
    /// Returns every problem, with pointers such as `/auth/token_url`.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = Collector::default();
        validate_fields(
            &mut errors,
            Some(&self.name),
            self.description.as_deref(),
            self.base_url.as_deref(),
            &self.auth,
        );
        errors.finish()
    }
}

/// The request body that creates a data source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateDataSource {
    /// Unique name: 1 to 64 lowercase letters, digits, `-` and `_`, starting
    /// with a letter.
    #[cfg_attr(feature = "openapi", schema(example = "crm-prod"))]
    pub name: String,
    /// Free text for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Base URL of the data source's API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = "https://api.example.com/v2"))]
    pub base_url: Option<String>,
    /// How to authenticate.
    pub auth: AuthConfig,
}

impl CreateDataSource {
    /// Checks every field and returns all problems at once.
    ///
    /// # Errors
    ///
    /// Returns every problem, with pointers such as `/name` or `/auth/scope`.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut errors = Collector::default();
        validate_fields(
            &mut errors,
            Some(&self.name),
            self.description.as_deref(),
            self.base_url.as_deref(),
            &self.auth,
        );
        errors.finish()
    }
}

/// A JSON merge patch (RFC 7396) of a data source: a field left out stays as
/// it is, `null` clears it, a value replaces it. The name cannot change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct UpdateDataSource {
    /// New description; `null` clears it.
    #[serde(default, deserialize_with = "Patch::deserialize")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, nullable))]
    pub description: Patch<String>,
    /// New base URL; `null` clears it.
    #[serde(default, deserialize_with = "Patch::deserialize")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, nullable))]
    pub base_url: Patch<String>,
    /// Changes to the auth config, merged field by field.
    #[serde(default)]
    pub auth: Option<AuthConfigPatch>,
}

/// A JSON merge patch of an [`AuthConfig`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AuthConfigPatch {
    /// New method; it cannot be cleared.
    #[serde(default, deserialize_with = "Patch::deserialize")]
    #[cfg_attr(feature = "openapi", schema(value_type = AuthMethod, required = false))]
    pub method: Patch<AuthMethod>,
    /// New token endpoint URL; `null` clears it.
    #[serde(default, deserialize_with = "Patch::deserialize")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, nullable))]
    pub token_url: Patch<String>,
    /// New grant type; `null` clears it.
    #[serde(default, deserialize_with = "Patch::deserialize")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<GrantType>, nullable))]
    pub grant_type: Patch<GrantType>,
    /// New scope; `null` clears it.
    #[serde(default, deserialize_with = "Patch::deserialize")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, nullable))]
    pub scope: Patch<String>,
    /// New client authentication method; `null` restores the default.
    #[serde(default, deserialize_with = "Patch::deserialize")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<ClientAuthMethod>, nullable))]
    pub client_auth: Patch<ClientAuthMethod>,
    /// Changes to the token parameters: a name with a value sets it, a name
    /// with `null` removes it, and `null` for the whole map removes them all.
    #[serde(default, deserialize_with = "Patch::deserialize")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<BTreeMap<String, Option<String>>>, nullable))]
    pub token_params: Patch<BTreeMap<String, Option<String>>>,
}

impl UpdateDataSource {
    /// Returns true when the patch changes nothing.
    pub fn is_empty(&self) -> bool {
        self.description.is_absent() && self.base_url.is_absent() && self.auth.is_none()
    }

    /// Applies the patch to `current` and validates the result.
    ///
    /// The id, name, timestamps and version are copied unchanged: the store
    /// sets the new version and update time when it saves the result.
    ///
    /// # Errors
    ///
    /// Returns every problem of the patched data source, with pointers such as
    /// `/auth/token_url`, or `/auth/method` when the patch clears the method.
    pub fn apply(&self, current: &DataSource) -> Result<DataSource, ValidationErrors> {
        let mut next = current.clone();
        next.description = self.description.clone().apply_to(next.description);
        next.base_url = self.base_url.clone().apply_to(next.base_url);

        if let Some(patch) = &self.auth {
            match &patch.method {
                Patch::Absent => {}
                Patch::Null => {
                    return Err(ValidationErrors::single(
                        "/auth/method",
                        "method cannot be cleared: set \"basic\" or \"bearer\"",
                    ))
                }
                Patch::Value(method) => next.auth.method = *method,
            }
            next.auth.token_url = patch.token_url.clone().apply_to(next.auth.token_url);
            next.auth.grant_type = patch.grant_type.clone().apply_to(next.auth.grant_type);
            next.auth.scope = patch.scope.clone().apply_to(next.auth.scope);
            next.auth.client_auth = patch.client_auth.clone().apply_to(next.auth.client_auth);
            match &patch.token_params {
                Patch::Absent => {}
                Patch::Null => next.auth.token_params.clear(),
                Patch::Value(changes) => {
                    for (key, value) in changes {
                        match value {
                            Some(value) => {
                                next.auth.token_params.insert(key.clone(), value.clone());
                            }
                            None => {
                                next.auth.token_params.remove(key);
                            }
                        }
                    }
                }
            }
        }

        next.validate()?;
        Ok(next)
    }
}

/// Checks a data source name: 1 to 64 characters, lowercase ASCII letters,
/// digits, `-` and `_`, starting with a letter.
///
/// # Errors
///
/// Returns a message that quotes the name and says what to change.
pub fn validate_datasource_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("name is empty: use 1 to 64 lowercase letters, digits, '-' or '_', starting with a letter, such as \"crm-prod\"".to_owned());
    }
    let length = name.chars().count();
    if length > MAX_NAME_LEN {
        return Err(format!(
            "name {} has {length} characters; the maximum is {MAX_NAME_LEN}",
            quote(name)
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!(
            "name {} must start with a lowercase letter (a-z)",
            quote(name)
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'))
    {
        return Err(format!(
            "name {} contains {}: use only lowercase letters, digits, '-' and '_'",
            quote(name),
            quote(&bad.to_string())
        ));
    }
    Ok(())
}

/// Computes the name key of a data source name: its identity for environment
/// variables. ASCII letters are upper-cased, digits are kept and every other
/// character becomes `_`, so `crm-prod` and `crm_prod` both give `CRM_PROD`.
///
/// Two names with the same key name the same variables (`AUTHCFG_DS_CRM_PROD_*`),
/// so at most one data source may use each key. Different valid names can
/// share a key only by swapping `-` and `_`.
pub fn datasource_name_key(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn validate_fields(
    errors: &mut Collector,
    name: Option<&str>,
    description: Option<&str>,
    base_url: Option<&str>,
    auth: &AuthConfig,
) {
    if let Some(name) = name {
        if let Err(detail) = validate_datasource_name(name) {
            errors.push("/name", detail);
        }
    }
    if let Some(description) = description {
        if description.len() > MAX_DESCRIPTION_LEN {
            errors.push(
                "/description",
                format!(
                    "description is {} bytes long; the maximum is {MAX_DESCRIPTION_LEN}",
                    description.len()
                ),
            );
        }
        if description
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            errors.push(
                "/description",
                "description contains a control character: remove it",
            );
        }
    }
    if let Some(base_url) = base_url {
        if let Err(detail) = check_http_url("base_url", base_url, "https://api.example.com/v2") {
            errors.push("/base_url", detail);
        }
    }
    auth.validate_into("/auth", errors);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_key_table() {
        let cases = [
            ("crm-prod", "CRM_PROD"),
            ("crm_prod", "CRM_PROD"),
            ("a", "A"),
            ("erp2-eu-west", "ERP2_EU_WEST"),
            ("x--y", "X__Y"),
            ("x-_y", "X__Y"),
            ("", ""),
            // Names outside the validation rules still map one character to one.
            ("Crm.Prod", "CRM_PROD"),
            ("crm\u{e9}", "CRM_"),
        ];
        for (name, expected) in cases {
            assert_eq!(datasource_name_key(name), expected, "key of {name:?}");
        }
    }

    #[test]
    fn name_key_differs_for_other_names() {
        assert_ne!(datasource_name_key("crm"), datasource_name_key("crm-prod"));
        assert_ne!(
            datasource_name_key("crm-prod"),
            datasource_name_key("crm-prod2")
        );
        assert_ne!(datasource_name_key("crm1"), datasource_name_key("crm-"));
    }
}
