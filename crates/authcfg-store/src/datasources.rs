//! Data sources: create, read, list, update with a version check, delete.
//!
//! The auth config is stored as the model's JSON in one column, so a new
//! auth field needs no schema migration. Each row also stores the name key of
//! [`datasource_name_key`], the identity of the name for environment
//! variables, in the indexed `name_key` column. Creation rejects a name whose
//! key another data source has.

use authcfg_model::{
    datasource_name_key, AuthConfig, CreateDataSource, DataSource, DataSourceId, ValidationErrors,
};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row};
use uuid::Uuid;

use crate::convert::{from_nanos, from_sql_int, now, to_nanos, to_sql_int};
use crate::credentials::SummaryRow;
use crate::{DataSourceWithCredentials, Error, Page, Store, MAX_PAGE_SIZE};

/// The columns that [`RawDataSource::from_row`] reads, in order.
const COLUMNS: &str = "id, name, description, base_url, auth, created_at, updated_at, version";

/// A `datasources` row before its columns are decoded.
struct RawDataSource {
    id: String,
    name: String,
    description: Option<String>,
    base_url: Option<String>,
    auth: String,
    created_at: i64,
    updated_at: i64,
    version: i64,
}

impl RawDataSource {
    fn from_row(row: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: row.get(0)?,
            name: row.get(1)?,
            description: row.get(2)?,
            base_url: row.get(3)?,
            auth: row.get(4)?,
            created_at: row.get(5)?,
            updated_at: row.get(6)?,
            version: row.get(7)?,
        })
    }

    fn decode(self) -> Result<DataSource, Error> {
        let auth: AuthConfig =
            serde_json::from_str(&self.auth).map_err(|error| Error::CorruptRow {
                table: "datasources",
                key: self.name.clone(),
                detail: format!("the auth config is not valid JSON ({error})"),
            })?;
        Ok(DataSource {
            id: parse_id(&self.id)?,
            description: self.description,
            base_url: self.base_url,
            auth,
            created_at: from_nanos("datasources", &self.name, self.created_at)?,
            updated_at: from_nanos("datasources", &self.name, self.updated_at)?,
            version: from_sql_int("datasources", &self.name, self.version)?,
            name: self.name,
        })
    }
}

/// Parses a stored data source id.
pub(crate) fn parse_id(text: &str) -> Result<DataSourceId, Error> {
    Uuid::parse_str(text)
        .map(DataSourceId)
        .map_err(|error| Error::CorruptRow {
            table: "datasources",
            key: text.to_owned(),
            detail: format!("the id is not a UUID ({error})"),
        })
}

/// Returns the error for a data source that does not exist.
pub(crate) fn not_found(name: &str) -> Error {
    Error::NotFound {
        kind: "data source",
        name: name.to_owned(),
    }
}

/// Reads one data source by a unique column.
fn select_one(
    connection: &Connection,
    column: &str,
    value: &str,
) -> Result<Option<DataSource>, Error> {
    let raw = connection
        .prepare_cached(&format!(
            "SELECT {COLUMNS} FROM datasources WHERE {column} = ?1"
        ))?
        .query_row([value], RawDataSource::from_row)
        .optional()?;
    raw.map(RawDataSource::decode).transpose()
}

/// Returns the first name, in name order, of the data sources whose name key
/// is `key`. One lookup in the `(name_key, name)` index.
fn name_for_key(connection: &Connection, key: &str) -> Result<Option<String>, Error> {
    Ok(connection
        .prepare_cached("SELECT name FROM datasources WHERE name_key = ?1 ORDER BY name LIMIT 1")?
        .query_row([key], |row| row.get(0))
        .optional()?)
}

/// Serializes an auth config for the `auth` column.
fn encode_auth(auth: &AuthConfig) -> Result<String, Error> {
    serde_json::to_string(auth).map_err(|error| {
        Error::Validation(ValidationErrors::single(
            "/auth",
            format!("the auth config cannot be stored as JSON ({error})"),
        ))
    })
}

/// Clamps a requested page size to 1..=[`MAX_PAGE_SIZE`].
pub(crate) fn page_size(limit: usize) -> usize {
    limit.clamp(1, MAX_PAGE_SIZE)
}

/// Decodes up to `limit` rows of a listing ordered by name into a page. The
/// query fetches `limit + 1` rows: one row more than the page shows that
/// another page follows, and `next_cursor` is then the last name of the page.
fn collect_page<R, T>(
    rows: impl Iterator<Item = rusqlite::Result<R>>,
    limit: usize,
    decode: impl Fn(R) -> Result<T, Error>,
    name_of: impl Fn(&T) -> &str,
) -> Result<Page<T>, Error> {
    let mut items = Vec::with_capacity(limit);
    let mut more = false;
    for row in rows {
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(decode(row?)?);
    }

    let next_cursor = if more {
        items.last().map(|last| name_of(last).to_owned())
    } else {
        None
    };
    Ok(Page { items, next_cursor })
}

impl Store {
    /// Creates a data source after validating the request. The id is a new
    /// random UUID and the version starts at 1.
    ///
    /// The name and its name key ([`datasource_name_key`]) are checked in
    /// the write transaction of the insert, so two processes that create
    /// `crm-prod` and `crm_prod` at the same time cannot both succeed. The
    /// check is one index lookup, whatever the number of data sources.
    ///
    /// # Errors
    ///
    /// [`Error::Validation`] for an invalid request, [`Error::AlreadyExists`]
    /// when the name is taken, [`Error::NameKeyTaken`] when another data
    /// source's name has the same name key, [`Error::Sqlite`].
    pub fn create_datasource(&self, request: &CreateDataSource) -> Result<DataSource, Error> {
        request.validate()?;

        let created_at = now();
        let datasource = DataSource {
            id: DataSourceId(Uuid::new_v4()),
            name: request.name.clone(),
            description: request.description.clone(),
            base_url: request.base_url.clone(),
            auth: request.auth.clone(),
            created_at,
            updated_at: created_at,
            version: 1,
        };
        let auth = encode_auth(&datasource.auth)?;
        let name_key = datasource_name_key(&datasource.name);
        let already_exists = || Error::AlreadyExists {
            kind: "data source",
            name: datasource.name.clone(),
        };

        self.inner.writer.transaction(|transaction| {
            let taken: bool = transaction
                .prepare_cached("SELECT EXISTS (SELECT 1 FROM datasources WHERE name = ?1)")?
                .query_row([&datasource.name], |row| row.get(0))?;
            if taken {
                return Err(already_exists());
            }
            if let Some(existing) = name_for_key(transaction, &name_key)? {
                return Err(Error::NameKeyTaken {
                    name: datasource.name.clone(),
                    existing,
                    key: name_key.clone(),
                });
            }

            let inserted = transaction
                .prepare_cached(
                    "INSERT INTO datasources (id, name, name_key, description, base_url, auth,
                                              created_at, updated_at, version)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, 1)",
                )?
                .execute(params![
                    datasource.id.to_string(),
                    datasource.name,
                    name_key,
                    datasource.description,
                    datasource.base_url,
                    auth,
                    to_nanos(created_at),
                ]);
            match inserted {
                Ok(_) => Ok(()),
                // The name was checked above in the same write transaction, so
                // this is a guard rather than the usual path.
                Err(error) if error.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                    Err(already_exists())
                }
                Err(error) => Err(error.into()),
            }
        })?;

        tracing::info!(datasource_id = %datasource.id, name = datasource.name, "created a data source");
        Ok(datasource)
    }

    /// Returns the data source named `name`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is none, [`Error::Sqlite`].
    pub fn get_datasource(&self, name: &str) -> Result<DataSource, Error> {
        let connection = self.inner.pool.get()?;
        select_one(&connection, "name", name)?.ok_or_else(|| not_found(name))
    }

    /// Returns the data source with the id `id`.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is none, [`Error::Sqlite`].
    pub fn get_datasource_by_id(&self, id: DataSourceId) -> Result<DataSource, Error> {
        let connection = self.inner.pool.get()?;
        select_one(&connection, "id", &id.to_string())?.ok_or_else(|| not_found(&id.to_string()))
    }

    /// Returns the name of the data source whose name key
    /// ([`datasource_name_key`]) is `key`, such as `crm-prod` for `CRM_PROD`,
    /// or `None` when there is none. When a store written by an older version
    /// contains two names with one key, the first in name order is returned.
    /// One index lookup.
    ///
    /// # Errors
    ///
    /// [`Error::Sqlite`].
    pub fn datasource_name_for_key(&self, key: &str) -> Result<Option<String>, Error> {
        let connection = self.inner.pool.get()?;
        name_for_key(&connection, key)
    }

    /// Lists data sources ordered by name, starting after `after_name`.
    ///
    /// `limit` is clamped to 1..=[`MAX_PAGE_SIZE`]. The order is stable under
    /// concurrent changes: a page never repeats a name of an earlier page, and
    /// `next_cursor` is the last name of the page when more data sources follow.
    ///
    /// # Errors
    ///
    /// [`Error::Sqlite`] or [`Error::CorruptRow`].
    pub fn list_datasources(
        &self,
        after_name: Option<&str>,
        limit: usize,
    ) -> Result<Page<DataSource>, Error> {
        let limit = page_size(limit);
        let connection = self.inner.pool.get()?;
        // The cursor is an empty string for the first page: every valid name
        // sorts after it, and the comparison uses the unique index on `name`.
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM datasources WHERE name > ?1 ORDER BY name LIMIT ?2"
        ))?;

        let rows = statement.query_map(
            params![after_name.unwrap_or(""), to_sql_int(limit as u64 + 1)],
            RawDataSource::from_row,
        )?;
        collect_page(rows, limit, RawDataSource::decode, |datasource| {
            &datasource.name
        })
    }

    /// Lists data sources with the summaries of their credentials, ordered by
    /// name and starting after `after_name`, in one query per page.
    ///
    /// The order, the clamping of `limit` and the cursor are those of
    /// [`Store::list_datasources`], and each summary equals what
    /// [`Store::credentials_summary`] returns. Reading a whole store this way
    /// costs one query per page instead of one per data source.
    ///
    /// # Errors
    ///
    /// [`Error::Sqlite`] or [`Error::CorruptRow`].
    pub fn list_datasources_with_credentials(
        &self,
        after_name: Option<&str>,
        limit: usize,
    ) -> Result<Page<DataSourceWithCredentials>, Error> {
        let limit = page_size(limit);
        let connection = self.inner.pool.get()?;
        // Columns 0 to 7 are those of `COLUMNS`, which `RawDataSource` reads.
        // `client_id` is NOT NULL in `credentials`, so a NULL there means the
        // data source has no credentials row. Sealed values are not read.
        let mut statement = connection.prepare_cached(
            "SELECT d.id, d.name, d.description, d.base_url, d.auth, d.created_at,
                    d.updated_at, d.version,
                    c.client_id, c.username, c.password IS NOT NULL,
                    c.refresh_token IS NOT NULL, c.fingerprint, c.version, c.updated_at
             FROM datasources d LEFT JOIN credentials c ON c.datasource_id = d.id
             WHERE d.name > ?1 ORDER BY d.name LIMIT ?2",
        )?;

        let rows = statement.query_map(
            params![after_name.unwrap_or(""), to_sql_int(limit as u64 + 1)],
            |row| {
                let raw = RawDataSource::from_row(row)?;
                let client_id: Option<String> = row.get(8)?;
                let summary = match client_id {
                    None => None,
                    Some(client_id) => Some(SummaryRow {
                        client_id,
                        username: row.get(9)?,
                        has_password: row.get(10)?,
                        has_refresh_token: row.get(11)?,
                        fingerprint: row.get(12)?,
                        version: row.get(13)?,
                        updated_at: row.get(14)?,
                    }),
                };
                Ok((raw, summary))
            },
        )?;
        collect_page(
            rows,
            limit,
            |(raw, summary)| {
                let datasource = raw.decode()?;
                let credentials = summary
                    .map(|summary| summary.decode(&datasource.name))
                    .transpose()?;
                Ok(DataSourceWithCredentials {
                    datasource,
                    credentials,
                })
            },
            |entry| &entry.datasource.name,
        )
    }

    /// Replaces the description, base URL and auth config of a data source
    /// when its stored version is `expected_version`, then increments the
    /// version and sets the update time. The id, name and creation time
    /// cannot change.
    ///
    /// # Errors
    ///
    /// [`Error::Conflict`] when the version is stale (nothing changes),
    /// [`Error::NotFound`] when the id is unknown, [`Error::Validation`] for
    /// an invalid data source or a changed name, [`Error::Sqlite`].
    pub fn update_datasource(
        &self,
        updated: &DataSource,
        expected_version: u64,
    ) -> Result<DataSource, Error> {
        updated.validate()?;
        let auth = encode_auth(&updated.auth)?;

        let id = updated.id.to_string();

        // The name never changes, so the stored name key stays correct.
        let next = self.inner.writer.transaction(|transaction| {
            let current =
                select_one(transaction, "id", &id)?.ok_or_else(|| not_found(&updated.name))?;
            if current.name != updated.name {
                return Err(ValidationErrors::single(
                    "/name",
                    format!(
                        "the name of data source {:?} cannot change to {:?}: create a new data \
                         source instead",
                        current.name, updated.name
                    ),
                )
                .into());
            }
            if current.version != expected_version {
                return Err(Error::Conflict {
                    kind: "data source",
                    name: current.name,
                    expected: expected_version,
                    current: current.version,
                });
            }

            let next = DataSource {
                description: updated.description.clone(),
                base_url: updated.base_url.clone(),
                auth: updated.auth.clone(),
                updated_at: now(),
                version: current.version + 1,
                ..current
            };
            transaction
                .prepare_cached(
                    "UPDATE datasources
                     SET description = ?1, base_url = ?2, auth = ?3, updated_at = ?4, version = ?5
                     WHERE id = ?6 AND version = ?7",
                )?
                .execute(params![
                    next.description,
                    next.base_url,
                    auth,
                    to_nanos(next.updated_at),
                    to_sql_int(next.version),
                    id,
                    to_sql_int(expected_version),
                ])?;
            Ok(next)
        })?;

        tracing::info!(datasource_id = %next.id, version = next.version, "updated a data source");
        Ok(next)
    }

    /// Deletes a data source and its credentials in one transaction. Audit
    /// events that name it are kept.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is none, [`Error::Sqlite`].
    pub fn delete_datasource(&self, name: &str) -> Result<(), Error> {
        self.inner.writer.transaction(|transaction| {
            transaction.execute(
                "DELETE FROM credentials
                 WHERE datasource_id = (SELECT id FROM datasources WHERE name = ?1)",
                [name],
            )?;
            let deleted = transaction.execute("DELETE FROM datasources WHERE name = ?1", [name])?;
            if deleted == 0 {
                return Err(not_found(name));
            }
            Ok(())
        })?;

        tracing::info!(name, "deleted a data source and its credentials");
        Ok(())
    }
}
