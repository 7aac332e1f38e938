//! Creates a store in a temporary directory, adds a data source with
//! credentials, and reads them back: the smallest complete use of the store.
//!
//! The master key comes from `AUTHCFG_EXAMPLE_PASSPHRASE`, or is generated
//! when the variable is unset. Run it with
//! `cargo run -p authcfg-store --example quickstart`.

use std::io::Write;

use authcfg_model::{AuthConfig, CreateDataSource, Credentials, GrantType, SecretString};
use authcfg_store::{MasterKey, Store, StoreOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let passphrase = match std::env::var("AUTHCFG_EXAMPLE_PASSPHRASE") {
        Ok(passphrase) => passphrase,
        Err(_) => uuid::Uuid::new_v4().to_string(),
    };
    let key = MasterKey::Passphrase(SecretString::new(passphrase));
    let directory = tempfile::tempdir()?;
    let path = directory.path().join("authcfg.db");
    let mut out = std::io::stdout().lock();

    // Argon2id runs once here, with the OWASP parameters by default.
    let store = Store::open(&path, &key, &StoreOptions::default())?;

    let datasource = store.create_datasource(&CreateDataSource {
        name: "crm-prod".to_owned(),
        description: Some("CRM production API".to_owned()),
        base_url: Some("https://api.example.com/v2".to_owned()),
        auth: AuthConfig::bearer(
            "https://login.example.com/oauth/token",
            GrantType::ClientCredentials,
        ),
    })?;
    writeln!(
        out,
        "created data source {} ({})",
        datasource.name, datasource.id
    )?;

    let summary = store.put_credentials(
        "crm-prod",
        &Credentials::new("reporting-service", "example-client-secret"),
    )?;
    writeln!(
        out,
        "stored credentials version {} with fingerprint {}",
        summary.version, summary.fingerprint
    )?;

    if let Some(unsealed) = store.unseal_credentials("crm-prod")? {
        // Debug output of credentials redacts every secret.
        writeln!(out, "unsealed: {:?}", unsealed.credentials)?;
    }

    let status = store.key_status()?;
    writeln!(out, "active data key {}", status.active_key_id)?;
    Ok(())
}
