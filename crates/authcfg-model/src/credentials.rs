//! Credentials of a data source and the redacting secret type that contains them.
//!
//! Secrets never leave this type by accident: `Debug` and `Display` print
//! `[redacted]`, there is no `Serialize` and no `Clone`, the memory is zeroed
//! on drop, and the value is read only through [`SecretString::expose_secret`].

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroize;

use crate::error::{quote, Collector};
use crate::{AuthConfig, AuthMethod, GrantType, ValidationErrors};

/// A secret string: a client secret, password, refresh or access token.
///
/// The value is kept in an allocation of its exact length, two words wide,
/// because a server caches one access token per data source.
pub struct SecretString(Box<str>);

impl SecretString {
    /// Wraps a secret value.
    ///
    /// A `String` with spare capacity is copied into an allocation of its
    /// length, and the original is zeroed, so that no copy of the secret is
    /// left behind in freed memory.
    pub fn new(value: impl Into<String>) -> Self {
        let mut value = value.into();
        if value.len() == value.capacity() {
            return Self(value.into_boxed_str());
        }
        let exact = Box::from(value.as_str());
        value.zeroize();
        Self(exact)
    }

    /// Returns the secret value.
    ///
    /// # Security
    ///
    /// The returned string is the plaintext secret. Do not log it, put it in an
    /// error, or keep a copy beyond the request that needs it.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Returns true when the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Returns a second copy, which is zeroed on drop like the first.
    ///
    /// The type does not implement `Clone`, so that each copy of a secret is
    /// visible in the code.
    pub fn duplicate(&self) -> Self {
        Self(self.0.clone())
    }
}

impl Drop for SecretString {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self(Box::from(value))
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

/// One field of [`Credentials`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CredentialField {
    /// The OAuth client id, or the Basic user-id. Not secret.
    ClientId,
    /// The OAuth client secret, or the Basic password.
    ClientSecret,
    /// The resource owner's username, for the password grant. Not secret.
    Username,
    /// The resource owner's password, for the password grant.
    Password,
    /// The refresh token, for the refresh_token and authorization_code grants.
    RefreshToken,
}

impl CredentialField {
    /// Every field, in declaration order.
    pub const ALL: [CredentialField; 5] = [
        CredentialField::ClientId,
        CredentialField::ClientSecret,
        CredentialField::Username,
        CredentialField::Password,
        CredentialField::RefreshToken,
    ];

    /// Returns the wire name, such as `client_secret`.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialField::ClientId => "client_id",
            CredentialField::ClientSecret => "client_secret",
            CredentialField::Username => "username",
            CredentialField::Password => "password",
            CredentialField::RefreshToken => "refresh_token",
        }
    }

    /// Returns the suffix of the environment variable that provides this
    /// field, such as `CLIENT_SECRET`.
    pub fn env_suffix(self) -> &'static str {
        match self {
            CredentialField::ClientId => "CLIENT_ID",
            CredentialField::ClientSecret => "CLIENT_SECRET",
            CredentialField::Username => "USERNAME",
            CredentialField::Password => "PASSWORD",
            CredentialField::RefreshToken => "REFRESH_TOKEN",
        }
    }

    /// Returns true for the fields that are stored sealed.
    pub fn is_secret(self) -> bool {
        matches!(
            self,
            CredentialField::ClientSecret
                | CredentialField::Password
                | CredentialField::RefreshToken
        )
    }
}

impl fmt::Display for CredentialField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The credentials of one data source. Secret fields are [`SecretString`]s.
///
/// Deserializable (a request body), never serializable.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The OAuth client id, or the Basic user-id.
    #[cfg_attr(feature = "openapi", schema(example = "reporting-service"))]
    pub client_id: String,
    /// The OAuth client secret, or the Basic password. May be empty.
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Password))]
    pub client_secret: SecretString,
    /// The resource owner's username, for the password grant.
    #[serde(default)]
    pub username: Option<String>,
    /// The resource owner's password, for the password grant.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Password))]
    pub password: Option<SecretString>,
    /// The refresh token, for the refresh_token and authorization_code grants.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Password))]
    pub refresh_token: Option<SecretString>,
}

/// Longest accepted credential value, in bytes.
const MAX_CREDENTIAL_LEN: usize = 16 * 1024;

impl Credentials {
    /// Creates credentials with a client id and secret only.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<SecretString>) -> Self {
        Self {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            username: None,
            password: None,
            refresh_token: None,
        }
    }

    /// Returns true when `field` has a value. The client id and secret always have one.
    pub fn is_set(&self, field: CredentialField) -> bool {
        match field {
            CredentialField::ClientId | CredentialField::ClientSecret => true,
            CredentialField::Username => self.username.is_some(),
            CredentialField::Password => self.password.is_some(),
            CredentialField::RefreshToken => self.refresh_token.is_some(),
        }
    }

    /// Checks the values for the given auth method and returns every problem.
    ///
    /// Values are never quoted in the messages except the client id and
    /// username, which are not secret.
    ///
    /// # Errors
    ///
    /// Returns the problems: an empty client id, a control character in any
    /// value, a value over 16 KiB, or a `:` in the client id of a `basic` data
    /// source (RFC 7617 section 2: the user-id may not contain a colon).
    pub fn validate(&self, method: AuthMethod) -> Result<(), ValidationErrors> {
        let mut errors = Collector::default();

        if self.client_id.is_empty() {
            errors.push(
                "/client_id",
                "client_id is empty: set the client id issued by the provider",
            );
        }
        if method == AuthMethod::Basic && self.client_id.contains(':') {
            errors.push(
                "/client_id",
                format!(
                    "client_id {} contains ':', which Basic authentication cannot carry (RFC 7617 section 2): \
                     use the bearer method or a user-id without ':'",
                    quote(&self.client_id)
                ),
            );
        }

        let values: [(CredentialField, Option<&str>); 5] = [
            (CredentialField::ClientId, Some(&self.client_id)),
            (
                CredentialField::ClientSecret,
                Some(self.client_secret.expose_secret()),
            ),
            (CredentialField::Username, self.username.as_deref()),
            (
                CredentialField::Password,
                self.password.as_ref().map(SecretString::expose_secret),
            ),
            (
                CredentialField::RefreshToken,
                self.refresh_token.as_ref().map(SecretString::expose_secret),
            ),
        ];
        for (field, value) in values {
            let Some(value) = value else { continue };
            if value.chars().any(char::is_control) {
                errors.push(
                    format!("/{field}"),
                    format!(
                        "{field} contains a control character (a newline or tab, often pasted by \
                         accident): remove it"
                    ),
                );
            }
            if value.len() > MAX_CREDENTIAL_LEN {
                errors.push(
                    format!("/{field}"),
                    format!(
                        "{field} is {} bytes long; the maximum is {MAX_CREDENTIAL_LEN}",
                        value.len()
                    ),
                );
            }
        }

        errors.finish()
    }

    /// Returns the fields that `auth` needs and these credentials lack.
    ///
    /// The password grant needs `username` and `password`; the refresh_token
    /// and authorization_code grants need `refresh_token`.
    pub fn missing_for(&self, auth: &AuthConfig) -> Vec<CredentialField> {
        if auth.method != AuthMethod::Bearer {
            return Vec::new();
        }
        let needed: &[CredentialField] = match auth.grant_type {
            Some(GrantType::Password) => &[CredentialField::Username, CredentialField::Password],
            Some(GrantType::RefreshToken | GrantType::AuthorizationCode) => {
                &[CredentialField::RefreshToken]
            }
            _ => &[],
        };
        needed
            .iter()
            .copied()
            .filter(|field| !self.is_set(*field))
            .collect()
    }
}

/// Summary of a data source's stored credentials, without any secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CredentialsSummary {
    /// The client id, which is not secret.
    #[cfg_attr(feature = "openapi", schema(example = "reporting-service"))]
    pub client_id: String,
    /// The username for the password grant, if stored. Not secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The secret fields that have a value, in declaration order.
    pub secrets_set: Vec<CredentialField>,
    /// A short keyed MAC of the client secret: equal values give equal
    /// fingerprints in one store, and the fingerprint reveals nothing of the value.
    #[cfg_attr(feature = "openapi", schema(example = "hmac-sha256:3f9a1c0b7d2e4a65"))]
    pub fingerprint: String,
    /// Incremented whenever a stored value changes; rewriting an unchanged
    /// value leaves it as it is.
    pub version: u64,
    /// When a value last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}
