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
pub mod system;

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpRequest};
use authcfg_model::ValidationErrors;
use serde::de::DeserializeOwned;

use crate::problem::{ApiError, ProblemKind};
use crate::telemetry::RouteName;

pub use audit_log::{AuditPage, ListAuditQuery};
pub use authorization::{AuthorizationRequest, AuthorizationResponse, TestReport};
pub use datasources::{DataSourcePage, DataSourceView, ListQuery};
pub use system::{Health, Readiness};

/// Registers every route, with problem+json error handlers for the query
/// string, path and body extractors.
pub fn configure(config: &mut web::ServiceConfig, body_limit_bytes: usize) {
    config
        .app_data(web::PayloadConfig::new(body_limit_bytes))
        .app_data(
            web::QueryConfig::default().error_handler(|error, _request| {
                ApiError::new(
                    ProblemKind::BadRequest,
                    format!("invalid query string: {error}: check the parameter names and values"),
                )
                .into()
            }),
        )
        .app_data(web::PathConfig::default().error_handler(|error, _request| {
            ApiError::new(ProblemKind::BadRequest, format!("invalid path: {error}")).into()
        }))
        .service(
            web::resource("/healthz")
                .app_data(RouteName("/healthz"))
                .route(web::get().to(system::healthz)),
        )
        .service(
            web::resource("/readyz")
                .app_data(RouteName("/readyz"))
                .route(web::get().to(system::readyz)),
        )
        .service(
            web::resource("/metrics")
                .app_data(RouteName("/metrics"))
                .route(web::get().to(system::metrics)),
        )
        .service(
            web::resource("/openapi.json")
                .app_data(RouteName("/openapi.json"))
                .route(web::get().to(system::openapi_json)),
        )
        // The router tries resources in order and matches a pattern with a
        // `{name}` segment by regular expression, so the cache-hit route
        // comes before the other patterns with one.
        .service(
            web::resource("/v1/datasources/{name}/authorization")
                .app_data(RouteName("/v1/datasources/{name}/authorization"))
                .route(web::post().to(authorization::authorize)),
        )
        .service(
            web::resource("/v1/datasources")
                .app_data(RouteName("/v1/datasources"))
                .route(web::get().to(datasources::list_datasources))
                .route(web::post().to(datasources::create_datasource)),
        )
        .service(
            web::resource("/v1/datasources/{name}")
                .app_data(RouteName("/v1/datasources/{name}"))
                .route(web::get().to(datasources::get_datasource))
                .route(web::patch().to(datasources::update_datasource))
                .route(web::delete().to(datasources::delete_datasource)),
        )
        .service(
            web::resource("/v1/datasources/{name}/credentials")
                .app_data(RouteName("/v1/datasources/{name}/credentials"))
                .route(web::put().to(credentials::put_credentials))
                .route(web::delete().to(credentials::delete_credentials)),
        )
        .service(
            web::resource("/v1/datasources/{name}/test")
                .app_data(RouteName("/v1/datasources/{name}/test"))
                .route(web::post().to(authorization::test_datasource)),
        )
        .service(
            web::resource("/v1/audit")
                .app_data(RouteName("/v1/audit"))
                .route(web::get().to(audit_log::list_audit)),
        );
}

/// Parses a JSON request body strictly.
///
/// An absent `Content-Type` is accepted; any other media type than JSON
/// (`application/json` or `application/*+json`) is a 415.
pub(crate) fn parse_body<T: DeserializeOwned>(
    request: &HttpRequest,
    body: &[u8],
) -> Result<T, ApiError> {
    if let Some(content_type) = request.headers().get(header::CONTENT_TYPE) {
        let media_type = content_type
            .to_str()
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let json = media_type == "application/json"
            || (media_type.starts_with("application/") && media_type.ends_with("+json"));
        if !json {
            return Err(ApiError::new(
                ProblemKind::UnsupportedMediaType,
                format!(
                    "the body has media type {media_type:?}: send JSON with Content-Type: application/json"
                ),
            ));
        }
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(
            ProblemKind::BadRequest,
            "the request body is empty: send a JSON object",
        ));
    }
    authcfg_model::parse_json(body).map_err(malformed)
}

/// Turns a parse error of the body into a 400 that keeps the field pointers.
pub(crate) fn malformed(errors: ValidationErrors) -> ApiError {
    let mut error = ApiError::validation(errors);
    error.set_kind(ProblemKind::BadRequest);
    error
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
    web::block(call).await?.map_err(ApiError::from)
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
