//! The values passed to and returned by [`Exchange`](crate::Exchange) calls.

use std::sync::Arc;
use std::time::Duration;

use authcfg_model::{AuthConfig, Credentials, DataSourceId, SecretString};

use crate::cache::CachedToken;
use time::OffsetDateTime;

/// Credentials as loaded from the store, with their version.
#[derive(Debug)]
pub struct LoadedCredentials {
    /// The unsealed credentials.
    pub credentials: Credentials,
    /// The credentials version they were stored under.
    pub version: u64,
}

/// One request for an `Authorization` header.
#[derive(Debug, Clone, Copy)]
pub struct AuthorizeRequest<'a> {
    /// The data source. The cache contains one entry per data source.
    pub datasource: DataSourceId,
    /// Its auth config. A cached token is used only when it was obtained with
    /// an equal `token_url`, grant, client authentication, scope set and
    /// `token_params`.
    pub auth: &'a AuthConfig,
    /// The client id of the current credentials (not secret).
    pub client_id: &'a str,
    /// The current credentials version; a cached token of another version is
    /// not used, so changing a secret invalidates its tokens.
    pub credentials_version: u64,
    /// How long a cached token must stay valid at least to be served.
    ///
    /// A token counts as valid until its `expires_in` ends minus
    /// [`refresh_margin`](crate::ExchangeConfig::refresh_margin) (at most
    /// half of its lifetime). A cached token valid for less is not served, and
    /// the call sends a token request instead. The new token is returned even
    /// when it, too, is valid for less than `min_valid_for`. So a value longer
    /// than the usable lifetime of the tokens the endpoint issues makes every
    /// call send a token request, which is logged at debug level. Keep it well
    /// below that lifetime; `Duration::ZERO` accepts any unexpired token.
    pub min_valid_for: Duration,
    /// Requests a new token even when a cached one is valid, for example after
    /// the data source rejected the cached one. It joins a token request in
    /// flight, and fails with [`Error::BackingOff`](crate::Error::BackingOff) during a back-off.
    pub force_refresh: bool,
}

/// A ready `Authorization` header value.
///
/// It shares the cached token, so that handing it out copies no secret, and
/// cloning it is cheap. Its `Debug` output shows no part of the value.
///
/// # Security
///
/// The value is a live credential: send it only to the data source.
#[derive(Clone)]
pub struct Authorization {
    token: Arc<CachedToken>,
}

impl Authorization {
    pub(crate) fn new(token: Arc<CachedToken>) -> Self {
        Self { token }
    }

    /// Returns the scheme, `Bearer` or `Basic`.
    pub fn token_type(&self) -> &'static str {
        self.token.scheme.as_str()
    }

    /// Returns the part of the header value after the scheme and a space: the
    /// access token for `Bearer`, the Base64 `user-id:password` for `Basic`.
    pub fn token(&self) -> &SecretString {
        &self.token.token
    }

    /// Returns the whole header value, such as `Bearer eyJ...` or
    /// `Basic YXBp...`, in a new string.
    pub fn header_value(&self) -> SecretString {
        let scheme = self.token_type();
        let token = self.token.token.expose_secret();
        let mut value = String::with_capacity(scheme.len() + 1 + token.len());
        value.push_str(scheme);
        value.push(' ');
        value.push_str(token);
        SecretString::new(value)
    }

    /// Returns when the token stops being used, after the safety margin.
    /// Basic does not expire and returns `None`.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.token.expires_at.get()
    }

    /// Returns true when the token response had no `expires_in` and the
    /// configured default lifetime was assumed.
    pub fn lifetime_assumed(&self) -> bool {
        self.token.lifetime_assumed
    }

    /// Returns the scope the token endpoint granted, when it returned one.
    pub fn scope(&self) -> Option<&str> {
        self.token.scope.as_deref().map(|scope| &**scope)
    }
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorization")
            .field("token_type", &self.token_type())
            .field("token", &"[redacted]")
            .field("expires_at", &self.expires_at())
            .field("lifetime_assumed", &self.lifetime_assumed())
            .field("scope", &self.scope())
            .finish()
    }
}

/// A token request for a connection test, outside the cache.
#[derive(Debug, Clone, Copy)]
pub struct TestRequest<'a> {
    /// The data source, for persisting a new refresh token.
    pub datasource: DataSourceId,
    /// Its auth config.
    pub auth: &'a AuthConfig,
    /// Its unsealed credentials.
    pub credentials: &'a Credentials,
    /// The version of `credentials`.
    pub credentials_version: u64,
}

/// The result of a connection test. It never contains the token.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostics {
    /// True when a usable token arrived (or, for `basic`, the header was built).
    pub ok: bool,
    /// Time the token request took.
    pub duration: Duration,
    /// HTTP status of the token endpoint's response, if one arrived.
    pub http_status: Option<u16>,
    /// A short stable label of the failure, such as `timeout` or `rejected`.
    pub error_kind: Option<&'static str>,
    /// The RFC 6749 error code, such as `invalid_client`.
    pub error: Option<String>,
    /// The RFC 6749 `error_description`, scrubbed of secrets.
    pub error_description: Option<String>,
    /// The full error message, free of secrets.
    pub message: Option<String>,
    /// The scope the endpoint granted.
    pub scope: Option<String>,
    /// The token type, `Bearer` or `Basic`.
    pub token_type: Option<String>,
    /// The `expires_in` the endpoint returned, in seconds.
    pub expires_in: Option<u64>,
    /// True when the response had no `expires_in`.
    pub lifetime_assumed: bool,
    /// True when the endpoint issued a new refresh token and it was persisted:
    /// a rotated one, or the first one of a `password` data source.
    pub refresh_token_rotated: bool,
    /// The `grant_type` of the last token request sent, or `None` when nothing
    /// was sent. It is `refresh_token` when a `password` or
    /// `authorization_code` data source used its stored refresh token.
    pub grant_type: Option<&'static str>,
    /// True when the endpoint rejected the stored refresh token of a
    /// `password` data source with `invalid_grant` and the password grant
    /// was sent instead.
    pub refresh_token_rejected: bool,
}
