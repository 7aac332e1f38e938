//! The public entry point, [`Exchange`]: the cache lookup, single flight,
//! back-off and the token request of one caller.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authcfg_model::{AuthConfig, AuthMethod, Credentials, DataSourceId, GrantType, SecretString};
use rand::Rng as _;
use time::OffsetDateTime;

use crate::basic::basic_token;
use crate::cache::{
    join_flight, wait_for_flight, Backoff, Cache, CacheKey, CachedToken, Deadline, Scheme,
    SlotState, WallTime,
};
use crate::clock::{Clock, SystemClock};
use crate::metrics::Metrics;
use crate::request::{build_refresh_request, build_token_request, TokenRequest};
use crate::response::{parse_token_response, ResponseParts, MAX_LIFETIME};
use crate::{
    http, Authorization, AuthorizeRequest, BoxError, Diagnostics, Error, ExchangeConfig,
    ExchangeOutcome, LoadedCredentials, MetricsSnapshot, RefreshTokenSink, TestRequest,
};

struct Inner {
    config: ExchangeConfig,
    sink: Arc<dyn RefreshTokenSink>,
    clock: Arc<dyn Clock>,
    client: reqwest::Client,
    cache: Cache,
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

/// The next step of one caller, decided under the slot lock.
enum Step {
    /// Serve the cached token.
    Hit(Arc<CachedToken>),
    /// Wait for the token request in flight.
    Wait(tokio::sync::watch::Receiver<Option<crate::cache::FlightResult>>),
    /// Send the token request; `fallback` is a still-valid token to serve if a
    /// refresh ahead of expiry fails.
    Lead {
        guard: crate::cache::FlightGuard,
        fallback: Option<Arc<CachedToken>>,
    },
    /// Fail at once: the data source is backing off.
    Reject(Error),
}

/// Returns the cached token if it is valid for the request's
/// `min_valid_for` and no refresh is forced.
fn usable_token<'a>(
    state: &'a SlotState,
    now: Instant,
    request: &AuthorizeRequest<'_>,
) -> Option<&'a Arc<CachedToken>> {
    state
        .token
        .as_ref()
        .filter(|token| !request.force_refresh && token.valid_for(now, request.min_valid_for))
}

/// Returns the back-off of the slot if it has not ended at `now`.
fn active_backoff(state: &SlotState, now: Instant) -> Option<&Backoff> {
    state.backoff().filter(|backoff| backoff.until > now)
}

/// Returns the token to serve at once, if any. That is a usable token that
/// is not due for a refresh, or any usable token while a token request is in
/// flight or the data source is backing off, because no refresh can start then.
fn ready_token(
    state: &SlotState,
    now: Instant,
    request: &AuthorizeRequest<'_>,
) -> Option<Arc<CachedToken>> {
    let token = usable_token(state, now, request)?;
    let busy = state.flight().is_some() || active_backoff(state, now).is_some();
    (busy || !token.wants_refresh(now)).then(|| Arc::clone(token))
}

/// A token obtained by one token request.
struct Exchanged {
    token: CachedToken,
    /// The credentials version after the request: one higher than before
    /// (or more) when a new refresh token was persisted.
    credentials_version: u64,
    http_status: u16,
    expires_in: Option<u64>,
    rotated: bool,
}

/// The grants one exchange sent, for [`Diagnostics`].
#[derive(Debug, Default)]
struct GrantTrace {
    /// The `grant_type` of the last token request sent.
    grant_type: Option<&'static str>,
    /// True when the endpoint rejected the stored refresh token of a
    /// `password` data source with `invalid_grant`.
    refresh_token_rejected: bool,
}

/// A token ready to cache, with the key it belongs under.
struct Fetched {
    token: Arc<CachedToken>,
    key: CacheKey,
}

impl Exchange {
    /// Creates an exchange on the system clock.
    ///
    /// # Errors
    ///
    /// Returns [`Error::InvalidSettings`] when a `config` value is out of
    /// range, and [`Error::Client`] when the HTTP client cannot be built.
    pub fn new(config: ExchangeConfig, sink: Arc<dyn RefreshTokenSink>) -> Result<Self, Error> {
        Self::with_clock(config, sink, Arc::new(SystemClock))
    }

    /// Creates an exchange on `clock`, so that tests control expiry.
    ///
    /// # Errors
    ///
    /// Returns [`Error::InvalidSettings`] when a `config` value is out of
    /// range, and [`Error::Client`] when the HTTP client cannot be built.
    pub fn with_clock(
        config: ExchangeConfig,
        sink: Arc<dyn RefreshTokenSink>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, Error> {
        config.validate()?;
        let client = http::build_client(&config)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                sink,
                clock,
                client,
                cache: Cache::default(),
                metrics: Metrics::default(),
            }),
        })
    }

    /// Returns the cached header for the data source when one is ready to
    /// serve, without I/O and without waiting.
    ///
    /// Returns `None` whenever [`Exchange::authorize`] would do more than
    /// hand out a cached token: send a token request, refresh one ahead of
    /// expiry, wait for a request in flight, or fail while backing off. A
    /// caller can try this first and call [`Exchange::authorize`] only on
    /// `None`, so that the common case needs no future at all. A `Some`
    /// counts as a cache hit in [`Exchange::metrics`].
    pub fn cached(&self, request: &AuthorizeRequest<'_>) -> Option<Authorization> {
        let inner = &*self.inner;
        let slot = inner.cache.find(
            request.datasource,
            request.auth,
            request.client_id,
            request.credentials_version,
        )?;
        let now = inner.clock.now();
        let token = ready_token(&slot.read(), now, request)?;
        inner.metrics.record_hit();
        Some(token.to_authorization())
    }

    /// Returns an `Authorization` header for the data source.
    ///
    /// A cache hit takes no I/O and does not call `load`. On a miss, exactly
    /// one caller per data source calls `load` and sends the token request.
    /// Concurrent callers wait for it, and all of them get its result, success
    /// or error.
    /// If that caller's future is dropped before the request finishes, a
    /// waiting caller takes over with its own `load`.
    ///
    /// When less than `max(refresh_margin, 25 % of the lifetime)` of a cached
    /// token remains, the first caller to notice refreshes it and waits for the
    /// new token, while the others keep getting the still-valid one. If the
    /// refresh fails, that caller too gets the still-valid token. A caller that
    /// waited for a token request gets its token even when that token is valid
    /// for less than the caller's `min_valid_for`.
    ///
    /// # Errors
    ///
    /// Returns an [`Error`] when the token request fails, the data source is
    /// backing off after an earlier failure and no cached token is valid for
    /// `min_valid_for`, or loading or persisting credentials fails.
    pub async fn authorize<L, F>(
        &self,
        request: &AuthorizeRequest<'_>,
        load: L,
    ) -> Result<Authorization, Error>
    where
        L: FnOnce() -> F + Send,
        F: Future<Output = Result<LoadedCredentials, BoxError>> + Send,
    {
        let inner = &*self.inner;
        let slot = inner.cache.slot(
            request.datasource,
            request.auth,
            request.client_id,
            request.credentials_version,
        );
        let mut load = Some(load);
        // Each call is counted once, by its first decision: a caller that
        // waited and then, after the leader was cancelled, finds a token or
        // a back-off stays a miss.
        let mut miss_counted = false;

        loop {
            let now = inner.clock.now();
            // Most calls are hits, which a shared read lock serves.
            let hit = ready_token(&slot.read(), now, request);
            let step = if let Some(token) = hit {
                Step::Hit(token)
            } else {
                let mut state = slot.lock();
                if let Some(token) = ready_token(&state, now, request) {
                    Step::Hit(token)
                } else if let Some(receiver) = join_flight(&state) {
                    Step::Wait(receiver)
                } else if let Some(backoff) = active_backoff(&state, now) {
                    Step::Reject(Error::BackingOff {
                        retry_after: backoff.until - now,
                        cause: Box::new(backoff.cause.clone()),
                    })
                } else {
                    // A token that is still valid but due for a refresh is
                    // served if the refresh fails.
                    let fallback = usable_token(&state, now, request).cloned();
                    Step::Lead {
                        guard: inner.cache.start_flight(&slot, &mut state),
                        fallback,
                    }
                }
            };

            match step {
                Step::Hit(token) => {
                    if !miss_counted {
                        inner.metrics.record_hit();
                    }
                    return Ok(token.to_authorization());
                }
                Step::Reject(error) => {
                    if !miss_counted {
                        inner.metrics.record_backoff_rejection();
                    }
                    tracing::debug!(
                        datasource = %request.datasource,
                        retry_after_ms = error.retry_after().map(|delay| delay.as_millis()),
                        "token request skipped while backing off"
                    );
                    return Err(error);
                }
                Step::Wait(receiver) => {
                    if !std::mem::replace(&mut miss_counted, true) {
                        inner.metrics.record_miss();
                    }
                    if let Some(result) = wait_for_flight(receiver).await {
                        return result.map(|token| token.to_authorization());
                    }
                    // The leader was cancelled: decide again, possibly leading.
                }
                Step::Lead { guard, fallback } => {
                    if !std::mem::replace(&mut miss_counted, true) {
                        inner.metrics.record_miss();
                    }
                    let Some(load) = load.take() else {
                        // Unreachable: leading returns, so a caller leads at most once.
                        return Err(Error::Load(Arc::from(BoxError::from(
                            "the credentials loader was already used",
                        ))));
                    };
                    return self.lead(request, guard, fallback, load).await;
                }
            }
        }
    }

    /// Sends the token request of a flight, updates the slot and publishes
    /// the result to the waiting callers.
    async fn lead<L, F>(
        &self,
        request: &AuthorizeRequest<'_>,
        guard: crate::cache::FlightGuard,
        fallback: Option<Arc<CachedToken>>,
        load: L,
    ) -> Result<Authorization, Error>
    where
        L: FnOnce() -> F + Send,
        F: Future<Output = Result<LoadedCredentials, BoxError>> + Send,
    {
        let inner = &*self.inner;
        let slot = Arc::clone(guard.slot());
        let result = self.fetch(request, load).await;

        let now = inner.clock.now();
        let mut replacement = None;
        {
            let mut state = slot.lock();
            match &result {
                Ok(fetched) => {
                    state.set_backoff(None);
                    if fetched.token.cacheable {
                        if fetched.key == slot.key {
                            state.token = Some(Arc::clone(&fetched.token));
                        } else {
                            // Rotation or a newer credentials version: the
                            // token belongs under the new key, so that the
                            // next caller naming that version hits.
                            replacement = Some((fetched.key.clone(), Arc::clone(&fetched.token)));
                        }
                    }
                }
                Err(error) if backs_off(error) => {
                    let failures = state.failures().saturating_add(1);
                    let delay = self.backoff_delay(failures, error.retry_after());
                    state.set_backoff(Some(Backoff {
                        until: now + delay,
                        cause: error.clone(),
                        failures,
                    }));
                    tracing::warn!(
                        datasource = %request.datasource,
                        error = %error,
                        kind = error.kind(),
                        failures,
                        backoff_ms = delay.as_millis(),
                        "token request failed; backing off"
                    );
                }
                Err(error) => {
                    tracing::warn!(
                        datasource = %request.datasource,
                        error = %error,
                        kind = error.kind(),
                        "token request not sent"
                    );
                }
            }
            let published = result
                .as_ref()
                .map(|fetched| Arc::clone(&fetched.token))
                .map_err(Clone::clone);
            guard.finish(&mut state, published);
        }
        if let Some((key, token)) = replacement {
            inner.cache.replace(request.datasource, &slot, key, token);
        }

        match result {
            Ok(fetched) => {
                if !fetched.token.valid_for(now, request.min_valid_for) {
                    tracing::debug!(
                        datasource = %request.datasource,
                        min_valid_for_ms = request.min_valid_for.as_millis(),
                        valid_for_ms = fetched
                            .token
                            .valid_until()
                            .map(|until| until.saturating_duration_since(now).as_millis()),
                        "the new token is valid for less than min_valid_for; it is returned, \
                         but each call with this min_valid_for sends a new token request"
                    );
                }
                Ok(fetched.token.to_authorization())
            }
            Err(error) => {
                match fallback.filter(|token| token.valid_for(now, request.min_valid_for)) {
                    Some(token) => {
                        tracing::warn!(
                            datasource = %request.datasource,
                            kind = error.kind(),
                            "refresh ahead of expiry failed; serving the still-valid token"
                        );
                        Ok(token.to_authorization())
                    }
                    None => Err(error),
                }
            }
        }
    }

    /// Loads the credentials and produces a token: a Basic header, or a bearer
    /// token from one token request, or two when a rejected refresh token
    /// falls back to the password grant.
    async fn fetch<L, F>(&self, request: &AuthorizeRequest<'_>, load: L) -> Result<Fetched, Error>
    where
        L: FnOnce() -> F + Send,
        F: Future<Output = Result<LoadedCredentials, BoxError>> + Send,
    {
        let loaded = load()
            .await
            .map_err(|error| Error::Load(Arc::from(error)))?;
        let credentials = &loaded.credentials;

        let (token, credentials_version) = match request.auth.method {
            AuthMethod::Basic => (basic_token(credentials)?, loaded.version),
            AuthMethod::Bearer => {
                let exchanged = self
                    .exchange_once(
                        request.datasource,
                        request.auth,
                        credentials,
                        loaded.version,
                        &mut GrantTrace::default(),
                    )
                    .await?;
                (exchanged.token, exchanged.credentials_version)
            }
        };

        Ok(Fetched {
            token: Arc::new(token),
            key: CacheKey::new(request.auth, &credentials.client_id, credentials_version),
        })
    }

    /// Obtains a bearer token from the token endpoint and persists a new
    /// refresh token.
    ///
    /// A `password` data source with a stored refresh token first sends the
    /// refresh_token grant (RFC 6749 section 6), so that the resource owner's
    /// password is not sent for every new token. Only when the endpoint
    /// rejects the refresh token with `invalid_grant` does it send the
    /// password grant, once. Any other failure is returned as it is, because
    /// it does not show that the refresh token is invalid.
    async fn exchange_once(
        &self,
        datasource: DataSourceId,
        auth: &AuthConfig,
        credentials: &Credentials,
        credentials_version: u64,
        trace: &mut GrantTrace,
    ) -> Result<Exchanged, Error> {
        auth.validate()
            .map_err(|errors| Error::invalid_config(&errors))?;

        let has_refresh_token = credentials
            .refresh_token
            .as_ref()
            .is_some_and(|token| !token.is_empty());
        if auth.grant_type == Some(GrantType::Password) && has_refresh_token {
            let refresh_request = build_refresh_request(auth, credentials)?;
            trace.grant_type = Some(refresh_request.grant_type);
            let result = self
                .send_token_request(
                    datasource,
                    auth,
                    credentials,
                    credentials_version,
                    &refresh_request,
                )
                .await;
            match result {
                Err(error) if error.rfc_error_code() == Some("invalid_grant") => {
                    // NOTE: when the password grant's response carries no
                    // refresh token, the rejected one stays stored, so each
                    // later exchange sends it once more before the password grant.
                    tracing::warn!(
                        datasource = %datasource,
                        error = %error,
                        "the token endpoint rejected the stored refresh token; falling back to the password grant"
                    );
                    trace.refresh_token_rejected = true;
                }
                result => return result,
            }
        }

        let token_request = build_token_request(auth, credentials)?;
        trace.grant_type = Some(token_request.grant_type);
        self.send_token_request(
            datasource,
            auth,
            credentials,
            credentials_version,
            &token_request,
        )
        .await
    }

    /// Sends one token request and persists the refresh token of its response
    /// when it differs from the stored one.
    async fn send_token_request(
        &self,
        datasource: DataSourceId,
        auth: &AuthConfig,
        credentials: &Credentials,
        credentials_version: u64,
        token_request: &TokenRequest,
    ) -> Result<Exchanged, Error> {
        let inner = &*self.inner;

        let started = Instant::now();
        let parsed = async {
            let response = http::send(&inner.client, &inner.config, token_request).await?;
            let parts = ResponseParts {
                status: response.status,
                content_type: response.content_type.as_deref(),
                retry_after: response.retry_after,
                body: &response.body,
            };
            parse_token_response(&parts, &token_request.secrets)
                .map(|parsed| (parsed, response.status))
        }
        .await;
        let latency = started.elapsed();
        let (parsed, http_status) = match parsed {
            Ok(parsed) => parsed,
            Err(error) => {
                inner.metrics.record_exchange(outcome_of(&error), latency);
                return Err(error);
            }
        };
        let received = inner.clock.now();
        let received_wall = inner.clock.wall();

        if parsed.token_type_missing {
            tracing::warn!(
                datasource = %datasource,
                "token response has no token_type; taking it as Bearer"
            );
        }

        // Grants that can renew with a refresh token keep the one the endpoint
        // issued (RFC 6749 sections 4.3.3 and 6). The client_credentials grant
        // needs none because the client can always request a new token with
        // its own credentials, so a refresh token issued to it is ignored.
        let uses_refresh_token = matches!(
            auth.grant_type,
            Some(GrantType::Password | GrantType::RefreshToken | GrantType::AuthorizationCode)
        );
        let mut version = credentials_version;
        let mut rotated = false;
        if let Some(new_refresh_token) = &parsed.refresh_token {
            let unchanged = credentials
                .refresh_token
                .as_ref()
                .is_some_and(|old| old.expose_secret() == new_refresh_token.expose_secret());
            if uses_refresh_token && !unchanged {
                match inner
                    .sink
                    .persist_refresh_token(datasource, credentials_version, new_refresh_token)
                    .await
                {
                    Ok(new_version) => {
                        tracing::info!(
                            datasource = %datasource,
                            grant_type = token_request.grant_type,
                            credentials_version = new_version,
                            "persisted the new refresh token"
                        );
                        version = new_version;
                        rotated = true;
                    }
                    Err(error) => {
                        inner
                            .metrics
                            .record_exchange(ExchangeOutcome::PersistFailed, latency);
                        tracing::error!(
                            datasource = %datasource,
                            error = %error,
                            "failed to persist the new refresh token; the new access token is discarded"
                        );
                        return Err(Error::Persist(Arc::from(error)));
                    }
                }
            } else if !uses_refresh_token {
                tracing::debug!(
                    datasource = %datasource,
                    grant_type = ?auth.grant_type,
                    "ignoring a refresh token issued to a grant that does not use one"
                );
            }
        }
        inner
            .metrics
            .record_exchange(ExchangeOutcome::Success, latency);
        tracing::debug!(
            datasource = %datasource,
            grant_type = token_request.grant_type,
            http_status,
            expires_in = parsed.expires_in,
            rotated,
            latency_ms = latency.as_millis(),
            "token request succeeded"
        );

        let token = self.bearer_token(&parsed, received, received_wall);
        Ok(Exchanged {
            token,
            credentials_version: version,
            http_status,
            expires_in: parsed.expires_in,
            rotated,
        })
    }

    /// Computes the validity of a fresh bearer token. Expiry counts from when
    /// the response was received, minus the safety margin (at most half the
    /// lifetime, so short-lived tokens stay usable).
    fn bearer_token(
        &self,
        parsed: &crate::response::TokenResponse,
        received: Instant,
        received_wall: OffsetDateTime,
    ) -> CachedToken {
        let config = &self.inner.config;
        let (lifetime, lifetime_assumed) = match parsed.expires_in {
            Some(seconds) => (Duration::from_secs(seconds), false),
            None => (config.default_lifetime.min(MAX_LIFETIME), true),
        };
        let skew = config.refresh_margin.min(lifetime / 2);
        let refresh_lead = config.refresh_margin.max(lifetime / 4);
        let usable = lifetime - skew;

        // The refresh starts `refresh_lead` before the end of the lifetime,
        // which is `refresh_lead - skew` before the end of its usable part.
        let lead_before_usable_end = refresh_lead.saturating_sub(skew);
        CachedToken {
            token: SecretString::new(parsed.access_token.expose_secret()),
            valid_until: Deadline::from_instant(received + usable),
            expires_at: WallTime::new(received_wall + usable),
            scope: parsed
                .scope
                .as_deref()
                .map(|scope| self.inner.cache.share_scope(scope)),
            refresh_lead_secs: CachedToken::lead_secs(lead_before_usable_end),
            scheme: Scheme::Bearer,
            lifetime_assumed,
            cacheable: !lifetime.is_zero(),
        }
    }

    /// Returns the back-off after `failures` failures in a row: exponential
    /// from `backoff_initial` up to `backoff_max`, with 50 % random jitter, and
    /// at least the endpoint's `Retry-After` (up to `max_retry_after`).
    fn backoff_delay(&self, failures: u32, retry_after: Option<Duration>) -> Duration {
        let config = &self.inner.config;
        let exponent = failures.saturating_sub(1).min(20);
        let base = config
            .backoff_initial
            .saturating_mul(1 << exponent)
            .min(config.backoff_max);
        let jittered = base.mul_f64(rand::thread_rng().gen_range(0.5..=1.0));
        match retry_after {
            Some(asked) => jittered.max(asked.min(config.max_retry_after)),
            None => jittered,
        }
    }

    /// Sends a token request outside the cache and reports how it went, for
    /// `POST /test`. It sends the same grants as a cache miss, including the
    /// refresh_token grant first for a `password` data source with a stored
    /// refresh token, and persists a new refresh token. For `basic`, the
    /// header is built and nothing is sent.
    pub async fn test(&self, request: &TestRequest<'_>) -> Diagnostics {
        let started = Instant::now();
        let mut diagnostics = Diagnostics {
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
            grant_type: None,
            refresh_token_rejected: false,
        };

        let mut trace = GrantTrace::default();
        let result = match request.auth.method {
            AuthMethod::Basic => basic_token(request.credentials),
            AuthMethod::Bearer => self
                .exchange_once(
                    request.datasource,
                    request.auth,
                    request.credentials,
                    request.credentials_version,
                    &mut trace,
                )
                .await
                .map(|exchanged| {
                    diagnostics.http_status = Some(exchanged.http_status);
                    diagnostics.expires_in = exchanged.expires_in;
                    diagnostics.refresh_token_rotated = exchanged.rotated;
                    exchanged.token
                }),
        };
        diagnostics.duration = started.elapsed();
        diagnostics.grant_type = trace.grant_type;
        diagnostics.refresh_token_rejected = trace.refresh_token_rejected;

        match result {
            Ok(token) => {
                diagnostics.ok = true;
                diagnostics.scope = token.scope.as_deref().map(|scope| String::from(&**scope));
                diagnostics.token_type = Some(token.scheme.as_str().to_owned());
                diagnostics.lifetime_assumed = token.lifetime_assumed;
            }
            Err(error) => {
                diagnostics.http_status = error.upstream_status();
                diagnostics.error_kind = Some(error.kind());
                diagnostics.error = error.rfc_error_code().map(str::to_owned);
                if let Error::Upstream { description, .. } = &error {
                    diagnostics.error_description = description.clone();
                }
                diagnostics.message = Some(error.to_string());
            }
        }
        diagnostics
    }

    /// Drops the cached token and back-off state of a data source, for when its
    /// config or credentials change. A token request in flight still returns
    /// its result to its callers, but its token is not cached.
    pub fn invalidate(&self, datasource: DataSourceId) {
        self.inner.cache.remove(datasource);
        tracing::debug!(datasource = %datasource, "token cache entry invalidated");
    }

    /// Returns a snapshot of the counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }
}

/// Returns true for failures that involved the token endpoint, which back off
/// so that a broken provider is not hammered. Configuration and loading errors
/// do not: retrying them costs the provider nothing.
fn backs_off(error: &Error) -> bool {
    matches!(
        error,
        Error::Upstream { .. }
            | Error::HttpStatus { .. }
            | Error::Timeout { .. }
            | Error::Transport { .. }
            | Error::Redirect { .. }
            | Error::InvalidResponse { .. }
            | Error::UnsupportedTokenType { .. }
            | Error::Persist(_)
    )
}

/// Maps a failed token request to its metrics outcome.
fn outcome_of(error: &Error) -> ExchangeOutcome {
    match error {
        Error::Upstream { .. } | Error::HttpStatus { .. } if error.is_permanent() => {
            ExchangeOutcome::Rejected
        }
        Error::Upstream { .. } | Error::HttpStatus { .. } => ExchangeOutcome::Unavailable,
        Error::Timeout { .. } => ExchangeOutcome::Timeout,
        Error::Transport { .. } | Error::Client(_) => ExchangeOutcome::Transport,
        Error::Persist(_) => ExchangeOutcome::PersistFailed,
        _ => ExchangeOutcome::InvalidResponse,
    }
}
