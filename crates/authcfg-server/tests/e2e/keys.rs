//! Key rotation and backups made with the command line while `serve` runs,
//! which the service must survive without a restart where it can.

use std::os::unix::fs::PermissionsExt as _;

use serde_json::json;

use crate::support::{bearer_datasource, Server, ServerOptions, TokenEndpoint};

fn assert_success(output: &std::process::Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn data_key_rotation_while_serving() {
    let endpoint = TokenEndpoint::start("rotation-token");
    endpoint.add_client("crm-client", "crm-secret");
    let server = Server::start();
    server.create_datasource(&bearer_datasource("crm-prod", &endpoint.token_url()));
    server.put_credentials("crm-prod", "crm-client", "crm-secret");
    assert_eq!(server.authorize("crm-prod").status, 200);

    let output = server.cli(&["keys", "rotate-data-key"], &[], None);
    assert_success(&output, "keys rotate-data-key");

    // A forced refresh opens the re-encrypted credentials.
    let refreshed = server.call(
        "POST",
        "/v1/datasources/crm-prod/authorization",
        Some(server.admin()),
        Some(&json!({"force_refresh": true})),
    );
    assert_eq!(
        refreshed.status, 200,
        "credentials sealed by the new data key failed to open: {}",
        refreshed.body
    );
    assert_eq!(refreshed.json()["value"], json!("Bearer rotation-token-2"));

    // Credentials written by the server after the rotation open in the
    // command line, and the other way round.
    endpoint.add_client("crm-client", "crm-secret-2");
    server.put_credentials("crm-prod", "crm-client", "crm-secret-2");
    let status = server.cli(&["keys", "status"], &[], None);
    assert_success(&status, "keys status");
    let token = server.cli(&["token", "--datasource", "crm-prod"], &[], None);
    assert_success(&token, "token after the rotation");
    assert!(String::from_utf8_lossy(&token.stdout).contains("Bearer rotation-token-3"));
}

#[test]
fn master_key_rotation_then_restart() {
    let mut server = Server::start();
    server.create_datasource(&json!({"name": "billing", "auth": {"method": "basic"}}));
    server.put_credentials("billing", "billing-user", "billing-password");
    let new_key = server.data_dir().join("master-2.key");

    let output = server.cli(
        &[
            "keys",
            "rotate-master",
            "--new-key-file",
            new_key.to_str().unwrap(),
            "--generate",
        ],
        &[],
        None,
    );
    assert_success(&output, "keys rotate-master");
    let mode = std::fs::metadata(&new_key).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o777,
        0o600,
        "the generated key file has mode {:o}",
        mode & 0o777
    );

    // The running server keeps working with the data key it holds.
    assert_eq!(server.authorize("billing").status, 200);

    // After a restart only the new key opens the store.
    server.restart_with(ServerOptions {
        extra_config: format!("master_key_file = {:?}\n", new_key.to_str().unwrap()),
        ..ServerOptions::default()
    });
    let reply = server.authorize("billing");
    assert_eq!(
        reply.status, 200,
        "the store did not open with the new master key: {}",
        reply.body
    );
}

#[test]
fn backup_restores_into_new_server() {
    let server = Server::start();
    server.create_datasource(&json!({"name": "billing", "auth": {"method": "basic"}}));
    server.put_credentials("billing", "billing-user", "billing-password");
    let backup = server.dir().join("backup.db");
    assert_success(
        &server.cli(&["backup", backup.to_str().unwrap()], &[], None),
        "backup",
    );
    let expected = server.authorize("billing").json()["value"].clone();

    // A new server starts from the backup and the same master key.
    let restored = Server::start_with_files(
        ServerOptions::default(),
        &[
            ("authcfg.db", &backup),
            ("master.key", &server.data_dir().join("master.key")),
            ("admin.token", &server.data_dir().join("admin.token")),
        ],
    );

    let reply = restored.authorize("billing");
    assert_eq!(
        reply.status, 200,
        "the restored server cannot issue the header: {}",
        reply.body
    );
    assert_eq!(reply.json()["value"], expected);
}
