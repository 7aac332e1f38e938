//! Data sources: create, read, list, update with a version check, delete.
//!
//! The auth config is stored as the model's JSON in one column, so a new
//! auth field needs no schema migration.

use authcfg_model::{AuthConfig, CreateDataSource, DataSource, DataSourceId, ValidationErrors};
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior};
use uuid::Uuid;

use crate::convert::{from_nanos, from_sql_int, now, to_nanos, to_sql_int};
use crate::{Error, Page, Store, MAX_PAGE_SIZE};

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

impl Store {
    /// Creates a data source after validating the request. The id is a new
    /// random UUID and the version starts at 1.
    ///
    /// # Errors
    ///
    /// [`Error::Validation`] for an invalid request, [`Error::AlreadyExists`]
    /// when the name is taken, [`Error::Sqlite`].
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

        let connection = self.inner.pool.get()?;
        let inserted = connection
            .prepare_cached(
                "INSERT INTO datasources
                     (id, name, description, base_url, auth, created_at, updated_at, version)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, 1)",
            )?
            .execute(params![
                datasource.id.to_string(),
                datasource.name,
                datasource.description,
                datasource.base_url,
                auth,
                to_nanos(created_at),
            ]);
        match inserted {
            Ok(_) => {}
            Err(error) if error.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                return Err(Error::AlreadyExists {
                    kind: "data source",
                    name: datasource.name,
                });
            }
            Err(error) => return Err(error.into()),
        }

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

        // Fetching one row more than the page shows whether another page follows.
        let rows = statement.query_map(
            params![after_name.unwrap_or(""), to_sql_int(limit as u64 + 1)],
            RawDataSource::from_row,
        )?;
        let mut items = Vec::with_capacity(limit);
        let mut more = false;
        for row in rows {
            if items.len() == limit {
                more = true;
                break;
            }
            items.push(row?.decode()?);
        }

        let next_cursor = if more {
            items.last().map(|last: &DataSource| last.name.clone())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
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

        let mut connection = self.inner.pool.get()?;
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;

        let id = updated.id.to_string();
        let current =
            select_one(&transaction, "id", &id)?.ok_or_else(|| not_found(&updated.name))?;
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
        transaction.commit()?;

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
        let mut connection = self.inner.pool.get()?;
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;

        transaction.execute(
            "DELETE FROM credentials
             WHERE datasource_id = (SELECT id FROM datasources WHERE name = ?1)",
            [name],
        )?;
        let deleted = transaction.execute("DELETE FROM datasources WHERE name = ?1", [name])?;
        if deleted == 0 {
            return Err(not_found(name));
        }
        transaction.commit()?;

        tracing::info!(name, "deleted a data source and its credentials");
        Ok(())
    }
}
