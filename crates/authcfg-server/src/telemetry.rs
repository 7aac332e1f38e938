//! Logging set-up and the per-request middleware: request id, metrics, the
//! `request` span, and problem+json for the error responses that actix-web
//! builds itself (404, 405, extractor errors).
//!
//! Every request gets a request id from [`RequestContext`]. The `request`
//! span that carries it into log lines is opened per route by
//! [`request_span`], except on the authorization route. A cache hit there
//! logs nothing and opens no span. The handler opens one with [`span_of`]
//! only when it has more to do than hand out a cached header.

use std::future::{ready, Future, Ready};
use std::io::IsTerminal as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest};
use tracing::Instrument as _;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;
use crate::problem::{problem_response, Problem, ProblemKind, PROBLEM_JSON};
use crate::state::AppState;

/// Header that carries the request id, taken from the request or generated.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Maximum length of a request id accepted from a client; a longer one is replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The route pattern of a resource, such as `/v1/datasources/{name}`, set as
/// resource data so that the middleware labels metrics and logs without
/// matching the path a second time.
#[derive(Debug, Clone, Copy)]
pub struct RouteName(pub &'static str);

/// The id of the current request, stored in the request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(HeaderValue);

impl RequestId {
    /// Returns the id as text.
    pub fn as_str(&self) -> &str {
        // Both sources give visible ASCII: a checked client value or hex digits.
        self.0.to_str().unwrap_or_default()
    }
}

/// Installs the global `tracing` subscriber: `format` lines on standard
/// error, filtered by `filter` (`EnvFilter` syntax, already validated).
///
/// Text lines are coloured only when standard error is a terminal, so that
/// log files and log collectors get no ANSI escape codes (see [`use_colour`]).
///
/// # Errors
///
/// Returns an error when a subscriber is already installed or the filter is invalid.
pub fn init_logging(
    format: LogFormat,
    filter: &str,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let filter = EnvFilter::try_new(filter)?;
    let colour = use_colour(
        format,
        std::io::stderr().is_terminal(),
        std::env::var_os("NO_COLOR").as_deref(),
    );
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_target(true);
    match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    }
}

/// Decides whether log lines carry ANSI colour codes: only text lines on a
/// terminal, and not when the `NO_COLOR` variable is set to a non-empty value
/// (<https://no-color.org>). JSON lines never do, because a colour code would
/// end up inside a string value.
pub fn use_colour(
    format: LogFormat,
    stderr_is_terminal: bool,
    no_color: Option<&std::ffi::OsStr>,
) -> bool {
    let no_color = no_color.is_some_and(|value| !value.is_empty());
    format == LogFormat::Text && stderr_is_terminal && !no_color
}

/// Returns the client's request id when it is safe to log and echo: 1 to 128
/// characters of letters, digits, `-`, `_`, `.` and `:`.
fn accepted_request_id(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    let valid = !text.is_empty()
        && text.len() <= MAX_REQUEST_ID_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    valid.then_some(text)
}

/// Returns a new random 128-bit request id as 32 hex digits, from the
/// thread-local generator, which needs no system call per request.
fn generate_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let random = rand::random::<u128>();
    let mut digits = [0_u8; 32];
    for (index, digit) in digits.iter_mut().enumerate() {
        let shift = 124 - 4 * index;
        *digit = HEX[usize::from(((random >> shift) & 0xf) as u8)];
    }
    // Hex digits are always a valid header value.
    HeaderValue::from_bytes(&digits).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// The middleware that wraps every request: assigns the request id, counts
/// the response by route and status, rewrites a bare error response into
/// problem+json, and logs the completion at debug level. Register it last
/// with `App::wrap`, so that it is the outermost.
///
/// It is a plain service with a named future rather than a `from_fn`
/// closure, so that a request pays no boxed future and no dynamic call here.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestContext;

impl<S, B> Transform<S, ServiceRequest> for RequestContext
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Transform = RequestContextService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestContextService { service }))
    }
}

/// The [`RequestContext`] middleware of one worker thread.
#[derive(Debug)]
pub struct RequestContextService<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for RequestContextService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Future = RequestContextFuture<S::Future>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        // Only the debug line at the end needs the duration.
        let started = tracing::enabled!(tracing::Level::DEBUG).then(Instant::now);
        let request_id = request
            .headers()
            .get(&REQUEST_ID_HEADER)
            .filter(|value| accepted_request_id(value).is_some())
            .cloned()
            .unwrap_or_else(generate_request_id);
        request
            .extensions_mut()
            .insert(RequestId(request_id.clone()));
        RequestContextFuture {
            inner: self.service.call(request),
            request_id: Some(request_id),
            started,
        }
    }
}

pin_project_lite::pin_project! {
    /// The response future of [`RequestContextService`].
    pub struct RequestContextFuture<F> {
        #[pin]
        inner: F,
        request_id: Option<HeaderValue>,
        started: Option<Instant>,
    }
}

impl<F, B> Future for RequestContextFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
    B: MessageBody + 'static,
{
    type Output = Result<ServiceResponse<BoxBody>, actix_web::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let response = std::task::ready!(this.inner.poll(cx))?;
        let request_id = this.request_id.take().unwrap_or_else(generate_request_id);
        Poll::Ready(Ok(finish(response, request_id, *this.started)))
    }
}

/// Completes a response: problem+json for a bare error, the metrics, the
/// debug line and the request id header.
fn finish<B: MessageBody + 'static>(
    response: ServiceResponse<B>,
    request_id: HeaderValue,
    started: Option<Instant>,
) -> ServiceResponse<BoxBody> {
    let route = route_of(response.request());
    let mut response = if response.status().as_u16() >= 400 && !is_problem(&response) {
        into_problem(response)
    } else {
        response.map_into_boxed_body()
    };
    let status = response.status().as_u16();
    if let Some(state) = response.request().app_data::<web::Data<AppState>>() {
        state.http_metrics.record(route, status);
    }
    if let Some(started) = started {
        let elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        let request = response.request();
        tracing::debug!(
            request_id = request_id.to_str().unwrap_or_default(),
            method = %request.method(),
            path = request.path(),
            route,
            status,
            elapsed_us,
            "request completed"
        );
    }
    response.headers_mut().insert(REQUEST_ID_HEADER, request_id);
    response
}

/// Returns the route pattern of a routed request, or `unmatched`.
fn route_of(request: &HttpRequest) -> &'static str {
    request
        .app_data::<RouteName>()
        .map_or("unmatched", |name| name.0)
}

/// Returns the `request` span of `request`, with its request id, method,
/// path and route pattern, for the log lines written while it is handled.
pub fn span_of(request: &HttpRequest) -> tracing::Span {
    let extensions = request.extensions();
    let request_id = extensions.get::<RequestId>().map_or("", RequestId::as_str);
    tracing::info_span!(
        "request",
        request_id,
        method = %request.method(),
        path = request.path(),
        route = route_of(request),
    )
}

/// Runs a routed request inside its `request` span (see [`span_of`]).
/// Registered on each resource, after routing, so that the span names the
/// route.
///
/// # Errors
///
/// Passes on an error of the inner service.
pub async fn request_span(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let span = span_of(request.request());
    next.call(request).instrument(span).await
}

fn is_problem(response: &ServiceResponse<impl MessageBody>) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|value| value.as_bytes().starts_with(PROBLEM_JSON.as_bytes()))
}

/// Rebuilds an error response that actix-web made (a routing miss, a wrong
/// method, an extractor failure) as problem+json with the same status.
fn into_problem(response: ServiceResponse<impl MessageBody + 'static>) -> ServiceResponse<BoxBody> {
    let status = response.status();
    let kind = ProblemKind::from_status(status);
    let path = response.request().path().to_owned();
    let method = response.request().method().clone();

    let detail = match (kind, response.response().error()) {
        (ProblemKind::NotFound, _) => {
            if path.len() > 1 && path.ends_with('/') {
                format!("no route matches {path:?}: remove the trailing slash, or see GET /openapi.json for the routes")
            } else {
                format!("no route matches {path:?}: see GET /openapi.json for the routes")
            }
        }
        (ProblemKind::MethodNotAllowed, _) => format!(
            "{method} is not allowed on {path:?}: see GET /openapi.json for the methods of this route"
        ),
        (ProblemKind::PayloadTooLarge, _) => {
            let limit = response
                .request()
                .app_data::<web::Data<AppState>>()
                .map(|state| format!(" of {} bytes", state.settings.body_limit_bytes))
                .unwrap_or_default();
            format!(
                "the request body is larger than the limit{limit}: send a smaller body, or raise body_limit_bytes (AUTHCFG_BODY_LIMIT_BYTES)"
            )
        }
        (_, Some(error)) if status.is_client_error() => {
            format!("the request is malformed: {error}")
        }
        _ => status
            .canonical_reason()
            .unwrap_or("the request failed")
            .to_owned(),
    };
    let problem = Problem {
        type_uri: kind.type_uri().to_owned(),
        title: kind.title().to_owned(),
        status: status.as_u16(),
        detail,
        errors: Vec::new(),
        error: None,
        error_description: None,
        upstream_status: None,
        env_vars: Vec::new(),
    };

    let (request, original) = response.into_parts();
    let mut rebuilt = problem_response(status, &problem);
    for (name, value) in original.headers() {
        if name == header::ALLOW || name == header::WWW_AUTHENTICATE || name == header::RETRY_AFTER
        {
            rebuilt.headers_mut().insert(name.clone(), value.clone());
        }
    }
    ServiceResponse::new(request, rebuilt)
}

#[cfg(test)]
mod tests {
    use super::*;

    use actix_web::test as actix_test;
    use actix_web::{App, HttpResponse};

    #[actix_web::test]
    async fn bare_errors_become_problems() {
        let app = actix_test::init_service(
            App::new()
                .wrap(RequestContext)
                .service(web::resource("/only-get").route(web::get().to(HttpResponse::Ok))),
        )
        .await;
        let cases: &[(actix_web::http::Method, &str, u16, &str)] = &[
            (actix_web::http::Method::GET, "/missing", 404, "not-found"),
            (
                actix_web::http::Method::DELETE,
                "/only-get",
                405,
                "method-not-allowed",
            ),
        ];

        for (method, path, status, kind) in cases {
            let request = actix_test::TestRequest::default()
                .method(method.clone())
                .uri(path)
                .to_request();

            let response = actix_test::call_service(&app, request).await;

            assert_eq!(response.status().as_u16(), *status, "{method} {path}");
            assert_eq!(
                response.headers().get(header::CONTENT_TYPE).unwrap(),
                PROBLEM_JSON
            );
            let body: serde_json::Value = actix_test::read_body_json(response).await;
            assert_eq!(
                body["type"],
                format!("https://authcfg.dev/problems/{kind}"),
                "{method} {path}"
            );
        }
    }

    #[actix_web::test]
    async fn request_id_is_kept_or_generated() {
        let app = actix_test::init_service(
            App::new()
                .wrap(RequestContext)
                .route("/", web::get().to(HttpResponse::Ok)),
        )
        .await;

        let given = actix_test::TestRequest::get()
            .uri("/")
            .insert_header((REQUEST_ID_HEADER, "trace-42"))
            .to_request();
        let response = actix_test::call_service(&app, given).await;
        assert_eq!(
            response.headers().get(&REQUEST_ID_HEADER).unwrap(),
            "trace-42"
        );

        let rejected = actix_test::TestRequest::get()
            .uri("/")
            .insert_header((REQUEST_ID_HEADER, "not valid!"))
            .to_request();
        let response = actix_test::call_service(&app, rejected).await;
        let generated = response.headers().get(&REQUEST_ID_HEADER).unwrap();
        assert_eq!(generated.len(), 32);
        assert_ne!(generated, "not valid!");
    }

    #[test]
    fn colour_only_for_text_on_terminal() {
        let set = std::ffi::OsStr::new("1");
        let empty = std::ffi::OsStr::new("");
        // Each row: format, standard error is a terminal, NO_COLOR, colour.
        let cases: &[(LogFormat, bool, Option<&std::ffi::OsStr>, bool)] = &[
            (LogFormat::Text, true, None, true),
            (LogFormat::Text, true, Some(empty), true),
            (LogFormat::Text, true, Some(set), false),
            (LogFormat::Text, false, None, false),
            (LogFormat::Json, true, None, false),
            (LogFormat::Json, false, None, false),
        ];

        for (format, terminal, no_color, expected) in cases {
            assert_eq!(
                use_colour(*format, *terminal, *no_color),
                *expected,
                "{format:?}, terminal {terminal}, NO_COLOR {no_color:?}"
            );
        }
    }

    #[test]
    fn request_ids_accepted_or_replaced() {
        let long = "a".repeat(MAX_REQUEST_ID_LEN + 1);
        let cases: &[(&str, bool)] = &[
            ("abc-123", true),
            ("0f8e2c1a.trace:span_1", true),
            ("", false),
            ("has space", false),
            ("a;b=c", false),
            (long.as_str(), false),
        ];

        for (value, accepted) in cases {
            let header = HeaderValue::from_str(value).unwrap();

            assert_eq!(
                accepted_request_id(&header).is_some(),
                *accepted,
                "request id {value:?}"
            );
        }
    }
}
