//! API tokens: random 256-bit values shown once and stored as SHA-256 hashes.
//!
//! A fast hash is enough here: the value has 256 bits of entropy, so unlike a
//! password it cannot be guessed from its hash, and the lookup stays cheap on
//! every request.

use authcfg_model::{
    validate_datasource_name, ApiTokenInfo, FieldError, Role, SecretString, ValidationErrors,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rusqlite::{params, OptionalExtension, Row};
use time::OffsetDateTime;

use crate::convert::{from_nanos, now, to_nanos};
use crate::crypto::{random_bytes, token_hash};
use crate::{Error, Store};

/// Prefix of every API token value, so that secret scanners can find leaked tokens.
pub const API_TOKEN_PREFIX: &str = "acfg_";

/// Longest accepted token label, in characters.
const MAX_LABEL_LEN: usize = 128;

/// Longest presented value that is hashed and looked up; longer values cannot
/// be tokens and are rejected without work.
const MAX_PRESENTED_LEN: usize = 256;

/// The columns that [`decode_token`] reads, in order.
const COLUMNS: &str = "id, label, role, datasources, created_at, last_used_at, revoked_at";

type RawToken = (
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
);

fn raw_token(row: &Row<'_>) -> rusqlite::Result<RawToken> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

fn decode_token(raw: RawToken) -> Result<ApiTokenInfo, Error> {
    let (id, label, role, datasources, created_at, last_used_at, revoked_at) = raw;
    let corrupt = |detail: String| Error::CorruptRow {
        table: "api_tokens",
        key: id.clone(),
        detail,
    };
    let role = match role.as_str() {
        "admin" => Role::Admin,
        "consumer" => Role::Consumer,
        other => return Err(corrupt(format!("unknown role {other:?}"))),
    };
    let datasources: Vec<String> = serde_json::from_str(&datasources).map_err(|error| {
        corrupt(format!(
            "the data source list is not a JSON array ({error})"
        ))
    })?;
    let time = |nanos: i64| from_nanos("api_tokens", &id, nanos);
    Ok(ApiTokenInfo {
        label,
        role,
        datasources,
        created_at: time(created_at)?,
        last_used_at: last_used_at.map(time).transpose()?,
        revoked_at: revoked_at.map(time).transpose()?,
        id,
    })
}

/// Checks a token request and returns every problem.
fn validate_token_request(label: &str, role: Role, datasources: &[String]) -> Result<(), Error> {
    let mut problems = Vec::new();
    if label.trim().is_empty() {
        problems.push((
            "/label".to_owned(),
            "label is empty: name the pipeline or person that uses the token".to_owned(),
        ));
    } else if label.chars().count() > MAX_LABEL_LEN {
        problems.push((
            "/label".to_owned(),
            format!("label is longer than {MAX_LABEL_LEN} characters: shorten it"),
        ));
    } else if label.chars().any(char::is_control) {
        problems.push((
            "/label".to_owned(),
            "label contains a control character: remove it".to_owned(),
        ));
    }
    match role {
        Role::Admin if !datasources.is_empty() => problems.push((
            "/datasources".to_owned(),
            "an admin token applies to every data source: leave datasources empty or use the \
             consumer role"
                .to_owned(),
        )),
        Role::Consumer if datasources.is_empty() => problems.push((
            "/datasources".to_owned(),
            "a consumer token needs at least one data source name".to_owned(),
        )),
        _ => {}
    }
    for (index, name) in datasources.iter().enumerate() {
        if let Err(detail) = validate_datasource_name(name) {
            problems.push((format!("/datasources/{index}"), detail));
        }
    }

    let problems = problems
        .into_iter()
        .map(|(pointer, detail)| FieldError { pointer, detail })
        .collect();
    match ValidationErrors::new(problems) {
        Some(errors) => Err(errors.into()),
        None => Ok(()),
    }
}

impl Store {
    /// Creates an API token. A consumer token names the data sources it may
    /// use; they need not exist yet. An admin token names none.
    ///
    /// # Security
    ///
    /// The returned [`SecretString`] is the token value: show it to the
    /// operator once and drop it. Only its SHA-256 hash is stored, so it
    /// cannot be shown again.
    ///
    /// # Errors
    ///
    /// [`Error::Validation`] for an empty or long label, an admin token with
    /// data sources, a consumer token without any, or an invalid data source
    /// name; [`Error::Sqlite`].
    pub fn create_api_token(
        &self,
        label: &str,
        role: Role,
        datasources: &[String],
    ) -> Result<(ApiTokenInfo, SecretString), Error> {
        validate_token_request(label, role, datasources)?;

        let id_bytes: [u8; 8] = random_bytes();
        let id = format!("tok_{}", URL_SAFE_NO_PAD.encode(id_bytes));
        let value_bytes: [u8; 32] = random_bytes();
        let value = SecretString::new(format!(
            "{API_TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(value_bytes)
        ));
        let info = ApiTokenInfo {
            id,
            label: label.to_owned(),
            role,
            datasources: datasources.to_vec(),
            created_at: now(),
            last_used_at: None,
            revoked_at: None,
        };
        let datasources_json = serde_json::to_string(&info.datasources).map_err(|error| {
            ValidationErrors::single("/datasources", format!("cannot encode the list ({error})"))
        })?;

        self.inner.writer.transaction(|transaction| {
            transaction
                .prepare_cached(&format!(
                    "INSERT INTO api_tokens (token_hash, {COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, NULL, NULL)"
                ))?
                .execute(params![
                    token_hash(value.expose_secret()).as_slice(),
                    info.id,
                    info.label,
                    info.role.as_str(),
                    datasources_json,
                    to_nanos(info.created_at),
                ])?;
            Ok(())
        })?;

        tracing::info!(token_id = info.id, role = %info.role, "created an API token");
        Ok((info, value))
    }

    /// Lists every API token, revoked ones included, oldest first.
    ///
    /// # Errors
    ///
    /// [`Error::Sqlite`] or [`Error::CorruptRow`].
    pub fn list_api_tokens(&self) -> Result<Vec<ApiTokenInfo>, Error> {
        let connection = self.inner.pool.get()?;
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM api_tokens ORDER BY created_at, id"
        ))?;
        let rows = statement.query_map([], raw_token)?;
        let mut tokens = Vec::new();
        for row in rows {
            tokens.push(decode_token(row?)?);
        }
        Ok(tokens)
    }

    /// Revokes an API token. Returns `false` when it was revoked already:
    /// revoking it again keeps the first revocation time and succeeds.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when no token has this id, [`Error::Sqlite`].
    pub fn revoke_api_token(&self, id: &str) -> Result<bool, Error> {
        let revoked = self.inner.writer.transaction(|transaction| {
            let exists: Option<Option<i64>> = transaction
                .query_row(
                    "SELECT revoked_at FROM api_tokens WHERE id = ?1",
                    [id],
                    |row| row.get(0),
                )
                .optional()?;
            match exists {
                None => {
                    return Err(Error::NotFound {
                        kind: "api token",
                        name: id.to_owned(),
                    })
                }
                Some(Some(_)) => return Ok(false),
                Some(None) => {}
            }
            transaction.execute(
                "UPDATE api_tokens SET revoked_at = ?1 WHERE id = ?2",
                params![to_nanos(now()), id],
            )?;
            Ok(true)
        })?;

        if revoked {
            tracing::info!(token_id = id, "revoked an API token");
        }
        Ok(revoked)
    }

    /// Looks up a presented API token value by its SHA-256 hash. A revoked or
    /// unknown token gives `None`, and so does a value without the
    /// [`API_TOKEN_PREFIX`] or longer than 256 bytes, without a lookup.
    ///
    /// # Errors
    ///
    /// [`Error::Sqlite`] or [`Error::CorruptRow`].
    pub fn find_api_token(&self, presented: &str) -> Result<Option<ApiTokenInfo>, Error> {
        if presented.len() > MAX_PRESENTED_LEN || !presented.starts_with(API_TOKEN_PREFIX) {
            return Ok(None);
        }
        let hash = token_hash(presented);

        let connection = self.inner.pool.get()?;
        let raw = connection
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM api_tokens WHERE token_hash = ?1 AND revoked_at IS NULL"
            ))?
            .query_row([hash.as_slice()], raw_token)
            .optional()?;
        raw.map(decode_token).transpose()
    }

    /// Returns the SHA-256 hash and metadata of every token that is not
    /// revoked, for an in-memory token index.
    ///
    /// # Errors
    ///
    /// [`Error::Sqlite`] or [`Error::CorruptRow`].
    pub fn api_token_hashes(&self) -> Result<Vec<([u8; 32], ApiTokenInfo)>, Error> {
        let connection = self.inner.pool.get()?;
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {COLUMNS}, token_hash FROM api_tokens WHERE revoked_at IS NULL
             ORDER BY created_at, id"
        ))?;
        let rows =
            statement.query_map([], |row| Ok((raw_token(row)?, row.get::<_, Vec<u8>>(7)?)))?;
        let mut tokens = Vec::new();
        for row in rows {
            let (raw, hash) = row?;
            let id = raw.0.clone();
            let hash: [u8; 32] = hash.as_slice().try_into().map_err(|_| Error::CorruptRow {
                table: "api_tokens",
                key: id,
                detail: format!("the token hash has {} bytes instead of 32", hash.len()),
            })?;
            tokens.push((hash, decode_token(raw)?));
        }
        Ok(tokens)
    }

    /// Records when tokens were last used, in one transaction. A time earlier
    /// than the stored one is ignored, and unknown ids are skipped.
    ///
    /// # Errors
    ///
    /// [`Error::Sqlite`].
    pub fn touch_api_tokens(&self, used: &[(String, OffsetDateTime)]) -> Result<(), Error> {
        if used.is_empty() {
            return Ok(());
        }
        self.inner.writer.transaction(|transaction| {
            {
                let mut statement = transaction.prepare_cached(
                    "UPDATE api_tokens SET last_used_at = ?1
                     WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1)",
                )?;
                for (id, at) in used {
                    statement.execute(params![to_nanos(*at), id])?;
                }
            }
            Ok(())
        })?;
        Ok(())
    }
}
