//! Canary secrets: a client secret, a refresh token, a rotated refresh token
//! and an access token with unique values travel through every feature that
//! touches them. Afterwards they must appear in no response body, except the
//! access token in the header it was issued in. They must also appear nowhere
//! in the log output captured at trace level, nor in plaintext in the data
//! directory.

use base64::Engine as _;
use serde_json::json;

use crate::support::{
    basic_datasource, basic_header, bearer_datasource, env_vars, unique, Behaviour, Server,
    ServerOptions, TokenEndpoint,
};

#[test]
fn canary_secrets_never_leak_text() {
    check_canaries("text");
}

#[test]
fn canary_secrets_never_leak_json() {
    check_canaries("json");
}

/// Runs every feature that touches a secret with logs in `log_format`, then
/// scans the responses, the log and the data directory.
fn check_canaries(log_format: &str) {
    let canary_secret = unique("canarysecret");
    let basic_secret = unique("canarybasic");
    let refresh_secret = unique("canaryrefresh");
    let rotated_prefix = unique("canaryrotated");
    let token_prefix = unique("canarytoken");
    let endpoint = TokenEndpoint::start(&token_prefix);
    endpoint.add_client("canary-client", &canary_secret);
    endpoint.set_refresh_token("canary-client", &refresh_secret);
    endpoint.set_refresh_prefix(&rotated_prefix);
    let mut server = Server::start_with(ServerOptions {
        extra_config: format!("log_format = {log_format:?}\n"),
        ..ServerOptions::default()
    });

    // Credentials arrive through the environment at start-up.
    server.create_datasource(&bearer_datasource("canary", &endpoint.token_url()));
    server.create_datasource(&basic_datasource("canary-basic"));
    let mut refreshing = bearer_datasource("canary-refresh", &endpoint.token_url());
    refreshing["auth"]["grant_type"] = json!("refresh_token");
    server.create_datasource(&refreshing);
    server.restart_with_env(env_vars(&[
        ("AUTHCFG_DS_CANARY_CLIENT_ID", "canary-client"),
        ("AUTHCFG_DS_CANARY_CLIENT_SECRET", &canary_secret),
        ("AUTHCFG_DS_CANARY_BASIC_CLIENT_ID", "basic-user"),
        ("AUTHCFG_DS_CANARY_BASIC_CLIENT_SECRET", &basic_secret),
        ("AUTHCFG_DS_CANARY_REFRESH_CLIENT_ID", "canary-client"),
        ("AUTHCFG_DS_CANARY_REFRESH_CLIENT_SECRET", &canary_secret),
        ("AUTHCFG_DS_CANARY_REFRESH_REFRESH_TOKEN", &refresh_secret),
    ]));

    // Headers, a forced refresh, and the diagnostics of a forced exchange.
    let issued = server.authorize("canary");
    assert_eq!(issued.status, 200, "authorization failed: {}", issued.body);
    assert_eq!(
        issued.json()["value"],
        json!(format!("Bearer {token_prefix}-1"))
    );
    let refreshed = server.call(
        "POST",
        "/v1/datasources/canary/authorization",
        Some(server.admin()),
        Some(&json!({"force_refresh": true, "min_valid_for": 60})),
    );
    assert_eq!(
        refreshed.json()["value"],
        json!(format!("Bearer {token_prefix}-2"))
    );
    let diagnostics = server.call(
        "POST",
        "/v1/datasources/canary/test",
        Some(server.admin()),
        None,
    );
    assert_eq!(diagnostics.status, 200, "test failed: {}", diagnostics.body);
    let basic = server.authorize("canary-basic");
    assert_eq!(
        basic.json()["value"],
        json!(basic_header("basic-user", &basic_secret))
    );

    // Two refresh_token grants: each rotates the refresh token, and the
    // second presents the first rotated one.
    for _ in 0..2 {
        let rotating = server.call(
            "POST",
            "/v1/datasources/canary-refresh/authorization",
            Some(server.admin()),
            Some(&json!({"force_refresh": true})),
        );
        assert_eq!(
            rotating.status, 200,
            "the refresh_token grant failed: {}",
            rotating.body
        );
    }
    assert!(
        endpoint.requests().iter().any(|request| request
            .param("refresh_token")
            .is_some_and(|token| token.starts_with(&rotated_prefix))),
        "the rotated refresh token was never presented"
    );

    // Credentials through the API, including a rejected value that carries
    // the canary and must not be echoed back.
    server.put_credentials("canary", "canary-client", &canary_secret);
    let rejected = server.put(
        "/v1/datasources/canary/credentials",
        &json!({"client_id": "canary-client", "client_secret": format!("{canary_secret}\n")}),
    );
    assert_eq!(
        rejected.status, 400,
        "a secret with a newline was accepted: {}",
        rejected.body
    );
    let unknown_field = server.put(
        "/v1/datasources/canary/credentials",
        &json!({"client_id": "canary-client", "client_secret": canary_secret, "extra": canary_secret}),
    );
    assert_eq!(unknown_field.status, 400);

    // An upstream failure, whose problem must not carry the secret either.
    endpoint.set_behaviour(Behaviour::Reject {
        status: 401,
        error: "invalid_client".to_owned(),
        description: "client authentication failed".to_owned(),
    });
    let failed = server.call(
        "POST",
        "/v1/datasources/canary/authorization",
        Some(server.admin()),
        Some(&json!({"force_refresh": true})),
    );
    assert_eq!(
        failed.status, 502,
        "an upstream rejection was not a 502: {}",
        failed.body
    );
    server.call(
        "POST",
        "/v1/datasources/canary/test",
        Some(server.admin()),
        None,
    );

    // Every read route, so that their bodies are scanned too.
    for path in [
        "/v1/datasources",
        "/v1/datasources/canary",
        "/v1/datasources/canary-basic",
        "/v1/datasources/canary-refresh",
        "/v1/audit",
        "/v1/audit?datasource=canary",
        "/metrics",
        "/openapi.json",
    ] {
        let reply = server.get(path);
        assert_eq!(reply.status, 200, "{path} failed: {}", reply.body);
    }
    assert!(endpoint.issued() >= 4);

    // The scan: response bodies and headers first.
    let basic_encoded = basic_header("basic-user", &basic_secret);
    let upstream_basic =
        base64::engine::general_purpose::STANDARD.encode(format!("canary-client:{canary_secret}"));
    let replies = server.replies();
    assert!(
        replies.len() >= 21,
        "only {} replies were recorded",
        replies.len()
    );
    for reply in &replies {
        let headers = format!("{:?}", reply.headers);
        let context = format!("{} {} ({})", reply.method, reply.path, reply.status);
        for secret in [
            &canary_secret,
            &refresh_secret,
            &rotated_prefix,
            &basic_secret,
            &upstream_basic,
        ] {
            assert!(
                !reply.body.contains(secret.as_str()),
                "{context} returned a secret in its body"
            );
            assert!(
                !headers.contains(secret.as_str()),
                "{context} returned a secret in a header"
            );
        }

        let is_header = reply.path.ends_with("/authorization") && reply.status == 200;
        if !is_header {
            assert!(
                !reply.body.contains(&token_prefix),
                "{context} returned an access token"
            );
            assert!(
                !reply.body.contains(&basic_encoded),
                "{context} returned a Basic header"
            );
        }
        assert!(
            !headers.contains(&token_prefix),
            "{context} returned an access token in a header"
        );
    }

    // Then every line the server and the command line wrote.
    let admin = server.admin().to_owned();
    server.terminate();
    let log = server.log();
    assert!(
        log.contains("TRACE"),
        "the log was not captured at trace level"
    );
    for (what, secret) in [
        ("client secret", canary_secret.as_str()),
        ("refresh token", refresh_secret.as_str()),
        ("rotated refresh token", rotated_prefix.as_str()),
        ("basic password", basic_secret.as_str()),
        ("access token", token_prefix.as_str()),
        ("basic header", basic_encoded.trim_start_matches("Basic ")),
        ("client_secret_basic header", upstream_basic.as_str()),
        ("admin API token", admin.as_str()),
    ] {
        assert!(!log.contains(secret), "the log contains the {what}");
    }

    // Last, the files of the data directory: the database and its journal
    // hold sealed values and token hashes only.
    for entry in std::fs::read_dir(server.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name == "admin.token" || name == "master.key" || path.is_dir() {
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        for (what, secret) in [
            ("client secret", canary_secret.as_str()),
            ("refresh token", refresh_secret.as_str()),
            ("rotated refresh token", rotated_prefix.as_str()),
            ("basic password", basic_secret.as_str()),
            ("access token", token_prefix.as_str()),
            ("admin API token", admin.as_str()),
        ] {
            let found = bytes
                .windows(secret.len())
                .any(|window| window == secret.as_bytes());
            assert!(!found, "{name} contains the {what} in plaintext");
        }
    }
}
