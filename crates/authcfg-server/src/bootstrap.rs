//! First start and opening the store: the data directory, the generated
//! master key and the first admin API token.
//!
//! Generated secrets go to files with mode 0600 inside the data directory.
//! The log names the files, never their contents.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{bail, Context as _};
use authcfg_model::{AuditOutcome, Role, SecretString};
use authcfg_store::{MasterKey, Store, StoreOptions};
use base64::Engine as _;
use rand::RngCore as _;

use crate::audit;
use crate::config::{MasterKeySource, Settings};

/// Label of the admin API token created at first start.
pub const FIRST_ADMIN_TOKEN_LABEL: &str = "first admin (generated at start)";

/// Creates the data directory with mode 0700 when it does not exist.
///
/// # Errors
///
/// Returns the I/O error with the path.
pub fn ensure_data_dir(settings: &Settings) -> anyhow::Result<()> {
    let dir = &settings.data_dir;
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create data_dir {} (AUTHCFG_DATA_DIR): check the path and its permissions",
            dir.display()
        )
    })?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict the permissions of {}", dir.display()))?;
    tracing::info!(data_dir = %dir.display(), "created the data directory");
    Ok(())
}

/// Writes `contents` to a new file with mode 0600; fails when the file exists.
fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Returns the master key of the configuration, generating
/// `<data_dir>/master.key` when no key is configured and no store exists yet.
///
/// # Errors
///
/// Returns an error when the store exists but its generated key file is
/// missing (a new key could never open it), or when the key file cannot be written.
pub fn master_key(settings: &Settings) -> anyhow::Result<MasterKey> {
    match &settings.master_key {
        MasterKeySource::Passphrase(passphrase) => {
            Ok(MasterKey::Passphrase(passphrase.duplicate()))
        }
        MasterKeySource::File(path) => {
            warn_if_readable_by_others(path);
            Ok(MasterKey::KeyFile(path.clone()))
        }
        MasterKeySource::Generated(path) => {
            if path.exists() {
                warn_if_readable_by_others(path);
                return Ok(MasterKey::KeyFile(path.clone()));
            }
            if settings.database_path().exists() {
                bail!(
                    "the store {} exists but its master key file {} is missing: restore the key file from your backup, or set master_key_file (AUTHCFG_MASTER_KEY_FILE) or master_key (AUTHCFG_MASTER_KEY) to the key the store was created with",
                    settings.database_path().display(),
                    path.display()
                );
            }

            generate_key_file(path)?;
            tracing::warn!(
                path = %path.display(),
                "generated a new master key: back it up now and move it to a secret manager, then point master_key_file (AUTHCFG_MASTER_KEY_FILE) at it; without it the stored credentials cannot be opened"
            );
            Ok(MasterKey::KeyFile(path.clone()))
        }
    }
}

/// Writes a new random 256-bit key, base64url-encoded, to a new file with mode 0600.
///
/// # Errors
///
/// Returns an error when the file exists or cannot be written.
pub fn generate_key_file(path: &Path) -> anyhow::Result<()> {
    let mut bytes = [0_u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let encoded = SecretString::new(format!(
        "{}\n",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ));
    bytes.fill(0);
    write_private_file(path, encoded.expose_secret().as_bytes()).with_context(|| {
        format!(
            "cannot write a new key to {} (it must not exist yet)",
            path.display()
        )
    })
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(metadata) = fs::metadata(path) {
        if metadata.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                "the master key file is readable by other users: run `chmod 600` on it"
            );
        }
    }
}

/// Opens (or creates) the store of the configuration.
///
/// # Errors
///
/// Returns an error when the data directory, the key or the database fails.
pub fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    ensure_data_dir(settings)?;
    let key = master_key(settings)?;
    let path = settings.database_path();
    Store::open(&path, &key, &StoreOptions::default())
        .with_context(|| format!("cannot open the store {}", path.display()))
}

/// Opens the existing store of the configuration for a CLI command other
/// than `serve`; never creates a data directory, master key or database.
///
/// Only `serve` sets up a new data directory, so that a command run with a
/// forgotten or mistyped `data_dir` fails instead of working on a new, empty
/// store (a backup of which would look fine and hold nothing).
///
/// # Errors
///
/// Returns an error naming the data directory when it contains no store, or
/// when the key or the database fails.
pub fn open_existing_store(settings: &Settings) -> anyhow::Result<Store> {
    let path = settings.database_path();
    if !path.is_file() {
        bail!(
            "no authcfg store in data_dir {} (AUTHCFG_DATA_DIR): {} does not exist; point data_dir (AUTHCFG_DATA_DIR or --config) at the existing data directory, or run `authcfg serve` once to create a new one",
            settings.data_dir.display(),
            path.display()
        );
    }
    if let MasterKeySource::Generated(key_path) = &settings.master_key {
        if !key_path.exists() {
            bail!(
                "the store {} exists but its master key file {} is missing: restore the key file from your backup, or set master_key_file (AUTHCFG_MASTER_KEY_FILE) or master_key (AUTHCFG_MASTER_KEY) to the key the store was created with",
                path.display(),
                key_path.display()
            );
        }
    }
    open_store(settings)
}

/// Creates the first admin API token when the store has no active admin
/// token, and writes it to `<data_dir>/admin.token` with mode 0600.
///
/// # Errors
///
/// Returns the store's error, or the I/O error of writing the file.
pub fn ensure_admin_token(settings: &Settings, store: &Store) -> anyhow::Result<()> {
    let tokens = store.list_api_tokens()?;
    let has_admin = tokens
        .iter()
        .any(|token| token.role == Role::Admin && token.revoked_at.is_none());
    if has_admin {
        return Ok(());
    }

    let (info, value) = store.create_api_token(FIRST_ADMIN_TOKEN_LABEL, Role::Admin, &[])?;
    let path = settings.admin_token_path();
    if path.exists() {
        // A leftover file contains a token that the store no longer has; replace it.
        fs::remove_file(&path)
            .with_context(|| format!("cannot replace the stale {}", path.display()))?;
    }
    let contents = SecretString::new(format!("{}\n", value.expose_secret()));
    write_private_file(&path, contents.expose_secret().as_bytes())
        .with_context(|| format!("cannot write the admin API token to {}", path.display()))?;

    store.record_audit(&audit::event(
        "system",
        "api_token.create",
        None,
        AuditOutcome::Success,
        Some(serde_json::json!({ "token_id": info.id, "role": "admin", "label": info.label })),
    ))?;
    tracing::warn!(
        path = %path.display(),
        token_id = %info.id,
        "created the first admin API token: read it from the file, store it in a secret manager and delete the file"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_for(data_dir: &Path) -> Settings {
        let config = data_dir
            .parent()
            .unwrap_or(data_dir)
            .join("authcfg-test.toml");
        fs::write(&config, "").unwrap();
        let vars = vec![(
            "AUTHCFG_DATA_DIR".to_owned(),
            data_dir.display().to_string(),
        )];
        Settings::load_from(Some(&config), &vars).unwrap()
    }

    #[test]
    fn cli_commands_do_not_create_a_store() {
        let root = tempfile::tempdir().unwrap();
        // (case, data directory that exists beforehand or not)
        let cases = [("missing directory", false), ("empty directory", true)];

        for (case, exists) in cases {
            let data_dir = root.path().join(case.replace(' ', "-"));
            if exists {
                fs::create_dir(&data_dir).unwrap();
            }
            let settings = settings_for(&data_dir);

            let message = open_existing_store(&settings).unwrap_err().to_string();

            assert!(
                message.contains(&data_dir.display().to_string()),
                "{case}: {message}"
            );
            assert!(message.contains("AUTHCFG_DATA_DIR"), "{case}: {message}");
            assert!(message.contains("authcfg serve"), "{case}: {message}");
            assert_eq!(data_dir.exists(), exists, "{case}: the directory changed");
            assert!(
                !data_dir.join("master.key").exists(),
                "{case}: a key was generated"
            );
            assert!(
                !settings.database_path().exists(),
                "{case}: a store was created"
            );
        }
    }

    #[test]
    fn cli_commands_open_a_store_made_by_serve() {
        let root = tempfile::tempdir().unwrap();
        let data_dir = root.path().join("data");
        let settings = settings_for(&data_dir);
        drop(open_store(&settings).unwrap());

        let store = open_existing_store(&settings);

        assert!(store.is_ok(), "{:?}", store.err());
    }
}
