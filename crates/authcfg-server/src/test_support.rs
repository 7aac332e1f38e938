//! Helpers of the unit tests.

use authcfg_model::SecretString;
use authcfg_store::{Argon2Params, MasterKey, Store, StoreOptions};

/// Opens a fresh store in a temporary directory, with cheap Argon2
/// parameters. The directory is removed when the returned guard drops.
pub(crate) fn open_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        argon2: Argon2Params {
            memory_kib: 1024,
            iterations: 1,
            parallelism: 1,
        },
        ..StoreOptions::default()
    };
    let key = MasterKey::Passphrase(SecretString::new("unit test passphrase"));
    let store = Store::open(&dir.path().join("authcfg.db"), &key, &options).unwrap();
    (dir, store)
}
