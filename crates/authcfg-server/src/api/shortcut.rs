//! The cache-hit shortcut: middleware that responds to
//! `POST /v1/datasources/{name}/authorization` from the in-memory caches
//! before the router runs.
//!
//! A cache hit is the most frequent request and needs nothing that routing,
//! extractors and the handler's futures provide. So the shortcut recognises
//! the path by its text, reads the small body, and calls
//! [`authorization::cached_response`], the check that the handler also makes
//! first. It responds only to a hit. Every other request goes on to the
//! router unchanged, with the body it read put back, so errors, misses and
//! token requests have one implementation, in the handler.
//!
//! The shortcut runs inside [`crate::telemetry::RequestContext`], which
//! adds the request id to a hit's response and counts it, like any other.

use std::future::{ready, Ready};
use std::rc::Rc;

use actix_web::body::BoxBody;
use actix_web::dev::{
    self, Extensions, Payload, Service, ServiceRequest, ServiceResponse, Transform,
};
use actix_web::http::{header, Method};
use actix_web::web::{self, Bytes};
use actix_web::HttpMessage as _;
use futures_util::future::{Either, LocalBoxFuture};
use futures_util::StreamExt as _;

use super::authorization::{self, AUTHORIZATION_ROUTE};
use crate::state::AppState;
use crate::telemetry::RouteName;

/// Largest body the shortcut reads. A body with both options set takes under
/// 60 bytes, so a larger body goes straight to the router.
const MAX_SHORTCUT_BODY: usize = 1024;

/// Factory of the cache-hit shortcut. Register it with `App::wrap` before
/// the request context middleware, so that it runs inside it.
#[derive(Debug, Clone, Copy, Default)]
pub struct CacheHitShortcut;

impl<S> Transform<S, ServiceRequest> for CacheHitShortcut
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>
        + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Transform = CacheHitShortcutService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        let mut route = Extensions::new();
        route.insert(RouteName(AUTHORIZATION_ROUTE));
        ready(Ok(CacheHitShortcutService {
            service: Rc::new(service),
            route: Rc::new(route),
        }))
    }
}

/// The middleware of one worker thread.
pub struct CacheHitShortcutService<S> {
    service: Rc<S>,
    /// Resource data of the route, added to a request that the shortcut
    /// responds to, so that metrics and logs name the route as the router would.
    route: Rc<Extensions>,
}

impl<S> Service<ServiceRequest> for CacheHitShortcutService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<BoxBody>, Error = actix_web::Error>
        + 'static,
{
    type Response = ServiceResponse<BoxBody>;
    type Error = actix_web::Error;
    type Future = Either<S::Future, LocalBoxFuture<'static, Result<Self::Response, Self::Error>>>;

    dev::forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let Some(body_length) = candidate(&request) else {
            return Either::Left(self.service.call(request));
        };
        let service = Rc::clone(&self.service);
        let route = Rc::clone(&self.route);
        Either::Right(Box::pin(async move {
            let mut request = request;
            let body = if body_length == 0 {
                Bytes::new()
            } else {
                match read_body(&mut request.take_payload(), body_length).await {
                    Ok(body) => body,
                    // The handler's extractor fails the same way, and the
                    // request context turns the response into a problem.
                    Err(error) => return Ok(request.error_response(error)),
                }
            };

            if let Some(response) = cache_hit_response(&request, &body) {
                request.add_data_container(route);
                return Ok(request.into_response(response));
            }
            if !body.is_empty() {
                request.set_payload(Payload::from(body));
            }
            service.call(request).await
        }))
    }
}

/// Returns the body length of a request the shortcut may respond to: a `POST`
/// to the authorization route with a plain name and, at most,
/// [`MAX_SHORTCUT_BODY`] bytes of body declared by `Content-Length`.
fn candidate(request: &ServiceRequest) -> Option<usize> {
    if request.method() != Method::POST {
        return None;
    }
    authorization_name(request.path())?;
    let headers = request.headers();
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return None;
    }
    let length = match headers.get(header::CONTENT_LENGTH) {
        None => 0,
        Some(value) => value.to_str().ok()?.parse::<usize>().ok()?,
    };
    let limit = request
        .app_data::<web::Data<AppState>>()?
        .settings
        .body_limit_bytes
        .min(MAX_SHORTCUT_BODY);
    (length <= limit).then_some(length)
}

/// Returns the data source name of an authorization path as the router
/// would capture it. A name with `%` is left to the router, which decodes
/// some escapes before matching.
fn authorization_name(path: &str) -> Option<&str> {
    let name = path
        .strip_prefix("/v1/datasources/")?
        .strip_suffix("/authorization")?;
    let plain = !name.is_empty() && !name.contains(['/', '%']);
    plain.then_some(name)
}

/// Reads the at most `length` bytes that `Content-Length` declared. A body
/// that arrives in one chunk, as a small one does, is kept without a copy.
async fn read_body(payload: &mut Payload, length: usize) -> Result<Bytes, actix_web::Error> {
    let mut body = Bytes::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk?;
        if body.len() + chunk.len() > length {
            return Err(actix_web::error::PayloadError::Overflow.into());
        }
        body = if body.is_empty() {
            chunk
        } else {
            Bytes::from([body.as_ref(), chunk.as_ref()].concat())
        };
    }
    Ok(body)
}

/// Returns the response to a cache hit, or `None` for any other request.
fn cache_hit_response(request: &ServiceRequest, body: &[u8]) -> Option<actix_web::HttpResponse> {
    let state = request.app_data::<web::Data<AppState>>()?;
    let name = authorization_name(request.path())?;
    authorization::cached_response(state, request.request(), name, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_authorization_paths_are_taken() {
        let cases: &[(&str, Option<&str>)] = &[
            ("/v1/datasources/crm/authorization", Some("crm")),
            (
                "/v1/datasources/crm-prod_2/authorization",
                Some("crm-prod_2"),
            ),
            ("/v1/datasources//authorization", None),
            ("/v1/datasources/a/b/authorization", None),
            ("/v1/datasources/cr%6D/authorization", None),
            ("/v1/datasources/crm/authorization/", None),
            ("/v1/datasources/crm/test", None),
            ("/v1/datasources/crm", None),
            ("/v2/datasources/crm/authorization", None),
        ];

        for (path, expected) in cases {
            assert_eq!(authorization_name(path), *expected, "{path}");
        }
    }

    fn chunked(chunks: &[&'static str]) -> Payload {
        let chunks: Vec<Result<Bytes, actix_web::error::PayloadError>> = chunks
            .iter()
            .map(|chunk| Ok(Bytes::from_static(chunk.as_bytes())))
            .collect();
        Payload::Stream {
            payload: Box::pin(futures_util::stream::iter(chunks)),
        }
    }

    #[actix_web::test]
    async fn bodies_are_read_whole_and_bounded() {
        // (chunks, declared length, body read or None for an error)
        let cases: &[(&[&'static str], usize, Option<&str>)] = &[
            (&[], 0, Some("")),
            (&["{}"], 2, Some("{}")),
            (&["{", "}"], 2, Some("{}")),
            (
                &["{\"force_refresh\"", ":", "true}"],
                22,
                Some("{\"force_refresh\":true}"),
            ),
            (&["{}"], 1, None),
            (&["{", "}"], 1, None),
        ];

        for (chunks, length, expected) in cases {
            let read = read_body(&mut chunked(chunks), *length).await;

            match expected {
                Some(body) => assert_eq!(read.unwrap(), body.as_bytes(), "{chunks:?}"),
                None => assert!(read.is_err(), "{chunks:?} within {length} bytes"),
            }
        }
    }
}
