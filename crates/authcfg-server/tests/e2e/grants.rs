//! What the service sends to the token endpoint for each grant and client
//! authentication method, with credentials from the environment.

use std::fs;

use serde_json::json;

use crate::support::{bearer_datasource, env_vars, Server, TokenEndpoint};

#[test]
fn password_grant_sends_owner_credentials() {
    let endpoint = TokenEndpoint::start("owner-token");
    endpoint.add_client("reporting", "reporting-secret");
    let mut server = Server::start();
    let mut body = bearer_datasource("owner", &endpoint.token_url());
    body["auth"]["grant_type"] = json!("password");
    server.create_datasource(&body);

    let password_file = server.dir().join("owner-password");
    fs::write(&password_file, "owner-password\n").unwrap();
    server.restart_with_env(env_vars(&[
        ("AUTHCFG_DS_OWNER_CLIENT_ID", "reporting"),
        ("AUTHCFG_DS_OWNER_CLIENT_SECRET", "reporting-secret"),
        ("AUTHCFG_DS_OWNER_USERNAME", "report-bot"),
        (
            "AUTHCFG_DS_OWNER_PASSWORD_FILE",
            password_file.to_str().unwrap(),
        ),
    ]));

    let reply = server.authorize("owner");
    assert_eq!(
        reply.status, 200,
        "the password grant failed: {}",
        reply.body
    );
    let request = endpoint.requests().last().unwrap().clone();
    assert_eq!(request.param("grant_type"), Some("password"));
    assert_eq!(request.param("username"), Some("report-bot"));
    assert_eq!(request.param("password"), Some("owner-password"));

    let summary = server.get("/v1/datasources/owner").json()["credentials"].clone();
    assert_eq!(summary["username"], json!("report-bot"));
    assert!(
        summary["secrets_set"]
            .as_array()
            .is_some_and(|set| set.contains(&json!("password"))),
        "secrets_set lacks password: {summary}"
    );
    assert!(!summary.to_string().contains("owner-password"));
}

#[test]
fn client_secret_post_and_token_params() {
    let endpoint = TokenEndpoint::start("posted-token");
    endpoint.add_client("poster", "poster-secret");
    let server = Server::start();
    let mut body = bearer_datasource("poster", &endpoint.token_url());
    body["auth"]["client_auth"] = json!("client_secret_post");
    body["auth"]["token_params"] = json!({"audience": "https://api.example.com"});
    server.create_datasource(&body);
    server.put_credentials("poster", "poster", "poster-secret");

    let reply = server.authorize("poster");

    assert_eq!(
        reply.status, 200,
        "client_secret_post failed: {}",
        reply.body
    );
    let request = endpoint.requests().last().unwrap().clone();
    assert_eq!(request.param("client_id"), Some("poster"));
    assert_eq!(request.param("client_secret"), Some("poster-secret"));
    assert_eq!(request.param("audience"), Some("https://api.example.com"));
    assert!(
        !request
            .headers
            .iter()
            .any(|(name, _)| name.eq_ignore_ascii_case("authorization")),
        "client_secret_post also sent an Authorization header"
    );
}
