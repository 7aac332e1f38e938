//! Credentials of a data source: put, delete, summary, unseal, and the
//! atomic replacement of a rotated refresh token.
//!
//! The client id and username are stored in the clear; the client secret,
//! password and refresh token are sealed with the active data key. The
//! credentials version comes from a per-data-source counter that only grows,
//! so a version number is never reused, not even after a delete.

use authcfg_model::{
    AuthConfig, CredentialField, Credentials, CredentialsSummary, DataSourceId, SecretString,
    ValidationErrors,
};
use rusqlite::{params, Connection, OptionalExtension};
use subtle::ConstantTimeEq;

use crate::convert::{from_nanos, from_sql_int, now, to_nanos};
use crate::crypto::{fingerprint, Cipher};
use crate::datasources::{not_found, parse_id};
use crate::{Error, Inner, Store, UnsealedCredentials};

/// Longest accepted refresh token, in bytes; the model applies the same limit
/// to every credential value.
const MAX_SECRET_LEN: usize = 16 * 1024;

/// A `credentials` row with its sealed values.
struct StoredCredentials {
    key_id: String,
    client_id: String,
    username: Option<String>,
    client_secret: Vec<u8>,
    password: Option<Vec<u8>>,
    refresh_token: Option<Vec<u8>>,
    fingerprint: String,
    version: i64,
    updated_at: i64,
}

impl StoredCredentials {
    fn summary(&self, name: &str) -> Result<CredentialsSummary, Error> {
        SummaryRow {
            client_id: self.client_id.clone(),
            username: self.username.clone(),
            has_password: self.password.is_some(),
            has_refresh_token: self.refresh_token.is_some(),
            fingerprint: self.fingerprint.clone(),
            version: self.version,
            updated_at: self.updated_at,
        }
        .decode(name)
    }
}

/// The `credentials` columns that a [`CredentialsSummary`] shows. Sealed
/// values are not read, only whether they are set.
pub(crate) struct SummaryRow {
    pub(crate) client_id: String,
    pub(crate) username: Option<String>,
    pub(crate) has_password: bool,
    pub(crate) has_refresh_token: bool,
    pub(crate) fingerprint: String,
    pub(crate) version: i64,
    pub(crate) updated_at: i64,
}

impl SummaryRow {
    /// Builds the summary of the credentials of data source `name`.
    pub(crate) fn decode(self, name: &str) -> Result<CredentialsSummary, Error> {
        let mut secrets_set = vec![CredentialField::ClientSecret];
        if self.has_password {
            secrets_set.push(CredentialField::Password);
        }
        if self.has_refresh_token {
            secrets_set.push(CredentialField::RefreshToken);
        }
        Ok(CredentialsSummary {
            version: from_sql_int("credentials", name, self.version)?,
            updated_at: from_nanos("credentials", name, self.updated_at)?,
            client_id: self.client_id,
            username: self.username,
            secrets_set,
            fingerprint: self.fingerprint,
        })
    }
}

/// The data source columns that credentials operations need.
struct Owner {
    id: DataSourceId,
    name: String,
    auth: String,
    credentials_version: i64,
    credentials: Option<StoredCredentials>,
}

/// Reads a data source and its credentials row, by name or by id.
fn load_owner(connection: &Connection, by_id: bool, key: &str) -> Result<Option<Owner>, Error> {
    let sql = if by_id {
        "SELECT d.id, d.name, d.auth, d.credentials_version, c.key_id, c.client_id, c.username,
                c.client_secret, c.password, c.refresh_token, c.fingerprint, c.version,
                c.updated_at
         FROM datasources d LEFT JOIN credentials c ON c.datasource_id = d.id
         WHERE d.id = ?1"
    } else {
        "SELECT d.id, d.name, d.auth, d.credentials_version, c.key_id, c.client_id, c.username,
                c.client_secret, c.password, c.refresh_token, c.fingerprint, c.version,
                c.updated_at
         FROM datasources d LEFT JOIN credentials c ON c.datasource_id = d.id
         WHERE d.name = ?1"
    };
    let row = connection
        .prepare_cached(sql)?
        .query_row([key], |row| {
            let key_id: Option<String> = row.get(4)?;
            let credentials = match key_id {
                None => None,
                Some(key_id) => Some(StoredCredentials {
                    key_id,
                    client_id: row.get(5)?,
                    username: row.get(6)?,
                    client_secret: row.get(7)?,
                    password: row.get(8)?,
                    refresh_token: row.get(9)?,
                    fingerprint: row.get(10)?,
                    version: row.get(11)?,
                    updated_at: row.get(12)?,
                }),
            };
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                credentials,
            ))
        })
        .optional()?;
    let Some((id, name, auth, credentials_version, credentials)) = row else {
        return Ok(None);
    };
    Ok(Some(Owner {
        id: parse_id(&id)?,
        name,
        auth,
        credentials_version,
        credentials,
    }))
}

impl Inner {
    /// Opens one sealed field, naming the data source and field on failure.
    fn open_field(
        key: &Cipher,
        owner: &Owner,
        stored: &StoredCredentials,
        field: CredentialField,
        sealed: &[u8],
    ) -> Result<SecretString, Error> {
        key.open(owner.id, field, &stored.key_id, sealed)
            .map(|plaintext| SecretString::new(plaintext.as_str()))
            .ok_or_else(|| Error::Unseal {
                datasource: owner.name.clone(),
                field,
            })
    }

    /// Opens every sealed field of a credentials row.
    fn unseal(
        &self,
        connection: &Connection,
        owner: &Owner,
        stored: &StoredCredentials,
    ) -> Result<Credentials, Error> {
        let key = self.data_key(connection, &stored.key_id)?;
        let open = |field, sealed: &[u8]| Self::open_field(&key, owner, stored, field, sealed);
        Ok(Credentials {
            client_id: stored.client_id.clone(),
            client_secret: open(CredentialField::ClientSecret, &stored.client_secret)?,
            username: stored.username.clone(),
            password: stored
                .password
                .as_deref()
                .map(|sealed| open(CredentialField::Password, sealed))
                .transpose()?,
            refresh_token: stored
                .refresh_token
                .as_deref()
                .map(|sealed| open(CredentialField::RefreshToken, sealed))
                .transpose()?,
        })
    }
}

/// Compares two secrets in constant time for equal lengths.
fn same_secret(left: &SecretString, right: &SecretString) -> bool {
    left.expose_secret()
        .as_bytes()
        .ct_eq(right.expose_secret().as_bytes())
        .into()
}

fn same_optional_secret(left: Option<&SecretString>, right: Option<&SecretString>) -> bool {
    match (left, right) {
        (None, None) => true,
        (Some(left), Some(right)) => same_secret(left, right),
        _ => false,
    }
}

fn decode_auth(owner: &Owner) -> Result<AuthConfig, Error> {
    serde_json::from_str(&owner.auth).map_err(|error| Error::CorruptRow {
        table: "datasources",
        key: owner.name.clone(),
        detail: format!("the auth config is not valid JSON ({error})"),
    })
}

impl Store {
    /// Stores the credentials of a data source, sealing every secret with the
    /// active data key under fresh nonces.
    ///
    /// When every value equals the stored one, nothing is written and the
    /// version stays. Otherwise the version increments. A stored value that no
    /// longer opens counts as changed, so putting the credentials again is how
    /// an operator replaces a damaged value.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when the data source does not exist,
    /// [`Error::Validation`] for invalid values (messages never quote a
    /// secret), [`Error::Sqlite`].
    pub fn put_credentials(
        &self,
        name: &str,
        credentials: &Credentials,
    ) -> Result<CredentialsSummary, Error> {
        let (summary, written) = self.inner.writer.transaction(|transaction| {
            let owner = load_owner(transaction, false, name)?.ok_or_else(|| not_found(name))?;
            credentials.validate(decode_auth(&owner)?.method)?;

            if let Some(stored) = &owner.credentials {
                let unchanged = stored.client_id == credentials.client_id
                    && stored.username == credentials.username
                    && match self.inner.unseal(transaction, &owner, stored) {
                        Ok(current) => {
                            same_secret(&current.client_secret, &credentials.client_secret)
                                && same_optional_secret(
                                    current.password.as_ref(),
                                    credentials.password.as_ref(),
                                )
                                && same_optional_secret(
                                    current.refresh_token.as_ref(),
                                    credentials.refresh_token.as_ref(),
                                )
                        }
                        Err(error) => {
                            tracing::warn!(
                                datasource = owner.name,
                                error = %error,
                                "a stored credential did not open and is being replaced"
                            );
                            false
                        }
                    };
                if unchanged {
                    tracing::debug!(
                        datasource = owner.name,
                        "credentials unchanged; version kept"
                    );
                    return Ok((stored.summary(&owner.name)?, None));
                }
            }

            let (key_id, key) = self.inner.active_key(transaction)?;
            let seal = |field, value: &SecretString| {
                key.seal(owner.id, field, &key_id, value.expose_secret())
            };
            let client_secret = seal(CredentialField::ClientSecret, &credentials.client_secret)?;
            let password = credentials
                .password
                .as_ref()
                .map(|value| seal(CredentialField::Password, value))
                .transpose()?;
            let refresh_token = credentials
                .refresh_token
                .as_ref()
                .map(|value| seal(CredentialField::RefreshToken, value))
                .transpose()?;
            let stored = StoredCredentials {
                key_id,
                client_id: credentials.client_id.clone(),
                username: credentials.username.clone(),
                client_secret,
                password,
                refresh_token,
                fingerprint: fingerprint(
                    &self.inner.mac_key(),
                    credentials.client_secret.expose_secret(),
                ),
                version: owner.credentials_version + 1,
                updated_at: to_nanos(now()),
            };

            transaction
                .prepare_cached(
                    "INSERT INTO credentials (datasource_id, key_id, client_id, username,
                         client_secret, password, refresh_token, fingerprint, version, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                     ON CONFLICT (datasource_id) DO UPDATE SET
                         key_id = excluded.key_id, client_id = excluded.client_id,
                         username = excluded.username, client_secret = excluded.client_secret,
                         password = excluded.password, refresh_token = excluded.refresh_token,
                         fingerprint = excluded.fingerprint, version = excluded.version,
                         updated_at = excluded.updated_at",
                )?
                .execute(params![
                    owner.id.to_string(),
                    stored.key_id,
                    stored.client_id,
                    stored.username,
                    stored.client_secret,
                    stored.password,
                    stored.refresh_token,
                    stored.fingerprint,
                    stored.version,
                    stored.updated_at,
                ])?;
            transaction
                .prepare_cached("UPDATE datasources SET credentials_version = ?1 WHERE id = ?2")?
                .execute(params![stored.version, owner.id.to_string()])?;
            Ok((
                stored.summary(&owner.name)?,
                Some((owner.id, stored.key_id)),
            ))
        })?;

        if let Some((datasource_id, key_id)) = written {
            tracing::info!(
                datasource_id = %datasource_id,
                version = summary.version,
                key_id,
                "stored credentials"
            );
        }
        Ok(summary)
    }

    /// Deletes the credentials of a data source. The next put gets a version
    /// higher than any earlier one.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when the data source or its credentials do not
    /// exist, [`Error::Sqlite`].
    pub fn delete_credentials(&self, name: &str) -> Result<(), Error> {
        let owner_id = self.inner.writer.transaction(|transaction| {
            let owner = load_owner(transaction, false, name)?.ok_or_else(|| not_found(name))?;

            let deleted = transaction.execute(
                "DELETE FROM credentials WHERE datasource_id = ?1",
                [owner.id.to_string()],
            )?;
            if deleted == 0 {
                return Err(Error::NotFound {
                    kind: "credentials of data source",
                    name: name.to_owned(),
                });
            }
            transaction.execute(
                "UPDATE datasources SET credentials_version = credentials_version + 1 WHERE id = ?1",
                [owner.id.to_string()],
            )?;
            Ok(owner.id)
        })?;

        tracing::info!(datasource_id = %owner_id, "deleted credentials");
        Ok(())
    }

    /// Returns what is stored for a data source's credentials, without any
    /// secret, or `None` when none are stored.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when the data source does not exist, [`Error::Sqlite`].
    pub fn credentials_summary(&self, name: &str) -> Result<Option<CredentialsSummary>, Error> {
        let connection = self.inner.pool.get()?;
        let owner = load_owner(&connection, false, name)?.ok_or_else(|| not_found(name))?;
        owner
            .credentials
            .as_ref()
            .map(|stored| stored.summary(&owner.name))
            .transpose()
    }

    /// Opens the credentials of a data source for the token exchange, or
    /// returns `None` when none are stored.
    ///
    /// # Security
    ///
    /// The result contains the plaintext secrets. Use them for one request and
    /// drop them; never log them or send them to an API client.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when the data source does not exist,
    /// [`Error::Unseal`] naming the data source and field when a value does not
    /// open (the row is left as it is), [`Error::DataKeyUnavailable`],
    /// [`Error::Sqlite`].
    pub fn unseal_credentials(&self, name: &str) -> Result<Option<UnsealedCredentials>, Error> {
        let connection = self.inner.pool.get()?;
        let owner = load_owner(&connection, false, name)?.ok_or_else(|| not_found(name))?;
        let Some(stored) = &owner.credentials else {
            return Ok(None);
        };

        let credentials = self.inner.unseal(&connection, &owner, stored)?;
        Ok(Some(UnsealedCredentials {
            credentials,
            version: from_sql_int("credentials", &owner.name, stored.version)?,
            datasource_id: owner.id,
        }))
    }

    /// Replaces the refresh token, as a token endpoint rotates it, when the
    /// credentials version is still `expected_version`. Returns the new
    /// credentials version, or the same one when the token did not change.
    ///
    /// The check and the write are one transaction, so two concurrent
    /// exchanges that both read version `n` cannot both store a token: the
    /// second gets [`Error::Conflict`].
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`] when the credentials changed since
    /// `expected_version` (nothing is written), [`Error::NotFound`] when the
    /// data source or its credentials do not exist, [`Error::Validation`] for
    /// an empty or invalid token, [`Error::Sqlite`].
    pub fn rotate_refresh_token(
        &self,
        id: DataSourceId,
        expected_version: u64,
        new_token: &SecretString,
    ) -> Result<u64, Error> {
        check_refresh_token(new_token)?;

        let (datasource_id, name, version) = self.inner.writer.transaction(|transaction| {
            let owner = load_owner(transaction, true, &id.to_string())?
                .ok_or_else(|| not_found(&id.to_string()))?;
            let Some(stored) = &owner.credentials else {
                return Err(Error::NotFound {
                    kind: "credentials of data source",
                    name: owner.name,
                });
            };
            let current = from_sql_int("credentials", &owner.name, stored.version)?;
            if current != expected_version {
                return Err(Error::Conflict {
                    kind: "credentials",
                    name: owner.name.clone(),
                    expected: expected_version,
                    current,
                });
            }

            // The row keeps its data key, so its fields stay sealed under one key
            // id; a data key rotation re-encrypts the whole row later.
            let key = self.inner.data_key(transaction, &stored.key_id)?;
            if let Some(sealed) = &stored.refresh_token {
                let unchanged = key
                    .open(
                        owner.id,
                        CredentialField::RefreshToken,
                        &stored.key_id,
                        sealed,
                    )
                    .is_some_and(|old| {
                        old.as_bytes()
                            .ct_eq(new_token.expose_secret().as_bytes())
                            .into()
                    });
                if unchanged {
                    return Ok((owner.id, owner.name, stored.version));
                }
            }
            let sealed = key.seal(
                owner.id,
                CredentialField::RefreshToken,
                &stored.key_id,
                new_token.expose_secret(),
            )?;
            let version = owner.credentials_version + 1;
            transaction
                .prepare_cached(
                    "UPDATE credentials SET refresh_token = ?1, version = ?2, updated_at = ?3
                     WHERE datasource_id = ?4 AND version = ?5",
                )?
                .execute(params![
                    sealed,
                    version,
                    to_nanos(now()),
                    owner.id.to_string(),
                    stored.version
                ])?;
            transaction
                .prepare_cached("UPDATE datasources SET credentials_version = ?1 WHERE id = ?2")?
                .execute(params![version, owner.id.to_string()])?;
            Ok((owner.id, owner.name, version))
        })?;

        let version = from_sql_int("credentials", &name, version)?;
        if version != expected_version {
            tracing::info!(%datasource_id, version, "stored a rotated refresh token");
        }
        Ok(version)
    }
}

/// Checks a refresh token with the rules the model applies to credential values.
fn check_refresh_token(token: &SecretString) -> Result<(), Error> {
    let value = token.expose_secret();
    let problem = if value.is_empty() {
        Some("refresh_token is empty: store the token the token endpoint returned".to_owned())
    } else if value.chars().any(char::is_control) {
        Some("refresh_token contains a control character: remove it".to_owned())
    } else if value.len() > MAX_SECRET_LEN {
        Some(format!(
            "refresh_token is {} bytes long; the maximum is {MAX_SECRET_LEN}",
            value.len()
        ))
    } else {
        None
    };
    match problem {
        Some(detail) => Err(ValidationErrors::single("/refresh_token", detail).into()),
        None => Ok(()),
    }
}
