//! Start-up checks: an invalid configuration, colliding data source names and
//! unusable credential variables stop the process with a message that names
//! the key or variable and never a secret value.

use serde_json::json;

use crate::support::{assert_problem, env_vars, Server, ServerOptions};

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
    assert_eq!(server.get("/v1/datasources/limited").status, 404);
}

#[test]
fn colliding_names_are_refused() {
    let mut server = Server::start();
    server.create_datasource(&json!({"name": "crm-prod", "auth": {"method": "basic"}}));

    // Either the API refuses the second name, or the next start refuses the
    // pair; both names would read AUTHCFG_DS_CRM_PROD_* otherwise.
    let second = server.post(
        "/v1/datasources",
        &json!({"name": "crm_prod", "auth": {"method": "basic"}}),
    );
    if second.status != 201 {
        let problem = assert_problem(&second, second.status);
        assert!(
            matches!(second.status, 400 | 409),
            "unexpected status: {problem}"
        );
        assert!(
            problem.to_string().contains("AUTHCFG_DS_CRM_PROD_"),
            "the problem does not name the prefix: {problem}"
        );
        return;
    }

    let (status, log) = server.restart_expecting_failure(ServerOptions::default());
    assert!(
        !status.success(),
        "the server started with colliding data source names"
    );
    assert!(
        log.contains("crm-prod") && log.contains("crm_prod"),
        "the error does not name both data sources: {log}"
    );
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
