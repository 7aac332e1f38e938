//! The store's SQLite connections: a fixed-size pool for reads and one writer.
//!
//! Each connection is opened once with the store's pragmas and reused. A
//! reader takes a pooled connection for one operation and the guard returns it
//! when dropped, so reads on different threads run in parallel. Every write
//! goes through the single [`Writer`] connection, so the writers of one process
//! queue for it, up to the pool timeout, instead of polling SQLite's busy
//! handler. Writers of other processes still wait on SQLite's lock, up to the
//! busy timeout.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::Error;

/// The page cache of each connection, in KiB; SQLite's default is 2000.
const PAGE_CACHE_KIB: i64 = 256;

/// Opens a read-write connection with the store's pragmas.
///
/// `synchronous = FULL` makes every commit wait for the write-ahead log to
/// reach the disk, so an acknowledged write survives a process crash and also
/// an operating system crash or power loss. In WAL mode `NORMAL` would already
/// survive a process crash, but credential writes are rare and losing an
/// acknowledged secret rotation is worse than one fsync per commit.
///
/// Each connection caches at most [`PAGE_CACHE_KIB`] of pages. The store's
/// reads are lookups by key and pages of a listing, which need few pages, and
/// a store keeps several connections open for its whole life. A page that is
/// not cached is read again from the operating system's file cache.
pub(crate) fn open_connection(path: &Path, busy_timeout: Duration) -> Result<Connection, Error> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    connection.busy_timeout(busy_timeout)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    // A negative cache size is in KiB rather than pages.
    connection.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
    connection.set_prepared_statement_cache_capacity(64);
    Ok(connection)
}

/// The one connection that writes, shared by all clones of a store. It is a
/// pool of one connection, so a writer waits for it up to the pool timeout.
pub(crate) struct Writer {
    connection: Pool,
}

impl Writer {
    /// Wraps the connection that performs every write of the store.
    pub(crate) fn new(connection: Connection, timeout: Duration) -> Self {
        Self {
            connection: Pool::new(vec![connection], timeout),
        }
    }

    /// Waits for the writer connection, then runs `change` in a write
    /// transaction on it and commits when `change` returns `Ok`. An `Err`
    /// rolls the transaction back.
    ///
    /// The transaction begins `IMMEDIATE`: it takes SQLite's write lock
    /// before its first read, so no other process can change what `change`
    /// reads before the commit. A write lock held by another process makes
    /// `BEGIN` wait up to the busy timeout, instead of failing a later write.
    ///
    /// `change` must not call another write method of the store: it would
    /// wait for the connection that `change` holds, and fail with
    /// [`Error::PoolTimeout`].
    ///
    /// # Errors
    ///
    /// [`Error::PoolTimeout`] when the writer connection stays busy for the
    /// pool timeout, [`Error::Sqlite`] when `BEGIN` or `COMMIT` fails, and
    /// every error of `change`.
    pub(crate) fn transaction<T>(
        &self,
        change: impl FnOnce(&Transaction<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut connection = self.connection.get()?;
        let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = change(&transaction)?;
        transaction.commit()?;
        Ok(value)
    }

    /// Returns `PRAGMA data_version` of the writer connection, which changes
    /// only when another connection commits.
    ///
    /// # Errors
    ///
    /// [`Error::PoolTimeout`] when the writer connection stays busy for the
    /// pool timeout, [`Error::Sqlite`].
    pub(crate) fn data_version(&self) -> Result<i64, Error> {
        let connection = self.connection.get()?;
        Ok(connection.pragma_query_value(None, "data_version", |row| row.get(0))?)
    }
}

/// A fixed set of read connections shared by all clones of a store.
pub(crate) struct Pool {
    idle: Mutex<Vec<Connection>>,
    returned: Condvar,
    timeout: Duration,
}

impl Pool {
    /// Creates a pool from open connections.
    pub(crate) fn new(connections: Vec<Connection>, timeout: Duration) -> Self {
        Self {
            idle: Mutex::new(connections),
            returned: Condvar::new(),
            timeout,
        }
    }

    /// Takes a connection, waiting up to the pool timeout for one to be returned.
    pub(crate) fn get(&self) -> Result<PooledConnection<'_>, Error> {
        let started = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(connection) = idle.pop() {
                return Ok(PooledConnection {
                    connection: Some(connection),
                    pool: self,
                });
            }
            let waited = started.elapsed();
            if waited >= self.timeout {
                return Err(Error::PoolTimeout {
                    waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
                });
            }
            idle = self
                .returned
                .wait_timeout(idle, self.timeout - waited)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// A connection borrowed from the pool; dropping it returns it.
pub(crate) struct PooledConnection<'a> {
    connection: Option<Connection>,
    pool: &'a Pool,
}

impl Deref for PooledConnection<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        // The option is `Some` from creation until `drop`.
        match &self.connection {
            Some(connection) => connection,
            None => unreachable_connection(),
        }
    }
}

impl DerefMut for PooledConnection<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        match &mut self.connection {
            Some(connection) => connection,
            None => unreachable_connection(),
        }
    }
}

#[allow(
    clippy::panic,
    reason = "the connection is taken only in drop, after the last deref"
)]
fn unreachable_connection() -> ! {
    panic!("pooled connection used after it was returned")
}

impl Drop for PooledConnection<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            // A transaction dropped during a panic has already rolled back, so
            // the connection is clean and can serve the next caller.
            let mut idle = self
                .pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            idle.push(connection);
            drop(idle);
            self.pool.returned.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(directory: &tempfile::TempDir, timeout: Duration) -> Writer {
        let path = directory.path().join("writer.db");
        Writer::new(open_connection(&path, timeout).unwrap(), timeout)
    }

    #[test]
    fn writer_commits_ok_and_rolls_back_err() {
        let directory = tempfile::tempdir().unwrap();
        let writer = writer(&directory, Duration::from_secs(5));
        writer
            .transaction(|transaction| Ok(transaction.execute_batch("CREATE TABLE t (v INTEGER)")?))
            .unwrap();

        let failed: Result<(), Error> = writer.transaction(|transaction| {
            transaction.execute("INSERT INTO t VALUES (1)", [])?;
            Err(Error::Seal)
        });
        writer
            .transaction(|transaction| {
                transaction.execute("INSERT INTO t VALUES (2)", [])?;
                Ok(())
            })
            .unwrap();

        assert!(matches!(failed, Err(Error::Seal)), "got {failed:?}");
        let values: Vec<i64> = writer
            .transaction(|transaction| {
                let mut statement = transaction.prepare("SELECT v FROM t ORDER BY v")?;
                let rows = statement.query_map([], |row| row.get(0))?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .unwrap();
        assert_eq!(values, [2]);
    }

    #[test]
    fn busy_writer_times_out() {
        // A write started while the writer connection is taken, here by a
        // nested call, waits for the pool timeout and fails instead of
        // waiting forever.
        let directory = tempfile::tempdir().unwrap();
        let writer = writer(&directory, Duration::from_millis(50));

        let nested = writer.transaction(|_| writer.transaction(|_| Ok(())));

        assert!(
            matches!(nested, Err(Error::PoolTimeout { .. })),
            "got {nested:?}"
        );
        assert!(writer.transaction(|_| Ok(())).is_ok());
    }
}
