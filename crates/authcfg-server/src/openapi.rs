//! The OpenAPI 3.1 document of the HTTP API, generated from the handlers'
//! `#[utoipa::path]` attributes and the wire types' schemas.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;
use crate::problem::Problem;

/// The document's root, listing every route and schema.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "authcfg",
        description = "A credentials broker: stores per data source an auth config and sealed credentials, and turns them into a ready Authorization header. Errors are RFC 9457 problem details (application/problem+json).",
        license(name = "Apache-2.0")
    ),
    paths(
        api::datasources::create_datasource,
        api::datasources::list_datasources,
        api::datasources::get_datasource,
        api::datasources::update_datasource,
        api::datasources::delete_datasource,
        api::credentials::put_credentials,
        api::credentials::delete_credentials,
        api::authorization::authorize,
        api::authorization::test_datasource,
        api::audit_log::list_audit,
        api::system::healthz,
        api::system::readyz,
        api::system::metrics,
        api::system::openapi_json,
    ),
    components(schemas(
        Problem,
        authcfg_model::FieldError,
        authcfg_model::DataSource,
        authcfg_model::DataSourceId,
        authcfg_model::CreateDataSource,
        authcfg_model::UpdateDataSource,
        authcfg_model::AuthConfigPatch,
        authcfg_model::AuthConfig,
        authcfg_model::AuthMethod,
        authcfg_model::GrantType,
        authcfg_model::ClientAuthMethod,
        authcfg_model::Credentials,
        authcfg_model::CredentialsSummary,
        authcfg_model::CredentialField,
        authcfg_model::AuditEvent,
        authcfg_model::AuditOutcome,
        api::DataSourceView,
        api::DataSourcePage,
        api::AuthorizationRequest,
        api::AuthorizationResponse<'_>,
        api::TestReport,
        api::AuditPage,
        api::Health,
        api::Readiness,
    )),
    modifiers(&ApiTokenScheme),
    tags(
        (name = "datasources", description = "Data sources and their auth configs"),
        (name = "credentials", description = "Sealed credentials of a data source"),
        (name = "authorization", description = "Ready Authorization headers"),
        (name = "audit", description = "The audit log"),
        (name = "system", description = "Health, readiness, metrics and this document"),
    )
)]
struct ApiDoc;

/// Adds the `api_token` bearer scheme that the `/v1` routes name.
struct ApiTokenScheme;

impl Modify for ApiTokenScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API token created with `authcfg api-token create`; the first admin token is in <data_dir>/admin.token",
                    ))
                    .build(),
            ),
        );
    }
}

/// Returns the OpenAPI document of the HTTP API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
