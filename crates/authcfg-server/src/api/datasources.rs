//! `/v1/datasources`: create, list, read, patch and delete data sources.

use actix_web::http::header;
use actix_web::web::{self, Bytes};
use actix_web::{HttpRequest, HttpResponse};
use authcfg_model::{
    AuditOutcome, CreateDataSource, CredentialsSummary, DataSource, UpdateDataSource,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{blocking, check_if_match, etag, parse_body};
use crate::access::Caller;
use crate::audit;
use crate::problem::{ApiError, Problem, ProblemKind};
use crate::state::AppState;

/// Page size when `limit` is not given.
const DEFAULT_LIMIT: usize = 50;
/// Largest accepted `limit`.
pub(crate) const MAX_LIMIT: usize = 500;
/// Attempts of an unconditional patch that races with other updates.
const MAX_UPDATE_ATTEMPTS: u32 = 5;

/// A data source with a summary of its credentials, which never contains a secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataSourceView {
    /// The data source.
    #[serde(flatten)]
    pub datasource: DataSource,
    /// Summary of its stored credentials, or `null` when none are stored.
    #[schema(required = true)]
    pub credentials: Option<CredentialsSummary>,
}

/// One page of data sources.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataSourcePage {
    /// The data sources of this page, ordered by name.
    pub items: Vec<DataSourceView>,
    /// Pass as `cursor` to read the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Query parameters of the data source list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Maximum number of items, 1 to 500; 50 when left out.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Returns the page size, or a 400 naming the parameter.
pub(crate) fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(limit) if (1..=MAX_LIMIT).contains(&limit) => Ok(limit),
        Some(limit) => Err(ApiError::field(
            "/limit",
            format!("limit {limit} is out of range: use 1 to {MAX_LIMIT}"),
        )),
    }
}

fn view_response(status: actix_web::http::StatusCode, view: &DataSourceView) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header((header::ETAG, etag(view.datasource.version)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(view)
}

/// Creates a data source.
///
/// A name whose environment variable prefix another data source uses, such
/// as `crm_prod` next to `crm-prod` (both read `AUTHCFG_DS_CRM_PROD_*`), gives
/// 409 and stores nothing.
#[utoipa::path(
    post,
    path = "/v1/datasources",
    tag = "datasources",
    request_body = CreateDataSource,
    responses(
        (status = 201, description = "Created; `Location` names it, `ETag` is its version", body = DataSourceView),
        (status = 400, description = "Invalid or malformed body", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken, or another data source's name maps to the same environment variable prefix (`crm-prod` and `crm_prod`)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_token" = []))
)]
pub async fn create_datasource(
    state: web::Data<AppState>,
    caller: Caller,
    request: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let create: CreateDataSource = parse_body(&request, &body)?;
    create.validate().map_err(ApiError::validation)?;
    if let Some(token_url) = &create.auth.token_url {
        state
            .token_url_policy
            .check(token_url)
            .map_err(|detail| ApiError::field("/auth/token_url", detail))?;
    }

    let store = state.store.clone();
    let datasource = web::block(super::in_current_span(move || {
        crate::create::create_datasource(&store, &create)
    }))
    .await??;

    state.snapshot.upsert(datasource.clone(), None);
    state.audit.record(audit::event(
        caller.token_id(),
        "datasource.create",
        Some(&datasource.name),
        AuditOutcome::Success,
        Some(serde_json::json!({ "version": datasource.version })),
    ));
    tracing::info!(datasource = %datasource.name, datasource_id = %datasource.id, "created a data source");

    let location = format!("/v1/datasources/{}", datasource.name);
    let view = DataSourceView {
        datasource,
        credentials: None,
    };
    let mut response = view_response(actix_web::http::StatusCode::CREATED, &view);
    if let Ok(value) = header::HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

/// Lists data sources ordered by name. A consumer token lists only its own.
#[utoipa::path(
    get,
    path = "/v1/datasources",
    tag = "datasources",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of data sources", body = DataSourcePage),
        (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_token" = []))
)]
pub async fn list_datasources(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let limit = page_limit(query.limit)?;

    let store = state.store.clone();
    let (page, summaries) = blocking(move || {
        let page = store.list_datasources(query.cursor.as_deref(), limit)?;
        let mut summaries = Vec::with_capacity(page.items.len());
        for datasource in &page.items {
            summaries.push(store.credentials_summary(&datasource.name)?);
        }
        Ok((page, summaries))
    })
    .await?;

    let items = page
        .items
        .into_iter()
        .zip(summaries)
        .filter(|(datasource, _)| caller.may_use(&datasource.name))
        .map(|(datasource, credentials)| DataSourceView {
            datasource,
            credentials,
        })
        .collect();
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(DataSourcePage {
            items,
            next_cursor: page.next_cursor,
        }))
}

/// Returns a data source with a summary of its credentials.
#[utoipa::path(
    get,
    path = "/v1/datasources/{name}",
    tag = "datasources",
    params(("name" = String, Path, description = "Data source name")),
    responses(
        (status = 200, description = "The data source; `ETag` is its version", body = DataSourceView),
        (status = 401, description = "Missing or invalid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The token may not use this data source", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such data source", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_token" = []))
)]
pub async fn get_datasource(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    caller.require_datasource(&name)?;

    let store = state.store.clone();
    let view = blocking(move || {
        let datasource = store.get_datasource(&name)?;
        let credentials = store.credentials_summary(&name)?;
        Ok(DataSourceView {
            datasource,
            credentials,
        })
    })
    .await?;

    Ok(view_response(actix_web::http::StatusCode::OK, &view))
}

/// Changes a data source with a JSON merge patch (RFC 7396).
///
/// A field left out stays, `null` clears it. With `If-Match`, a stale ETag
/// gives 412 and changes nothing.
#[utoipa::path(
    patch,
    path = "/v1/datasources/{name}",
    tag = "datasources",
    params(
        ("name" = String, Path, description = "Data source name"),
        ("If-Match" = Option<String>, Header, description = "The ETag read before the change"),
    ),
    request_body(content = UpdateDataSource, content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "The changed data source", body = DataSourceView),
        (status = 400, description = "Invalid or malformed patch", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "The body is not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such data source", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "The ETag is stale", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_token" = []))
)]
pub async fn update_datasource(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
    request: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    caller.require_admin()?;
    let patch: UpdateDataSource = parse_body(&request, &body)?;

    // Without If-Match the client asked for an unconditional change, so a
    // concurrent update is retried on the new version instead of failing.
    let conditional = request.headers().contains_key(header::IF_MATCH);
    let mut attempt = 0;
    let (updated, credentials) = loop {
        attempt += 1;

        let store = state.store.clone();
        let lookup = name.clone();
        let current = blocking(move || store.get_datasource(&lookup)).await?;
        check_if_match(&request, current.version)?;
        let next = patch.apply(&current).map_err(ApiError::validation)?;
        let token_url_changed = next.auth.token_url != current.auth.token_url;
        if let (true, Some(token_url)) = (token_url_changed, &next.auth.token_url) {
            state
                .token_url_policy
                .check(token_url)
                .map_err(|detail| ApiError::field("/auth/token_url", detail))?;
        }

        let store = state.store.clone();
        let expected = current.version;
        let lookup = name.clone();
        let result = blocking(move || {
            let updated = store.update_datasource(&next, expected)?;
            let credentials = store.credentials_summary(&lookup)?;
            Ok((updated, credentials))
        })
        .await;
        match result {
            Err(error)
                if !conditional
                    && error.kind() == ProblemKind::PreconditionFailed
                    && attempt < MAX_UPDATE_ATTEMPTS =>
            {
                tracing::debug!(datasource = %name, attempt, "data source changed concurrently; applying the patch again");
            }
            other => break other?,
        }
    };

    state.snapshot.upsert(updated.clone(), credentials.as_ref());
    state.exchange.invalidate(updated.id);
    state.audit.record(audit::event(
        caller.token_id(),
        "datasource.update",
        Some(&name),
        AuditOutcome::Success,
        Some(serde_json::json!({ "version": updated.version })),
    ));
    tracing::info!(datasource = %name, version = updated.version, "updated a data source");

    Ok(view_response(
        actix_web::http::StatusCode::OK,
        &DataSourceView {
            datasource: updated,
            credentials,
        },
    ))
}

/// Deletes a data source and its credentials.
#[utoipa::path(
    delete,
    path = "/v1/datasources/{name}",
    tag = "datasources",
    params(("name" = String, Path, description = "Data source name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing or invalid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such data source", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_token" = []))
)]
pub async fn delete_datasource(
    state: web::Data<AppState>,
    caller: Caller,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let name = name.into_inner();
    caller.require_admin()?;

    let store = state.store.clone();
    let lookup = name.clone();
    let id = blocking(move || {
        let datasource = store.get_datasource(&lookup)?;
        store.delete_datasource(&lookup)?;
        Ok(datasource.id)
    })
    .await?;

    state.snapshot.remove(&name);
    state.exchange.invalidate(id);
    state.audit.record(audit::event(
        caller.token_id(),
        "datasource.delete",
        Some(&name),
        AuditOutcome::Success,
        None,
    ));
    tracing::info!(datasource = %name, "deleted a data source");

    Ok(HttpResponse::NoContent().finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_limit_bounds() {
        assert_eq!(page_limit(None).unwrap(), DEFAULT_LIMIT);
        assert_eq!(page_limit(Some(1)).unwrap(), 1);
        assert_eq!(page_limit(Some(MAX_LIMIT)).unwrap(), MAX_LIMIT);
        assert!(page_limit(Some(0)).is_err());
        assert!(page_limit(Some(MAX_LIMIT + 1)).is_err());
    }
}
