//! `/v1/datasources/{name}/credentials`: store or delete the sealed credentials.

use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use authcfg_model::{AuditOutcome, Credentials};

use super::{blocking, parse_body};
use crate::access::Caller;
use crate::audit;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

/// Stores the credentials of a data source. Writing unchanged values keeps
/// the credentials version, and with it the cached token.
#[utoipa::path(
    put,
    path = "/v1/datasources/{name}/credentials",
    tag = "credentials",
    params(("name" = String, Path, description = "Data source name")),
    request_body = Credentials,
    responses(
        (status = 204, description = "Stored"),
        (status = 400, description = "Invalid or malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such data source", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_token" = []))
)]
pub async fn put_credentials(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
    request: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    caller.require_admin()?;
    let credentials: Credentials = parse_body(&request, &body)?;
    drop(body);

    let store = state.store.clone();
    let lookup = name.clone();
    let (datasource, previous, summary) = blocking(move || {
        let datasource = store.get_datasource(&lookup)?;
        credentials
            .validate(datasource.auth.method)
            .map_err(authcfg_store::Error::Validation)?;
        let previous = store.credentials_summary(&lookup)?;
        let summary = store.put_credentials(&lookup, &credentials)?;
        Ok((datasource, previous, summary))
    })
    .await?;

    let changed = previous.as_ref().map(|old| old.version) != Some(summary.version);
    let version = summary.version;
    state.snapshot.upsert(datasource.clone(), Some(&summary));
    if changed {
        state.exchange.invalidate(datasource.id);
    }
    state.audit.record(audit::event(
        caller.token_id(),
        "credentials.put",
        Some(&name),
        AuditOutcome::Success,
        Some(serde_json::json!({ "credentials_version": version, "changed": changed })),
    ));
    tracing::info!(datasource = %name, credentials_version = version, changed, "stored credentials");

    Ok(HttpResponse::NoContent().finish())
}

/// Deletes the credentials of a data source.
#[utoipa::path(
    delete,
    path = "/v1/datasources/{name}/credentials",
    tag = "credentials",
    params(("name" = String, Path, description = "Data source name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such data source or no credentials", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_token" = []))
)]
pub async fn delete_credentials(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    caller.require_admin()?;

    let store = state.store.clone();
    let lookup = name.clone();
    let datasource = blocking(move || {
        let datasource = store.get_datasource(&lookup)?;
        store.delete_credentials(&lookup)?;
        Ok(datasource)
    })
    .await?;

    state.snapshot.upsert(datasource.clone(), None);
    state.exchange.invalidate(datasource.id);
    state.audit.record(audit::event(
        caller.token_id(),
        "credentials.delete",
        Some(&name),
        AuditOutcome::Success,
        None,
    ));
    tracing::info!(datasource = %name, "deleted credentials");

    Ok(HttpResponse::NoContent().finish())
}
