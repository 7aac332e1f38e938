//! Routes outside `/v1` that need no API token: liveness, readiness,
//! Prometheus metrics and the OpenAPI document.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use crate::problem::{ApiError, Problem, ProblemKind};
use crate::state::AppState;

/// The liveness response.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` while the process runs.
    #[schema(example = "ok")]
    pub status: &'static str,
    /// The authcfg version.
    pub version: &'static str,
}

/// The readiness response.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` when every check passed.
    #[schema(example = "ready")]
    pub status: &'static str,
    /// `ok` when a query to the database succeeded.
    pub database: &'static str,
    /// `ok` when the master key unlocked the data keys.
    pub keyring: &'static str,
}

/// Returns 200 while the process runs.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "system",
    responses((status = 200, description = "The process runs", body = Health))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Returns 200 when the database is reachable and the keyring is unlocked.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "system",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready; `detail` names the failed check", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let store = state.store.clone();
    let checked = web::block(move || {
        store.change_counter()?;
        store.key_status()
    })
    .await?;

    match checked {
        Ok(_) => Ok(HttpResponse::Ok().json(Readiness {
            status: "ready",
            database: "ok",
            keyring: "ok",
        })),
        Err(error) => Err(ApiError::new(
            ProblemKind::Unavailable,
            "the database or the keyring is not available: the server log has the cause",
        )
        .with_cause(error)),
    }
}

/// Returns the metrics in the Prometheus text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "system",
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"))
)]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    let text = crate::metrics::render(
        &state.http_metrics,
        &state.exchange.metrics(),
        state.audit.dropped(),
    );
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        ))
        .body(text)
}

/// Returns the OpenAPI document of this API.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "system",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json"))
)]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi())
}
