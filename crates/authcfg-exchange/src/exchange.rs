//! The public entry point: [`Exchange`] and the types of its calls.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use authcfg_model::{AuthConfig, Credentials, DataSourceId, SecretString};
use base64::Engine as _;
use time::OffsetDateTime;

use crate::clock::{Clock, SystemClock};
use crate::metrics::Metrics;
use crate::{BoxError, Error, ExchangeConfig, MetricsSnapshot};

/// Persists a rotated refresh token. The server implements it with the store.
pub trait RefreshTokenSink: Send + Sync {
    /// Stores `token` as the refresh token of `datasource` if its credentials
    /// are still at `expected_credentials_version`, and returns the new
    /// credentials version.
    ///
    /// The new access token is handed out only after this returns `Ok`.
    ///
    /// # Errors
    ///
    /// Returns the store's error, such as a version conflict; the exchange then
    /// fails with [`Error::Persist`].
    ///
    /// # Security
    ///
    /// `token` is a live refresh token: store it sealed and never log it.
    fn persist_refresh_token<'a>(
        &'a self,
        datasource: DataSourceId,
        expected_credentials_version: u64,
        token: &'a SecretString,
    ) -> Pin<Box<dyn Future<Output = Result<u64, BoxError>> + Send + 'a>>;
}

/// A sink that accepts no rotation, for deployments and tests without
/// refresh-token grants. Persisting fails, so a rotated token is never lost silently.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRotation;

impl RefreshTokenSink for NoRotation {
    fn persist_refresh_token<'a>(
        &'a self,
        _datasource: DataSourceId,
        _expected_credentials_version: u64,
        _token: &'a SecretString,
    ) -> Pin<Box<dyn Future<Output = Result<u64, BoxError>> + Send + 'a>> {
        Box::pin(async {
            Err(BoxError::from(
                "the token endpoint rotated the refresh token but no refresh token sink is configured",
            ))
        })
    }
}

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
    /// The data source; the cache holds one entry per data source.
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
    /// How long the returned token must stay valid at least.
    pub min_valid_for: Duration,
    /// Requests a new token even when a cached one is valid, for example after
    /// the data source rejected the cached one.
    pub force_refresh: bool,
}

/// A ready `Authorization` header value.
#[derive(Debug)]
pub struct Authorization {
    /// The header value, such as `Bearer eyJ...` or `Basic YXBp...`.
    ///
    /// # Security
    ///
    /// This is a live credential: send it only to the data source.
    pub value: SecretString,
    /// `Bearer` or `Basic`.
    pub token_type: String,
    /// When the token stops being used, after the safety margin; `None` for
    /// Basic, which does not expire.
    pub expires_at: Option<OffsetDateTime>,
    /// True when the token response had no `expires_in` and the configured
    /// default lifetime was assumed.
    pub lifetime_assumed: bool,
    /// The scope the token endpoint granted, when it returned one.
    pub scope: Option<String>,
}

/// A token request for a connection test, outside the cache.
#[derive(Debug, Clone, Copy)]
pub struct TestRequest<'a> {
    /// The data source, for persisting a rotated refresh token.
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
    /// True when the endpoint rotated the refresh token and the new one was persisted.
    pub refresh_token_rotated: bool,
}

/// Builds `Basic base64(user-id ":" password)` per RFC 7617. An empty password
/// keeps the colon.
///
/// # Security
///
/// The result contains the password, merely encoded.
pub fn basic_header(user_id: &str, password: &str) -> SecretString {
    let mut plain = SecretString::new(format!("{user_id}:{password}"));
    let encoded = base64::engine::general_purpose::STANDARD.encode(plain.expose_secret());
    plain = SecretString::new(format!("Basic {encoded}"));
    plain
}

struct Inner {
    config: ExchangeConfig,
    sink: Arc<dyn RefreshTokenSink>,
    clock: Arc<dyn Clock>,
    metrics: Metrics,
}

/// Produces `Authorization` headers and caches bearer tokens. Cheap to clone:
/// clones share the cache.
#[derive(Clone)]
pub struct Exchange {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Exchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchange")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Exchange {
    /// Creates an exchange on the system clock.
    ///
    /// # Errors
    ///
    /// Returns [`Error::Client`] when the HTTP client cannot be built.
    pub fn new(config: ExchangeConfig, sink: Arc<dyn RefreshTokenSink>) -> Result<Self, Error> {
        Self::with_clock(config, sink, Arc::new(SystemClock))
    }

    /// Creates an exchange on `clock`, so that tests control expiry.
    ///
    /// # Errors
    ///
    /// Returns [`Error::Client`] when the HTTP client cannot be built.
    pub fn with_clock(
        config: ExchangeConfig,
        sink: Arc<dyn RefreshTokenSink>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                sink,
                clock,
                metrics: Metrics::default(),
            }),
        })
    }

    /// Returns an `Authorization` header for the data source.
    ///
    /// A cache hit takes no I/O and does not call `load`. On a miss, one caller
    /// per data source calls `load` and sends the token request while the others
    /// wait for its result.
    ///
    /// # Errors
    ///
    /// Returns an [`Error`] when the token request fails, the data source is
    /// backing off, or loading or persisting credentials fails.
    pub async fn authorize<L, F>(
        &self,
        request: &AuthorizeRequest<'_>,
        load: L,
    ) -> Result<Authorization, Error>
    where
        L: FnOnce() -> F + Send,
        F: Future<Output = Result<LoadedCredentials, BoxError>> + Send,
    {
        let _ = (request, load, &self.inner.sink, &self.inner.clock);
        Err(Error::InvalidConfig {
            reason: "not implemented yet".to_owned(),
        })
    }

    /// Sends a token request outside the cache and reports how it went, for
    /// `POST /test`. A rotated refresh token is persisted.
    pub async fn test(&self, request: &TestRequest<'_>) -> Diagnostics {
        let _ = request;
        Diagnostics {
            ok: false,
            duration: Duration::ZERO,
            http_status: None,
            error_kind: None,
            error: None,
            error_description: None,
            message: None,
            scope: None,
            token_type: None,
            expires_in: None,
            lifetime_assumed: false,
            refresh_token_rotated: false,
        }
    }

    /// Drops the cached token and back-off state of a data source, for when its
    /// config or credentials change.
    pub fn invalidate(&self, datasource: DataSourceId) {
        let _ = datasource;
    }

    /// Returns a snapshot of the counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }
}
