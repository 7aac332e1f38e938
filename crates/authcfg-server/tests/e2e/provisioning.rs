//! Provisioning at start: a TOML file of data sources applied by `serve`,
//! together with credentials from the environment, and a file holding a
//! secret that stops the start with a message naming the key but not the value.

use std::fs;

use serde_json::json;

use crate::support::{basic_header, Server, ServerOptions, TokenEndpoint};

#[test]
fn provisioning_file_applied_at_start() {
    let endpoint = TokenEndpoint::start("provisioned-token");
    endpoint.add_client("crm-client", "crm-secret");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("provisioning.toml");
    fs::write(
        &file,
        format!(
            r#"
[[datasources]]
name = "crm-prod"
description = "provisioned"

[datasources.auth]
method = "bearer"
token_url = "{}"
grant_type = "client_credentials"
scope = "api.read"

[[datasources]]
name = "billing"
auth = {{ method = "basic" }}
"#,
            endpoint.token_url()
        ),
    )
    .unwrap();

    let server = Server::start_with(ServerOptions {
        extra_config: format!("provisioning_file = {:?}\n", file.to_str().unwrap()),
        env: vec![
            (
                "AUTHCFG_DS_CRM_PROD_CLIENT_ID".to_owned(),
                "crm-client".to_owned(),
            ),
            (
                "AUTHCFG_DS_CRM_PROD_CLIENT_SECRET".to_owned(),
                "crm-secret".to_owned(),
            ),
            (
                "AUTHCFG_DS_BILLING_CLIENT_ID".to_owned(),
                "billing-user".to_owned(),
            ),
            (
                "AUTHCFG_DS_BILLING_CLIENT_SECRET".to_owned(),
                "billing-password".to_owned(),
            ),
        ],
    });

    let crm = server.get("/v1/datasources/crm-prod");
    assert_eq!(
        crm.status, 200,
        "the provisioned data source is missing: {}",
        crm.body
    );
    assert_eq!(crm.json()["description"], json!("provisioned"));

    let bearer = server.authorize("crm-prod");
    assert_eq!(bearer.status, 200, "authorization failed: {}", bearer.body);
    assert_eq!(bearer.json()["value"], json!("Bearer provisioned-token-1"));
    let basic = server.authorize("billing");
    assert_eq!(
        basic.json()["value"],
        json!(basic_header("billing-user", "billing-password"))
    );
}

#[test]
fn secret_in_provisioning_file_stops_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("provisioning.toml");
    fs::write(
        &file,
        "[[datasources]]\nname = \"crm\"\nclient_secret = \"provisioned-secret-value\"\nauth = { method = \"basic\" }\n",
    )
    .unwrap();

    let (status, log) = Server::start_expecting_failure(ServerOptions {
        extra_config: format!("provisioning_file = {:?}\n", file.to_str().unwrap()),
        ..ServerOptions::default()
    });

    assert!(
        !status.success(),
        "the server started with a secret in the provisioning file"
    );
    assert!(
        log.contains("client_secret"),
        "the error does not name the key: {log}"
    );
    assert!(
        !log.contains("provisioned-secret-value"),
        "the log shows the secret"
    );
}
