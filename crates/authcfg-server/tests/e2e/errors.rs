//! Errors a user meets at the authorization route: missing credentials,
//! an upstream rejection, an upstream that hangs, and the diagnostics of the
//! test route for both outcomes.

use serde_json::json;

use crate::support::{
    assert_problem, bearer_datasource, Behaviour, Server, ServerOptions, TokenEndpoint,
};

#[test]
fn missing_credentials_conflict_names_variables() {
    let endpoint = TokenEndpoint::start("unused-token");
    let server = Server::start();
    server.create_datasource(&bearer_datasource("crm-prod", &endpoint.token_url()));

    let reply = server.authorize("crm-prod");

    let problem = assert_problem(&reply, 409);
    let detail = problem["detail"].as_str().unwrap();
    for variable in [
        "AUTHCFG_DS_CRM_PROD_CLIENT_ID",
        "AUTHCFG_DS_CRM_PROD_CLIENT_SECRET",
    ] {
        assert!(
            detail.contains(variable),
            "the detail does not name {variable}: {detail}"
        );
    }
    assert!(
        endpoint.requests().is_empty(),
        "the token endpoint was called without credentials"
    );
}

#[test]
fn missing_refresh_token_conflict_names_variable() {
    let endpoint = TokenEndpoint::start("unused-token");
    let server = Server::start();
    let mut body = bearer_datasource("ledger", &endpoint.token_url());
    body["auth"]["grant_type"] = json!("refresh_token");
    server.create_datasource(&body);
    server.put_credentials("ledger", "ledger-client", "ledger-secret");

    let reply = server.authorize("ledger");

    let problem = assert_problem(&reply, 409);
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("AUTHCFG_DS_LEDGER_REFRESH_TOKEN"),
        "the detail does not name the refresh token variable: {detail}"
    );
}

#[test]
fn upstream_invalid_client_is_bad_gateway() {
    let endpoint = TokenEndpoint::start("never-issued");
    endpoint.add_client("crm-client", "the-right-secret");
    let server = Server::start();
    server.create_datasource(&bearer_datasource("crm-prod", &endpoint.token_url()));
    server.put_credentials("crm-prod", "crm-client", "a-wrong-secret");

    let reply = server.authorize("crm-prod");

    let problem = assert_problem(&reply, 502);
    let text = problem.to_string();
    assert_eq!(
        problem["error"],
        json!("invalid_client"),
        "the RFC error code: {problem}"
    );
    assert_eq!(
        problem["error_description"],
        json!("client authentication failed"),
        "the provider's description: {problem}"
    );
    assert_eq!(
        problem["upstream_status"],
        json!(401),
        "the upstream status: {problem}"
    );
    assert!(
        !text.contains("a-wrong-secret"),
        "the problem shows the secret"
    );
    assert_eq!(endpoint.issued(), 0);
}

#[test]
fn hanging_token_endpoint_is_gateway_timeout() {
    let endpoint = TokenEndpoint::start("never-issued");
    endpoint.add_client("crm-client", "crm-secret");
    endpoint.set_behaviour(Behaviour::Hang);
    let server = Server::start_with(ServerOptions {
        extra_config: "token_request_timeout_secs = 1\ntoken_connect_timeout_secs = 1\n".to_owned(),
        ..ServerOptions::default()
    });
    server.create_datasource(&bearer_datasource("crm-prod", &endpoint.token_url()));
    server.put_credentials("crm-prod", "crm-client", "crm-secret");

    let reply = server.authorize("crm-prod");

    assert_problem(&reply, 504);
    assert_eq!(
        endpoint.requests().len(),
        1,
        "the hanging request was not sent exactly once"
    );
}

#[test]
fn test_route_reports_both_outcomes() {
    let endpoint = TokenEndpoint::start("diagnostic-token");
    endpoint.add_client("crm-client", "crm-secret");
    let server = Server::start();
    server.create_datasource(&bearer_datasource("crm-prod", &endpoint.token_url()));
    server.put_credentials("crm-prod", "crm-client", "crm-secret");

    let reply = server.call(
        "POST",
        "/v1/datasources/crm-prod/test",
        Some(server.admin()),
        None,
    );
    assert_eq!(reply.status, 200, "test failed: {}", reply.body);
    let good = reply.json();
    assert_eq!(good["ok"], json!(true), "{good}");
    assert!(
        !reply.body.contains("diagnostic-token"),
        "the diagnostics show the token"
    );
    assert_eq!(
        good["scope"],
        json!("api.read"),
        "the granted scope: {good}"
    );
    assert_eq!(
        good["upstream_status"],
        json!(200),
        "the upstream status: {good}"
    );
    assert!(
        good["duration_ms"].is_u64(),
        "the diagnostics lack the duration: {good}"
    );

    endpoint.set_behaviour(Behaviour::Reject {
        status: 400,
        error: "invalid_scope".to_owned(),
        description: "scope api.read is not granted".to_owned(),
    });
    let reply = server.call(
        "POST",
        "/v1/datasources/crm-prod/test",
        Some(server.admin()),
        None,
    );
    let bad = reply.json();
    assert_eq!(bad["ok"], json!(false), "{bad}");
    assert_eq!(
        bad["error"],
        json!("invalid_scope"),
        "the RFC error code: {bad}"
    );
    assert_eq!(
        bad["error_description"],
        json!("scope api.read is not granted"),
        "the provider's description: {bad}"
    );
    assert_eq!(
        bad["upstream_status"],
        json!(400),
        "the upstream status: {bad}"
    );
    assert!(!reply.body.contains("crm-secret"));
}

#[test]
fn upstream_server_error_is_bad_gateway() {
    let endpoint = TokenEndpoint::start("never-issued");
    endpoint.add_client("crm-client", "crm-secret");
    endpoint.set_behaviour(Behaviour::Reject {
        status: 503,
        error: "temporarily_unavailable".to_owned(),
        description: "maintenance window".to_owned(),
    });
    let server = Server::start();
    server.create_datasource(&bearer_datasource("crm-prod", &endpoint.token_url()));
    server.put_credentials("crm-prod", "crm-client", "crm-secret");

    let reply = server.authorize("crm-prod");

    let problem = assert_problem(&reply, 502);
    assert!(
        problem.to_string().contains("temporarily_unavailable"),
        "the problem lacks the RFC error code: {problem}"
    );
}

#[test]
fn deleted_credentials_drop_cached_token() {
    let endpoint = TokenEndpoint::start("rekeyed-token");
    endpoint.add_client("crm-client", "compromised-secret");
    let server = Server::start();
    server.create_datasource(&bearer_datasource("crm-prod", &endpoint.token_url()));
    server.put_credentials("crm-prod", "crm-client", "compromised-secret");
    assert_eq!(
        server.authorize("crm-prod").json()["value"],
        json!("Bearer rekeyed-token-1")
    );

    // The operator deletes the compromised credentials and stores new ones.
    // The token obtained with the old secret must not be served again, even
    // if the new credentials start a new version count.
    assert_eq!(
        server.delete("/v1/datasources/crm-prod/credentials").status,
        204
    );
    assert_problem(&server.authorize("crm-prod"), 409);
    endpoint.add_client("crm-client", "fresh-secret");
    server.put_credentials("crm-prod", "crm-client", "fresh-secret");

    let reply = server.authorize("crm-prod");
    assert_eq!(
        reply.json()["value"],
        json!("Bearer rekeyed-token-2"),
        "a token of deleted credentials was served"
    );
}

#[test]
fn authorization_without_body_works() {
    let server = Server::start();
    server.create_datasource(&json!({"name": "billing", "auth": {"method": "basic"}}));
    server.put_credentials("billing", "billing-user", "billing-password");

    let reply = server.call_raw(
        "POST",
        "/v1/datasources/billing/authorization",
        Some(server.admin()),
        &[],
        None,
    );

    assert_eq!(
        reply.status, 200,
        "a request without a body failed: {}",
        reply.body
    );
    assert_eq!(reply.content_type(), "application/json");
    assert_eq!(reply.json()["header"], json!("Authorization"));
}

#[test]
fn test_route_keeps_rotated_refresh_token() {
    let endpoint = TokenEndpoint::start("diagnosed-token");
    endpoint.add_client("ledger-client", "ledger-secret");
    endpoint.set_refresh_token("ledger-client", "first-refresh-token");
    let server = Server::start();
    let mut body = bearer_datasource("ledger", &endpoint.token_url());
    body["auth"]["grant_type"] = json!("refresh_token");
    server.create_datasource(&body);
    let credentials = json!({
        "client_id": "ledger-client",
        "client_secret": "ledger-secret",
        "refresh_token": "first-refresh-token",
    });
    assert_eq!(
        server
            .put("/v1/datasources/ledger/credentials", &credentials)
            .status,
        204
    );

    // The diagnostic exchange rotates the refresh token at the provider, so
    // the service must keep the new one like any other exchange does.
    let report = server.call(
        "POST",
        "/v1/datasources/ledger/test",
        Some(server.admin()),
        None,
    );
    assert_eq!(report.status, 200, "test failed: {}", report.body);
    assert_eq!(report.json()["ok"], json!(true), "{}", report.body);
    assert!(
        !report.body.contains("diagnosed-token-refresh"),
        "the diagnostics show the refresh token"
    );

    let reply = server.authorize("ledger");
    assert_eq!(
        reply.status, 200,
        "the refresh token rotated by the test route was lost: {}",
        reply.body
    );
    assert_eq!(
        endpoint.requests().last().unwrap().param("refresh_token"),
        Some("diagnosed-token-refresh-1")
    );
}

#[test]
fn cached_token_survives_failed_refresh() {
    let endpoint = TokenEndpoint::start("durable-token");
    endpoint.add_client("crm-client", "crm-secret");
    let server = Server::start();
    server.create_datasource(&bearer_datasource("crm-prod", &endpoint.token_url()));
    server.put_credentials("crm-prod", "crm-client", "crm-secret");
    assert_eq!(
        server.authorize("crm-prod").json()["value"],
        json!("Bearer durable-token-1")
    );

    // The provider goes down; a forced refresh fails, but the token it
    // issued an hour's lifetime ago is still valid and is served meanwhile.
    endpoint.set_behaviour(Behaviour::Reject {
        status: 503,
        error: "temporarily_unavailable".to_owned(),
        description: "maintenance window".to_owned(),
    });
    let forced = server.call(
        "POST",
        "/v1/datasources/crm-prod/authorization",
        Some(server.admin()),
        Some(&json!({"force_refresh": true})),
    );
    assert!(
        forced.status >= 500,
        "a failed forced refresh returned {}",
        forced.status
    );
    assert_problem(&forced, forced.status);

    let reply = server.authorize("crm-prod");
    assert_eq!(
        reply.status, 200,
        "the valid cached token was dropped: {}",
        reply.body
    );
    assert_eq!(reply.json()["value"], json!("Bearer durable-token-1"));
}

#[test]
fn repeated_upstream_failure_backs_off() {
    let endpoint = TokenEndpoint::start("never-issued");
    endpoint.add_client("crm-client", "crm-secret");
    endpoint.set_behaviour(Behaviour::Reject {
        status: 503,
        error: "temporarily_unavailable".to_owned(),
        description: "maintenance window".to_owned(),
    });
    let server = Server::start();
    server.create_datasource(&bearer_datasource("crm-prod", &endpoint.token_url()));
    server.put_credentials("crm-prod", "crm-client", "crm-secret");

    // A burst of callers after a transient failure must not each reach the
    // broken provider: the failure backs off.
    let statuses: Vec<u16> = (0..10)
        .map(|_| server.authorize("crm-prod").status)
        .collect();

    assert!(statuses.iter().all(|status| *status >= 500), "{statuses:?}");
    assert!(
        endpoint.requests().len() < 10,
        "every caller reached the broken provider: {statuses:?}"
    );
    for reply in server.replies().iter().filter(|reply| reply.status == 503) {
        assert!(
            reply.header("retry-after").is_some(),
            "a 503 without Retry-After: {}",
            reply.body
        );
    }
}
