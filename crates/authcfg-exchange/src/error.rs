//! The error type of the exchange crate.
//!
//! Errors are `Clone` because one failed token request is reported to every
//! caller that waited for it. Causes that are not `Clone` are kept behind an
//! `Arc`. No variant carries a credential that was sent: upstream error codes
//! and descriptions are scrubbed of them before they are stored here.

use std::sync::Arc;
use std::time::Duration;

use authcfg_model::{CredentialField, ValidationErrors};

/// A boxed error from a caller-supplied loader or sink.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A shared error cause, so that [`Error`] stays `Clone`.
pub type SharedError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while producing an `Authorization` header.
///
/// Later versions may add variants, so a match outside this crate needs a
/// wildcard arm.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Returned when the token endpoint replied with an RFC 6749 section 5.2
    /// error body (`error`, `error_description`), whatever the HTTP status.
    #[error("token endpoint returned error {error:?}{}{}{}", describe_status(*status), describe_text(description.as_deref()), hint_for(error))]
    Upstream {
        /// The RFC 6749 error code, such as `invalid_client`.
        error: String,
        /// The `error_description`, scrubbed of secrets.
        description: Option<String>,
        /// The HTTP status of the response.
        status: Option<u16>,
        /// True when retrying with the same config and credentials cannot succeed.
        permanent: bool,
        /// The `Retry-After` delay the endpoint asked for, if any.
        retry_after: Option<Duration>,
    },

    /// Returned when the token endpoint replied with a non-success HTTP status
    /// and a body that is not an RFC 6749 error.
    #[error("token endpoint returned HTTP {status} without an OAuth error body: check token_url and the provider's status")]
    HttpStatus {
        /// The HTTP status.
        status: u16,
        /// True for 4xx statuses other than 408 and 429.
        permanent: bool,
        /// The `Retry-After` delay the endpoint asked for, if any.
        retry_after: Option<Duration>,
    },

    /// Returned when the token request did not complete within the configured
    /// connect or request timeout.
    #[error("token request timed out after {} ms: check that token_url is reachable, or raise the timeout", after.as_millis())]
    Timeout {
        /// The timeout that elapsed.
        after: Duration,
    },

    /// Returned when the connection to the token endpoint failed (DNS, TCP,
    /// TLS, or the connection closed early).
    #[error("token request failed: {message}: check that token_url is reachable")]
    Transport {
        /// What failed.
        message: String,
        /// The underlying HTTP client error.
        #[source]
        source: Option<SharedError>,
    },

    /// Returned when the token endpoint replied with a redirect. It is never
    /// followed, because following it would send the credentials to another URL.
    #[error("token endpoint answered HTTP {status} {}: set token_url to the final URL, redirects are not followed", describe_location(location.as_deref()))]
    Redirect {
        /// The HTTP status, such as 302.
        status: u16,
        /// The `Location` header, if any.
        location: Option<String>,
    },

    /// Returned when the token response names a `token_type` other than Bearer,
    /// such as `mac` or `DPoP`, which this client cannot use.
    #[error("token endpoint issued token_type {token_type:?}, which is not supported: configure the provider to issue Bearer tokens")]
    UnsupportedTokenType {
        /// The token type the endpoint returned.
        token_type: String,
    },

    /// Returned when the token response cannot be used: not JSON or form data,
    /// missing `access_token` (including HTTP 200 with `{}`), too large, or an
    /// access token with characters that cannot appear in a header.
    #[error("invalid token response: {reason}")]
    InvalidResponse {
        /// The problem with the response.
        reason: String,
        /// The HTTP status of the response.
        status: Option<u16>,
    },

    /// Returned when the auth config cannot be used for a token request, for
    /// example a bearer config without `token_url`.
    #[error("invalid auth config: {reason}")]
    InvalidConfig {
        /// The problem and its fix.
        reason: String,
    },

    /// Returned when the credentials lack a field the grant needs, such as
    /// `refresh_token` for the refresh_token grant.
    #[error(
        "credentials lack {}: store them with the credentials",
        list_fields(fields)
    )]
    MissingCredentials {
        /// The missing fields.
        fields: Vec<CredentialField>,
    },

    /// Returned for a grant that a server cannot perform (`implicit`).
    #[error("grant_type {grant_type:?} is not supported: use client_credentials, password, refresh_token or authorization_code with a stored refresh token")]
    UnsupportedGrant {
        /// The grant type.
        grant_type: String,
    },

    /// Returned while the data source is backing off after a failed token
    /// request and no cached token is valid long enough.
    #[error("token requests are backing off for {} ms after an earlier failure: {cause}", retry_after.as_millis())]
    BackingOff {
        /// Time left until the next token request is allowed.
        retry_after: Duration,
        /// The failure that started the back-off.
        cause: Box<Error>,
    },

    /// Returned when the credentials loader failed.
    #[error("failed to load credentials")]
    Load(#[source] SharedError),

    /// Returned when persisting a new refresh token (rotated, or issued to the
    /// password grant) failed. The new access token is not handed out,
    /// because the provider may have revoked the old refresh token.
    #[error("failed to persist the new refresh token")]
    Persist(#[source] SharedError),

    /// Returned by [`Exchange::new`](crate::Exchange::new) when the HTTP client
    /// cannot be built.
    #[error("failed to build the HTTP client: {0}")]
    Client(String),

    /// Returned by [`Exchange::new`](crate::Exchange::new) when an
    /// [`ExchangeConfig`](crate::ExchangeConfig) value is out of range, such as
    /// a zero timeout.
    #[error("invalid exchange settings: {reason}")]
    InvalidSettings {
        /// The setting at fault and its valid range.
        reason: String,
    },
}

impl Error {
    /// Creates an [`Error::InvalidConfig`] from the problems that
    /// [`AuthConfig::validate`](authcfg_model::AuthConfig::validate) found.
    /// The reason lists each field with its problem, without the
    /// `invalid input` prefix of [`ValidationErrors`]' own message, because
    /// the variant's message already states that the config is invalid.
    pub(crate) fn invalid_config(errors: &ValidationErrors) -> Self {
        let problems: Vec<String> = errors
            .errors()
            .iter()
            .map(|error| {
                if error.pointer.is_empty() {
                    error.detail.clone()
                } else {
                    format!("{}: {}", error.pointer, error.detail)
                }
            })
            .collect();
        Error::InvalidConfig {
            reason: problems.join("; "),
        }
    }

    /// Returns true when retrying with the same config and credentials cannot
    /// succeed: the provider rejected the client, grant or scope, or the config
    /// or credentials are unusable. The server maps these to 502.
    pub fn is_permanent(&self) -> bool {
        match self {
            Error::Upstream { permanent, .. } | Error::HttpStatus { permanent, .. } => *permanent,
            Error::UnsupportedTokenType { .. }
            | Error::InvalidConfig { .. }
            | Error::MissingCredentials { .. }
            | Error::UnsupportedGrant { .. }
            | Error::Redirect { .. } => true,
            Error::BackingOff { cause, .. } => cause.is_permanent(),
            Error::Timeout { .. }
            | Error::Transport { .. }
            | Error::InvalidResponse { .. }
            | Error::Load(_)
            | Error::Persist(_)
            | Error::Client(_)
            | Error::InvalidSettings { .. } => false,
        }
    }

    /// Returns true when the token request timed out. The server maps these to 504.
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Timeout { .. } => true,
            Error::BackingOff { cause, .. } => cause.is_timeout(),
            _ => false,
        }
    }

    /// Returns the RFC 6749 error code the token endpoint returned, if any.
    pub fn rfc_error_code(&self) -> Option<&str> {
        match self {
            Error::Upstream { error, .. } => Some(error),
            Error::BackingOff { cause, .. } => cause.rfc_error_code(),
            _ => None,
        }
    }

    /// Returns the HTTP status of the token endpoint's response, if one arrived.
    pub fn upstream_status(&self) -> Option<u16> {
        match self {
            Error::Upstream { status, .. } | Error::InvalidResponse { status, .. } => *status,
            Error::HttpStatus { status, .. } | Error::Redirect { status, .. } => Some(*status),
            Error::BackingOff { cause, .. } => cause.upstream_status(),
            _ => None,
        }
    }

    /// Returns the delay the token endpoint asked for with `Retry-After`, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Upstream { retry_after, .. } | Error::HttpStatus { retry_after, .. } => {
                *retry_after
            }
            Error::BackingOff { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// Returns a short stable label of the error kind, for metrics and logs,
    /// such as `timeout` or `rejected`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Upstream {
                permanent: true, ..
            }
            | Error::HttpStatus {
                permanent: true, ..
            } => "rejected",
            Error::Upstream { .. } | Error::HttpStatus { .. } => "upstream_unavailable",
            Error::Timeout { .. } => "timeout",
            Error::Transport { .. } => "transport",
            Error::Redirect { .. } => "redirect",
            Error::UnsupportedTokenType { .. } => "unsupported_token_type",
            Error::InvalidResponse { .. } => "invalid_response",
            Error::InvalidConfig { .. } => "invalid_config",
            Error::MissingCredentials { .. } => "missing_credentials",
            Error::UnsupportedGrant { .. } => "unsupported_grant",
            Error::BackingOff { .. } => "backing_off",
            Error::Load(_) => "load",
            Error::Persist(_) => "persist",
            Error::Client(_) => "client",
            Error::InvalidSettings { .. } => "invalid_settings",
        }
    }
}

fn describe_status(status: Option<u16>) -> String {
    status
        .map(|status| format!(" with HTTP {status}"))
        .unwrap_or_default()
}

fn describe_location(location: Option<&str>) -> String {
    match location {
        Some(location) => format!("with a redirect to {location:?}"),
        None => "with a redirect but without a Location header".to_owned(),
    }
}

fn describe_text(description: Option<&str>) -> String {
    description
        .map(|text| format!(": {text:?}"))
        .unwrap_or_default()
}

/// Returns a fix for the RFC 6749 error codes whose cause is clear.
fn hint_for(code: &str) -> &'static str {
    match code {
        "invalid_client" => ": check client_id, client_secret and client_auth",
        "invalid_grant" => {
            ": the provider rejected the refresh token or the username and password; store new credentials"
        }
        "unauthorized_client" => ": allow this grant_type for the client at the provider",
        "unsupported_grant_type" => ": use a grant_type that the provider supports",
        "invalid_scope" => ": check scope against the scopes the client may request",
        "invalid_request" => ": check token_params and client_auth",
        _ => "",
    }
}

fn list_fields(fields: &[CredentialField]) -> String {
    let names: Vec<&str> = fields.iter().map(|field| field.as_str()).collect();
    names.join(", ")
}
