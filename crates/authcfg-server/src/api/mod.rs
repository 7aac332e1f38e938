//! The HTTP routes: REST API v1, health, metrics and the OpenAPI document.
//!
//! Handlers read decode ▸ check access ▸ store (off the executor) ▸ update the
//! in-memory copies ▸ audit ▸ respond. Request bodies are parsed with the
//! model's strict parser, so unknown fields and type errors come back as a
//! 400 with the JSON pointer of the field.

pub mod audit_log;
pub mod authorization;
pub mod credentials;
pub mod datasources;
pub mod shortcut;
pub mod system;

use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest};
use authcfg_model::ValidationErrors;
use serde::de::DeserializeOwned;

use crate::problem::{ApiError, ProblemKind};
use crate::telemetry::{request_span, RouteName};

pub use audit_log::{AuditPage, ListAuditQuery};
pub use authorization::{AuthorizationRequest, AuthorizationResponse, TestReport};
pub use datasources::{DataSourcePage, DataSourceView, ListQuery};
pub use system::{Health, Readiness};

/// Registers every route, with problem+json error handlers for the query
/// string, path and body extractors.
pub fn configure(config: &mut web::ServiceConfig, body_limit_bytes: usize) {
    config
        .app_data(web::PayloadConfig::new(body_limit_bytes))
        .app_data(web::QueryConfig::default().error_handler(|error, request| {
            query_problem(request.query_string(), &error.to_string()).into()
        }))
        .app_data(web::PathConfig::default().error_handler(|error, _request| {
            ApiError::new(ProblemKind::BadRequest, format!("invalid path: {error}")).into()
        }))
        .service(
            web::resource("/healthz")
                .app_data(RouteName("/healthz"))
                .wrap(from_fn(request_span))
                .route(web::get().to(system::healthz)),
        )
        .service(
            web::resource("/readyz")
                .app_data(RouteName("/readyz"))
                .wrap(from_fn(request_span))
                .route(web::get().to(system::readyz)),
        )
        .service(
            web::resource("/metrics")
                .app_data(RouteName("/metrics"))
                .wrap(from_fn(request_span))
                .route(web::get().to(system::metrics)),
        )
        .service(
            web::resource("/openapi.json")
                .app_data(RouteName("/openapi.json"))
                .wrap(from_fn(request_span))
                .route(web::get().to(system::openapi_json)),
        )
        // The router tries resources in order and matches a pattern with a
        // `{name}` segment by regular expression, so the cache-hit route
        // comes before the other patterns with one. It opens its span itself,
        // only when a request needs more than a cached header.
        .service(
            web::resource(authorization::AUTHORIZATION_ROUTE)
                .app_data(RouteName(authorization::AUTHORIZATION_ROUTE))
                .route(web::post().to(authorization::authorize)),
        )
        .service(
            web::resource("/v1/datasources")
                .app_data(RouteName("/v1/datasources"))
                .wrap(from_fn(request_span))
                .route(web::get().to(datasources::list_datasources))
                .route(web::post().to(datasources::create_datasource)),
        )
        .service(
            web::resource("/v1/datasources/{name}")
                .app_data(RouteName("/v1/datasources/{name}"))
                .wrap(from_fn(request_span))
                .route(web::get().to(datasources::get_datasource))
                .route(web::patch().to(datasources::update_datasource))
                .route(web::delete().to(datasources::delete_datasource)),
        )
        .service(
            web::resource("/v1/datasources/{name}/credentials")
                .app_data(RouteName("/v1/datasources/{name}/credentials"))
                .wrap(from_fn(request_span))
                .route(web::put().to(credentials::put_credentials))
                .route(web::delete().to(credentials::delete_credentials)),
        )
        .service(
            web::resource("/v1/datasources/{name}/test")
                .app_data(RouteName("/v1/datasources/{name}/test"))
                .wrap(from_fn(request_span))
                .route(web::post().to(authorization::test_datasource)),
        )
        .service(
            web::resource("/v1/audit")
                .app_data(RouteName("/v1/audit"))
                .wrap(from_fn(request_span))
                .route(web::get().to(audit_log::list_audit)),
        );
}

/// Accepts a request without `Content-Type` or with a JSON media type
/// (`application/json` or `application/*+json`, in any case).
///
/// # Errors
///
/// A 415 naming the media type that was sent.
pub(crate) fn check_media_type(request: &HttpRequest) -> Result<(), ApiError> {
    let Some(content_type) = request.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let media_type = content_type
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim();
    let is = |part: Option<&str>, expected: &str| {
        part.is_some_and(|part| part.eq_ignore_ascii_case(expected))
    };
    let json = is(Some(media_type), "application/json")
        || (is(media_type.get(.."application/".len()), "application/")
            && is(
                media_type.get(media_type.len().saturating_sub(5)..),
                "+json",
            ));
    if json {
        Ok(())
    } else {
        let detail = if media_type.is_empty() {
            "the Content-Type header names no media type: send JSON with Content-Type: application/json".to_owned()
        } else {
            format!(
                "the body has media type {:?}: send JSON with Content-Type: application/json",
                media_type.to_ascii_lowercase()
            )
        };
        Err(ApiError::new(ProblemKind::UnsupportedMediaType, detail))
    }
}

/// Parses a JSON request body strictly.
///
/// An absent `Content-Type` is accepted; any other media type than JSON
/// (`application/json` or `application/*+json`) is a 415.
pub(crate) fn parse_body<T: DeserializeOwned>(
    request: &HttpRequest,
    body: &[u8],
) -> Result<T, ApiError> {
    check_media_type(request)?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            ProblemKind::BadRequest,
            "the request body is empty: send a JSON object",
        ));
    }
    if let Some(kind) = non_object_json(body) {
        return Err(ApiError::new(
            ProblemKind::BadRequest,
            format!("the body must be a JSON object, got {kind}: send an object in braces"),
        ));
    }
    authcfg_model::parse_json(body).map_err(malformed)
}

/// Returns the kind of a body that is valid JSON but not an object, such as
/// "an array". Returns `None` for an object, and for invalid JSON because the
/// parser describes that itself.
fn non_object_json(body: &[u8]) -> Option<&'static str> {
    let first = body.iter().find(|byte| !byte.is_ascii_whitespace())?;
    if *first == b'{' {
        return None;
    }
    serde_json::from_slice::<serde::de::IgnoredAny>(body).ok()?;
    Some(match first {
        b'[' => "an array",
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        _ => "a number",
    })
}

/// Turns a parse error of the body into a 400 that keeps the field pointers,
/// with serde's type names replaced by plain words.
pub(crate) fn malformed(errors: ValidationErrors) -> ApiError {
    let errors = errors
        .into_errors()
        .into_iter()
        .map(|mut error| {
            error.detail = plain_detail(&error.detail);
            error
        })
        .collect();
    let mut error = match ValidationErrors::new(errors) {
        Some(errors) => ApiError::validation(errors),
        None => ApiError::new(
            ProblemKind::BadRequest,
            "the body is invalid: send a JSON object",
        ),
    };
    error.set_kind(ProblemKind::BadRequest);
    error
}

/// Rewrites serde's "invalid type: X, expected Y", "invalid value: X,
/// expected Y", "unknown variant `X`, expected Y" and "invalid length"
/// messages in plain words; other messages pass unchanged. The values were
/// already removed by the model's parser, except the names of unknown
/// variants, which are the caller's misspelt choice of a fixed value.
fn plain_detail(detail: &str) -> String {
    if detail.starts_with("invalid length ") {
        return "must be a JSON object".to_owned();
    }
    if let Some(field) = detail.strip_prefix("duplicate field ") {
        return format!("the body sets {field} more than once: send each field once");
    }
    if let Some(rest) = detail.strip_prefix("unknown variant ") {
        return match rest.split_once(", expected ") {
            Some((got, expected)) => {
                let expected = expected.strip_prefix("one of ").unwrap_or(expected);
                format!("{got} is not an accepted value: use {expected}")
            }
            None => format!("{rest} is not an accepted value"),
        };
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        let Some(rest) = detail.strip_prefix(prefix) else {
            continue;
        };
        let (got, expected) = match rest.split_once(", expected ") {
            Some((got, expected)) => (got.trim(), Some(expected.trim())),
            None => (rest.trim(), None),
        };
        let expected = expected.map(plain_expected);
        let got = match (prefix, got, expected) {
            // serde reports a negative number for an unsigned field as an
            // invalid integer value.
            ("invalid value: ", "integer", Some(_)) => "a negative number",
            (_, "integer", _) => "a whole number",
            // serde_json reads an exponent, and an integer too large for
            // 64 bits, as a floating point number too.
            (_, "floating point", _) => "a fraction, an exponent or an out-of-range number",
            (_, "string", _) => "a string",
            (_, "boolean", _) => "a boolean",
            (_, "sequence", _) => "an array",
            (_, "map", _) => "an object",
            (_, "null" | "unit value" | "unit", _) => "null",
            (_, other, _) => other,
        };
        return match expected {
            Some(expected) => format!("must be {expected}, got {got}"),
            None => format!("has an invalid value: {got}"),
        };
    }
    detail.to_owned()
}

/// Words serde's "expected" part, such as `u64` or `struct Foo`, plainly.
fn plain_expected(expected: &str) -> &str {
    match expected {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number, 0 or more",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "true or false",
        "a string" | "a borrowed string" | "string" => "a string",
        "a sequence" => "an array",
        "a map" => "a JSON object",
        other if other.starts_with("struct ") || other.starts_with("a map") => "a JSON object",
        other => other,
    }
}

/// Largest accepted page size, quoted in query errors.
const QUERY_LIMIT_MAX: usize = datasources::MAX_LIMIT;

/// Builds the 400 for a query string the extractor rejected, naming the
/// parameter and its value where possible instead of serde's message.
fn query_problem(query: &str, error: &str) -> ApiError {
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if name == "limit" && value.parse::<usize>().is_err() {
            return ApiError::new(
                ProblemKind::BadRequest,
                format!(
                    "query parameter \"limit\" must be a whole number from 1 to {QUERY_LIMIT_MAX}, got {value:?}"
                ),
            );
        }
    }
    if let Some(field) = error
        .split_once("unknown field `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(field, _)| field)
    {
        return ApiError::new(
            ProblemKind::BadRequest,
            format!("unknown query parameter {field:?}: remove it (see the route's parameters in /openapi.json)"),
        );
    }
    if let Some(field) = error
        .split_once("duplicate field `")
        .and_then(|(_, rest)| rest.split_once('`'))
        .map(|(field, _)| field)
    {
        return ApiError::new(
            ProblemKind::BadRequest,
            format!("query parameter {field:?} is given more than once: keep one"),
        );
    }
    ApiError::new(
        ProblemKind::BadRequest,
        "the query string is invalid: check the parameter names and values",
    )
}

/// Returns the strong ETag of a data source version, such as `"3"`.
pub(crate) fn etag(version: u64) -> HeaderValue {
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// Checks `If-Match` against the current version. An absent header matches.
///
/// # Errors
///
/// Returns a 412 problem when no listed entity tag is the current one.
/// Weak tags never match, as RFC 9110 section 13.1.1 requires.
pub(crate) fn check_if_match(request: &HttpRequest, current: u64) -> Result<(), ApiError> {
    let Some(value) = request.headers().get(header::IF_MATCH) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or_default();
    let expected = format!("\"{current}\"");
    let matches = text
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag == expected);
    if matches {
        Ok(())
    } else {
        Err(ApiError::new(
            ProblemKind::PreconditionFailed,
            format!(
                "If-Match {text} does not match the current ETag {expected}: nothing was changed; GET the data source again and retry"
            ),
        ))
    }
}

/// Runs a store call on the blocking thread pool.
pub(crate) async fn blocking<T, F>(call: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, authcfg_store::Error> + Send + 'static,
    T: Send + 'static,
{
    web::block(in_current_span(call))
        .await?
        .map_err(ApiError::from)
}

/// Wraps `call` so that it runs in the caller's span on a blocking thread,
/// and the store's log lines carry the request id.
pub(crate) fn in_current_span<T>(call: impl FnOnce() -> T) -> impl FnOnce() -> T {
    let span = tracing::Span::current();
    move || span.in_scope(call)
}

#[cfg(test)]
mod tests {
    use super::*;

    use actix_web::test::TestRequest;

    #[test]
    fn if_match_table() {
        let cases: &[(Option<&str>, bool)] = &[
            (None, true),
            (Some("\"3\""), true),
            (Some("*"), true),
            (Some("\"2\", \"3\""), true),
            (Some("\"2\""), false),
            (Some("W/\"3\""), false),
            (Some("3"), false),
        ];

        for (header_value, accepted) in cases {
            let mut request = TestRequest::default();
            if let Some(value) = header_value {
                request = request.insert_header((header::IF_MATCH, *value));
            }
            let request = request.to_http_request();

            assert_eq!(
                check_if_match(&request, 3).is_ok(),
                *accepted,
                "If-Match {header_value:?}"
            );
        }
    }

    #[test]
    fn body_media_types() {
        let cases: &[(Option<&str>, u16)] = &[
            (None, 0),
            (Some("application/json"), 0),
            (Some("application/json; charset=utf-8"), 0),
            (Some("application/merge-patch+json"), 0),
            (Some("text/plain"), 415),
        ];

        for (content_type, status) in cases {
            let mut request = TestRequest::default();
            if let Some(value) = content_type {
                request = request.insert_header((header::CONTENT_TYPE, *value));
            }
            let request = request.to_http_request();

            let result: Result<serde_json::Value, ApiError> = parse_body(&request, b"{}");

            match result {
                Ok(_) => assert_eq!(*status, 0, "{content_type:?}"),
                Err(error) => {
                    assert_eq!(error.kind().status().as_u16(), *status, "{content_type:?}")
                }
            }
        }
    }

    #[test]
    fn body_errors_are_plain_words() {
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code, reason = "only the parse errors matter")]
        struct CreateThing {
            name: String,
            count: u64,
            enabled: bool,
            method: Option<authcfg_model::AuthMethod>,
        }
        let request = TestRequest::default().to_http_request();
        // (body, text the problem must contain)
        let cases: &[(&[u8], &str)] = &[
            (b"[]", "the body must be a JSON object, got an array"),
            (b"\"text\"", "the body must be a JSON object, got a string"),
            (b"42", "the body must be a JSON object, got a number"),
            (
                br#"{"name": "a", "count": -1, "enabled": true}"#,
                "must be a whole number, 0 or more, got a negative number",
            ),
            (
                br#"{"name": "a", "count": "5", "enabled": true}"#,
                "must be a whole number, 0 or more, got a string",
            ),
            (
                br#"{"name": 7, "count": 5, "enabled": true}"#,
                "must be a string, got a whole number",
            ),
            (
                br#"{"name": "a", "count": 5, "enabled": "yes"}"#,
                "must be true or false, got a string",
            ),
            (
                br#"{"name": "a", "count": 5, "enabled": true, "method": "digest"}"#,
                "`digest` is not an accepted value: use `basic` or `bearer`",
            ),
        ];

        for (body, expected) in cases {
            let error = parse_body::<CreateThing>(&request, body).unwrap_err();
            let problem = serde_json::to_string(&error.to_problem()).unwrap();

            assert_eq!(error.kind(), ProblemKind::BadRequest, "{body:?}");
            assert!(
                problem.contains(expected),
                "{}: {problem}",
                String::from_utf8_lossy(body)
            );
            for jargon in [
                "invalid length",
                "invalid type",
                "invalid value",
                "unknown variant",
                "u64",
                "struct",
            ] {
                assert!(!problem.contains(jargon), "{jargon} in {problem}");
            }
        }
    }

    #[test]
    fn query_errors_name_parameter_and_value() {
        // (query string, serde's message, text the detail must contain)
        let cases: &[(&str, &str, &str)] = &[
            (
                "limit=abc",
                "Query deserialize error: invalid digit found in string",
                "query parameter \"limit\" must be a whole number from 1 to 500, got \"abc\"",
            ),
            (
                "cursor=x&limit=-3",
                "Query deserialize error: invalid digit found in string",
                "got \"-3\"",
            ),
            (
                "limt=5",
                "Query deserialize error: unknown field `limt`, expected `limit` or `cursor`",
                "unknown query parameter \"limt\"",
            ),
        ];

        for (query, message, expected) in cases {
            let error = query_problem(query, message);

            assert_eq!(error.kind(), ProblemKind::BadRequest, "{query}");
            assert!(
                error.detail().contains(expected),
                "{query}: {}",
                error.detail()
            );
            assert!(
                !error.detail().contains("deserialize"),
                "{query}: {}",
                error.detail()
            );
        }
    }

    #[test]
    fn empty_and_malformed_bodies() {
        let request = TestRequest::default().to_http_request();

        for body in [&b""[..], b"  ", b"{", b"[1,"] {
            let result: Result<serde_json::Value, ApiError> = parse_body(&request, body);

            assert_eq!(
                result.unwrap_err().kind(),
                ProblemKind::BadRequest,
                "{body:?}"
            );
        }
    }
}
