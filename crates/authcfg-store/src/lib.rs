//! SQLite storage of data sources, sealed credentials, API tokens and the audit log.
//!
//! A [`Store`] is one SQLite file. Every secret in it (client secrets,
//! passwords, refresh tokens) is sealed with XChaCha20-Poly1305 under a random
//! data key. The data key is wrapped by a key-encryption key that Argon2id
//! derives from the operator's master key once, when the store is opened.
//!
//! All calls are synchronous and may block on disk I/O and SQLite locks. Async
//! callers must run them off the executor, for example with
//! `tokio::task::spawn_blocking` or `actix_web::web::block`. A [`Store`] is
//! cheap to clone and can be shared between threads: it keeps a pool of
//! connections so that concurrent readers do not wait for each other, and one
//! writer connection for which the writers of a process queue, up to the pool
//! timeout. Writes of other processes are serialized by SQLite, which lets a
//! writer wait up to the busy timeout.
//!
//! The file uses WAL journaling with `synchronous = FULL`: a call that
//! returned `Ok` has its write on disk, so it survives a process crash and a
//! power loss.
//!
//! ```no_run
//! use authcfg_model::{AuthConfig, CreateDataSource, Credentials, SecretString};
//! use authcfg_store::{MasterKey, Store, StoreOptions};
//!
//! # fn main() -> Result<(), authcfg_store::Error> {
//! let key = MasterKey::Passphrase(SecretString::new("correct horse battery staple"));
//! let store = Store::open("authcfg.db".as_ref(), &key, &StoreOptions::default())?;
//! store.create_datasource(&CreateDataSource {
//!     name: "crm".to_owned(),
//!     description: None,
//!     base_url: None,
//!     auth: AuthConfig::basic(),
//! })?;
//! store.put_credentials("crm", &Credentials::new("reporting", "s3cret"))?;
//! let unsealed = store.unseal_credentials("crm")?;
//! # Ok(())
//! # }
//! ```

mod audit;
mod convert;
mod credentials;
mod crypto;
mod datasources;
mod error;
mod keyring;
mod options;
mod pool;
mod schema;
mod tokens;
mod types;

use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rusqlite::{Connection, DatabaseName, OpenFlags};

pub use crypto::bench as __bench;
pub use error::Error;
pub use options::{Argon2Params, MasterKey, StoreOptions};
pub use tokens::API_TOKEN_PREFIX;
pub use types::{
    DataKeyState, DataKeyStatus, DataSourceWithCredentials, KeyStatus, NewAuditEvent, Page,
    RotationProgress, RotationReport, UnsealedCredentials,
};

use crate::crypto::{check_argon2_params, master_key_bytes};
use crate::keyring::Keys;
use crate::pool::{open_connection, Pool, Writer};
use crate::schema::{schema_version, APPLICATION_ID, LATEST_VERSION};

/// The newest schema version this build reads and writes.
pub const SCHEMA_VERSION: i64 = LATEST_VERSION;

/// Largest page a listing returns, whatever the requested `limit`.
pub const MAX_PAGE_SIZE: usize = 1000;

/// A handle to an open store. Clones share the same connections and keys.
///
/// `Debug` prints the path only: keys are never printed.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

// A store is shared between server workers, so it must stay `Send + Sync`.
const _: () = {
    const fn assert_shareable<T: Clone + Send + Sync>() {}
    assert_shareable::<Store>();
};

/// The state shared by clones of a [`Store`].
pub(crate) struct Inner {
    path: PathBuf,
    pub(crate) pool: Pool,
    pub(crate) writer: Writer,
    pub(crate) keys: RwLock<Keys>,
    pub(crate) options: StoreOptions,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .field("pool_size", &self.inner.options.pool_size)
            .finish_non_exhaustive()
    }
}

/// The state of the file at the path, as found by [`Store::open`].
enum FileState {
    /// No file, an empty file, or a SQLite file without tables: create a store.
    Fresh,
    /// An authcfg store, unlocked with the master key.
    Existing(Keys),
}

impl Store {
    /// Opens the store at `path`, creating and initializing it when the file
    /// does not exist, and migrating an older schema forward.
    ///
    /// Argon2id runs here, once: every later call uses the derived keys. An
    /// existing file is first checked on a read-only connection, so a wrong
    /// master key, a foreign file or a newer schema leaves it byte-for-byte
    /// unchanged. That connection creates the `-wal` and `-shm` files of a WAL
    /// database when they are missing. After a rejection they are removed
    /// again, unless another process opened the database in the meantime and
    /// uses them. A new file is created with mode 0600 on Unix.
    ///
    /// # Errors
    ///
    /// [`Error::WrongMasterKey`] when `key` does not open an existing store,
    /// [`Error::NotADatabase`] for a file that is not a SQLite database,
    /// [`Error::NotAStore`] for another application's SQLite database,
    /// [`Error::SchemaTooNew`],
    /// [`Error::InvalidMasterKey`] for an empty key, [`Error::InvalidOptions`],
    /// [`Error::Io`] or [`Error::Sqlite`].
    pub fn open(path: &Path, key: &MasterKey, options: &StoreOptions) -> Result<Store, Error> {
        if options.pool_size == 0 {
            return Err(Error::InvalidOptions(
                "pool_size is 0: use at least 1 connection".to_owned(),
            ));
        }
        check_argon2_params(&options.argon2)?;
        if !options.argon2.meets_owasp() {
            tracing::warn!(
                memory_kib = options.argon2.memory_kib,
                iterations = options.argon2.iterations,
                "argon2id parameters are below the OWASP recommendation of m=19456 KiB, t=2"
            );
        }
        let master = master_key_bytes(key)?;

        let state = inspect(path, &master, options)?;

        let mut first = match state {
            FileState::Fresh => {
                match create_private_file(path) {
                    // An empty file, or one that another process created an
                    // instant ago, is initialized below inside a transaction.
                    Err(Error::Io { source, .. })
                        if source.kind() == std::io::ErrorKind::AlreadyExists => {}
                    other => other?,
                }
                open_connection(path, options.busy_timeout)?
            }
            FileState::Existing(_) => open_connection(path, options.busy_timeout)?,
        };
        let keys = match state {
            FileState::Existing(keys) => {
                schema::migrate_to(&mut first, LATEST_VERSION)?;
                keys
            }
            FileState::Fresh => initialize(&mut first, &master, &options.argon2)?,
        };

        // The connection that initialized or migrated the file becomes the
        // writer, and the pool gets `pool_size` connections of its own.
        let mut connections = Vec::with_capacity(options.pool_size);
        for _ in 0..options.pool_size {
            connections.push(open_connection(path, options.busy_timeout)?);
        }
        tracing::info!(
            path = %path.display(),
            schema_version = LATEST_VERSION,
            pool_size = options.pool_size,
            "opened the store"
        );

        Ok(Store {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                pool: Pool::new(connections, options.pool_timeout),
                writer: Writer::new(first, options.pool_timeout),
                keys: RwLock::new(keys),
                options: options.clone(),
            }),
        })
    }

    /// Returns the path of the database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Copies the store to `dest` with the SQLite online backup API, while
    /// other calls keep working. The copy contains the same wrapped keys, so it
    /// opens with the same master key. The file is created with mode 0600 on
    /// Unix and never overwrites an existing file.
    ///
    /// # Errors
    ///
    /// [`Error::BackupDestinationExists`] when `dest` exists, [`Error::Io`] when
    /// it cannot be created, [`Error::Sqlite`] when the copy fails (the
    /// partial copy is removed).
    pub fn backup(&self, dest: &Path) -> Result<(), Error> {
        create_private_file(dest).map_err(|error| match error {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::AlreadyExists => {
                Error::BackupDestinationExists {
                    path: dest.to_owned(),
                }
            }
            other => other,
        })?;

        let connection = self.inner.pool.get()?;
        if let Err(error) = connection.backup(DatabaseName::Main, dest, None) {
            // The file was created above by this call, so removing it deletes
            // only the partial copy.
            if let Err(remove_error) = std::fs::remove_file(dest) {
                tracing::warn!(path = %dest.display(), error = %remove_error, "could not remove a failed backup");
            }
            return Err(error.into());
        }
        tracing::info!(path = %dest.display(), "backed up the store");
        Ok(())
    }

    /// Returns a counter that grows whenever any process changes a data
    /// source, credentials, an API token (except its last-used time) or a
    /// key. Compare it with an earlier value to notice changes made by
    /// another process, such as the command line. Reading it is one indexed
    /// row lookup.
    ///
    /// # Errors
    ///
    /// [`Error::Sqlite`].
    pub fn change_counter(&self) -> Result<u64, Error> {
        let connection = self.inner.pool.get()?;
        let value: i64 = connection
            .prepare_cached("SELECT value FROM change_counter WHERE id = 1")?
            .query_row([], |row| row.get(0))?;
        convert::from_sql_int("change_counter", "1", value)
    }

    /// Returns a marker that changes whenever another process commits to the
    /// database: the command line, say, or a second store opened on the same
    /// file. Writes through this store and its clones leave it unchanged,
    /// because they all go through its one writer connection.
    ///
    /// A server that applies its own writes to an in-memory copy can poll
    /// this and reload only when the marker moved, and then compare
    /// [`Store::change_counter`] to learn whether anything it copies changed.
    /// The value means nothing across stores or restarts; compare it only
    /// with earlier values of the same store. Reading it waits for a write in
    /// progress to finish.
    ///
    /// # Errors
    ///
    /// [`Error::PoolTimeout`] when a write keeps the writer connection busy for
    /// the pool timeout, [`Error::Sqlite`].
    pub fn external_change_marker(&self) -> Result<u64, Error> {
        let value = self.inner.writer.data_version()?;
        convert::from_sql_int("data_version", "writer", value)
    }
}

/// Decides whether `path` is new, an authcfg store, or something else, and
/// unlocks an existing store. Uses a read-only connection only.
///
/// A read-only connection to a WAL database creates the `-wal` and `-shm`
/// files when they are missing, but it cannot delete them when it closes. So
/// when the file is rejected and those files did not exist before, SQLite is
/// asked to remove them again (see [`release_wal_files`]).
fn inspect(path: &Path, master: &[u8], options: &StoreOptions) -> Result<FileState, Error> {
    let wal_files_existed = wal_files(path).iter().any(|file| file.exists());

    let result = inspect_file(path, master, options);

    if result.is_err() && !wal_files_existed && wal_files(path).iter().any(|file| file.exists()) {
        release_wal_files(path, options.busy_timeout);
    }
    result
}

/// Classifies the file at `path` and unlocks an existing store, leaving the
/// cleanup after a rejection to [`inspect`].
fn inspect_file(path: &Path, master: &[u8], options: &StoreOptions) -> Result<FileState, Error> {
    let length = match std::fs::metadata(path) {
        Ok(metadata) => metadata.len(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(FileState::Fresh),
        Err(source) => {
            return Err(Error::Io {
                path: path.to_owned(),
                source,
            })
        }
    };
    if length == 0 {
        return Ok(FileState::Fresh);
    }

    // SQLite itself takes a one-byte file for an empty database, because its
    // Unix VFS reports that size as 0, and would let it be initialized as a
    // new store. Checking the magic string first keeps every file that is not
    // a SQLite database unchanged.
    if !has_sqlite_header(path)? {
        return Err(Error::NotADatabase {
            path: path.to_owned(),
        });
    }

    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(options.busy_timeout)?;
    let not_a_store = || Error::NotAStore {
        path: path.to_owned(),
    };
    // Reading the header is the first access through SQLite. It returns
    // SQLITE_NOTADB for a header that it cannot use, such as a page size that
    // is not a power of two.
    let application_id: i64 = connection
        .pragma_query_value(None, "application_id", |row| row.get(0))
        .map_err(|error| match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::NotADatabase) => Error::NotADatabase {
                path: path.to_owned(),
            },
            _ => Error::Sqlite(error),
        })?;

    if application_id != APPLICATION_ID {
        // A file whose creation was interrupted before its first commit has
        // no tables and no application id: it is finished as a new store.
        let tables: i64 =
            connection.query_row("SELECT COUNT(*) FROM sqlite_master", [], |row| row.get(0))?;
        if application_id == 0 && tables == 0 {
            return Ok(FileState::Fresh);
        }
        return Err(not_a_store());
    }

    let version = schema_version(&connection)?;
    if version > LATEST_VERSION {
        return Err(Error::SchemaTooNew {
            found: version,
            supported: LATEST_VERSION,
        });
    }
    Ok(FileState::Existing(keyring::unlock(&connection, master)?))
}

/// Returns true when the file at `path` starts with the 16-byte string that
/// begins every SQLite 3 database file.
fn has_sqlite_header(path: &Path) -> Result<bool, Error> {
    const MAGIC: &[u8; 16] = b"SQLite format 3\0";

    let io_error = |source| Error::Io {
        path: path.to_owned(),
        source,
    };
    let mut header = [0_u8; 16];
    let mut file = File::open(path).map_err(io_error)?;
    match file.read_exact(&mut header) {
        Ok(()) => Ok(&header == MAGIC),
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(source) => Err(io_error(source)),
    }
}

/// Returns the paths of the `-wal` and `-shm` files that SQLite keeps beside
/// a WAL database at `path`.
fn wal_files(path: &Path) -> [PathBuf; 2] {
    ["-wal", "-shm"].map(|suffix| {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    })
}

/// Removes the `-wal` and `-shm` files beside `path` if no connection uses
/// them, by opening and closing one read-write connection.
///
/// SQLite deletes both files when the last connection to a WAL database
/// closes, after it took an exclusive lock on the database file and
/// checkpointed the log. Another process that has the database open holds a
/// shared lock, so the exclusive lock fails and its files stay. The read is
/// needed because a connection opens the log on its first read, and only a
/// connection with an open log deletes it. A log that only the rejected open
/// created is empty, so the checkpoint copies no page and the database file
/// stays unchanged. Commits of another process that closed in the meantime
/// are copied, as that process's own close would have done. A failure here
/// only leaves the files behind, so it is logged and not returned.
fn release_wal_files(path: &Path, busy_timeout: std::time::Duration) {
    let released = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .and_then(|connection| {
        connection.busy_timeout(busy_timeout)?;
        connection.query_row("SELECT COUNT(*) FROM sqlite_master", [], |_| Ok(()))?;
        connection.close().map_err(|(_, error)| error)
    });
    if let Err(error) = released {
        tracing::debug!(
            path = %path.display(),
            error = %error,
            "could not remove the -wal and -shm files of a rejected store file"
        );
    }
}

/// Creates the schema and the keyring of a new store in one transaction. When
/// another process initialized the file first, unlocks it instead.
fn initialize(
    connection: &mut Connection,
    master: &[u8],
    params: &Argon2Params,
) -> Result<Keys, Error> {
    let transaction =
        connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    if schema_version(&transaction)? != 0 {
        drop(transaction);
        schema::migrate_to(connection, LATEST_VERSION)?;
        return keyring::unlock(connection, master);
    }

    schema::apply(&transaction, 0, LATEST_VERSION)?;
    let keys = keyring::initialize(&transaction, master, params)?;
    transaction.commit()?;
    tracing::info!(
        memory_kib = params.memory_kib,
        iterations = params.iterations,
        "created a new store"
    );
    Ok(keys)
}

/// Creates `path` as an empty file readable only by its owner. Fails with an
/// `AlreadyExists` I/O error when the file exists.
fn create_private_file(path: &Path) -> Result<(), Error> {
    let mut open_options = OpenOptions::new();
    open_options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        open_options.mode(0o600);
    }
    match open_options.open(path) {
        Ok(_) => Ok(()),
        Err(source) => Err(Error::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use authcfg_model::{AuthConfig, CreateDataSource, Credentials, SecretString};

    use super::*;

    const FAST: Argon2Params = Argon2Params {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn key() -> MasterKey {
        MasterKey::Passphrase(SecretString::new("migration test"))
    }

    fn options() -> StoreOptions {
        StoreOptions {
            argon2: FAST,
            ..StoreOptions::default()
        }
    }

    /// Names of the data sources in every old store: `crm-prod` and
    /// `crm_prod` share the name key `CRM_PROD`, a pair that older versions
    /// could store.
    const OLD_NAMES: [&str; 3] = ["crm", "crm-prod", "crm_prod"];

    /// Writes a store file at schema `version`, as an older authcfg would
    /// have left it, with the data sources of [`OLD_NAMES`] and credentials
    /// for `crm`.
    fn write_old_store(path: &Path, version: i64) {
        let mut connection = open_connection(path, std::time::Duration::from_secs(5)).unwrap();
        let transaction = connection.transaction().unwrap();
        schema::apply(&transaction, 0, version).unwrap();
        let bytes = crypto::master_key_bytes(&key()).unwrap();
        keyring::initialize(&transaction, &bytes, &FAST).unwrap();
        // Data sources are inserted with the columns of version 1, because
        // the current insert writes columns that older versions lack.
        for (index, name) in OLD_NAMES.iter().enumerate() {
            transaction
                .execute(
                    "INSERT INTO datasources
                         (id, name, description, base_url, auth, created_at, updated_at, version)
                     VALUES (?1, ?2, ?3, NULL, '{\"method\":\"basic\"}', ?4, ?4, 1)",
                    rusqlite::params![
                        uuid::Uuid::new_v4().to_string(),
                        name,
                        format!("old data source {index}"),
                        1_700_000_000_000_000_000_i64 + index as i64,
                    ],
                )
                .unwrap();
        }
        transaction.commit().unwrap();
        drop(connection);

        // Credentials are written through the current code path: their
        // table has not changed since version 1.
        let store = Store {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                pool: Pool::new(
                    vec![open_connection(path, std::time::Duration::from_secs(5)).unwrap()],
                    std::time::Duration::from_secs(5),
                ),
                writer: Writer::new(
                    open_connection(path, std::time::Duration::from_secs(5)).unwrap(),
                    std::time::Duration::from_secs(5),
                ),
                keys: RwLock::new(keyring::unlock(&raw(path), &bytes).unwrap()),
                options: options(),
            }),
        };
        store
            .put_credentials("crm", &Credentials::new("reporting", "old-secret"))
            .unwrap();
    }

    /// Returns every data source row with the columns of version 1, in name
    /// order, as text.
    fn datasource_rows(path: &Path) -> Vec<String> {
        let connection = raw(path);
        let mut statement = connection
            .prepare(
                "SELECT json_array(id, name, description, base_url, auth, created_at, \
                 updated_at, version, credentials_version) FROM datasources ORDER BY name",
            )
            .unwrap();
        let rows = statement.query_map([], |row| row.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// Returns the name and name key of every data source, in name order.
    fn name_keys(path: &Path) -> Vec<(String, Option<String>)> {
        let connection = raw(path);
        let mut statement = connection
            .prepare("SELECT name, name_key FROM datasources ORDER BY name")
            .unwrap();
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    fn basic(name: &str) -> CreateDataSource {
        CreateDataSource {
            name: name.to_owned(),
            description: None,
            base_url: None,
            auth: AuthConfig::basic(),
        }
    }

    fn raw(path: &Path) -> Connection {
        Connection::open(path).unwrap()
    }

    /// Returns the schema as SQL text, sorted, to compare two files.
    fn schema_sql(path: &Path) -> Vec<String> {
        let connection = raw(path);
        let mut statement = connection
            .prepare("SELECT type || ' ' || name || ': ' || COALESCE(sql, '') FROM sqlite_master ORDER BY type, name")
            .unwrap();
        let rows = statement.query_map([], |row| row.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    }

    #[test]
    fn migrates_from_every_version() {
        let directory = tempfile::tempdir().unwrap();
        let fresh_path = directory.path().join("fresh.db");
        drop(Store::open(&fresh_path, &key(), &options()).unwrap());
        let fresh_schema = schema_sql(&fresh_path);

        for version in 1..LATEST_VERSION {
            let path = directory.path().join(format!("v{version}.db"));
            write_old_store(&path, version);
            assert_eq!(schema_version(&raw(&path)).unwrap(), version);
            let rows_before = datasource_rows(&path);

            let store = Store::open(&path, &key(), &options()).unwrap();

            assert_eq!(
                schema_version(&raw(&path)).unwrap(),
                LATEST_VERSION,
                "from v{version}"
            );
            let unsealed = store.unseal_credentials("crm").unwrap().unwrap();
            assert_eq!(
                unsealed.credentials.client_secret.expose_secret(),
                "old-secret"
            );
            assert!(store.change_counter().is_ok(), "from v{version}");
            assert!(store.list_audit(None, None, 1).is_ok(), "from v{version}");

            // The colliding pair is kept as it was, and every row gets the
            // key that the Rust function computes.
            assert_eq!(datasource_rows(&path), rows_before, "from v{version}");
            let expected_keys: Vec<(String, Option<String>)> = OLD_NAMES
                .iter()
                .map(|name| {
                    (
                        (*name).to_owned(),
                        Some(authcfg_model::datasource_name_key(name)),
                    )
                })
                .collect();
            assert_eq!(name_keys(&path), expected_keys, "from v{version}");
            assert_eq!(
                store
                    .datasource_name_for_key("CRM_PROD")
                    .unwrap()
                    .as_deref(),
                Some("crm-prod"),
                "from v{version}"
            );
            let listed = store.list_datasources_with_credentials(None, 10).unwrap();
            assert_eq!(listed.items.len(), OLD_NAMES.len(), "from v{version}");
            assert_eq!(
                listed.items[0].credentials,
                store.credentials_summary("crm").unwrap(),
                "from v{version}"
            );

            // The pair stays, but neither name nor its key can be taken again.
            for name in ["crm-prod", "crm_prod"] {
                let error = store.create_datasource(&basic(name)).unwrap_err();
                assert!(
                    matches!(error, Error::AlreadyExists { .. }),
                    "{name} from v{version}: {error:?}"
                );
            }
            let error = store.create_datasource(&basic("crm-prod-eu")).map(|_| ());
            assert!(error.is_ok(), "from v{version}: {error:?}");
            drop(store);
            assert_eq!(schema_sql(&path), fresh_schema, "from v{version}");
            let integrity: String = raw(&path)
                .query_row("PRAGMA integrity_check", [], |row| row.get(0))
                .unwrap();
            assert_eq!(integrity, "ok");
        }
    }

    #[test]
    fn creates_from_empty_file() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("empty.db");
        std::fs::write(&path, b"").unwrap();

        let store = Store::open(&path, &key(), &options()).unwrap();

        assert_eq!(schema_version(&raw(&path)).unwrap(), LATEST_VERSION);
        let application_id: i64 = raw(&path)
            .pragma_query_value(None, "application_id", |row| row.get(0))
            .unwrap();
        assert_eq!(application_id, APPLICATION_ID);
        assert_eq!(store.key_status().unwrap().active_key_id, "dk-1");
    }

    #[test]
    fn finishes_interrupted_creation() {
        // A file switched to WAL whose first transaction never committed.
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("interrupted.db");
        drop(open_connection(&path, std::time::Duration::from_secs(5)).unwrap());

        let store = Store::open(&path, &key(), &options()).unwrap();

        assert_eq!(store.key_status().unwrap().active_key_id, "dk-1");
    }

    #[test]
    fn release_wal_files_keeps_files_in_use() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("busy.db");
        drop(Store::open(&path, &key(), &options()).unwrap());
        // Another connection keeps the database open, with a commit that is
        // only in the write-ahead log.
        let other = open_connection(&path, std::time::Duration::from_secs(5)).unwrap();
        other.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
        other
            .execute("UPDATE change_counter SET value = 42", [])
            .unwrap();
        let [wal, shm] = wal_files(&path);
        let wal_length = std::fs::metadata(&wal).unwrap().len();
        assert!(wal_length > 0);

        release_wal_files(&path, std::time::Duration::from_secs(5));

        assert!(wal.exists());
        assert!(shm.exists());
        assert_eq!(std::fs::metadata(&wal).unwrap().len(), wal_length);
        let value: i64 = other
            .query_row("SELECT value FROM change_counter", [], |row| row.get(0))
            .unwrap();
        assert_eq!(value, 42);
        drop(other);
        assert!(!wal.exists());
        assert!(!shm.exists());
        let value: i64 = raw(&path)
            .query_row("SELECT value FROM change_counter", [], |row| row.get(0))
            .unwrap();
        assert_eq!(value, 42);
    }

    #[test]
    fn newer_schema_rejected_unchanged() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("future.db");
        drop(Store::open(&path, &key(), &options()).unwrap());
        raw(&path)
            .pragma_update(None, "user_version", LATEST_VERSION + 1)
            .unwrap();
        let before = std::fs::read(&path).unwrap();

        let error = Store::open(&path, &key(), &options()).unwrap_err();

        assert!(
            matches!(error, Error::SchemaTooNew { found, .. } if found == LATEST_VERSION + 1),
            "got {error:?}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
        for file in wal_files(&path) {
            assert!(!file.exists(), "{} was left behind", file.display());
        }
    }
}
