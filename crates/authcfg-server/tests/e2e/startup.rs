//! Start-up checks and what surrounds them: an invalid configuration and
//! unusable credential variables stop the process with a message that names
//! the key or variable and never a secret value, a data source name that
//! would share its variables with another is refused when it is created, and
//! the log written to a pipe has no colour codes.

use serde_json::{json, Value};

use crate::support::{
    assert_problem, assert_validation_problem, bearer_datasource, env_vars, Server, ServerOptions,
};

#[test]
fn invalid_config_names_key_and_variable() {
    // Each case: a configuration line and a text the error must contain.
    let cases = [
        (
            "token_request_timeout_secs = \"soon\"",
            "AUTHCFG_TOKEN_REQUEST_TIMEOUT_SECS",
        ),
        ("body_limit_bytes = -1", "body_limit_bytes"),
        ("log_format = \"xml\"", "log_format"),
        ("bind_adress = \"127.0.0.1:9\"", "bind_adress"),
    ];
    for (line, expected) in cases {
        let (status, log) = Server::start_expecting_failure(ServerOptions {
            extra_config: format!("{line}\n"),
            ..ServerOptions::default()
        });
        assert!(!status.success(), "the server started with {line:?}");
        assert!(
            log.contains(expected),
            "the error for {line:?} does not name {expected:?}: {log}"
        );
    }
}

#[test]
fn small_body_limit_is_enforced() {
    let server = Server::start_with(ServerOptions {
        extra_config: "body_limit_bytes = 1024\n".to_owned(),
        ..ServerOptions::default()
    });
    let body = json!({
        "name": "limited",
        "description": "d".repeat(1000),
        "base_url": format!("https://api.example.com/{}", "p".repeat(200)),
        "auth": {"method": "basic"},
    });

    let reply = server.post("/v1/datasources", &body);

    assert_problem(&reply, 413);
    let detail = reply.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(detail.contains("limit of 1024 bytes"), "{detail}");
    assert!(detail.contains("AUTHCFG_BODY_LIMIT_BYTES"), "{detail}");
    assert_eq!(server.get("/v1/datasources/limited").status, 404);
}

#[test]
fn colliding_names_are_refused() {
    let mut server = Server::start();
    server.create_datasource(&json!({"name": "crm-prod", "auth": {"method": "basic"}}));

    // Both names would read AUTHCFG_DS_CRM_PROD_*, so the second is refused
    // when it is created instead of stopping the next start.
    let second = server.post(
        "/v1/datasources",
        &json!({"name": "crm_prod", "auth": {"method": "basic"}}),
    );

    let problem = assert_problem(&second, 409);
    assert_eq!(
        problem["type"],
        json!("https://authcfg.dev/problems/env-prefix-taken")
    );
    let detail = problem["detail"].as_str().unwrap_or_default();
    for part in [
        "\"crm_prod\"",
        "\"crm-prod\"",
        "AUTHCFG_DS_CRM_PROD_",
        "choose another name",
    ] {
        assert!(detail.contains(part), "the detail lacks {part}: {detail}");
    }
    assert_eq!(server.get("/v1/datasources/crm_prod").status, 404);
    let names: Vec<Value> = server.get("/v1/datasources").json()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["name"].clone())
        .collect();
    assert_eq!(names, [json!("crm-prod")]);

    server.restart_with(ServerOptions::default());
    assert_eq!(server.get("/v1/datasources/crm-prod").status, 200);
}

#[test]
fn cli_refuses_colliding_name() {
    let server = Server::start();
    server.create_datasource(&json!({"name": "crm-prod", "auth": {"method": "basic"}}));

    let output = server.cli(
        &["datasource", "create", "crm_prod", "--method", "basic"],
        &[],
        None,
    );

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "the CLI created a colliding data source"
    );
    for part in [
        "\"crm_prod\"",
        "\"crm-prod\"",
        "AUTHCFG_DS_CRM_PROD_",
        "choose another name",
    ] {
        assert!(stderr.contains(part), "the error lacks {part}: {stderr}");
    }
    let listed = server.cli(&["datasource", "list"], &[], None);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("crm-prod"), "{listed}");
    assert!(
        !listed.contains("crm_prod"),
        "the refused data source was stored: {listed}"
    );
}

#[test]
fn piped_log_has_no_colour() {
    // The harness sets NO_COLOR=1; an empty NO_COLOR counts as unset, so only
    // the missing terminal can keep colour codes out of these logs.
    let no_color = [("NO_COLOR", "")];
    for format in ["text", "json"] {
        let mut server = Server::start_with(ServerOptions {
            extra_config: format!("log_format = \"{format}\"\n"),
            env: env_vars(&no_color),
        });
        server.create_datasource(&json!({"name": "plain", "auth": {"method": "basic"}}));
        let output = server.cli(&["datasource", "list"], &no_color, None);
        assert!(output.status.success(), "datasource list failed");
        assert!(server.terminate().success());

        let log = server.log();
        assert!(
            log.contains("authcfg is listening"),
            "the {format} log lacks the start line: {log}"
        );
        let coloured: Vec<&str> = log.lines().filter(|line| line.contains('\u{1b}')).collect();
        assert!(
            coloured.is_empty(),
            "the {format} log has ANSI escape codes in {} lines, such as {:?}",
            coloured.len(),
            coloured.first()
        );
    }
}

#[test]
fn unreadable_secret_file_names_variable() {
    let server = Server::start();
    server.create_datasource(&json!({"name": "crm-prod", "auth": {"method": "basic"}}));
    let missing = server.dir().join("no-such-secret");

    let output = server.cli(
        &["credentials", "import-env"],
        &[
            ("AUTHCFG_DS_CRM_PROD_CLIENT_ID", "crm-client"),
            (
                "AUTHCFG_DS_CRM_PROD_CLIENT_SECRET_FILE",
                missing.to_str().unwrap(),
            ),
        ],
        None,
    );

    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "import-env succeeded with a missing file"
    );
    assert!(
        stderr.contains("AUTHCFG_DS_CRM_PROD_CLIENT_SECRET_FILE"),
        "the error does not name the variable: {stderr}"
    );
    assert!(server.get("/v1/datasources/crm-prod").json()["credentials"].is_null());
}

#[test]
fn insecure_token_url_needs_opt_in() {
    // Parsing only: the data source is created and never used, so no
    // connection to the remote host is ever attempted.
    let body = json!({
        "name": "lab",
        "auth": {
            "method": "bearer",
            "token_url": "http://auth.lab.example.com/token",
            "grant_type": "client_credentials",
        },
    });

    let strict = Server::start();
    let refused = strict.post("/v1/datasources", &body);
    let problem = assert_problem(&refused, 400);
    assert!(
        problem.to_string().contains("allow_insecure_token_url"),
        "the problem does not name the setting: {problem}"
    );

    let relaxed = Server::start_with(ServerOptions {
        extra_config: "allow_insecure_token_url = true\n".to_owned(),
        ..ServerOptions::default()
    });
    let created = relaxed.post("/v1/datasources", &body);
    assert_eq!(
        created.status, 201,
        "the opt-in did not allow plain http: {}",
        created.body
    );
}

#[test]
fn token_hosts_limit_where_token_requests_go() {
    // Parsing only: every URL outside loopback names a host that is never
    // connected to, because the policy rejects it before any request.
    let elsewhere = bearer_datasource("elsewhere", "https://login.example.com/oauth/token");
    let mut server = Server::start();
    server.create_datasource(&elsewhere);
    server.put_credentials("elsewhere", "client", "client-secret");

    server.restart_with(ServerOptions {
        extra_config: "token_hosts = [\"127.0.0.1\", \"*.okta.com\"]\n".to_owned(),
        ..ServerOptions::default()
    });
    let log = server.log();
    assert!(
        log.contains("token requests of this data source will be rejected"),
        "no start-up warning about the stored data source: {log}"
    );
    assert!(
        log.contains("token URLs may name only the listed hosts"),
        "the list is not logged at start: {log}"
    );

    // A stored data source that predates the list gets a 409 that names the
    // host, the setting and the fix, and the same from the diagnostics route.
    let rejected = server.authorize("elsewhere");
    let problem = assert_problem(&rejected, 409);
    let detail = problem["detail"].as_str().unwrap_or_default();
    for expected in [
        "\"login.example.com\"",
        "AUTHCFG_TOKEN_HOSTS",
        "PATCH /v1/datasources/elsewhere",
    ] {
        assert!(detail.contains(expected), "{expected} is not in {detail:?}");
    }
    assert_problem(
        &server.post("/v1/datasources/elsewhere/test", &json!({})),
        409,
    );

    // A consumer learns whom to ask, not the server's settings.
    let consumer = server.consumer_token(&["elsewhere"]);
    let rejected = server.call(
        "POST",
        "/v1/datasources/elsewhere/authorization",
        Some(&consumer),
        Some(&json!({})),
    );
    let problem = assert_problem(&rejected, 409);
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("ask an administrator"), "{detail:?}");
    assert!(!detail.contains("login.example.com"), "{detail:?}");
    assert!(!detail.contains("okta"), "{detail:?}");

    // The command line applies the same list before it sends anything.
    let output = server.cli(&["token", "--datasource", "elsewhere"], &[], None);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "authcfg token ignored token_hosts"
    );
    assert!(stderr.contains("token_hosts does not list"), "{stderr}");

    // New and changed token URLs must name a listed host.
    let rejected = server.post(
        "/v1/datasources",
        &bearer_datasource("other", "https://login.example.com/oauth/token"),
    );
    let problem = assert_validation_problem(&rejected, "/auth/token_url");
    assert!(problem.to_string().contains("token_hosts"), "{problem}");
    assert_eq!(server.get("/v1/datasources/other").status, 404);
    let created = server.post(
        "/v1/datasources",
        &bearer_datasource("okta", "https://dev-1.okta.com/oauth2/v1/token"),
    );
    assert_eq!(created.status, 201, "{}", created.body);

    // Pointing the old one at a listed host is accepted and stored.
    let fixed = server.patch(
        "/v1/datasources/elsewhere",
        &json!({"auth": {"token_url": "http://127.0.0.1:9/token"}}),
        None,
    );
    assert_eq!(fixed.status, 200, "{}", fixed.body);
}

#[test]
fn bad_token_hosts_stop_the_start() {
    let (status, log) = Server::start_expecting_failure(ServerOptions {
        extra_config: "token_hosts = [\"https://login.example.com/token\"]\n".to_owned(),
        ..ServerOptions::default()
    });

    assert!(!status.success());
    assert!(log.contains("AUTHCFG_TOKEN_HOSTS"), "{log}");
    assert!(log.contains("is a URL, not a host"), "{log}");
}

#[test]
fn cli_datasource_create_reaches_server() {
    let server = Server::start();

    let output = server.cli(
        &[
            "datasource",
            "create",
            "from-cli",
            "--method",
            "basic",
            "--description",
            "made by the CLI",
        ],
        &[],
        None,
    );
    assert!(
        output.status.success(),
        "datasource create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let refused = server.cli(
        &[
            "datasource",
            "create",
            "remote-http",
            "--method",
            "bearer",
            "--token-url",
            "http://login.example.com/token",
            "--grant-type",
            "client-credentials",
        ],
        &[],
        None,
    );
    let refusal = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "the CLI accepted plain http to a remote host"
    );
    assert!(
        refusal.contains("allow_insecure_token_url"),
        "the CLI failed for another reason: {refusal}"
    );

    // The server notices writes of another process within about a second.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let reply = loop {
        let reply = server.get("/v1/datasources/from-cli");
        if reply.status == 200 || std::time::Instant::now() >= deadline {
            break reply;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert_eq!(
        reply.status, 200,
        "the server never saw the data source: {}",
        reply.body
    );
    assert_eq!(reply.json()["description"], json!("made by the CLI"));
    assert_eq!(server.get("/v1/datasources/remote-http").status, 404);
}

#[test]
fn wrong_master_key_refuses_start() {
    let right = env_vars(&[("AUTHCFG_MASTER_KEY", "correct horse battery staple e2e")]);
    let wrong = env_vars(&[("AUTHCFG_MASTER_KEY", "incorrect horse battery staple e2e")]);
    let mut server = Server::start_with(ServerOptions {
        env: right.clone(),
        ..ServerOptions::default()
    });
    server.create_datasource(&json!({"name": "kept", "auth": {"method": "basic"}}));
    assert!(
        !server.data_dir().join("master.key").exists(),
        "a key file was generated although a passphrase is configured"
    );
    let status = server.terminate();
    assert!(status.success());
    let database = server.data_dir().join("authcfg.db");
    let before = std::fs::read(&database).expect("the database file");

    let (status, log) = server.restart_expecting_failure(ServerOptions {
        env: wrong,
        ..ServerOptions::default()
    });

    assert!(
        !status.success(),
        "the server started with a wrong master key"
    );
    assert!(
        log.contains("master key"),
        "the error does not say what to check: {log}"
    );
    assert!(!log.contains("horse battery"), "the log shows a passphrase");
    let after = std::fs::read(&database).expect("the database file");
    assert!(before == after, "a refused start changed the database file");

    server.restart_with(ServerOptions {
        env: right,
        ..ServerOptions::default()
    });
    assert_eq!(server.get("/v1/datasources/kept").status, 200);
}

#[test]
fn invalid_env_credentials_stop_start() {
    let mut server = Server::start();
    server.create_datasource(&json!({"name": "crm-prod", "auth": {"method": "basic"}}));

    let (status, log) = server.restart_expecting_failure(ServerOptions {
        env: env_vars(&[
            ("AUTHCFG_DS_CRM_PROD_CLIENT_ID", "crm-client"),
            ("AUTHCFG_DS_CRM_PROD_CLIENT_SECRET", "pasted-secret-value\t"),
        ]),
        ..ServerOptions::default()
    });

    assert!(
        !status.success(),
        "the server started with an invalid secret variable"
    );
    assert!(
        log.contains("AUTHCFG_DS_CRM_PROD_CLIENT_SECRET"),
        "the error does not name the variable: {log}"
    );
    assert!(
        !log.contains("pasted-secret-value"),
        "the log shows the value"
    );
}
