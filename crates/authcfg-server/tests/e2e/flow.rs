//! The whole flow as an operator runs it: create data sources, provide
//! credentials through the environment, fetch Basic and Bearer headers, change
//! the credentials and get a new token.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::{
    basic_datasource, basic_header, bearer_datasource, env_vars, Server, ServerOptions,
    TokenEndpoint,
};

#[test]
fn whole_flow_basic_and_bearer() {
    let endpoint = TokenEndpoint::start("flow-token");
    endpoint.add_client("crm-client", "crm-secret-one");
    let mut server = Server::start();

    // Create one data source of each method; neither has credentials yet.
    server.create_datasource(&basic_datasource("billing"));
    server.create_datasource(&bearer_datasource("crm-prod", &endpoint.token_url()));
    let before = server.get("/v1/datasources/crm-prod").json();
    assert!(
        before["credentials"].is_null(),
        "a new data source has credentials: {before}"
    );

    // Restart with the credentials in the environment, one of them as a file
    // with a trailing newline, which the import strips.
    let secret_file = server.dir().join("billing-secret");
    fs::write(&secret_file, "billing-password\n").unwrap();
    let secret_file = secret_file.to_str().unwrap().to_owned();
    server.restart_with_env(env_vars(&[
        ("AUTHCFG_DS_BILLING_CLIENT_ID", "billing-user"),
        ("AUTHCFG_DS_BILLING_CLIENT_SECRET_FILE", &secret_file),
        ("AUTHCFG_DS_CRM_PROD_CLIENT_ID", "crm-client"),
        ("AUTHCFG_DS_CRM_PROD_CLIENT_SECRET", "crm-secret-one"),
    ]));

    // Basic: computed locally, no expiry, no token endpoint involved.
    let reply = server.authorize("billing");
    assert_eq!(
        reply.status, 200,
        "basic authorization failed: {}",
        reply.body
    );
    let basic = reply.json();
    assert_eq!(basic["header"], json!("Authorization"));
    assert_eq!(
        basic["value"],
        json!(basic_header("billing-user", "billing-password"))
    );
    assert!(
        basic["expires_at"].is_null(),
        "basic header with an expiry: {basic}"
    );
    assert_eq!(endpoint.issued(), 0);

    // Bearer: one token request, then the cached token.
    let reply = server.authorize("crm-prod");
    assert_eq!(
        reply.status, 200,
        "bearer authorization failed: {}",
        reply.body
    );
    let bearer = reply.json();
    assert_eq!(bearer["header"], json!("Authorization"));
    assert_eq!(bearer["value"], json!("Bearer flow-token-1"));
    assert_eq!(bearer["token_type"], json!("Bearer"));
    assert_eq!(bearer["scope"], json!("api.read"));
    let expires_at = bearer["expires_at"]
        .as_str()
        .expect("expires_at for a bearer token");
    assert!(
        time::OffsetDateTime::parse(expires_at, &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "expires_at {expires_at:?} is not RFC 3339"
    );

    assert_eq!(
        reply.header("cache-control"),
        Some("no-store"),
        "a response with a token may be cached"
    );

    let again = server.authorize("crm-prod").json();
    assert_eq!(
        again["value"],
        json!("Bearer flow-token-1"),
        "the cached token was not reused"
    );
    assert_eq!(endpoint.issued(), 1);

    let first_request = &endpoint.requests()[0];
    assert_eq!(first_request.path, "/oauth/token");
    assert_eq!(
        first_request.param("grant_type"),
        Some("client_credentials")
    );
    assert_eq!(first_request.param("scope"), Some("api.read"));

    // The summary shows what is stored, never the secret.
    let with_credentials = server.get("/v1/datasources/crm-prod");
    let summary = &with_credentials.json()["credentials"];
    assert_eq!(summary["client_id"], json!("crm-client"));
    let updated_at = summary["updated_at"]
        .as_str()
        .expect("updated_at in the summary");
    assert!(
        time::OffsetDateTime::parse(updated_at, &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "updated_at {updated_at:?} is not RFC 3339"
    );
    assert!(
        summary["secrets_set"]
            .as_array()
            .is_some_and(|set| set.contains(&json!("client_secret"))),
        "secrets_set lacks client_secret: {summary}"
    );
    assert!(!with_credentials.body.contains("crm-secret-one"));
    let old_fingerprint = summary["fingerprint"]
        .as_str()
        .expect("a fingerprint")
        .to_owned();
    let old_version = summary["version"].as_u64().expect("a credentials version");

    // New credentials invalidate the cached token at once.
    endpoint.add_client("crm-client", "crm-secret-two");
    server.put_credentials("crm-prod", "crm-client", "crm-secret-two");
    let renewed = server.authorize("crm-prod").json();
    assert_eq!(
        renewed["value"],
        json!("Bearer flow-token-2"),
        "a token of the old credentials was served"
    );
    assert_eq!(endpoint.issued(), 2);

    let summary = server.get("/v1/datasources/crm-prod").json()["credentials"].clone();
    assert_ne!(
        summary["fingerprint"],
        json!(old_fingerprint),
        "the fingerprint did not change with the secret"
    );
    assert!(
        summary["version"].as_u64().expect("a credentials version") > old_version,
        "the credentials version did not increase: {summary}"
    );
}

#[test]
fn import_env_command_is_idempotent() {
    let endpoint = TokenEndpoint::start("import-token");
    endpoint.add_client("import-client", "import-secret");
    let server = Server::start();
    server.create_datasource(&bearer_datasource("erp_main", &endpoint.token_url()));

    let vars = [
        ("AUTHCFG_DS_ERP_MAIN_CLIENT_ID", "import-client"),
        ("AUTHCFG_DS_ERP_MAIN_CLIENT_SECRET", "import-secret"),
        ("AUTHCFG_DS_NO_SUCH_SOURCE_CLIENT_ID", "orphan-client"),
    ];
    let first = server.cli(&["credentials", "import-env"], &vars, None);
    let first_output = format!(
        "{}{}",
        String::from_utf8_lossy(&first.stdout),
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(first.status.success(), "import-env failed: {first_output}");
    assert!(
        first_output.contains("AUTHCFG_DS_ERP_MAIN_CLIENT_SECRET"),
        "the report does not name the imported variable: {first_output}"
    );
    assert!(
        first_output.contains("AUTHCFG_DS_NO_SUCH_SOURCE_CLIENT_ID"),
        "the report does not name the unmatched variable: {first_output}"
    );
    assert!(
        !first_output.contains("import-secret"),
        "the report shows a secret: {first_output}"
    );

    let summary = server.get("/v1/datasources/erp_main").json()["credentials"].clone();
    let version = summary["version"]
        .as_u64()
        .expect("credentials after import-env");

    // A second import of the same values changes nothing.
    let second = server.cli(&["credentials", "import-env"], &vars, None);
    assert!(second.status.success());
    let summary = server.get("/v1/datasources/erp_main").json()["credentials"].clone();
    assert_eq!(
        summary["version"],
        json!(version),
        "an unchanged import changed the version"
    );

    let reply = server.authorize("erp_main");
    assert_eq!(
        reply.status, 200,
        "authorization after import-env failed: {}",
        reply.body
    );
    assert_eq!(reply.json()["value"], json!("Bearer import-token-1"));
}

#[test]
fn restart_with_same_env_keeps_version() {
    let mut server = Server::start();
    server.create_datasource(&basic_datasource("ledger"));
    let vars = env_vars(&[
        ("AUTHCFG_DS_LEDGER_CLIENT_ID", "ledger-user"),
        ("AUTHCFG_DS_LEDGER_CLIENT_SECRET", "ledger-password"),
    ]);

    server.restart_with_env(vars.clone());
    let first = server.get("/v1/datasources/ledger").json()["credentials"].clone();
    assert_eq!(first["client_id"], json!("ledger-user"));

    server.restart_with_env(vars);
    let second = server.get("/v1/datasources/ledger").json()["credentials"].clone();
    assert_eq!(
        second["version"], first["version"],
        "a restart re-imported unchanged values"
    );
    assert_eq!(second["fingerprint"], first["fingerprint"]);
    assert_eq!(second["updated_at"], first["updated_at"]);
}

#[test]
fn datasource_crud_with_etag_and_pagination() {
    let server = Server::start();

    let created = server.create_datasource(&basic_datasource("orders"));
    assert_eq!(created.header("location"), Some("/v1/datasources/orders"));
    let etag = created
        .header("etag")
        .expect("an ETag on create")
        .to_owned();
    let body = created.json();
    assert_eq!(body["name"], json!("orders"));
    assert_eq!(body["auth"], json!({"method": "basic"}));

    let fetched = server.get("/v1/datasources/orders");
    assert_eq!(fetched.status, 200);
    assert_eq!(
        fetched.header("etag"),
        Some(etag.as_str()),
        "GET and create disagree on the ETag"
    );

    // Merge patch: a value sets, absent keeps, null clears.
    let patched = server.patch(
        "/v1/datasources/orders",
        &json!({"base_url": "https://orders.example.com"}),
        Some(&etag),
    );
    assert_eq!(patched.status, 200, "patch failed: {}", patched.body);
    let new_etag = patched.header("etag").expect("an ETag on patch").to_owned();
    assert_ne!(
        new_etag, etag,
        "the ETag did not change with the data source"
    );
    let body = patched.json();
    assert_eq!(body["base_url"], json!("https://orders.example.com"));
    assert_eq!(body["description"], json!("e2e basic data source"));

    let cleared = server.patch(
        "/v1/datasources/orders",
        &json!({"description": null}),
        Some(&new_etag),
    );
    assert_eq!(cleared.status, 200, "patch failed: {}", cleared.body);
    assert!(cleared.json()["description"].is_null());
    assert_eq!(
        cleared.json()["base_url"],
        json!("https://orders.example.com")
    );

    // Pagination walks every data source once, in name order.
    for name in ["p-c", "p-a", "p-e", "p-b", "p-d"] {
        server.create_datasource(&basic_datasource(name));
    }
    let mut names = Vec::new();
    let mut path = "/v1/datasources?limit=2".to_owned();
    for _page in 0..10 {
        let page = server.get(&path);
        assert_eq!(page.status, 200, "list failed: {}", page.body);
        let body = page.json();
        let items = body["items"].as_array().expect("an items list");
        assert!(items.len() <= 2, "a page is longer than the limit: {body}");
        names.extend(
            items
                .iter()
                .map(|item| item["name"].as_str().unwrap().to_owned()),
        );
        match body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/datasources?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(names, ["orders", "p-a", "p-b", "p-c", "p-d", "p-e"]);

    // Delete removes the data source and its credentials.
    server.put_credentials("orders", "orders-user", "orders-password");
    let deleted = server.delete("/v1/datasources/orders");
    assert_eq!(deleted.status, 204, "delete failed: {}", deleted.body);
    assert_eq!(server.get("/v1/datasources/orders").status, 404);
}

#[test]
fn delete_credentials_then_authorization_conflicts() {
    let server = Server::start();
    server.create_datasource(&basic_datasource("hr-sync"));
    server.put_credentials("hr-sync", "hr-user", "hr-password");
    assert_eq!(server.authorize("hr-sync").status, 200);

    let deleted = server.delete("/v1/datasources/hr-sync/credentials");
    assert_eq!(
        deleted.status, 204,
        "delete credentials failed: {}",
        deleted.body
    );
    assert!(server.get("/v1/datasources/hr-sync").json()["credentials"].is_null());
    assert_eq!(
        server.authorize("hr-sync").status,
        409,
        "a header was issued without credentials"
    );
}

#[test]
fn audit_records_writes_and_headers() {
    let server = Server::start();
    server.create_datasource(&basic_datasource("audited"));
    server.put_credentials("audited", "audit-user", "audit-password");
    assert_eq!(server.authorize("audited").status, 200);

    // Audit events are written by a background queue, so give it a moment
    // to reach the store.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (reply, body) = loop {
        let reply = server.get("/v1/audit?datasource=audited");
        assert_eq!(reply.status, 200, "audit failed: {}", reply.body);
        let body = reply.json();
        let count = body["items"].as_array().map_or(0, Vec::len);
        if count >= 3 || Instant::now() >= deadline {
            break (reply, body);
        }
        thread::sleep(Duration::from_millis(100));
    };
    let events = body["items"].as_array().expect("an items list");
    assert!(
        events
            .iter()
            .all(|event| event["datasource"] == json!("audited")),
        "the datasource filter let other events through: {body}"
    );
    let actions: Vec<&str> = events
        .iter()
        .filter_map(|event| event["action"].as_str())
        .collect();
    assert!(
        actions.iter().any(|action| action.contains("create")),
        "no create event: {actions:?}"
    );
    assert!(
        actions.iter().any(|action| action.contains("credential")),
        "no credentials event: {actions:?}"
    );
    assert!(
        actions
            .iter()
            .any(|action| action.contains("authorization")),
        "no header event: {actions:?}"
    );
    assert!(!reply.body.contains("audit-password"));
}

#[test]
fn service_routes_answer_without_token() {
    let server = Server::start();

    for path in ["/healthz", "/readyz", "/openapi.json", "/metrics"] {
        let reply = server.call("GET", path, None, None);
        assert_eq!(
            reply.status, 200,
            "{path} returned {}: {}",
            reply.status, reply.body
        );

        // These routes do not check a token, so an invalid one is ignored.
        let with_invalid = server.call("GET", path, Some("not-an-api-token"), None);
        assert_eq!(
            with_invalid.status, 200,
            "{path} with an invalid token returned {}: {}",
            with_invalid.status, with_invalid.body
        );
    }

    let openapi = server.call("GET", "/openapi.json", None, None).json();
    assert!(openapi["openapi"]
        .as_str()
        .is_some_and(|version| version.starts_with('3')));
    for path in [
        "/v1/datasources",
        "/v1/datasources/{name}",
        "/v1/datasources/{name}/credentials",
        "/v1/datasources/{name}/authorization",
        "/v1/datasources/{name}/test",
        "/v1/audit",
    ] {
        assert!(
            openapi["paths"][path].is_object(),
            "openapi.json lacks {path}"
        );
    }

    let metrics = server.call("GET", "/metrics", None, None);
    assert!(
        metrics.content_type().starts_with("text/plain"),
        "metrics are not Prometheus text"
    );
    assert!(
        metrics.body.contains("# TYPE"),
        "metrics without a TYPE line: {}",
        metrics.body
    );
}

#[test]
fn request_id_is_echoed() {
    let server = Server::start();
    let reply = server.call_raw(
        "GET",
        "/healthz",
        None,
        &[("x-request-id", "e2e-request-42")],
        None,
    );
    assert_eq!(reply.header("x-request-id"), Some("e2e-request-42"));

    assert!(
        server.log().contains("e2e-request-42"),
        "no log line carries the request id"
    );

    let generated = server.call("GET", "/v1/datasources", Some(server.admin()), None);
    assert!(
        generated
            .header("x-request-id")
            .is_some_and(|id| !id.is_empty()),
        "no generated request id"
    );

    // An id that could forge log lines or flood them is replaced.
    let long = "x".repeat(500);
    for unsafe_id in ["two words", "quote\"inside", long.as_str()] {
        let reply = server.call_raw(
            "GET",
            "/healthz",
            None,
            &[("x-request-id", unsafe_id)],
            None,
        );
        let echoed = reply.header("x-request-id").unwrap_or_default();
        assert!(!echoed.is_empty(), "no request id for {unsafe_id:?}");
        assert_ne!(echoed, unsafe_id, "the unsafe request id was accepted");
    }
}

#[test]
fn rotated_refresh_token_survives_restart() {
    let endpoint = TokenEndpoint::start("rotating-token");
    endpoint.add_client("ledger-client", "ledger-secret");
    endpoint.set_refresh_token("ledger-client", "initial-refresh-token");
    let mut server = Server::start();
    let mut body = bearer_datasource("ledger", &endpoint.token_url());
    body["auth"]["grant_type"] = json!("refresh_token");
    server.create_datasource(&body);
    let vars = env_vars(&[
        ("AUTHCFG_DS_LEDGER_CLIENT_ID", "ledger-client"),
        ("AUTHCFG_DS_LEDGER_CLIENT_SECRET", "ledger-secret"),
        ("AUTHCFG_DS_LEDGER_REFRESH_TOKEN", "initial-refresh-token"),
    ]);

    // The first exchange rotates the refresh token, which the server stores.
    server.restart_with_env(vars.clone());
    let first = server.authorize("ledger");
    assert_eq!(
        first.status, 200,
        "the refresh_token grant failed: {}",
        first.body
    );
    assert_eq!(first.json()["value"], json!("Bearer rotating-token-1"));
    assert!(
        !first.body.contains("rotating-token-refresh"),
        "the response shows the refresh token"
    );

    // A restart with the same environment must keep the rotated token, or
    // the next exchange presents a refresh token that no longer works.
    server.restart_with_env(vars);
    let second = server.authorize("ledger");
    assert_eq!(
        second.status, 200,
        "the restart brought back a rotated refresh token: {}",
        second.body
    );
    assert_eq!(second.json()["value"], json!("Bearer rotating-token-2"));
    let last = endpoint.requests().last().unwrap().clone();
    assert_eq!(
        last.param("refresh_token"),
        Some("rotating-token-refresh-1")
    );
}

#[test]
fn kept_refresh_token_is_reported() {
    let endpoint = TokenEndpoint::start("kept-token");
    endpoint.add_client("ledger-client", "ledger-secret");
    endpoint.set_refresh_token("ledger-client", "initial-refresh-token");
    let mut server = Server::start();
    let mut body = bearer_datasource("ledger", &endpoint.token_url());
    body["auth"]["grant_type"] = json!("refresh_token");
    server.create_datasource(&body);
    let pairs = [
        ("AUTHCFG_DS_LEDGER_CLIENT_ID", "ledger-client"),
        ("AUTHCFG_DS_LEDGER_CLIENT_SECRET", "ledger-secret"),
        ("AUTHCFG_DS_LEDGER_REFRESH_TOKEN", "initial-refresh-token"),
    ];
    server.restart_with_env(env_vars(&pairs));

    // The exchange rotates the refresh token, so the stored one now differs
    // from the variable.
    let first = server.authorize("ledger");
    assert_eq!(first.status, 200, "the exchange failed: {}", first.body);
    let rotated = server.get("/v1/datasources/ledger").json()["credentials"].clone();
    let values = [
        "initial-refresh-token",
        "kept-token-refresh",
        "ledger-secret",
    ];

    // The command line prints the ignored variable and logs a warning.
    let output = server.cli(&["credentials", "import-env"], &pairs, None);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "import-env failed: {stderr}");
    assert!(
        stdout.lines().any(
            |line| line.starts_with("ignored, the stored refresh token was kept")
                && line.contains("AUTHCFG_DS_LEDGER_REFRESH_TOKEN")
        ),
        "the report does not name the ignored variable: {stdout}"
    );
    assert!(
        stderr
            .lines()
            .any(|line| line.contains("WARN") && line.contains("AUTHCFG_DS_LEDGER_REFRESH_TOKEN")),
        "no warning names the ignored variable: {stderr}"
    );

    // `serve` logs the same warning at start.
    let before = server.log().len();
    server.restart_with_env(env_vars(&pairs));
    let log = server.log()[before..].to_owned();
    assert!(
        log.lines().any(|line| line.contains("WARN")
            && line.contains("ignored refresh token variables")
            && line.contains("AUTHCFG_DS_LEDGER_REFRESH_TOKEN")),
        "serve does not warn about the ignored variable: {log}"
    );

    for value in values {
        assert!(
            !stdout.contains(value),
            "the report shows a value: {stdout}"
        );
        assert!(!stderr.contains(value), "the log shows a value: {stderr}");
        assert!(!log.contains(value), "the serve log shows a value");
    }
    let kept = server.get("/v1/datasources/ledger").json()["credentials"].clone();
    assert_eq!(
        kept["fingerprint"], rotated["fingerprint"],
        "the import replaced the rotated refresh token"
    );
}

#[test]
fn audit_pages_walk_every_event() {
    let server = Server::start();
    for name in ["au-a", "au-b", "au-c", "au-d", "au-e"] {
        server.create_datasource(&basic_datasource(name));
    }

    // Wait until the background queue has written the five creations.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let count = server.get("/v1/audit?limit=100").json()["items"]
            .as_array()
            .map_or(0, |items| {
                items
                    .iter()
                    .filter(|event| event["action"] == json!("datasource.create"))
                    .count()
            });
        if count >= 5 || Instant::now() >= deadline {
            break;
        }
        thread::sleep(Duration::from_millis(100));
    }

    let mut ids = Vec::new();
    let mut path = "/v1/audit?limit=2".to_owned();
    for _page in 0..50 {
        let reply = server.get(&path);
        assert_eq!(reply.status, 200, "audit failed: {}", reply.body);
        let body = reply.json();
        let items = body["items"].as_array().expect("an items list");
        assert!(items.len() <= 2, "a page is longer than the limit: {body}");
        ids.extend(
            items
                .iter()
                .map(|event| event["id"].as_i64().expect("an event id")),
        );
        match body["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/audit?limit=2&cursor={cursor}"),
            None => break,
        }
    }

    let all = server.get("/v1/audit?limit=100").json()["items"]
        .as_array()
        .expect("an items list")
        .iter()
        .map(|event| event["id"].as_i64().unwrap())
        .collect::<Vec<_>>();
    assert!(
        ids.len() >= 5,
        "the pages hold fewer events than were recorded: {ids:?}"
    );
    assert_eq!(ids, all, "paging and one large page disagree");
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(ids, sorted, "events are not newest first without repeats");
}

#[test]
fn if_match_star_and_allow_header() {
    let server = Server::start();
    server.create_datasource(&basic_datasource("star"));

    // RFC 9110 section 13.1.1: "*" matches any current representation.
    let patched = server.patch(
        "/v1/datasources/star",
        &json!({"description": "any version"}),
        Some("*"),
    );
    assert_eq!(
        patched.status, 200,
        "If-Match: * was refused: {}",
        patched.body
    );

    // RFC 9110 section 15.5.6: a 405 lists the allowed methods.
    let refused = server.call(
        "PUT",
        "/v1/datasources",
        Some(server.admin()),
        Some(&json!({})),
    );
    assert_eq!(refused.status, 405);
    let allow = refused.header("allow").unwrap_or_default().to_owned();
    assert!(
        allow.contains("GET") && allow.contains("POST"),
        "405 without a usable Allow header: {allow:?}"
    );
}

#[test]
fn audit_survives_immediate_shutdown() {
    let mut server = Server::start();
    server.create_datasource(&basic_datasource("last-words"));
    server.put_credentials("last-words", "user", "password");
    assert_eq!(server.authorize("last-words").status, 200);

    // SIGTERM right after the header: the queued audit event must be
    // written before the process exits.
    let status = server.terminate();
    assert!(status.success(), "the server exited with {status}");
    server.restart_with(ServerOptions::default());

    let reply = server.get("/v1/audit?datasource=last-words");
    let actions: Vec<String> = reply.json()["items"]
        .as_array()
        .expect("an items list")
        .iter()
        .filter_map(|event| event["action"].as_str().map(str::to_owned))
        .collect();
    assert!(
        actions
            .iter()
            .any(|action| action.contains("authorization")),
        "the header event was lost at shutdown: {actions:?}"
    );
}

/// A cache hit gets the same response whatever shape the request takes: no
/// body, `{}`, `null`, options, a body too large for the cache-hit shortcut,
/// or a chunked body that only the handler reads.
#[test]
fn cache_hit_same_for_every_body() {
    let server = Server::start();
    server.create_datasource(&basic_datasource("billing"));
    server.put_credentials("billing", "billing-user", "billing-password");
    let consumer = server.consumer_token(&["billing"]);
    let path = "/v1/datasources/billing/authorization";
    let first = server.authorize("billing");
    assert_eq!(first.status, 200, "{}", first.body);

    let padded = format!("{{{}}}", " ".repeat(2000));
    let bodies: &[(&str, Option<&str>)] = &[
        ("no body", None),
        ("empty object", Some("{}")),
        ("null", Some("null")),
        ("null between spaces", Some(" null\n")),
        (
            "options",
            Some(r#"{"min_valid_for": 0, "force_refresh": false}"#),
        ),
        ("body larger than the shortcut reads", Some(&padded)),
    ];
    for (case, body) in bodies {
        let body = body.map(|text| ("application/json", text.as_bytes().to_vec()));
        let reply = server.call_raw(
            "POST",
            path,
            Some(&consumer),
            &[("x-request-id", "shape-check")],
            body,
        );

        assert_eq!(reply.status, 200, "{case}: {}", reply.body);
        assert_eq!(reply.json(), first.json(), "{case}");
        assert_eq!(reply.header("x-request-id"), Some("shape-check"), "{case}");
        assert_eq!(reply.header("cache-control"), Some("no-store"), "{case}");
        assert_eq!(reply.content_type(), "application/json", "{case}");
    }

    // A body of unknown length comes chunked and goes to the handler.
    let chunked = reqwest::blocking::Body::new(std::io::Cursor::new(b"{}".to_vec()));
    let response = reqwest::blocking::Client::new()
        .post(format!("{}{path}", server.base_url()))
        .bearer_auth(&consumer)
        .header("content-type", "application/json")
        .body(chunked)
        .send()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().unwrap();
    assert_eq!(body, first.json());

    // A body that the shortcut reads but does not accept reaches the handler
    // whole, which names the field.
    let reply = server.call_raw(
        "POST",
        path,
        Some(&consumer),
        &[],
        Some(("application/json", br#"{"min_valid_for": "soon"}"#.to_vec())),
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert!(reply.body.contains("min_valid_for"), "{}", reply.body);

    let metrics = server.call("GET", "/metrics", None, None).body;
    assert!(
        metrics.lines().any(
            |line| line.contains(path.replace("billing", "{name}").as_str())
                && line.contains("200")
        ),
        "the hits are not counted under the route:\n{metrics}"
    );
}
