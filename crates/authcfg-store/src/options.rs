//! Inputs of opening a store: the master key and the tuning options.

use std::path::PathBuf;
use std::time::Duration;

use authcfg_model::SecretString;
use serde::{Deserialize, Serialize};

/// The secret that unlocks a store. There is no default: every store is
/// opened with a key that the operator supplies.
#[derive(Debug)]
pub enum MasterKey {
    /// A passphrase, stretched with Argon2id.
    Passphrase(SecretString),
    /// A file whose contents are the key. The file is read once, when the key
    /// is used, and one trailing newline (`\n` or `\r\n`) is stripped so that
    /// `echo`-written files work. The contents are stretched with Argon2id
    /// like a passphrase.
    KeyFile(PathBuf),
}

/// Argon2id cost parameters (RFC 9106).
///
/// The defaults are the OWASP Password Storage Cheat Sheet recommendation for
/// Argon2id: 19 MiB of memory, 2 iterations, 1 lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Argon2Params {
    /// Memory cost, in KiB.
    pub memory_kib: u32,
    /// Number of passes over the memory.
    pub iterations: u32,
    /// Degree of parallelism (lanes).
    pub parallelism: u32,
}

impl Argon2Params {
    /// The OWASP recommendation: m = 19456 KiB, t = 2, p = 1.
    pub const OWASP: Argon2Params = Argon2Params {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };

    /// Returns true when these parameters cost at least as much as
    /// [`Argon2Params::OWASP`] in memory and in passes.
    pub fn meets_owasp(&self) -> bool {
        self.memory_kib >= Self::OWASP.memory_kib && self.iterations >= Self::OWASP.iterations
    }
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self::OWASP
    }
}

/// Options of [`Store::open`](crate::Store::open).
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Argon2id parameters for a new store and for a master key change. An
    /// existing store keeps the parameters stored in it until its master key
    /// changes.
    pub argon2: Argon2Params,
    /// Number of pooled SQLite connections for reads; at least 1. Reads run
    /// in parallel on separate connections. Writes use one more connection,
    /// shared by all writers of the store, so a store opens `pool_size + 1`
    /// connections.
    pub pool_size: usize,
    /// How long a statement waits for a lock held by another connection or
    /// process before it fails with `SQLITE_BUSY`.
    pub busy_timeout: Duration,
    /// How long a call waits for a free pooled connection, or a write for the
    /// writer connection, before it fails with
    /// [`Error::PoolTimeout`](crate::Error::PoolTimeout).
    pub pool_timeout: Duration,
    /// Credentials rows re-encrypted per transaction by a data key rotation.
    /// Smaller batches hold the write lock for less time.
    pub rotation_batch_size: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            argon2: Argon2Params::default(),
            pool_size: 4,
            busy_timeout: Duration::from_secs(5),
            pool_timeout: Duration::from_secs(30),
            rotation_batch_size: 256,
        }
    }
}
