//! RFC 9457 problem details: the one error shape of every HTTP response.
//!
//! Each error has two faces. The client gets a safe `application/problem+json`
//! body with a stable `type` URI, a `detail` that explains the fix and, for
//! validation, an `errors` list of JSON pointers. The log gets the full cause:
//! 5xx at error level, 4xx at debug level. The `type` URIs are identifiers,
//! documented in `docs/api.md`; nothing fetches them.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use actix_web::http::header::{self, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use authcfg_model::{FieldError, ValidationErrors};
use serde::Serialize;
use utoipa::ToSchema;

/// Media type of a problem details body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The kinds of problem the API returns, each with a stable `type` URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// 400: a field has an invalid value; `errors` lists each one.
    Validation,
    /// 400: the body is not JSON, has unknown fields, or a query or path
    /// parameter is malformed.
    BadRequest,
    /// 401: the API token is missing or invalid.
    Unauthorized,
    /// 403: the API token may not perform this request.
    Forbidden,
    /// 404: the data source, credentials, API token or route does not exist.
    NotFound,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 409: the name is already taken.
    AlreadyExists,
    /// 409: another data source's name maps to the same environment variable
    /// prefix, such as `crm-prod` for `crm_prod`.
    EnvPrefixTaken,
    /// 409: the data source has no credentials, or lacks a field its grant needs.
    MissingCredentials,
    /// 409: the stored auth config cannot be used for a token request.
    InvalidAuthConfig,
    /// 412: `If-Match` names a version other than the current one.
    PreconditionFailed,
    /// 413: the body is larger than `body_limit_bytes`.
    PayloadTooLarge,
    /// 415: the body is not `application/json`.
    UnsupportedMediaType,
    /// 502: the token endpoint rejected the request or sent an unusable response.
    UpstreamError,
    /// 503: the token endpoint is failing and requests are backing off, or
    /// the service is not ready.
    Unavailable,
    /// 504: the token endpoint did not respond in time.
    UpstreamTimeout,
    /// 500: an internal error; the cause is in the log under the request id.
    Internal,
}

impl ProblemKind {
    /// Returns the HTTP status of this kind.
    pub fn status(self) -> StatusCode {
        match self {
            ProblemKind::Validation | ProblemKind::BadRequest => StatusCode::BAD_REQUEST,
            ProblemKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ProblemKind::Forbidden => StatusCode::FORBIDDEN,
            ProblemKind::NotFound => StatusCode::NOT_FOUND,
            ProblemKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProblemKind::AlreadyExists
            | ProblemKind::EnvPrefixTaken
            | ProblemKind::MissingCredentials
            | ProblemKind::InvalidAuthConfig => StatusCode::CONFLICT,
            ProblemKind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            ProblemKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProblemKind::UpstreamError => StatusCode::BAD_GATEWAY,
            ProblemKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ProblemKind::UpstreamTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProblemKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Returns the stable `type` URI, such as `https://authcfg.dev/problems/validation`.
    pub fn type_uri(self) -> &'static str {
        match self {
            ProblemKind::Validation => "https://authcfg.dev/problems/validation",
            ProblemKind::BadRequest => "https://authcfg.dev/problems/bad-request",
            ProblemKind::Unauthorized => "https://authcfg.dev/problems/unauthorized",
            ProblemKind::Forbidden => "https://authcfg.dev/problems/forbidden",
            ProblemKind::NotFound => "https://authcfg.dev/problems/not-found",
            ProblemKind::MethodNotAllowed => "https://authcfg.dev/problems/method-not-allowed",
            ProblemKind::AlreadyExists => "https://authcfg.dev/problems/already-exists",
            ProblemKind::EnvPrefixTaken => "https://authcfg.dev/problems/env-prefix-taken",
            ProblemKind::MissingCredentials => "https://authcfg.dev/problems/missing-credentials",
            ProblemKind::InvalidAuthConfig => "https://authcfg.dev/problems/invalid-auth-config",
            ProblemKind::PreconditionFailed => "https://authcfg.dev/problems/precondition-failed",
            ProblemKind::PayloadTooLarge => "https://authcfg.dev/problems/payload-too-large",
            ProblemKind::UnsupportedMediaType => {
                "https://authcfg.dev/problems/unsupported-media-type"
            }
            ProblemKind::UpstreamError => "https://authcfg.dev/problems/upstream-error",
            ProblemKind::Unavailable => "https://authcfg.dev/problems/unavailable",
            ProblemKind::UpstreamTimeout => "https://authcfg.dev/problems/upstream-timeout",
            ProblemKind::Internal => "https://authcfg.dev/problems/internal",
        }
    }

    /// Returns the short human-readable summary, the same for every occurrence.
    pub fn title(self) -> &'static str {
        match self {
            ProblemKind::Validation => "Invalid request",
            ProblemKind::BadRequest => "Malformed request",
            ProblemKind::Unauthorized => "Missing or invalid API token",
            ProblemKind::Forbidden => "Not allowed",
            ProblemKind::NotFound => "Not found",
            ProblemKind::MethodNotAllowed => "Method not allowed",
            ProblemKind::AlreadyExists => "Already exists",
            ProblemKind::EnvPrefixTaken => "Environment variable prefix taken",
            ProblemKind::MissingCredentials => "Missing credentials",
            ProblemKind::InvalidAuthConfig => "Unusable auth config",
            ProblemKind::PreconditionFailed => "Precondition failed",
            ProblemKind::PayloadTooLarge => "Request body too large",
            ProblemKind::UnsupportedMediaType => "Unsupported media type",
            ProblemKind::UpstreamError => "Token endpoint error",
            ProblemKind::Unavailable => "Service unavailable",
            ProblemKind::UpstreamTimeout => "Token endpoint timed out",
            ProblemKind::Internal => "Internal error",
        }
    }

    /// Returns the kind of a bare HTTP status, for responses that actix-web
    /// builds itself.
    pub fn from_status(status: StatusCode) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => ProblemKind::Unauthorized,
            StatusCode::FORBIDDEN => ProblemKind::Forbidden,
            StatusCode::NOT_FOUND => ProblemKind::NotFound,
            StatusCode::METHOD_NOT_ALLOWED => ProblemKind::MethodNotAllowed,
            StatusCode::CONFLICT => ProblemKind::AlreadyExists,
            StatusCode::PRECONDITION_FAILED => ProblemKind::PreconditionFailed,
            StatusCode::PAYLOAD_TOO_LARGE => ProblemKind::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ProblemKind::UnsupportedMediaType,
            StatusCode::BAD_GATEWAY => ProblemKind::UpstreamError,
            StatusCode::SERVICE_UNAVAILABLE => ProblemKind::Unavailable,
            StatusCode::GATEWAY_TIMEOUT => ProblemKind::UpstreamTimeout,
            status if status.is_client_error() => ProblemKind::BadRequest,
            _ => ProblemKind::Internal,
        }
    }
}

/// The body of an error response (RFC 9457), as documented in the OpenAPI document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI that identifies the kind of problem.
    #[schema(example = "https://authcfg.dev/problems/validation")]
    #[serde(rename = "type")]
    pub type_uri: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// The cause of this occurrence and how to fix it.
    pub detail: String,
    /// For validation problems, one entry per invalid field.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// For token endpoint errors, the RFC 6749 error code, such as `invalid_client`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// For token endpoint errors, the provider's `error_description`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// For token endpoint errors, the HTTP status of the endpoint's response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// For missing credentials, the environment variables that provide them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_vars: Vec<String>,
}

/// An error of an API handler, turned into a problem+json response.
///
/// The cause, if any, is written to the log and never sent to the client.
pub struct ApiError {
    inner: Box<Details>,
}

/// The parts of an [`ApiError`], boxed so that `Result<T, ApiError>` stays small.
struct Details {
    kind: ProblemKind,
    detail: String,
    errors: Vec<FieldError>,
    upstream: Option<UpstreamDetail>,
    env_vars: Vec<String>,
    retry_after_secs: Option<u64>,
    cause: Option<Box<dyn std::error::Error + Send + Sync>>,
    /// The data source whose token endpoint failed, for upstream failures.
    upstream_of: Option<String>,
}

/// The token endpoint's error response, carried by a 502.
#[derive(Debug, Clone, Default)]
struct UpstreamDetail {
    error: Option<String>,
    error_description: Option<String>,
    status: Option<u16>,
}

impl ApiError {
    /// Creates an error of `kind` with the detail sent to the client.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            inner: Box::new(Details {
                kind,
                detail: detail.into(),
                errors: Vec::new(),
                upstream: None,
                env_vars: Vec::new(),
                retry_after_secs: None,
                cause: None,
                upstream_of: None,
            }),
        }
    }

    /// Creates a 400 validation error from the model's field errors.
    pub fn validation(errors: ValidationErrors) -> Self {
        let errors = errors.into_errors();
        let detail = match errors.as_slice() {
            [only] => only.detail.clone(),
            _ => format!(
                "{} fields are invalid: see errors for each one",
                errors.len()
            ),
        };
        let mut error = Self::new(ProblemKind::Validation, detail);
        error.inner.errors = errors;
        error
    }

    /// Creates a 400 validation error for one field.
    pub fn field(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::validation(ValidationErrors::single(pointer, detail))
    }

    /// Creates a 500 error: the client sees a generic detail, the log gets `cause`.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::new(
            ProblemKind::Internal,
            "an internal error occurred: the server log has the cause under this response's X-Request-Id",
        )
        .with_cause(cause)
    }

    /// Adds the environment variables that would provide the missing credentials.
    pub fn with_env_vars(mut self, env_vars: Vec<String>) -> Self {
        self.inner.env_vars = env_vars;
        self
    }

    /// Adds the token endpoint's RFC 6749 error code, description and HTTP status.
    pub fn with_upstream(
        mut self,
        error: Option<String>,
        error_description: Option<String>,
        status: Option<u16>,
    ) -> Self {
        self.inner.upstream = Some(UpstreamDetail {
            error,
            error_description,
            status,
        });
        self
    }

    /// Marks the error as a failure of the token endpoint of `datasource`: a
    /// degraded dependency rather than a fault of this server, logged at WARN
    /// and at most once per [`UPSTREAM_LOG_INTERVAL`] per data source.
    pub fn upstream_of(mut self, datasource: &str) -> Self {
        self.inner.upstream_of = Some(datasource.to_owned());
        self
    }

    /// Adds a `Retry-After` header, in seconds.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.inner.retry_after_secs = Some(seconds);
        self
    }

    /// Keeps `cause` for the log.
    pub fn with_cause(
        mut self,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.inner.cause = Some(cause.into());
        self
    }

    /// Changes the kind, keeping the detail and field errors.
    pub fn set_kind(&mut self, kind: ProblemKind) {
        self.inner.kind = kind;
    }

    /// Returns the kind of problem.
    pub fn kind(&self) -> ProblemKind {
        self.inner.kind
    }

    /// Returns the detail sent to the client.
    pub fn detail(&self) -> &str {
        &self.inner.detail
    }

    /// Builds the body sent to the client.
    pub fn to_problem(&self) -> Problem {
        let upstream = self.inner.upstream.clone().unwrap_or_default();
        Problem {
            type_uri: self.inner.kind.type_uri().to_owned(),
            title: self.inner.kind.title().to_owned(),
            status: self.inner.kind.status().as_u16(),
            detail: self.inner.detail.clone(),
            errors: self.inner.errors.clone(),
            error: upstream.error,
            error_description: upstream.error_description,
            upstream_status: upstream.status,
            env_vars: self.inner.env_vars.clone(),
        }
    }
}

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiError")
            .field("kind", &self.inner.kind)
            .field("detail", &self.inner.detail)
            .field("cause", &self.inner.cause.as_ref().map(ToString::to_string))
            .finish_non_exhaustive()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.inner.kind.status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.inner.kind.status();
        if let Some(datasource) = &self.inner.upstream_of {
            if let Some(suppressed) = UPSTREAM_LOG.admit(datasource, Instant::now()) {
                tracing::warn!(
                    status = status.as_u16(),
                    problem = self.inner.kind.type_uri(),
                    datasource = %datasource,
                    detail = %self.inner.detail,
                    suppressed,
                    "token endpoint failure (repeats of this data source are logged at most every 10 s; suppressed counts those left out since the last line)"
                );
            }
        } else if status.is_server_error() {
            match &self.inner.cause {
                Some(cause) => tracing::error!(
                    status = status.as_u16(),
                    problem = self.inner.kind.type_uri(),
                    detail = %self.inner.detail,
                    cause = %error_chain(cause.as_ref()),
                    "request failed"
                ),
                None => tracing::error!(
                    status = status.as_u16(),
                    problem = self.inner.kind.type_uri(),
                    detail = %self.inner.detail,
                    "request failed"
                ),
            }
        } else {
            tracing::debug!(
                status = status.as_u16(),
                problem = self.inner.kind.type_uri(),
                detail = %self.inner.detail,
                "request rejected"
            );
        }

        let mut response = problem_response(status, &self.to_problem());
        if self.inner.kind == ProblemKind::Unauthorized {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"authcfg\""),
            );
        }
        if let Some(seconds) = self.inner.retry_after_secs {
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// Shortest time between two log lines about upstream failures of one data source.
pub const UPSTREAM_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The rate limit of the upstream failure log lines, shared by all workers.
static UPSTREAM_LOG: LogLimiter = LogLimiter::new(UPSTREAM_LOG_INTERVAL);

/// Limits log lines to one per key and interval, counting the ones left out.
#[derive(Debug)]
pub struct LogLimiter {
    interval: Duration,
    /// Per key: when the last line was written and how many were left out since.
    state: Mutex<Option<HashMap<String, (Instant, u64)>>>,
}

/// Number of keys above which entries older than the interval are dropped.
const LOG_LIMITER_PRUNE_AT: usize = 1024;

impl LogLimiter {
    /// Creates a limiter that admits one line per key and `interval`.
    pub const fn new(interval: Duration) -> Self {
        Self {
            interval,
            state: Mutex::new(None),
        }
    }

    /// Returns `Some(left out since the last line)` when a line about `key`
    /// may be written at `now`, or `None` (and counts it) when it must not.
    pub fn admit(&self, key: &str, now: Instant) -> Option<u64> {
        let mut guard = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let state = guard.get_or_insert_with(HashMap::new);
        match state.get_mut(key) {
            Some((last, suppressed)) if now.saturating_duration_since(*last) < self.interval => {
                *suppressed += 1;
                None
            }
            Some((last, suppressed)) => {
                let left_out = *suppressed;
                *last = now;
                *suppressed = 0;
                Some(left_out)
            }
            None => {
                if state.len() >= LOG_LIMITER_PRUNE_AT {
                    let interval = self.interval;
                    state.retain(|_, (last, _)| now.saturating_duration_since(*last) < interval);
                }
                state.insert(key.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

/// Builds a problem+json response from a body.
pub fn problem_response(status: StatusCode, problem: &Problem) -> HttpResponse {
    let body = serde_json::to_vec(problem).unwrap_or_else(|_| {
        // `Problem` has only strings, numbers and lists of them, which serde_json
        // always serializes; the fallback keeps the response valid regardless.
        br#"{"type":"https://authcfg.dev/problems/internal","title":"Internal error","status":500,"detail":"the error could not be serialized"}"#.to_vec()
    });
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, PROBLEM_JSON))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// Formats an error and its sources on one line, for the log.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut messages = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        messages.push(cause.to_string());
        source = cause.source();
    }
    join_causes(messages)
}

/// Joins an error message and the messages of its causes with `": "`.
///
/// A cause that the message before it already ends with is left out. Many
/// errors print their source in their own message and also return it as the
/// source, which would show it twice.
pub fn join_causes(messages: impl IntoIterator<Item = String>) -> String {
    let mut text = String::new();
    let mut previous = String::new();
    for message in messages {
        if text.is_empty() {
            text.push_str(&message);
        } else if !previous.ends_with(message.as_str()) {
            text.push_str(": ");
            text.push_str(&message);
        }
        previous = message;
    }
    text
}

impl From<authcfg_store::Error> for ApiError {
    fn from(error: authcfg_store::Error) -> Self {
        use authcfg_store::Error as StoreError;

        match error {
            StoreError::NotFound { kind, name } => {
                let list = if kind == "api token" {
                    "`authcfg api-token list`"
                } else {
                    "GET /v1/datasources"
                };
                ApiError::new(
                    ProblemKind::NotFound,
                    format!("{kind} {name:?} not found: check the name, or list what exists with {list}"),
                )
            }
            StoreError::AlreadyExists { kind, name } => ApiError::new(
                ProblemKind::AlreadyExists,
                format!(
                    "{kind} {name:?} already exists: choose another name or update the existing one"
                ),
            ),
            StoreError::NameKeyTaken { .. } => {
                ApiError::from(crate::create::CreateError::from(error))
            }
            StoreError::Conflict {
                kind,
                name,
                current,
                ..
            } => ApiError::new(
                ProblemKind::PreconditionFailed,
                format!(
                    "{kind} {name:?} changed concurrently; its current ETag is \"{current}\": read it again and retry"
                ),
            ),
            StoreError::Validation(errors) => ApiError::validation(errors),
            StoreError::PoolTimeout { .. } => ApiError::new(
                ProblemKind::Unavailable,
                "the database is busy: retry shortly",
            )
            .with_retry_after(1)
            .with_cause(error),
            other => ApiError::internal(other),
        }
    }
}

impl From<crate::create::CreateError> for ApiError {
    fn from(error: crate::create::CreateError) -> Self {
        match error {
            crate::create::CreateError::PrefixTaken { .. } => {
                ApiError::new(ProblemKind::EnvPrefixTaken, error.to_string())
            }
            crate::create::CreateError::Store(error) => ApiError::from(error),
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(error: actix_web::error::BlockingError) -> Self {
        ApiError::internal(error)
    }
}

/// Turns an exchange error into a problem. `datasource` names the data source
/// so that a missing-credentials problem can list its environment variables.
pub fn from_exchange(error: authcfg_exchange::Error, datasource: &str) -> ApiError {
    use authcfg_exchange::Error as ExchangeError;

    match error {
        ExchangeError::MissingCredentials { ref fields } => {
            let prefix = crate::env_import::env_var_prefix(datasource);
            let env_vars: Vec<String> = fields
                .iter()
                .map(|field| format!("{prefix}{}", field.env_suffix()))
                .collect();
            ApiError::new(
                ProblemKind::MissingCredentials,
                format!(
                    "data source {datasource:?} lacks credentials its grant needs: set {} and restart, run `authcfg credentials import-env`, or PUT /v1/datasources/{datasource}/credentials",
                    env_vars.join(", ")
                ),
            )
            .with_env_vars(env_vars)
        }
        ExchangeError::InvalidConfig { ref reason } => ApiError::new(
            ProblemKind::InvalidAuthConfig,
            format!("the auth config of data source {datasource:?} cannot be used: {reason}"),
        ),
        ExchangeError::UnsupportedGrant { .. } => ApiError::new(
            ProblemKind::InvalidAuthConfig,
            format!("data source {datasource:?}: {error}"),
        ),
        ExchangeError::Load(_) | ExchangeError::Persist(_) | ExchangeError::Client(_) => {
            ApiError::internal(error)
        }
        // Whatever the cause, no request went upstream, so the client should
        // retry after the back-off. The response is always 503 with
        // Retry-After, and the problem carries the cause.
        ExchangeError::BackingOff {
            retry_after,
            ref cause,
        } => {
            let seconds = retry_after_seconds(retry_after);
            ApiError::new(
                ProblemKind::Unavailable,
                format!(
                    "token requests of data source {datasource:?} are backing off for {seconds} s after a failure: {cause}"
                ),
            )
            .with_retry_after(seconds)
            .with_upstream(
                cause.rfc_error_code().map(str::to_owned),
                upstream_description(cause),
                cause.upstream_status(),
            )
            .upstream_of(datasource)
        }
        ref other if other.is_timeout() => ApiError::new(
            ProblemKind::UpstreamTimeout,
            format!(
                "the token endpoint of data source {datasource:?} timed out: {other} \
                 (token_request_timeout_secs, AUTHCFG_TOKEN_REQUEST_TIMEOUT_SECS)"
            ),
        )
        .upstream_of(datasource),
        other => {
            let description = upstream_description(&other);
            ApiError::new(
                ProblemKind::UpstreamError,
                format!("the token endpoint of data source {datasource:?} failed: {other}"),
            )
            .with_upstream(
                other.rfc_error_code().map(str::to_owned),
                description,
                other.upstream_status(),
            )
            .upstream_of(datasource)
        }
    }
}

/// Returns a back-off delay in whole seconds for `Retry-After`, rounded up
/// and at least 1, so that a client that waits that long is not refused again.
fn retry_after_seconds(delay: std::time::Duration) -> u64 {
    let seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    seconds.max(1)
}

fn upstream_description(error: &authcfg_exchange::Error) -> Option<String> {
    match error {
        authcfg_exchange::Error::Upstream { description, .. } => description.clone(),
        authcfg_exchange::Error::BackingOff { cause, .. } => upstream_description(cause),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use actix_web::body::to_bytes;

    async fn body_of(error: ApiError) -> (StatusCode, serde_json::Value) {
        let response = error.error_response();
        let status = response.status();
        let bytes = to_bytes(response.into_body()).await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[actix_web::test]
    async fn store_errors_map_to_statuses() {
        let cases: Vec<(authcfg_store::Error, u16, &str)> = vec![
            (
                authcfg_store::Error::NotFound {
                    kind: "data source",
                    name: "crm".to_owned(),
                },
                404,
                "not-found",
            ),
            (
                authcfg_store::Error::AlreadyExists {
                    kind: "data source",
                    name: "crm".to_owned(),
                },
                409,
                "already-exists",
            ),
            (
                authcfg_store::Error::Conflict {
                    kind: "data source",
                    name: "crm".to_owned(),
                    expected: 1,
                    current: 2,
                },
                412,
                "precondition-failed",
            ),
            (
                authcfg_store::Error::Validation(ValidationErrors::single("/name", "bad")),
                400,
                "validation",
            ),
            (authcfg_store::Error::WrongMasterKey, 500, "internal"),
        ];

        for (error, status, suffix) in cases {
            let (actual_status, body) = body_of(ApiError::from(error)).await;

            assert_eq!(actual_status.as_u16(), status);
            assert_eq!(body["status"], status);
            assert_eq!(
                body["type"],
                format!("https://authcfg.dev/problems/{suffix}")
            );
        }
    }

    #[actix_web::test]
    async fn internal_error_hides_cause() {
        let (status, body) = body_of(ApiError::internal("disk /secret/path is full")).await;

        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.to_string().contains("/secret/path"));
    }

    #[actix_web::test]
    async fn validation_lists_pointers() {
        let (_, body) = body_of(ApiError::field("/auth/token_url", "token_url is required")).await;

        assert_eq!(body["errors"][0]["pointer"], "/auth/token_url");
        assert_eq!(body["errors"][0]["detail"], "token_url is required");
    }

    #[actix_web::test]
    async fn unauthorized_sets_www_authenticate() {
        let response = ApiError::new(ProblemKind::Unauthorized, "missing").error_response();

        assert_eq!(
            response.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer realm=\"authcfg\""
        );
        assert_eq!(
            response.headers().get(header::CONTENT_TYPE).unwrap(),
            PROBLEM_JSON
        );
    }

    #[actix_web::test]
    async fn exchange_errors_map_to_statuses() {
        use authcfg_exchange::Error as ExchangeError;
        use authcfg_model::CredentialField;

        let cases: Vec<(ExchangeError, u16, Option<&str>)> = vec![
            (
                ExchangeError::Upstream {
                    error: "invalid_client".to_owned(),
                    description: Some("client authentication failed".to_owned()),
                    status: Some(401),
                    permanent: true,
                    retry_after: None,
                },
                502,
                Some("invalid_client"),
            ),
            (
                ExchangeError::Timeout {
                    after: std::time::Duration::from_secs(10),
                },
                504,
                None,
            ),
            (
                ExchangeError::MissingCredentials {
                    fields: vec![CredentialField::RefreshToken],
                },
                409,
                None,
            ),
            (
                ExchangeError::HttpStatus {
                    status: 500,
                    permanent: false,
                    retry_after: None,
                },
                502,
                None,
            ),
            (
                ExchangeError::BackingOff {
                    retry_after: std::time::Duration::from_secs(3),
                    cause: Box::new(ExchangeError::HttpStatus {
                        status: 503,
                        permanent: false,
                        retry_after: None,
                    }),
                },
                503,
                None,
            ),
        ];

        for (error, status, code) in cases {
            let (actual, body) = body_of(from_exchange(error, "crm-prod")).await;

            assert_eq!(actual.as_u16(), status, "{body}");
            if let Some(code) = code {
                assert_eq!(body["error"], code);
            }
        }
    }

    #[actix_web::test]
    async fn backing_off_is_503_with_retry_after_and_cause() {
        use authcfg_exchange::Error as ExchangeError;
        use std::time::Duration;

        // (cause, back-off left, expected Retry-After, expected RFC error code)
        let cases: Vec<(ExchangeError, Duration, &str, Option<&str>)> = vec![
            (
                ExchangeError::Upstream {
                    error: "invalid_client".to_owned(),
                    description: Some("client authentication failed".to_owned()),
                    status: Some(401),
                    permanent: true,
                    retry_after: None,
                },
                Duration::from_millis(1466),
                "2",
                Some("invalid_client"),
            ),
            (
                ExchangeError::HttpStatus {
                    status: 503,
                    permanent: false,
                    retry_after: None,
                },
                Duration::from_secs(3),
                "3",
                None,
            ),
            (
                ExchangeError::Timeout {
                    after: Duration::from_secs(10),
                },
                Duration::from_millis(10),
                "1",
                None,
            ),
        ];

        for (cause, retry_after, expected_header, code) in cases {
            let error = ExchangeError::BackingOff {
                retry_after,
                cause: Box::new(cause),
            };
            let response = from_exchange(error, "crm-prod").error_response();
            let header = response
                .headers()
                .get(actix_web::http::header::RETRY_AFTER)
                .map(|value| value.to_str().unwrap().to_owned());
            let status = response.status();
            let bytes = to_bytes(response.into_body()).await.unwrap();
            let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();

            assert_eq!(status.as_u16(), 503, "{body}");
            assert_eq!(header.as_deref(), Some(expected_header), "{body}");
            let detail = body["detail"].as_str().unwrap();
            assert!(
                detail.contains(&format!("backing off for {expected_header} s")),
                "{body}"
            );
            match code {
                Some(code) => {
                    assert_eq!(body["error"], code, "{body}");
                    assert_eq!(body["error_description"], "client authentication failed");
                }
                None => assert!(body.get("error").is_none(), "{body}"),
            }
        }
    }

    #[test]
    fn error_causes_are_printed_once() {
        let os_error = "No such file or directory (os error 2)";
        // (messages from the outermost error inward, expected line)
        let cases: Vec<(Vec<String>, String)> = vec![
            (
                vec![
                    "cannot back up to /nonexistent/dir/b.db".to_owned(),
                    format!("cannot access \"/nonexistent/dir/b.db\": {os_error}"),
                    os_error.to_owned(),
                ],
                format!(
                    "cannot back up to /nonexistent/dir/b.db: cannot access \"/nonexistent/dir/b.db\": {os_error}"
                ),
            ),
            (
                vec!["outer".to_owned(), "inner".to_owned(), "root".to_owned()],
                "outer: inner: root".to_owned(),
            ),
            (vec!["alone".to_owned()], "alone".to_owned()),
        ];

        for (messages, expected) in cases {
            assert_eq!(join_causes(messages.clone()), expected, "{messages:?}");
        }
    }

    #[test]
    fn upstream_failure_log_is_rate_limited_per_datasource() {
        let limiter = LogLimiter::new(Duration::from_secs(10));
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);

        // (data source, seconds after start, expected admission)
        let cases: &[(&str, u64, Option<u64>)] = &[
            ("crm-prod", 0, Some(0)),
            ("crm-prod", 1, None),
            ("crm-prod", 9, None),
            ("ledger", 9, Some(0)),
            ("crm-prod", 10, Some(2)),
            ("crm-prod", 11, None),
            ("crm-prod", 25, Some(1)),
            ("ledger", 25, Some(0)),
        ];

        for (datasource, seconds, expected) in cases {
            assert_eq!(
                limiter.admit(datasource, at(*seconds)),
                *expected,
                "{datasource} at {seconds} s"
            );
        }
    }

    #[test]
    fn only_upstream_failures_are_marked_as_upstream() {
        use authcfg_exchange::Error as ExchangeError;

        let upstream = from_exchange(
            ExchangeError::HttpStatus {
                status: 500,
                permanent: false,
                retry_after: None,
            },
            "crm-prod",
        );
        let internal = ApiError::internal(std::io::Error::other("disk"));

        assert_eq!(upstream.inner.upstream_of.as_deref(), Some("crm-prod"));
        assert_eq!(internal.inner.upstream_of, None);
        assert_eq!(internal.kind(), ProblemKind::Internal);
    }

    #[actix_web::test]
    async fn missing_credentials_names_variables() {
        let error = authcfg_exchange::Error::MissingCredentials {
            fields: vec![authcfg_model::CredentialField::RefreshToken],
        };

        let (_, body) = body_of(from_exchange(error, "crm-prod")).await;

        assert_eq!(body["env_vars"][0], "AUTHCFG_DS_CRM_PROD_REFRESH_TOKEN");
        assert!(body["detail"]
            .as_str()
            .unwrap()
            .contains("AUTHCFG_DS_CRM_PROD_REFRESH_TOKEN"));
    }
}
