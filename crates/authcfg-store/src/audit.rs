//! The audit log: append-only events, listed newest first.
//!
//! The store rejects details that carry a field named like a secret, as a
//! second line of defence behind callers that must not put secrets there.

use authcfg_model::{AuditEvent, AuditOutcome, FieldError, ValidationErrors};
use rusqlite::params;
use serde_json::Value;

use crate::convert::{from_nanos, now, to_nanos, to_sql_int};
use crate::datasources::page_size;
use crate::{Error, NewAuditEvent, Page, Store};

/// Longest accepted actor or action, in characters.
const MAX_NAME_LEN: usize = 128;
/// Longest accepted data source reference, in characters. Longer than a data
/// source name so that a denied request for an invalid name can be recorded.
const MAX_DATASOURCE_LEN: usize = 256;
/// Largest accepted detail document, in bytes of JSON.
const MAX_DETAIL_LEN: usize = 16 * 1024;

/// Object keys that a detail document may not contain, compared without
/// regard to case: they name secrets.
const SECRET_KEYS: &[&str] = &[
    "access_token",
    "authorization",
    "client_secret",
    "master_key",
    "passphrase",
    "password",
    "refresh_token",
    "secret",
    "token",
];

fn outcome_name(outcome: AuditOutcome) -> &'static str {
    match outcome {
        AuditOutcome::Success => "success",
        AuditOutcome::Failure => "failure",
        AuditOutcome::Denied => "denied",
    }
}

/// Returns the JSON pointer of the first key in `value` that names a secret.
fn find_secret_key(value: &Value, pointer: &str) -> Option<String> {
    match value {
        Value::Object(map) => map.iter().find_map(|(key, child)| {
            let path = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
            if SECRET_KEYS
                .iter()
                .any(|secret| key.eq_ignore_ascii_case(secret))
            {
                Some(path)
            } else {
                find_secret_key(child, &path)
            }
        }),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(index, child)| find_secret_key(child, &format!("{pointer}/{index}"))),
        _ => None,
    }
}

fn check_text(pointer: &str, value: &str, max: usize, problems: &mut Vec<(String, String)>) {
    let field = pointer.trim_start_matches('/');
    if value.is_empty() {
        problems.push((pointer.to_owned(), format!("{field} is empty")));
    } else if value.chars().count() > max {
        problems.push((
            pointer.to_owned(),
            format!("{field} is longer than {max} characters"),
        ));
    } else if value.chars().any(char::is_control) {
        problems.push((
            pointer.to_owned(),
            format!("{field} contains a control character"),
        ));
    }
}

/// Checks an event and returns its detail as JSON text.
fn checked_detail(event: &NewAuditEvent) -> Result<Option<String>, Error> {
    let mut problems = Vec::new();
    check_text("/actor", &event.actor, MAX_NAME_LEN, &mut problems);
    check_text("/action", &event.action, MAX_NAME_LEN, &mut problems);
    if let Some(datasource) = &event.datasource {
        check_text("/datasource", datasource, MAX_DATASOURCE_LEN, &mut problems);
    }
    let detail = match &event.detail {
        None => None,
        Some(detail) => {
            if let Some(pointer) = find_secret_key(detail, "/detail") {
                problems.push((
                    pointer,
                    "audit details may not hold a field named like a secret: record the \
                         outcome without the value"
                        .to_owned(),
                ));
            }
            let text = detail.to_string();
            if text.len() > MAX_DETAIL_LEN {
                problems.push((
                    "/detail".to_owned(),
                    format!(
                        "detail is {} bytes of JSON; the maximum is {MAX_DETAIL_LEN}",
                        text.len()
                    ),
                ));
            }
            Some(text)
        }
    };
    let problems = problems
        .into_iter()
        .map(|(pointer, detail)| FieldError { pointer, detail })
        .collect();
    if let Some(errors) = ValidationErrors::new(problems) {
        return Err(errors.into());
    }
    Ok(detail)
}

/// Inserts one checked event and returns its id.
fn insert_audit(
    transaction: &rusqlite::Transaction<'_>,
    event: &NewAuditEvent,
    detail: Option<&str>,
) -> Result<i64, Error> {
    transaction
        .prepare_cached(
            "INSERT INTO audit_events (at, actor, action, datasource, outcome, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            to_nanos(now()),
            event.actor,
            event.action,
            event.datasource,
            outcome_name(event.outcome),
            detail,
        ])?;
    Ok(transaction.last_insert_rowid())
}

impl Store {
    /// Appends an event to the audit log and returns its id. Ids grow with
    /// every event and are never reused.
    ///
    /// # Errors
    ///
    /// [`Error::Validation`] for an empty or over-long actor, action or data
    /// source, a detail over 16 KiB, or a detail with a key named like a
    /// secret (such as `password` or `refresh_token`); [`Error::Sqlite`].
    pub fn record_audit(&self, event: &NewAuditEvent) -> Result<i64, Error> {
        let detail = checked_detail(event)?;
        self.inner
            .writer
            .transaction(|transaction| insert_audit(transaction, event, detail.as_deref()))
    }

    /// Appends several events to the audit log in one transaction, so that
    /// they cost one commit (and one `fsync`) together, and returns their
    /// ids in order. Either all of them are written or none is.
    ///
    /// # Errors
    ///
    /// The errors of [`Store::record_audit`]: one invalid event rejects the
    /// whole batch, and nothing is written.
    pub fn record_audits(&self, events: &[NewAuditEvent]) -> Result<Vec<i64>, Error> {
        let details = events
            .iter()
            .map(checked_detail)
            .collect::<Result<Vec<_>, Error>>()?;
        self.inner.writer.transaction(|transaction| {
            events
                .iter()
                .zip(&details)
                .map(|(event, detail)| insert_audit(transaction, event, detail.as_deref()))
                .collect()
        })
    }

    /// Lists audit events newest first (by descending id), optionally only
    /// those of one data source. `after_id` is the `next_cursor` of the
    /// previous page, parsed as an integer: the page starts with the event
    /// just older than it. `limit` is clamped to 1..=[`MAX_PAGE_SIZE`](crate::MAX_PAGE_SIZE).
    ///
    /// # Errors
    ///
    /// [`Error::Sqlite`] or [`Error::CorruptRow`].
    pub fn list_audit(
        &self,
        datasource: Option<&str>,
        after_id: Option<i64>,
        limit: usize,
    ) -> Result<Page<AuditEvent>, Error> {
        let limit = page_size(limit);
        let connection = self.inner.pool.get()?;
        let mut statement = connection.prepare_cached(
            "SELECT id, at, actor, action, datasource, outcome, detail FROM audit_events
             WHERE (?1 IS NULL OR datasource = ?1) AND (?2 IS NULL OR id < ?2)
             ORDER BY id DESC LIMIT ?3",
        )?;
        let rows = statement.query_map(
            params![datasource, after_id, to_sql_int(limit as u64 + 1)],
            |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, Option<String>>(4)?,
                    row.get::<_, String>(5)?,
                    row.get::<_, Option<String>>(6)?,
                ))
            },
        )?;

        let mut items = Vec::with_capacity(limit);
        let mut more = false;
        for row in rows {
            if items.len() == limit {
                more = true;
                break;
            }
            let (id, at, actor, action, datasource, outcome, detail) = row?;
            let key = id.to_string();
            let corrupt = |detail: String| Error::CorruptRow {
                table: "audit_events",
                key: key.clone(),
                detail,
            };
            let outcome = match outcome.as_str() {
                "success" => AuditOutcome::Success,
                "failure" => AuditOutcome::Failure,
                "denied" => AuditOutcome::Denied,
                other => return Err(corrupt(format!("unknown outcome {other:?}"))),
            };
            let detail = detail
                .map(|text| serde_json::from_str(&text))
                .transpose()
                .map_err(|error| corrupt(format!("the detail is not valid JSON ({error})")))?;
            items.push(AuditEvent {
                id,
                at: from_nanos("audit_events", &key, at)?,
                actor,
                action,
                datasource,
                outcome,
                detail,
            });
        }

        let next_cursor = if more {
            items.last().map(|last| last.id.to_string())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }
}
