//! Helpers shared by the integration tests: a fresh store in a temporary
//! directory with cheap Argon2id parameters, and sample requests.

#![allow(dead_code, reason = "each test binary uses a different subset")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::path::{Path, PathBuf};

use authcfg_model::{AuthConfig, CreateDataSource, Credentials, GrantType, SecretString};
use authcfg_store::{Argon2Params, MasterKey, Store, StoreOptions};
use tempfile::TempDir;

/// Argon2id parameters that keep tests fast; production uses the defaults.
pub(crate) const FAST_ARGON2: Argon2Params = Argon2Params {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

/// Store options with cheap key derivation.
pub(crate) fn options() -> StoreOptions {
    StoreOptions {
        argon2: FAST_ARGON2,
        ..StoreOptions::default()
    }
}

/// Returns a passphrase master key.
pub(crate) fn passphrase(text: &str) -> MasterKey {
    MasterKey::Passphrase(SecretString::new(text))
}

/// A store in its own temporary directory, removed when dropped.
pub(crate) struct TestStore {
    pub(crate) store: Store,
    pub(crate) path: PathBuf,
    pub(crate) directory: TempDir,
}

impl TestStore {
    /// Creates a new store with the passphrase `correct horse`.
    pub(crate) fn new() -> Self {
        Self::with_options(&options())
    }

    /// Creates a new store with the passphrase `correct horse` and `options`.
    pub(crate) fn with_options(options: &StoreOptions) -> Self {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("store.db");
        let store = Store::open(&path, &passphrase("correct horse"), options).unwrap();
        Self {
            store,
            path,
            directory,
        }
    }

    /// Opens a raw SQLite connection to the store's file.
    pub(crate) fn raw(&self) -> rusqlite::Connection {
        raw(&self.path)
    }
}

/// Opens a raw SQLite connection, as an attacker or a broken tool would.
pub(crate) fn raw(path: &Path) -> rusqlite::Connection {
    let connection = rusqlite::Connection::open(path).unwrap();
    connection
        .busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    connection
}

/// Returns a valid request for a bearer data source named `name`.
pub(crate) fn bearer(name: &str) -> CreateDataSource {
    CreateDataSource {
        name: name.to_owned(),
        description: None,
        base_url: Some("https://api.example.com/v2".to_owned()),
        auth: AuthConfig::bearer(
            "https://login.example.com/oauth/token",
            GrantType::RefreshToken,
        ),
    }
}

/// Credentials with every secret field set.
pub(crate) fn full_credentials(secret: &str, password: &str, refresh_token: &str) -> Credentials {
    Credentials {
        client_id: "reporting".to_owned(),
        client_secret: SecretString::new(secret),
        username: Some("robot".to_owned()),
        password: Some(SecretString::new(password)),
        refresh_token: Some(SecretString::new(refresh_token)),
    }
}

/// Returns the SHA-256 of a file's bytes, to prove it did not change.
pub(crate) fn file_digest(path: &Path) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(std::fs::read(path).unwrap()).to_vec()
}

/// Returns the sorted names of the entries of `directory`, to prove that a
/// call created or removed no file.
pub(crate) fn listing(directory: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}
