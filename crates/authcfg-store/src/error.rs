//! The error type of the store.
//!
//! Messages never contain a secret, a ciphertext or key material: a value
//! that fails to open is reported by data source and field only.

use std::path::PathBuf;

use authcfg_model::{CredentialField, ValidationErrors};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Returned when the named data source, credentials or API token does not exist.
    #[error("{kind} {name:?} not found")]
    NotFound {
        /// Kind of the missing object: `data source`, `credentials of data source`
        /// or `api token`.
        kind: &'static str,
        /// The name or id that was looked up.
        name: String,
    },

    /// Returned by [`Store::create_datasource`](crate::Store::create_datasource)
    /// when a data source of that name exists.
    #[error("{kind} {name:?} already exists: choose another name or update the existing one")]
    AlreadyExists {
        /// Kind of the object, such as `data source`.
        kind: &'static str,
        /// The name that is taken.
        name: String,
    },

    /// Returned by [`Store::create_datasource`](crate::Store::create_datasource)
    /// when another data source's name has the same name key
    /// ([`authcfg_model::datasource_name_key`]), such as `crm-prod` for a new
    /// `crm_prod`. Both would read the same environment variables. Nothing was
    /// stored.
    #[error(
        "data source name {name:?} maps to the same environment variables as data source \
         {existing:?} (name key {key}): choose another name"
    )]
    NameKeyTaken {
        /// The requested name.
        name: String,
        /// The data source whose name has the same key.
        existing: String,
        /// The shared name key, such as `CRM_PROD`.
        key: String,
    },

    /// Returned by an update that names a version other than the stored one.
    /// Nothing was changed: read the current value and apply the change again.
    #[error(
        "{kind} {name:?} changed concurrently: expected version {expected}, stored version is \
         {current}; read it again and retry"
    )]
    Conflict {
        /// Kind of the object: `data source` or `credentials`.
        kind: &'static str,
        /// The data source name or id.
        name: String,
        /// The version the caller read.
        expected: u64,
        /// The version that is stored now.
        current: u64,
    },

    /// Returned by [`Store::open`](crate::Store::open) and
    /// [`Store::rotate_master_key`](crate::Store::rotate_master_key) when the master key
    /// does not open the store's key-encryption key. Nothing was written.
    #[error(
        "the master key does not open this store: check that the passphrase or key file is the \
         one the store was created with (or last rotated to)"
    )]
    WrongMasterKey,

    /// Returned when a master key is unusable: an empty passphrase or an empty key file.
    #[error("invalid master key: {reason}")]
    InvalidMasterKey {
        /// The problem and how to fix it.
        reason: String,
    },

    /// Returned when a key file or a directory cannot be read or written.
    #[error("cannot access {path:?}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },

    /// Returned when a stored secret fails to open: the ciphertext was damaged,
    /// truncated, or copied from another data source or field. The stored row
    /// is left as it is; store the credentials again to replace it.
    #[error(
        "the stored {field} of data source {datasource:?} failed to open: the value is damaged or \
         was moved from another row; store the credentials again to replace it"
    )]
    Unseal {
        /// The data source whose value failed to open.
        datasource: String,
        /// The field that failed to open.
        field: CredentialField,
    },

    /// Returned when a value is sealed under a data key that this process does
    /// not hold and cannot unwrap, for example after another process changed
    /// the master key.
    #[error(
        "data key {key_id:?} is not available: if the master key was changed by another process, \
         restart this one with the new master key"
    )]
    DataKeyUnavailable {
        /// The id of the missing data key.
        key_id: String,
    },

    /// Returned when encryption itself fails, which happens only for values
    /// larger than the cipher accepts.
    #[error("sealing a value failed")]
    Seal,

    /// Returned by [`Store::open`](crate::Store::open) when the file is not a
    /// SQLite database at all, such as a text file: it does not start with the
    /// SQLite header, or SQLite rejects its header with `SQLITE_NOTADB`. The
    /// file is left unchanged.
    #[error(
        "{path:?} is not a SQLite database: pass the path of an authcfg store, or a new file \
         name to create one"
    )]
    NotADatabase {
        /// The file that was opened.
        path: PathBuf,
    },

    /// Returned by [`Store::open`](crate::Store::open) when the file is a SQLite
    /// database of another application. The file is left unchanged.
    #[error(
        "{path:?} is not an authcfg store: it is a SQLite database with other tables; choose a new \
         file name"
    )]
    NotAStore {
        /// The file that was opened.
        path: PathBuf,
    },

    /// Returned by [`Store::open`](crate::Store::open) when the file was written
    /// by a newer authcfg whose schema this version does not know.
    #[error(
        "the store has schema version {found}, but this authcfg supports at most {supported}: \
         upgrade authcfg"
    )]
    SchemaTooNew {
        /// The schema version in the file.
        found: i64,
        /// The newest schema version this build supports.
        supported: i64,
    },

    /// Returned when a stored row cannot be decoded, which means the file was
    /// edited outside authcfg.
    #[error("stored {table} row {key:?} is corrupt: {detail}")]
    CorruptRow {
        /// The table of the row.
        table: &'static str,
        /// The row's key.
        key: String,
        /// The part that could not be decoded.
        detail: String,
    },

    /// Returned by [`Store::open`](crate::Store::open) for unusable options.
    #[error("invalid store options: {0}")]
    InvalidOptions(String),

    /// Returned by [`Store::backup`](crate::Store::backup) when the destination
    /// exists; a backup never overwrites a file.
    #[error("backup destination {path:?} already exists: choose a new file name")]
    BackupDestinationExists {
        /// The destination that exists.
        path: PathBuf,
    },

    /// Returned when no pooled read connection, or the writer connection that
    /// every write uses, became free within the pool timeout.
    #[error(
        "no database connection became free within {waited_ms} ms: raise the pool size or reduce \
         concurrent requests"
    )]
    PoolTimeout {
        /// How long the call waited, in milliseconds.
        waited_ms: u64,
    },

    /// Returned when an input fails validation; the list names every field.
    #[error(transparent)]
    Validation(#[from] ValidationErrors),

    /// Returned when SQLite fails, for example when the disk is full or the
    /// database stays locked longer than the busy timeout.
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
}
