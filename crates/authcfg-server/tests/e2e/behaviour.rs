//! Service behaviour beyond single requests: cache invalidation by API and by
//! the command line, single flight under concurrency, token revocation,
//! metrics, first-start files, JSON logs and online backups.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::{
    assert_problem, bearer_datasource, Reply, Server, ServerOptions, TokenEndpoint,
};

/// Repeats `request` until `done` accepts its reply, for up to 10 s, because
/// changes made by another process reach the server within about a second.
fn eventually(mut request: impl FnMut() -> Reply, done: impl Fn(&Reply) -> bool) -> Reply {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reply = request();
        if done(&reply) || Instant::now() >= deadline {
            return reply;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn config_patch_invalidates_cached_token() {
    let endpoint = TokenEndpoint::start("patched-token");
    endpoint.add_client("crm-client", "crm-secret");
    let server = Server::start();
    let created = server.create_datasource(&bearer_datasource("crm-prod", &endpoint.token_url()));
    server.put_credentials("crm-prod", "crm-client", "crm-secret");
    assert_eq!(
        server.authorize("crm-prod").json()["value"],
        json!("Bearer patched-token-1")
    );

    let etag = created.header("etag").unwrap().to_owned();
    let patched = server.patch(
        "/v1/datasources/crm-prod",
        &json!({"auth": {"scope": "api.write"}}),
        Some(&etag),
    );
    assert_eq!(patched.status, 200, "patch failed: {}", patched.body);

    let renewed = server.authorize("crm-prod").json();
    assert_eq!(
        renewed["value"],
        json!("Bearer patched-token-2"),
        "a token of the old scope was served"
    );
    assert_eq!(renewed["scope"], json!("api.write"));
    assert_eq!(
        endpoint.requests().last().unwrap().param("scope"),
        Some("api.write")
    );
}

#[test]
fn cli_credentials_change_reaches_server() {
    let endpoint = TokenEndpoint::start("cli-token");
    endpoint.add_client("crm-client", "first-secret");
    endpoint.add_client("crm-client-2", "second-secret");
    let server = Server::start();
    server.create_datasource(&bearer_datasource("crm-prod", &endpoint.token_url()));
    server.put_credentials("crm-prod", "crm-client", "first-secret");
    assert_eq!(
        server.authorize("crm-prod").json()["value"],
        json!("Bearer cli-token-1")
    );

    let output = server.cli(
        &[
            "credentials",
            "set",
            "crm-prod",
            "--client-id",
            "crm-client-2",
        ],
        &[],
        Some("second-secret\n"),
    );
    assert!(
        output.status.success(),
        "credentials set failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let reply = eventually(
        || server.authorize("crm-prod"),
        |reply| reply.body.contains("cli-token-2"),
    );
    assert_eq!(
        reply.json()["value"],
        json!("Bearer cli-token-2"),
        "the server kept the old token"
    );
    let summary = server.get("/v1/datasources/crm-prod").json()["credentials"].clone();
    assert_eq!(summary["client_id"], json!("crm-client-2"));
}

#[test]
fn empty_stdin_secret_is_rejected() {
    let server = Server::start();
    server.create_datasource(&json!({"name": "crm-prod", "auth": {"method": "basic"}}));
    server.put_credentials("crm-prod", "crm-user", "crm-password");
    let before = server.get("/v1/datasources/crm-prod").json()["credentials"].clone();

    let output = server.cli(
        &[
            "credentials",
            "set",
            "crm-prod",
            "--client-id",
            "other-user",
        ],
        &[],
        Some(""),
    );

    assert!(!output.status.success(), "an empty secret was stored");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("standard input was empty"), "{stderr}");
    assert!(stderr.contains("--client-secret-file"), "{stderr}");
    let after = server.get("/v1/datasources/crm-prod").json()["credentials"].clone();
    assert_eq!(before, after, "the stored credentials changed");
}

#[test]
fn concurrent_cold_requests_share_one_exchange() {
    let endpoint = TokenEndpoint::start("shared-token");
    endpoint.add_client("crm-client", "crm-secret");
    let server = Server::start();
    server.create_datasource(&bearer_datasource("crm-prod", &endpoint.token_url()));
    server.put_credentials("crm-prod", "crm-client", "crm-secret");
    endpoint.set_behaviour(crate::support::Behaviour::Delay(Duration::from_millis(500)));

    let values: Vec<Value> = thread::scope(|scope| {
        let callers: Vec<_> = (0..16)
            .map(|_| scope.spawn(|| server.authorize("crm-prod")))
            .collect();
        callers
            .into_iter()
            .map(|caller| {
                let reply = caller.join().expect("a caller panicked");
                assert_eq!(
                    reply.status, 200,
                    "a concurrent caller failed: {}",
                    reply.body
                );
                reply.json()["value"].clone()
            })
            .collect()
    });

    assert_eq!(
        endpoint.issued(),
        1,
        "concurrent callers sent more than one token request"
    );
    assert!(
        values
            .iter()
            .all(|value| *value == json!("Bearer shared-token-1")),
        "{values:?}"
    );
}

#[test]
fn recreated_datasource_gets_no_old_token() {
    let endpoint = TokenEndpoint::start("old-token");
    endpoint.add_client("crm-client", "crm-secret");
    let server = Server::start();
    server.create_datasource(&bearer_datasource("crm-prod", &endpoint.token_url()));
    server.put_credentials("crm-prod", "crm-client", "crm-secret");
    assert_eq!(server.authorize("crm-prod").status, 200);

    assert_eq!(server.delete("/v1/datasources/crm-prod").status, 204);
    server.create_datasource(&bearer_datasource("crm-prod", &endpoint.token_url()));
    let reply = server.authorize("crm-prod");

    assert_problem(&reply, 409);
    assert!(
        !reply.body.contains("old-token"),
        "the new data source got the old one's token"
    );
}

#[test]
fn new_api_token_works_at_once() {
    let server = Server::start();
    server.create_datasource(&json!({"name": "crm-prod", "auth": {"method": "basic"}}));
    server.put_credentials("crm-prod", "crm-user", "crm-password");

    // Created by another process, so not yet in the server's token index.
    let consumer = server.consumer_token(&["crm-prod"]);
    let started = Instant::now();
    let authorized = server.call(
        "POST",
        "/v1/datasources/crm-prod/authorization",
        Some(&consumer),
        Some(&json!({})),
    );
    assert_eq!(authorized.status, 200, "{}", authorized.body);
    let read = server.call("GET", "/v1/datasources/crm-prod", Some(&consumer), None);
    assert_eq!(read.status, 200, "{}", read.body);

    let unknown = server.call(
        "GET",
        "/v1/datasources/crm-prod",
        Some("acfg_unknown"),
        None,
    );
    assert_problem(&unknown, 401);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the requests took {:?}",
        started.elapsed()
    );
}

#[test]
fn revoked_token_is_rejected() {
    let server = Server::start();
    server.create_datasource(&json!({"name": "crm-prod", "auth": {"method": "basic"}}));
    let consumer = server.consumer_token(&["crm-prod"]);
    assert_eq!(
        server
            .call("GET", "/v1/datasources/crm-prod", Some(&consumer), None)
            .status,
        200
    );

    let listed = server.cli(&["api-token", "list"], &[], None);
    let tokens: Value = serde_json::from_slice(&listed.stdout).expect("api-token list prints JSON");
    let id = tokens
        .as_array()
        .expect("a list of tokens")
        .iter()
        .find(|token| token["role"] == json!("consumer"))
        .and_then(|token| token["id"].as_str())
        .expect("the consumer token in the list")
        .to_owned();
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains(&consumer),
        "api-token list shows a token value"
    );
    let revoked = server.cli(&["api-token", "revoke", &id], &[], None);
    assert!(
        revoked.status.success(),
        "revoke failed: {}",
        String::from_utf8_lossy(&revoked.stderr)
    );

    let reply = eventually(
        || server.call("GET", "/v1/datasources/crm-prod", Some(&consumer), None),
        |reply| reply.status == 401,
    );
    assert_problem(&reply, 401);

    let again = server.cli(&["api-token", "revoke", &id], &[], None);
    assert!(again.status.success(), "a second revoke failed");
    let stdout = String::from_utf8_lossy(&again.stdout);
    assert!(stdout.contains("already revoked"), "{stdout}");
}

#[test]
fn metrics_count_requests_and_exchanges() {
    let endpoint = TokenEndpoint::start("metered-token");
    endpoint.add_client("crm-client", "crm-secret");
    let server = Server::start();
    server.create_datasource(&bearer_datasource("crm-prod", &endpoint.token_url()));
    server.put_credentials("crm-prod", "crm-client", "crm-secret");
    assert_eq!(server.authorize("crm-prod").status, 200);
    assert_eq!(server.authorize("crm-prod").status, 200);

    let metrics = server.call("GET", "/metrics", None, None).body;

    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter(|line| line.starts_with(name))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert!(
        value("authcfg_token_cache_hits_total") >= 1.0,
        "no cache hit counted:\n{metrics}"
    );
    assert!(
        value("authcfg_token_cache_misses_total") >= 1.0,
        "no cache miss counted:\n{metrics}"
    );
    assert!(
        value("authcfg_token_exchanges_total") >= 1.0,
        "no exchange counted:\n{metrics}"
    );
    assert!(
        value("authcfg_token_exchange_duration_seconds_count") >= 1.0,
        "no exchange latency recorded:\n{metrics}"
    );
    assert!(
        metrics.contains("le=\"+Inf\""),
        "the latency histogram lacks +Inf:\n{metrics}"
    );
    let authorization_ok = metrics.lines().any(|line| {
        line.starts_with("authcfg_http_requests_total")
            && line.contains("authorization")
            && line.contains("status=\"200\"")
    });
    assert!(
        authorization_ok,
        "no request counter for the authorization route:\n{metrics}"
    );
}

#[test]
fn first_start_writes_private_key_files() {
    let server = Server::start();

    let master_key =
        fs::read_to_string(server.data_dir().join("master.key")).expect("a generated master key");
    for file in ["master.key", "admin.token"] {
        let mode = fs::metadata(server.data_dir().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file} has mode {:o}", mode & 0o777);
    }

    let log = server.log();
    assert!(
        log.contains("admin.token"),
        "the log does not say where the admin token is"
    );
    assert!(
        log.contains("master.key"),
        "the log does not say where the master key is"
    );
    assert!(
        !log.contains(server.admin()),
        "the log shows the admin token"
    );
    assert!(
        !log.contains(master_key.trim()),
        "the log shows the master key"
    );
}

#[test]
fn json_log_lines_parse() {
    let server = Server::start_with(ServerOptions {
        extra_config: "log_format = \"json\"\n".to_owned(),
        ..ServerOptions::default()
    });
    let reply = server.call_raw(
        "GET",
        "/v1/datasources",
        Some(server.admin()),
        &[("x-request-id", "json-log-request")],
        None,
    );
    assert_eq!(reply.status, 200);

    let log = server.log();
    let lines: Vec<&str> = log.lines().filter(|line| !line.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the server wrote no log lines");
    for line in &lines {
        let parsed: Result<Value, _> = serde_json::from_str(line);
        assert!(
            parsed.is_ok_and(|value| value.is_object()),
            "a log line is not a JSON object: {line}"
        );
    }
    assert!(
        log.contains("json-log-request"),
        "no log line carries the request id"
    );
}

#[test]
fn store_log_lines_carry_request_id() {
    let server = Server::start_with(ServerOptions {
        extra_config: "log_format = \"json\"\n".to_owned(),
        ..ServerOptions::default()
    });
    let body = serde_json::json!({ "name": "billing", "auth": { "method": "basic" } });
    let reply = server.call_raw(
        "POST",
        "/v1/datasources",
        Some(server.admin()),
        &[("x-request-id", "create-billing-1")],
        Some(("application/json", body.to_string().into_bytes())),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);

    // The store writes its line on a blocking thread, inside the request's span.
    let log = server.log();
    let store_line = log
        .lines()
        .find(|line| line.contains("authcfg_store::datasources") && line.contains("billing"))
        .unwrap_or_else(|| panic!("no store log line for the create in:\n{log}"));
    assert!(
        store_line.contains("create-billing-1"),
        "the store's log line lacks the request id: {store_line}"
    );
}

#[test]
fn backup_while_serving() {
    let server = Server::start();
    server.create_datasource(&json!({"name": "crm-prod", "auth": {"method": "basic"}}));
    let destination = server.dir().join("backup.db");

    let output = server.cli(&["backup", destination.to_str().unwrap()], &[], None);

    assert!(
        output.status.success(),
        "backup failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        fs::metadata(&destination).is_ok_and(|meta| meta.len() > 0),
        "the backup file is empty"
    );
    assert_eq!(
        server.get("/v1/datasources/crm-prod").status,
        200,
        "the server stopped answering"
    );
}

#[test]
fn backup_error_names_each_cause_once() {
    let server = Server::start();
    let destination = server.dir().join("missing-dir").join("b.db");

    let output = server.cli(&["backup", destination.to_str().unwrap()], &[], None);
    let stderr = String::from_utf8_lossy(&output.stderr);

    assert!(!output.status.success(), "the backup succeeded: {stderr}");
    assert!(stderr.contains("cannot back up to"), "{stderr}");
    assert_eq!(
        stderr.matches("os error 2").count(),
        1,
        "the cause is repeated: {stderr}"
    );
}

#[test]
fn concurrent_patches_lose_no_update() {
    let server = Server::start();
    let created =
        server.create_datasource(&json!({"name": "contested", "auth": {"method": "basic"}}));
    let etag = created.header("etag").unwrap().to_owned();

    // Eight writers read the same version; exactly one may win.
    let statuses: Vec<u16> = thread::scope(|scope| {
        let writers: Vec<_> = (0..8)
            .map(|writer| {
                let etag = etag.clone();
                let server = &server;
                scope.spawn(move || {
                    server
                        .patch(
                            "/v1/datasources/contested",
                            &json!({"description": format!("writer {writer}")}),
                            Some(&etag),
                        )
                        .status
                })
            })
            .collect();
        writers
            .into_iter()
            .map(|writer| writer.join().unwrap())
            .collect()
    });

    assert_eq!(
        statuses.iter().filter(|status| **status == 200).count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|status| **status == 412).count(),
        7,
        "{statuses:?}"
    );
    let stored = server.get("/v1/datasources/contested").json();
    assert!(stored["description"]
        .as_str()
        .is_some_and(|text| text.starts_with("writer ")));
}

#[test]
fn metrics_labels_use_route_patterns() {
    let server = Server::start();
    server.create_datasource(&json!({"name": "secret-project-name", "auth": {"method": "basic"}}));
    assert_eq!(
        server.get("/v1/datasources/secret-project-name").status,
        200
    );
    assert_eq!(
        server.get("/v1/datasources/no-such-name-either").status,
        404
    );
    let probe = server.call("GET", "/probe-3f9a1c0b7d2e4a65", None, None);
    assert_eq!(probe.status, 404);

    let metrics = server.call("GET", "/metrics", None, None).body;

    // Raw paths as labels would leak data source names and let any caller
    // grow the number of series without bound.
    for raw in [
        "secret-project-name",
        "no-such-name-either",
        "probe-3f9a1c0b7d2e4a65",
    ] {
        assert!(
            !metrics.contains(raw),
            "a metric label contains the raw path {raw:?}:\n{metrics}"
        );
    }
}

#[test]
fn charset_parameter_is_accepted() {
    let server = Server::start();

    let reply = server.call_raw(
        "POST",
        "/v1/datasources",
        Some(server.admin()),
        &[],
        Some((
            "application/json; charset=utf-8",
            br#"{"name": "charset", "auth": {"method": "basic"}}"#.to_vec(),
        )),
    );

    assert_eq!(
        reply.status, 201,
        "a JSON body with a charset was rejected: {}",
        reply.body
    );
    let etag = reply.header("etag").unwrap_or_default();
    assert!(
        etag.starts_with('"') || etag.starts_with("W/\""),
        "ETag {etag:?} is not a quoted entity tag"
    );
}

#[test]
fn hanging_exchanges_leave_other_routes_responsive() {
    let endpoint = TokenEndpoint::start("never-issued");
    endpoint.add_client("crm-client", "crm-secret");
    endpoint.set_behaviour(crate::support::Behaviour::Hang);
    let mut server = Server::start_with(ServerOptions {
        extra_config: "token_request_timeout_secs = 3600\nshutdown_timeout_secs = 1\n".to_owned(),
        ..ServerOptions::default()
    });
    let names: Vec<String> = (0..8).map(|index| format!("hang-{index}")).collect();
    for name in &names {
        server.create_datasource(&bearer_datasource(name, &endpoint.token_url()));
        server.put_credentials(name, "crm-client", "crm-secret");
    }

    thread::scope(|scope| {
        // Eight exchanges, one per data source so that none share a flight,
        // wait on a token endpoint that never responds.
        for name in &names {
            let url = format!("{}/v1/datasources/{name}/authorization", server.base_url());
            let admin = server.admin().to_owned();
            scope.spawn(move || {
                let _ = reqwest::blocking::Client::new()
                    .post(url)
                    .bearer_auth(admin)
                    .send();
            });
        }
        endpoint.wait_for_requests(names.len());

        // Health checks and reads still get through, because the
        // waiting exchanges hold no worker thread.
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let health = client.get(format!("{}/healthz", server.base_url())).send();
        assert!(
            health.is_ok_and(|reply| reply.status().is_success()),
            "/healthz did not respond"
        );
        let list = client
            .get(format!("{}/v1/datasources", server.base_url()))
            .bearer_auth(server.admin())
            .send();
        assert!(
            list.is_ok_and(|reply| reply.status().is_success()),
            "the list did not respond"
        );

        server.signal("TERM");
        let _ = server.wait_exit();
    });
}
