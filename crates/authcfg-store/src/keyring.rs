//! The key hierarchy in the database and in memory: the key-encryption key,
//! the data keys and the fingerprint MAC key, and their rotation.
//!
//! The `keyring` row stores the Argon2id salt and parameters and the wrapped
//! MAC key. `data_keys` stores each data key wrapped by the KEK. Exactly one
//! data key is `active` and seals new values; a rotation marks the previous
//! one `retiring` until no credentials row uses it, then erases its wrapped
//! material and marks it `retired`.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};

use rusqlite::{params, Connection, OptionalExtension};

use crate::convert::{from_nanos, from_sql_int, now, to_nanos};
use crate::crypto::{
    derive_kek, master_key_bytes, random_bytes, random_key, Cipher, KeyBytes, KeyPurpose, SALT_LEN,
};
use crate::{
    Argon2Params, DataKeyState, DataKeyStatus, Error, Inner, KeyStatus, MasterKey,
    RotationProgress, RotationReport, Store,
};

/// Name of the key derivation function recorded in the keyring row.
const KDF_NAME: &str = "argon2id-v19";
/// Key id of the fingerprint MAC key in its wrapping associated data.
const MAC_KEY_ID: &str = "mac-1";

/// The unwrapped keys of a process while the store is open.
pub(crate) struct Keys {
    /// The key-encryption key derived from the master key.
    kek: Cipher,
    /// The key of the credentials fingerprint MAC.
    pub(crate) mac_key: KeyBytes,
    /// Data keys unwrapped so far, by id.
    data_keys: HashMap<String, Arc<Cipher>>,
}

/// The `keyring` row.
struct KeyringRow {
    salt: Vec<u8>,
    params: Argon2Params,
    wrapped_mac_key: Vec<u8>,
    created_at: i64,
    master_key_changed_at: i64,
}

fn read_keyring(connection: &Connection) -> Result<KeyringRow, Error> {
    let row = connection
        .query_row(
            "SELECT kdf, salt, memory_kib, iterations, parallelism, wrapped_mac_key, created_at,
                    master_key_changed_at
             FROM keyring WHERE id = 1",
            [],
            |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    [
                        row.get::<_, i64>(2)?,
                        row.get::<_, i64>(3)?,
                        row.get::<_, i64>(4)?,
                    ],
                    row.get::<_, Vec<u8>>(5)?,
                    row.get::<_, i64>(6)?,
                    row.get::<_, i64>(7)?,
                ))
            },
        )
        .optional()?;
    let corrupt = |detail: String| Error::CorruptRow {
        table: "keyring",
        key: "1".to_owned(),
        detail,
    };
    let Some((kdf, salt, costs, wrapped_mac_key, created_at, master_key_changed_at)) = row else {
        return Err(corrupt("the keyring row is missing".to_owned()));
    };

    if kdf != KDF_NAME {
        return Err(corrupt(format!(
            "unknown key derivation function {kdf:?}: upgrade authcfg"
        )));
    }
    let [memory_kib, iterations, parallelism] = costs.map(|cost| u32::try_from(cost).ok());
    let (Some(memory_kib), Some(iterations), Some(parallelism)) =
        (memory_kib, iterations, parallelism)
    else {
        return Err(corrupt(format!(
            "argon2 parameters {costs:?} are out of range"
        )));
    };

    Ok(KeyringRow {
        salt,
        params: Argon2Params {
            memory_kib,
            iterations,
            parallelism,
        },
        wrapped_mac_key,
        created_at,
        master_key_changed_at,
    })
}

/// Creates the keyring of a new store inside the caller's transaction: a
/// salt, the KEK, the MAC key and the first data key.
pub(crate) fn initialize(
    transaction: &Connection,
    master: &[u8],
    params: &Argon2Params,
) -> Result<Keys, Error> {
    let salt: [u8; SALT_LEN] = random_bytes();
    let kek = derive_kek(master, &salt, params)?;
    let mac_key = random_key();
    let data_key = random_key();
    let data_key_id = "dk-1";
    let created_at = to_nanos(now());

    transaction.execute(
        "INSERT INTO keyring (id, kdf, salt, memory_kib, iterations, parallelism, wrapped_mac_key,
                              created_at, master_key_changed_at)
         VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
        params![
            KDF_NAME,
            salt.as_slice(),
            params.memory_kib,
            params.iterations,
            params.parallelism,
            kek.wrap(KeyPurpose::Mac, MAC_KEY_ID, &mac_key)?,
            created_at,
        ],
    )?;
    transaction.execute(
        "INSERT INTO data_keys (id, state, wrapped, created_at) VALUES (?1, 'active', ?2, ?3)",
        params![
            data_key_id,
            kek.wrap(KeyPurpose::Data, data_key_id, &data_key)?,
            created_at
        ],
    )?;

    let mut data_keys = HashMap::new();
    data_keys.insert(data_key_id.to_owned(), Arc::new(Cipher::new(&data_key)));
    Ok(Keys {
        kek,
        mac_key,
        data_keys,
    })
}

/// Derives the KEK from the master key and unwraps every live key.
///
/// Only reads, so it runs on a read-only connection before anything else
/// touches the file.
pub(crate) fn unlock(connection: &Connection, master: &[u8]) -> Result<Keys, Error> {
    let keyring = read_keyring(connection)?;
    let kek = derive_kek(master, &keyring.salt, &keyring.params)?;

    // The MAC key is wrapped with an authenticated cipher, so a wrong master
    // key is detected here, before any data key is touched.
    let mac_key = kek
        .unwrap_key(KeyPurpose::Mac, MAC_KEY_ID, &keyring.wrapped_mac_key)
        .ok_or(Error::WrongMasterKey)?;

    let mut data_keys = HashMap::new();
    let mut statement =
        connection.prepare("SELECT id, wrapped FROM data_keys WHERE wrapped IS NOT NULL")?;
    let rows = statement.query_map([], |row| {
        Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
    })?;
    for row in rows {
        let (id, wrapped) = row?;
        let key = kek
            .unwrap_key(KeyPurpose::Data, &id, &wrapped)
            .ok_or_else(|| Error::CorruptRow {
                table: "data_keys",
                key: id.clone(),
                detail: "the wrapped data key does not open with the master key that opens the \
                         keyring: restore the store from a backup"
                    .to_owned(),
            })?;
        data_keys.insert(id, Arc::new(Cipher::new(&key)));
    }

    Ok(Keys {
        kek,
        mac_key,
        data_keys,
    })
}

/// Returns the id of the active data key.
pub(crate) fn active_key_id(connection: &Connection) -> Result<String, Error> {
    connection
        .query_row(
            "SELECT id FROM data_keys WHERE state = 'active'",
            [],
            |row| row.get(0),
        )
        .optional()?
        .ok_or_else(|| Error::CorruptRow {
            table: "data_keys",
            key: "active".to_owned(),
            detail: "no data key is active: restore the store from a backup".to_owned(),
        })
}

impl Inner {
    /// Returns the data key `key_id`, unwrapping it from the database when this
    /// process has not seen it yet (another process may have created it).
    pub(crate) fn data_key(
        &self,
        connection: &Connection,
        key_id: &str,
    ) -> Result<Arc<Cipher>, Error> {
        {
            let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(key) = keys.data_keys.get(key_id) {
                return Ok(Arc::clone(key));
            }
        }

        let wrapped: Option<Vec<u8>> = connection
            .query_row(
                "SELECT wrapped FROM data_keys WHERE id = ?1 AND wrapped IS NOT NULL",
                [key_id],
                |row| row.get(0),
            )
            .optional()?;
        let unavailable = || Error::DataKeyUnavailable {
            key_id: key_id.to_owned(),
        };
        let wrapped = wrapped.ok_or_else(unavailable)?;

        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        let key = keys
            .kek
            .unwrap_key(KeyPurpose::Data, key_id, &wrapped)
            .ok_or_else(unavailable)?;
        let cipher = Arc::new(Cipher::new(&key));
        keys.data_keys
            .insert(key_id.to_owned(), Arc::clone(&cipher));
        tracing::debug!(key_id, "loaded a data key created by another process");
        Ok(cipher)
    }

    /// Returns the active data key. Call it inside the write transaction that
    /// uses the key, so that a concurrent rotation cannot retire it in between.
    pub(crate) fn active_key(
        &self,
        connection: &Connection,
    ) -> Result<(String, Arc<Cipher>), Error> {
        let key_id = active_key_id(connection)?;
        let cipher = self.data_key(connection, &key_id)?;
        Ok((key_id, cipher))
    }

    /// Returns a copy of the MAC key.
    pub(crate) fn mac_key(&self) -> KeyBytes {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.mac_key.clone()
    }
}

/// A credentials row's sealed values, read for re-encryption.
struct SealedRow {
    datasource_id: authcfg_model::DataSourceId,
    name: String,
    key_id: String,
    client_secret: Vec<u8>,
    password: Option<Vec<u8>>,
    refresh_token: Option<Vec<u8>>,
}

impl Store {
    /// Reports the data keys, the credentials rows each one seals, and the
    /// master key's Argon2id parameters.
    ///
    /// # Errors
    ///
    /// [`Error::Sqlite`] or [`Error::CorruptRow`].
    pub fn key_status(&self) -> Result<KeyStatus, Error> {
        let connection = self.inner.pool.get()?;
        let keyring = read_keyring(&connection)?;
        let active_key_id = active_key_id(&connection)?;

        let mut statement = connection.prepare_cached(
            "SELECT k.id, k.state, k.created_at, k.retired_at,
                    (SELECT COUNT(*) FROM credentials c WHERE c.key_id = k.id)
             FROM data_keys k ORDER BY k.created_at, k.id",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, Option<i64>>(3)?,
                row.get::<_, i64>(4)?,
            ))
        })?;
        let mut data_keys = Vec::new();
        for row in rows {
            let (id, state, created_at, retired_at, rows) = row?;
            let state = match state.as_str() {
                "active" => DataKeyState::Active,
                "retiring" => DataKeyState::Retiring,
                "retired" => DataKeyState::Retired,
                other => {
                    return Err(Error::CorruptRow {
                        table: "data_keys",
                        key: id,
                        detail: format!("unknown state {other:?}"),
                    })
                }
            };
            data_keys.push(DataKeyStatus {
                created_at: from_nanos("data_keys", &id, created_at)?,
                retired_at: retired_at
                    .map(|nanos| from_nanos("data_keys", &id, nanos))
                    .transpose()?,
                rows: from_sql_int("data_keys", &id, rows)?,
                state,
                id,
            });
        }

        Ok(KeyStatus {
            active_key_id,
            data_keys,
            argon2: keyring.params,
            created_at: from_nanos("keyring", "1", keyring.created_at)?,
            master_key_changed_at: from_nanos("keyring", "1", keyring.master_key_changed_at)?,
        })
    }

    /// Changes the master key: derives a new key-encryption key with a new
    /// salt and the Argon2id parameters of this store's options, and re-wraps
    /// the data keys and the MAC key in one transaction. The sealed values are
    /// not touched, so the cost does not depend on the number of secrets.
    ///
    /// Other processes that have the store open keep working with the data
    /// keys they hold, but must be restarted with the new master key before
    /// they can unwrap a data key created later.
    ///
    /// # Errors
    ///
    /// [`Error::WrongMasterKey`] when `old` does not open the store (nothing is
    /// written), [`Error::InvalidMasterKey`] or [`Error::Io`] when a key cannot
    /// be read, [`Error::Sqlite`].
    pub fn rotate_master_key(&self, old: &MasterKey, new: &MasterKey) -> Result<(), Error> {
        let old_bytes = master_key_bytes(old)?;
        let new_bytes = master_key_bytes(new)?;

        // Both Argon2id derivations run before the write transaction starts, so
        // other writers are not blocked for their duration.
        let before = {
            let connection = self.inner.pool.get()?;
            read_keyring(&connection)?
        };
        let old_kek = derive_kek(&old_bytes, &before.salt, &before.params)?;
        old_kek
            .unwrap_key(KeyPurpose::Mac, MAC_KEY_ID, &before.wrapped_mac_key)
            .ok_or(Error::WrongMasterKey)?;
        let params = self.inner.options.argon2;
        let salt: [u8; SALT_LEN] = random_bytes();
        let new_kek = derive_kek(&new_bytes, &salt, &params)?;

        let rewrapped = self.inner.writer.transaction(|transaction| {
            // Unwrap again inside the transaction: another process may have
            // changed the master key since the check above.
            let current = read_keyring(transaction)?;
            let mac_key = old_kek
                .unwrap_key(KeyPurpose::Mac, MAC_KEY_ID, &current.wrapped_mac_key)
                .ok_or(Error::WrongMasterKey)?;
            transaction.execute(
                "UPDATE keyring SET salt = ?1, memory_kib = ?2, iterations = ?3, parallelism = ?4,
                                    wrapped_mac_key = ?5, master_key_changed_at = ?6
                 WHERE id = 1",
                params![
                    salt.as_slice(),
                    params.memory_kib,
                    params.iterations,
                    params.parallelism,
                    new_kek.wrap(KeyPurpose::Mac, MAC_KEY_ID, &mac_key)?,
                    to_nanos(now()),
                ],
            )?;

            let wrapped_keys: Vec<(String, Vec<u8>)> = {
                let mut statement = transaction
                    .prepare("SELECT id, wrapped FROM data_keys WHERE wrapped IS NOT NULL")?;
                let rows = statement.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            for (id, wrapped) in &wrapped_keys {
                let key = old_kek
                    .unwrap_key(KeyPurpose::Data, id, wrapped)
                    .ok_or_else(|| Error::CorruptRow {
                        table: "data_keys",
                        key: id.clone(),
                        detail: "the wrapped data key does not open with the current master key"
                            .to_owned(),
                    })?;
                transaction.execute(
                    "UPDATE data_keys SET wrapped = ?1 WHERE id = ?2",
                    params![new_kek.wrap(KeyPurpose::Data, id, &key)?, id],
                )?;
            }
            Ok(wrapped_keys.len())
        })?;

        let mut keys = self
            .inner
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        keys.kek = new_kek;
        drop(keys);
        tracing::info!(
            data_keys = rewrapped,
            memory_kib = params.memory_kib,
            iterations = params.iterations,
            "changed the master key"
        );
        Ok(())
    }

    /// Rotates the data key: creates a new active key, re-encrypts every
    /// credentials row with it in batches, and retires each old key once no
    /// row uses it. `progress` is called after each committed batch.
    ///
    /// Each batch is its own transaction and an old key stays available until
    /// no row uses it, so an interruption (a crash, an error, a panic in
    /// `progress`) leaves every value openable. Calling this again resumes an
    /// unfinished rotation instead of creating another key.
    ///
    /// # Errors
    ///
    /// [`Error::Unseal`] when a stored value does not open. The rotation then
    /// stops at that row and the old key stays, so store that data source's
    /// credentials again and call this again. [`Error::Sqlite`] when SQLite fails.
    pub fn rotate_data_key(
        &self,
        progress: &mut dyn FnMut(RotationProgress),
    ) -> Result<RotationReport, Error> {
        let new_key_id = self.begin_data_key_rotation()?;

        let total = {
            let connection = self.inner.pool.get()?;
            let count: i64 = connection.query_row(
                "SELECT COUNT(*) FROM credentials WHERE key_id != ?1",
                [&new_key_id],
                |row| row.get(0),
            )?;
            from_sql_int("credentials", "count", count)?
        };

        let mut done = 0u64;
        loop {
            let batch = self.reencrypt_batch(&new_key_id)?;
            if batch == 0 {
                break;
            }
            done += batch;
            progress(RotationProgress {
                done,
                total: total.max(done),
            });
        }

        let retired_key_ids = self.retire_unused_keys()?;
        let rows_per_key = self
            .key_status()?
            .data_keys
            .into_iter()
            .filter(|key| key.state != DataKeyState::Retired)
            .map(|key| (key.id, key.rows))
            .collect();
        tracing::info!(
            new_key_id,
            reencrypted = done,
            retired = retired_key_ids.len(),
            "rotated the data key"
        );
        Ok(RotationReport {
            new_key_id,
            retired_key_ids,
            reencrypted: done,
            rows_per_key,
        })
    }

    /// Creates the new active data key, or returns the active one when an
    /// earlier rotation left a key `retiring`.
    fn begin_data_key_rotation(&self) -> Result<String, Error> {
        let (key_id, created) = self.inner.writer.transaction(|transaction| {
            let retiring: i64 = transaction.query_row(
                "SELECT COUNT(*) FROM data_keys WHERE state = 'retiring'",
                [],
                |row| row.get(0),
            )?;
            if retiring > 0 {
                let active = active_key_id(transaction)?;
                tracing::info!(key_id = active, "resuming an unfinished data key rotation");
                return Ok((active, None));
            }

            let count: i64 =
                transaction.query_row("SELECT COUNT(*) FROM data_keys", [], |row| row.get(0))?;
            let key_id = format!("dk-{}", count + 1);
            let key = random_key();
            let wrapped = {
                let keys = self
                    .inner
                    .keys
                    .read()
                    .unwrap_or_else(PoisonError::into_inner);
                keys.kek.wrap(KeyPurpose::Data, &key_id, &key)?
            };
            transaction.execute(
                "UPDATE data_keys SET state = 'retiring' WHERE state = 'active'",
                [],
            )?;
            transaction.execute(
                "INSERT INTO data_keys (id, state, wrapped, created_at) VALUES (?1, 'active', ?2, ?3)",
                params![key_id, wrapped, to_nanos(now())],
            )?;
            Ok((key_id, Some(key)))
        })?;
        let Some(key) = created else {
            return Ok(key_id);
        };

        let mut keys = self
            .inner
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        keys.data_keys
            .insert(key_id.clone(), Arc::new(Cipher::new(&key)));
        Ok(key_id)
    }

    /// Re-encrypts up to one batch of rows not sealed with `new_key_id`, in one
    /// transaction, and returns how many it re-encrypted.
    fn reencrypt_batch(&self, new_key_id: &str) -> Result<u64, Error> {
        use authcfg_model::CredentialField as Field;

        let rows = self.inner.writer.transaction(|transaction| {
            let new_key = self.inner.data_key(transaction, new_key_id)?;

            let rows: Vec<SealedRow> = {
                let mut statement = transaction.prepare_cached(
                    "SELECT c.datasource_id, d.name, c.key_id, c.client_secret, c.password,
                            c.refresh_token
                     FROM credentials c JOIN datasources d ON d.id = c.datasource_id
                     WHERE c.key_id != ?1 ORDER BY c.datasource_id LIMIT ?2",
                )?;
                let batch_size = i64::try_from(self.inner.options.rotation_batch_size.max(1))
                    .unwrap_or(i64::MAX);
                let rows = statement.query_map(params![new_key_id, batch_size], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, String>(2)?,
                        row.get::<_, Vec<u8>>(3)?,
                        row.get::<_, Option<Vec<u8>>>(4)?,
                        row.get::<_, Option<Vec<u8>>>(5)?,
                    ))
                })?;
                let mut sealed = Vec::new();
                for row in rows {
                    let (id, name, key_id, client_secret, password, refresh_token) = row?;
                    sealed.push(SealedRow {
                        datasource_id: crate::datasources::parse_id(&id)?,
                        name,
                        key_id,
                        client_secret,
                        password,
                        refresh_token,
                    });
                }
                sealed
            };

            for row in &rows {
                let old_key = self.inner.data_key(transaction, &row.key_id)?;
                let reseal = |field: Field, sealed: &[u8]| -> Result<Vec<u8>, Error> {
                    let plaintext = old_key
                        .open(row.datasource_id, field, &row.key_id, sealed)
                        .ok_or_else(|| Error::Unseal {
                            datasource: row.name.clone(),
                            field,
                        })?;
                    new_key.seal(row.datasource_id, field, new_key_id, &plaintext)
                };
                let client_secret = reseal(Field::ClientSecret, &row.client_secret)?;
                let password = row
                    .password
                    .as_deref()
                    .map(|sealed| reseal(Field::Password, sealed))
                    .transpose()?;
                let refresh_token = row
                    .refresh_token
                    .as_deref()
                    .map(|sealed| reseal(Field::RefreshToken, sealed))
                    .transpose()?;
                transaction.execute(
                    "UPDATE credentials
                     SET key_id = ?1, client_secret = ?2, password = ?3, refresh_token = ?4
                     WHERE datasource_id = ?5",
                    params![
                        new_key_id,
                        client_secret,
                        password,
                        refresh_token,
                        row.datasource_id.to_string()
                    ],
                )?;
            }
            Ok(rows)
        })?;
        Ok(rows.len() as u64)
    }

    /// Retires every `retiring` key that no row uses and returns their ids.
    fn retire_unused_keys(&self) -> Result<Vec<String>, Error> {
        let unused = self.inner.writer.transaction(|transaction| {
            let unused: Vec<String> = {
                let mut statement = transaction.prepare(
                    "SELECT id FROM data_keys k WHERE state = 'retiring'
                     AND NOT EXISTS (SELECT 1 FROM credentials c WHERE c.key_id = k.id)",
                )?;
                let rows = statement.query_map([], |row| row.get(0))?;
                rows.collect::<Result<_, _>>()?
            };
            for id in &unused {
                transaction.execute(
                    "UPDATE data_keys SET state = 'retired', wrapped = NULL, retired_at = ?1
                     WHERE id = ?2",
                    params![to_nanos(now()), id],
                )?;
            }
            Ok(unused)
        })?;

        let mut keys = self
            .inner
            .keys
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for id in &unused {
            keys.data_keys.remove(id);
        }
        Ok(unused)
    }
}
