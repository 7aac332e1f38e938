//! `GET /v1/audit`: the audit log, newest first.

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use authcfg_model::AuditEvent;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::blocking;
use super::datasources::page_limit;
use crate::access::Caller;
use crate::problem::{ApiError, Problem};
use crate::state::AppState;

/// Query parameters of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListAuditQuery {
    /// Only events of this data source.
    pub datasource: Option<String>,
    /// Maximum number of events, 1 to 500; 50 when left out.
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// One page of audit events, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditPage {
    /// The events of this page.
    pub items: Vec<AuditEvent>,
    /// Pass as `cursor` to read the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// Lists audit events, newest first.
#[utoipa::path(
    get,
    path = "/v1/audit",
    tag = "audit",
    params(ListAuditQuery),
    responses(
        (status = 200, description = "One page of events", body = AuditPage),
        (status = 400, description = "Invalid query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_token" = []))
)]
pub async fn list_audit(
    state: web::Data<AppState>,
    caller: Caller,
    query: web::Query<ListAuditQuery>,
) -> Result<HttpResponse, ApiError> {
    caller.require_admin()?;
    let query = query.into_inner();
    let limit = page_limit(query.limit)?;
    let after_id = match query.cursor.as_deref() {
        None | Some("") => None,
        Some(cursor) => Some(cursor.parse::<i64>().map_err(|_| {
            ApiError::field(
                "/cursor",
                format!(
                    "cursor {cursor:?} is not one this API returned: pass next_cursor unchanged"
                ),
            )
        })?),
    };

    // Write what is queued first, so that the list includes the caller's
    // own earlier requests.
    state.audit.flush().await;

    let store = state.store.clone();
    let page =
        blocking(move || store.list_audit(query.datasource.as_deref(), after_id, limit)).await?;

    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(AuditPage {
            items: page.items,
            next_cursor: page.next_cursor,
        }))
}
