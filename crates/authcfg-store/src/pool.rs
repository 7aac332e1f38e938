//! A fixed-size pool of SQLite connections.
//!
//! Each connection is opened once with the store's pragmas and reused. A
//! caller takes a connection for one operation and the guard returns it when
//! dropped, so reads on different threads run in parallel while SQLite itself
//! serializes writers.

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use crate::Error;

/// Opens a read-write connection with the store's pragmas.
///
/// `synchronous = FULL` makes every commit wait for the write-ahead log to
/// reach the disk, so an acknowledged write survives a process crash and also
/// an operating system crash or power loss. In WAL mode `NORMAL` would already
/// survive a process crash, but credential writes are rare and losing an
/// acknowledged secret rotation is worse than one fsync per commit.
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
    connection.set_prepared_statement_cache_capacity(64);
    Ok(connection)
}

/// A fixed set of connections shared by all clones of a store.
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
