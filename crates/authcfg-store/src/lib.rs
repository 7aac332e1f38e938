//! SQLite storage of data sources, sealed credentials, API tokens and the audit log.
//!
//! A [`Store`] is one SQLite file. Every secret in it (client secrets,
//! passwords, refresh tokens) is sealed with XChaCha20-Poly1305 under a random
//! data key; the data key is wrapped by a key-encryption key that Argon2id
//! derives from the operator's master key once, when the store is opened.
//!
//! All calls are synchronous and may block on disk I/O and SQLite locks. Async
//! callers must run them off the executor, for example with
//! `tokio::task::spawn_blocking` or `actix_web::web::block`. A [`Store`] is
//! cheap to clone and can be shared between threads: it keeps a small pool of
//! connections so that concurrent readers do not wait for each other.

mod error;
mod options;
mod types;

use std::path::Path;
use std::sync::Arc;

use authcfg_model::{
    ApiTokenInfo, AuditEvent, CreateDataSource, Credentials, CredentialsSummary, DataSource,
    DataSourceId, Role, SecretString,
};
use time::OffsetDateTime;

pub use error::Error;
pub use options::{Argon2Params, MasterKey, StoreOptions};
pub use types::{
    DataKeyState, DataKeyStatus, KeyStatus, NewAuditEvent, Page, RotationProgress,
    RotationReport, UnsealedCredentials,
};

/// A handle to an open store. Clones share the same connections and keys.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

fn pending() -> Error {
    Error::InvalidOptions("this operation is not available yet".to_owned())
}

impl Store {
    /// Opens the store at `path`, creating and initializing it when the file
    /// does not exist, and migrating an older schema forward.
    ///
    /// # Errors
    ///
    /// [`Error::WrongMasterKey`] when `key` does not open an existing store (the
    /// file is left byte-for-byte unchanged), [`Error::NotAStore`],
    /// [`Error::SchemaTooNew`], [`Error::InvalidMasterKey`], [`Error::Io`] or
    /// [`Error::Sqlite`].
    pub fn open(path: &Path, key: &MasterKey, options: &StoreOptions) -> Result<Store, Error> {
        let _ = (path, key, options, Inner {});
        Err(pending())
    }

    /// Creates a data source after validating the request.
    ///
    /// # Errors
    ///
    /// [`Error::Validation`] for an invalid request, [`Error::AlreadyExists`]
    /// when the name is taken.
    pub fn create_datasource(&self, request: &CreateDataSource) -> Result<DataSource, Error> {
        let _ = (request, &self.inner);
        Err(pending())
    }

    /// Returns the data source named `name`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is none.
    pub fn get_datasource(&self, name: &str) -> Result<DataSource, Error> {
        let _ = name;
        Err(pending())
    }

    /// Returns the data source with the id `id`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is none.
    pub fn get_datasource_by_id(&self, id: DataSourceId) -> Result<DataSource, Error> {
        let _ = id;
        Err(pending())
    }

    /// Lists data sources ordered by name, starting after `after_name`.
    ///
    /// # Errors
    ///
    /// [`Error::Sqlite`] or [`Error::CorruptRow`].
    pub fn list_datasources(
        &self,
        after_name: Option<&str>,
        limit: usize,
    ) -> Result<Page<DataSource>, Error> {
        let _ = (after_name, limit);
        Err(pending())
    }

    /// Replaces a data source when its stored version is `expected_version`.
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`] when the version is stale (nothing changes),
    /// [`Error::NotFound`], [`Error::Validation`].
    pub fn update_datasource(
        &self,
        updated: &DataSource,
        expected_version: u64,
    ) -> Result<DataSource, Error> {
        let _ = (updated, expected_version);
        Err(pending())
    }

    /// Deletes a data source and its credentials in one transaction.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is none.
    pub fn delete_datasource(&self, name: &str) -> Result<(), Error> {
        let _ = name;
        Err(pending())
    }

    /// Stores the credentials of a data source, sealing every secret.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::Validation`].
    pub fn put_credentials(
        &self,
        name: &str,
        credentials: &Credentials,
    ) -> Result<CredentialsSummary, Error> {
        let _ = (name, credentials);
        Err(pending())
    }

    /// Deletes the credentials of a data source.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when the data source or its credentials do not exist.
    pub fn delete_credentials(&self, name: &str) -> Result<(), Error> {
        let _ = name;
        Err(pending())
    }

    /// Returns what is stored for a data source's credentials, without secrets.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when the data source does not exist.
    pub fn credentials_summary(&self, name: &str) -> Result<Option<CredentialsSummary>, Error> {
        let _ = name;
        Err(pending())
    }

    /// Opens the credentials of a data source for the token exchange.
    ///
    /// # Security
    ///
    /// The result holds plaintext secrets.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`], [`Error::Unseal`].
    pub fn unseal_credentials(&self, name: &str) -> Result<Option<UnsealedCredentials>, Error> {
        let _ = name;
        Err(pending())
    }

    /// Replaces the refresh token when the credentials version is `expected_version`.
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`], [`Error::NotFound`].
    pub fn rotate_refresh_token(
        &self,
        id: DataSourceId,
        expected_version: u64,
        new_token: &SecretString,
    ) -> Result<u64, Error> {
        let _ = (id, expected_version, new_token);
        Err(pending())
    }

    /// Creates an API token and returns its metadata and its value.
    ///
    /// # Security
    ///
    /// The returned value is shown once; only its SHA-256 hash is stored.
    ///
    /// # Errors
    ///
    /// [`Error::Validation`].
    pub fn create_api_token(
        &self,
        label: &str,
        role: Role,
        datasources: &[String],
    ) -> Result<(ApiTokenInfo, SecretString), Error> {
        let _ = (label, role, datasources);
        Err(pending())
    }

    /// Lists every API token, revoked ones included, oldest first.
    ///
    /// # Errors
    ///
    /// [`Error::Sqlite`].
    pub fn list_api_tokens(&self) -> Result<Vec<ApiTokenInfo>, Error> {
        Err(pending())
    }

    /// Revokes an API token.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`].
    pub fn revoke_api_token(&self, id: &str) -> Result<(), Error> {
        let _ = id;
        Err(pending())
    }

    /// Looks up a presented API token value; a revoked or unknown token gives `None`.
    ///
    /// # Errors
    ///
    /// [`Error::Sqlite`].
    pub fn find_api_token(&self, presented: &str) -> Result<Option<ApiTokenInfo>, Error> {
        let _ = presented;
        Err(pending())
    }

    /// Returns the SHA-256 hash and metadata of every token that is not revoked.
    ///
    /// # Errors
    ///
    /// [`Error::Sqlite`].
    pub fn api_token_hashes(&self) -> Result<Vec<([u8; 32], ApiTokenInfo)>, Error> {
        Err(pending())
    }

    /// Records when tokens were last used, in one transaction.
    ///
    /// # Errors
    ///
    /// [`Error::Sqlite`].
    pub fn touch_api_tokens(&self, used: &[(String, OffsetDateTime)]) -> Result<(), Error> {
        let _ = used;
        Err(pending())
    }

    /// Appends an event to the audit log and returns its id.
    ///
    /// # Errors
    ///
    /// [`Error::Validation`], [`Error::Sqlite`].
    pub fn record_audit(&self, event: &NewAuditEvent) -> Result<i64, Error> {
        let _ = event;
        Err(pending())
    }

    /// Lists audit events newest first, optionally of one data source.
    ///
    /// # Errors
    ///
    /// [`Error::Sqlite`].
    pub fn list_audit(
        &self,
        datasource: Option<&str>,
        after_id: Option<i64>,
        limit: usize,
    ) -> Result<Page<AuditEvent>, Error> {
        let _ = (datasource, after_id, limit);
        Err(pending())
    }

    /// Reports the data keys, their rows and the master key parameters.
    ///
    /// # Errors
    ///
    /// [`Error::Sqlite`].
    pub fn key_status(&self) -> Result<KeyStatus, Error> {
        Err(pending())
    }

    /// Re-wraps the data keys under a new master key.
    ///
    /// # Errors
    ///
    /// [`Error::WrongMasterKey`] when `old` is wrong.
    pub fn rotate_master_key(&self, old: &MasterKey, new: &MasterKey) -> Result<(), Error> {
        let _ = (old, new);
        Err(pending())
    }

    /// Creates a new data key and re-encrypts every sealed value with it.
    ///
    /// # Errors
    ///
    /// [`Error::Unseal`], [`Error::Sqlite`].
    pub fn rotate_data_key(
        &self,
        progress: &mut dyn FnMut(RotationProgress),
    ) -> Result<RotationReport, Error> {
        let _ = progress;
        Err(pending())
    }

    /// Copies the store to `dest` with the SQLite online backup API.
    ///
    /// # Errors
    ///
    /// [`Error::BackupDestinationExists`], [`Error::Sqlite`].
    pub fn backup(&self, dest: &Path) -> Result<(), Error> {
        let _ = dest;
        Err(pending())
    }

    /// Returns a counter that grows whenever any process changes data sources,
    /// credentials, API tokens or keys.
    ///
    /// # Errors
    ///
    /// [`Error::Sqlite`].
    pub fn change_counter(&self) -> Result<u64, Error> {
        Err(pending())
    }
}
