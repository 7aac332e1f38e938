//! The database schema and its forward-only migrations.
//!
//! `PRAGMA user_version` stores the number of applied migrations and
//! `PRAGMA application_id` marks the file as an authcfg store. Migrations are
//! applied in order, all pending ones in one transaction, and never edited
//! once released: a change to the schema is a new migration.
//!
//! Times are stored as UTC nanoseconds since the Unix epoch (`INTEGER`).

use rusqlite::{Connection, TransactionBehavior};

use crate::Error;

/// `PRAGMA application_id` of an authcfg store: the ASCII bytes `acfg`.
pub(crate) const APPLICATION_ID: i64 = 0x6163_6667;

/// The migrations; migration `i` (0-based) moves the schema to version `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // Version 1: keys, data sources and credentials.
    r"
    CREATE TABLE keyring (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        kdf TEXT NOT NULL,
        salt BLOB NOT NULL,
        memory_kib INTEGER NOT NULL,
        iterations INTEGER NOT NULL,
        parallelism INTEGER NOT NULL,
        wrapped_mac_key BLOB NOT NULL,
        created_at INTEGER NOT NULL,
        master_key_changed_at INTEGER NOT NULL
    ) STRICT;

    CREATE TABLE data_keys (
        id TEXT PRIMARY KEY,
        state TEXT NOT NULL CHECK (state IN ('active', 'retiring', 'retired')),
        wrapped BLOB,
        created_at INTEGER NOT NULL,
        retired_at INTEGER,
        CHECK ((state = 'retired') = (wrapped IS NULL))
    ) STRICT;
    CREATE UNIQUE INDEX data_keys_single_active ON data_keys (state) WHERE state = 'active';

    CREATE TABLE datasources (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        description TEXT,
        base_url TEXT,
        auth TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        version INTEGER NOT NULL,
        credentials_version INTEGER NOT NULL DEFAULT 0
    ) STRICT;

    CREATE TABLE credentials (
        datasource_id TEXT PRIMARY KEY REFERENCES datasources (id) ON DELETE CASCADE,
        key_id TEXT NOT NULL REFERENCES data_keys (id),
        client_id TEXT NOT NULL,
        username TEXT,
        client_secret BLOB NOT NULL,
        password BLOB,
        refresh_token BLOB,
        fingerprint TEXT NOT NULL,
        version INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX credentials_by_key ON credentials (key_id);
    ",
    // Version 2: API tokens and the audit log.
    r"
    CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,
        token_hash BLOB NOT NULL UNIQUE,
        label TEXT NOT NULL,
        role TEXT NOT NULL,
        datasources TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER,
        revoked_at INTEGER
    ) STRICT;

    CREATE TABLE audit_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        datasource TEXT,
        outcome TEXT NOT NULL,
        detail TEXT
    ) STRICT;
    CREATE INDEX audit_events_by_datasource ON audit_events (datasource, id);
    ",
    // Version 3: a change counter that triggers bump on every write other
    // processes must notice. Audit events and token last-used times are left
    // out because they change on every request.
    r"
    CREATE TABLE change_counter (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        value INTEGER NOT NULL
    ) STRICT;
    INSERT INTO change_counter (id, value) VALUES (1, 0);

    CREATE TRIGGER datasources_insert_counts AFTER INSERT ON datasources
        BEGIN UPDATE change_counter SET value = value + 1; END;
    CREATE TRIGGER datasources_update_counts AFTER UPDATE ON datasources
        BEGIN UPDATE change_counter SET value = value + 1; END;
    CREATE TRIGGER datasources_delete_counts AFTER DELETE ON datasources
        BEGIN UPDATE change_counter SET value = value + 1; END;
    CREATE TRIGGER credentials_insert_counts AFTER INSERT ON credentials
        BEGIN UPDATE change_counter SET value = value + 1; END;
    CREATE TRIGGER credentials_update_counts AFTER UPDATE ON credentials
        BEGIN UPDATE change_counter SET value = value + 1; END;
    CREATE TRIGGER credentials_delete_counts AFTER DELETE ON credentials
        BEGIN UPDATE change_counter SET value = value + 1; END;
    CREATE TRIGGER api_tokens_insert_counts AFTER INSERT ON api_tokens
        BEGIN UPDATE change_counter SET value = value + 1; END;
    CREATE TRIGGER api_tokens_update_counts
        AFTER UPDATE OF token_hash, label, role, datasources, revoked_at ON api_tokens
        BEGIN UPDATE change_counter SET value = value + 1; END;
    CREATE TRIGGER api_tokens_delete_counts AFTER DELETE ON api_tokens
        BEGIN UPDATE change_counter SET value = value + 1; END;
    CREATE TRIGGER data_keys_insert_counts AFTER INSERT ON data_keys
        BEGIN UPDATE change_counter SET value = value + 1; END;
    CREATE TRIGGER data_keys_update_counts AFTER UPDATE ON data_keys
        BEGIN UPDATE change_counter SET value = value + 1; END;
    CREATE TRIGGER keyring_update_counts AFTER UPDATE ON keyring
        BEGIN UPDATE change_counter SET value = value + 1; END;
    ",
    // Version 4: the name key of each data source, which identifies its
    // environment variables (`authcfg_model::datasource_name_key`), so that
    // creating a data source finds a colliding name with one index lookup.
    // Valid names contain only a-z, 0-9, '-' and '_', and for them the
    // backfill equals the Rust function: letters upper-cased, '-' becomes '_'.
    // The index is not unique because an older store may already hold two
    // names with one key, such as `crm-prod` and `crm_prod`. Both rows are
    // kept unchanged apart from the new column, and the store rejects any
    // further name with a key in use.
    r"
    ALTER TABLE datasources ADD COLUMN name_key TEXT;
    UPDATE datasources SET name_key = upper(replace(name, '-', '_'));
    CREATE INDEX datasources_by_name_key ON datasources (name_key, name);
    ",
];

/// The schema version this build writes.
pub(crate) const LATEST_VERSION: i64 = MIGRATIONS.len() as i64;

/// Returns `PRAGMA user_version`.
pub(crate) fn schema_version(connection: &Connection) -> Result<i64, Error> {
    Ok(connection.pragma_query_value(None, "user_version", |row| row.get(0))?)
}

/// Applies the migrations after the current version up to `target`, in one
/// immediate transaction, and marks the file as an authcfg store.
pub(crate) fn migrate_to(connection: &mut Connection, target: i64) -> Result<(), Error> {
    // An up-to-date file, the usual case, needs no write lock at all.
    if schema_version(connection)? == target {
        return Ok(());
    }

    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;

    // The version is read inside the write transaction, so two processes that
    // open the same old file do not both apply a migration.
    let current = schema_version(&transaction)?;
    if current > LATEST_VERSION {
        return Err(Error::SchemaTooNew {
            found: current,
            supported: LATEST_VERSION,
        });
    }
    if current >= target {
        return Ok(());
    }

    apply(&transaction, current, target)?;
    transaction.commit()?;
    Ok(())
}

/// Applies the migrations after `current` up to `target` inside the caller's
/// transaction, then records the version and the application id.
pub(crate) fn apply(transaction: &Connection, current: i64, target: i64) -> Result<(), Error> {
    for (index, sql) in MIGRATIONS.iter().enumerate() {
        let version = index as i64 + 1;
        if version <= current || version > target {
            continue;
        }
        transaction.execute_batch(sql)?;
        tracing::info!(version, "applied a store schema migration");
    }
    transaction.pragma_update(None, "user_version", target)?;
    transaction.pragma_update(None, "application_id", APPLICATION_ID)?;
    Ok(())
}
