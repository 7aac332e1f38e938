//! Key management: master key and data key rotation, interrupted rotations,
//! backups and the change counter.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use authcfg_model::CredentialField;
use authcfg_store::{
    Argon2Params, DataKeyState, Error, MasterKey, RotationProgress, Store, StoreOptions,
};
use common::{bearer, full_credentials, options, passphrase, TestStore};

/// Creates `count` data sources with credentials whose secrets name them.
fn seed(test: &TestStore, count: usize) -> Vec<String> {
    (0..count)
        .map(|index| {
            let name = format!("source-{index:02}");
            test.store.create_datasource(&bearer(&name)).unwrap();
            test.store
                .put_credentials(
                    &name,
                    &full_credentials(
                        &format!("secret-{index}"),
                        &format!("password-{index}"),
                        &format!("refresh-{index}"),
                    ),
                )
                .unwrap();
            name
        })
        .collect()
}

/// Asserts that every seeded data source unseals to its original values.
fn assert_all_open(store: &Store, names: &[String]) {
    for name in names {
        let index: usize = name.trim_start_matches("source-").parse().unwrap();
        let credentials = store.unseal_credentials(name).unwrap().unwrap().credentials;
        assert_eq!(
            credentials.client_secret.expose_secret(),
            format!("secret-{index}")
        );
        assert_eq!(
            credentials.password.unwrap().expose_secret(),
            format!("password-{index}")
        );
        assert_eq!(
            credentials.refresh_token.unwrap().expose_secret(),
            format!("refresh-{index}")
        );
    }
}

fn small_batches() -> StoreOptions {
    StoreOptions {
        rotation_batch_size: 2,
        ..options()
    }
}

#[test]
fn new_store_key_status() {
    let test = TestStore::new();
    seed(&test, 3);

    let status = test.store.key_status().unwrap();

    assert_eq!(status.active_key_id, "dk-1");
    assert_eq!(status.data_keys.len(), 1);
    assert_eq!(status.data_keys[0].rows, 3);
    assert_eq!(status.data_keys[0].state, DataKeyState::Active);
    assert_eq!(status.argon2, common::FAST_ARGON2);
    assert_eq!(status.created_at, status.master_key_changed_at);
}

#[test]
fn default_argon2_meets_owasp() {
    let defaults = StoreOptions::default().argon2;

    assert!(defaults.meets_owasp());
    assert!(defaults.memory_kib >= 19_456);
    assert!(defaults.iterations >= 2);
    assert!(!common::FAST_ARGON2.meets_owasp());
}

#[test]
fn invalid_options_rejected() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("store.db");
    let cases = [
        (
            "zero pool",
            StoreOptions {
                pool_size: 0,
                ..options()
            },
        ),
        (
            "zero argon2 iterations",
            StoreOptions {
                argon2: Argon2Params {
                    iterations: 0,
                    ..common::FAST_ARGON2
                },
                ..options()
            },
        ),
    ];

    for (case, options) in cases {
        let error = Store::open(&path, &passphrase("k"), &options).unwrap_err();
        assert!(
            matches!(error, Error::InvalidOptions(_)),
            "{case}: got {error:?}"
        );
    }
    assert!(!path.exists());
}

#[test]
fn invalid_argon2_message_states_limits() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("store.db");
    let cases = [
        ("memory below 8 KiB", 7, 1, 1),
        ("memory below 8 KiB per lane", 15, 1, 2),
        ("zero iterations", 64, 0, 1),
        ("zero lanes", 64, 1, 0),
        ("too many lanes", u32::MAX, 1, 1 << 24),
        ("lane count that overflows 8 * p", 64, 1, u32::MAX),
    ];

    for (case, memory_kib, iterations, parallelism) in cases {
        let options = StoreOptions {
            argon2: Argon2Params {
                memory_kib,
                iterations,
                parallelism,
            },
            ..options()
        };

        let error = Store::open(&path, &passphrase("k"), &options).unwrap_err();

        assert!(
            matches!(error, Error::InvalidOptions(_)),
            "{case}: got {error:?}"
        );
        let message = error.to_string();
        let quoted = format!("m={memory_kib} KiB, t={iterations}, p={parallelism}");
        assert!(message.contains(&quoted), "{case}: {message}");
        assert!(
            message.contains(
                "requires p from 1 to 16777215, t of at least 1 and m of at least 8 * p KiB"
            ),
            "{case}: {message}"
        );
        assert!(
            message.contains("the recommended values are m=19456, t=2, p=1"),
            "{case}: {message}"
        );
        assert!(!message.contains("use at least"), "{case}: {message}");
    }
    assert!(!path.exists());
}

#[test]
fn argon2_minimum_accepted_below_recommendation() {
    let test = TestStore::with_options(&StoreOptions {
        argon2: Argon2Params {
            memory_kib: 16,
            iterations: 1,
            parallelism: 2,
        },
        ..options()
    });

    let status = test.store.key_status().unwrap();

    assert_eq!(status.argon2.memory_kib, 16);
    assert_eq!(status.argon2.parallelism, 2);
    assert!(!status.argon2.meets_owasp());
}

#[test]
fn data_key_rotation_reencrypts_all() {
    let test = TestStore::with_options(&small_batches());
    let names = seed(&test, 5);
    let mut reports = Vec::new();

    let report = test
        .store
        .rotate_data_key(&mut |progress| reports.push(progress))
        .unwrap();

    assert_eq!(report.new_key_id, "dk-2");
    assert_eq!(report.retired_key_ids, ["dk-1"]);
    assert_eq!(report.reencrypted, 5);
    assert_eq!(report.rows_per_key, [("dk-2".to_owned(), 5)]);
    assert_eq!(
        reports,
        [
            RotationProgress { done: 2, total: 5 },
            RotationProgress { done: 4, total: 5 },
            RotationProgress { done: 5, total: 5 },
        ]
    );
    assert_all_open(&test.store, &names);
    let status = test.store.key_status().unwrap();
    assert_eq!(status.active_key_id, "dk-2");
    assert_eq!(status.data_keys[0].state, DataKeyState::Retired);
    assert!(status.data_keys[0].retired_at.is_some());
    // The retired key's wrapped material is erased from the file.
    let wrapped: Option<Vec<u8>> = test
        .raw()
        .query_row(
            "SELECT wrapped FROM data_keys WHERE id = 'dk-1'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(wrapped, None);
    // Versions are unchanged: re-encryption changes no value.
    let summary = test.store.credentials_summary(&names[0]).unwrap().unwrap();
    assert_eq!(summary.version, 1);
}

#[test]
fn rotation_survives_reopen() {
    let test = TestStore::new();
    let names = seed(&test, 2);
    test.store.rotate_data_key(&mut |_| {}).unwrap();
    test.store.rotate_data_key(&mut |_| {}).unwrap();
    let reopened = Store::open(&test.path, &passphrase("correct horse"), &options()).unwrap();

    assert_eq!(reopened.key_status().unwrap().active_key_id, "dk-3");
    assert_all_open(&reopened, &names);
}

#[test]
fn rotation_interrupted_by_panic_resumes() {
    let test = TestStore::with_options(&small_batches());
    let names = seed(&test, 5);

    // The callback fails after the first committed batch, as a crash would.
    let interrupted = catch_unwind(AssertUnwindSafe(|| {
        test.store
            .rotate_data_key(&mut |_| panic!("injected failure after the first batch"))
    }));

    assert!(interrupted.is_err());
    let status = test.store.key_status().unwrap();
    let rows: Vec<_> = status
        .data_keys
        .iter()
        .map(|key| (key.id.as_str(), key.state, key.rows))
        .collect();
    assert_eq!(
        rows,
        [
            ("dk-1", DataKeyState::Retiring, 3),
            ("dk-2", DataKeyState::Active, 2)
        ]
    );
    assert_all_open(&test.store, &names);
    let reopened = Store::open(&test.path, &passphrase("correct horse"), &options()).unwrap();
    assert_all_open(&reopened, &names);

    let report = test.store.rotate_data_key(&mut |_| {}).unwrap();

    assert_eq!(
        report.new_key_id, "dk-2",
        "the rotation resumes with its key"
    );
    assert_eq!(report.reencrypted, 3);
    assert_eq!(report.retired_key_ids, ["dk-1"]);
    assert_all_open(&test.store, &names);
}

#[test]
fn rotation_stops_at_damaged_row() {
    let test = TestStore::with_options(&small_batches());
    let names = seed(&test, 5);
    // Damage the row that sorts last, so earlier batches commit first.
    let last_id: String = test
        .raw()
        .query_row("SELECT MAX(datasource_id) FROM credentials", [], |row| {
            row.get(0)
        })
        .unwrap();
    let damaged_name: String = test
        .raw()
        .query_row(
            "SELECT name FROM datasources WHERE id = ?1",
            [&last_id],
            |row| row.get(0),
        )
        .unwrap();
    let raw = test.raw();
    let mut password: Vec<u8> = raw
        .query_row(
            "SELECT password FROM credentials WHERE datasource_id = ?1",
            [&last_id],
            |row| row.get(0),
        )
        .unwrap();
    let tag_start = password.len() - 16;
    password[tag_start..].fill(0);
    raw.execute(
        "UPDATE credentials SET password = ?1 WHERE datasource_id = ?2",
        rusqlite::params![password, last_id],
    )
    .unwrap();

    let error = test.store.rotate_data_key(&mut |_| {}).unwrap_err();

    match &error {
        Error::Unseal { datasource, field } => {
            assert_eq!(datasource, &damaged_name);
            assert_eq!(*field, CredentialField::Password);
        }
        other => panic!("expected an unseal error, got {other:?}"),
    }
    let healthy: Vec<String> = names
        .iter()
        .filter(|name| **name != damaged_name)
        .cloned()
        .collect();
    for name in &healthy {
        assert!(
            test.store.unseal_credentials(name).is_ok(),
            "{name} does not open"
        );
    }
    let status = test.store.key_status().unwrap();
    assert_eq!(status.data_keys[0].state, DataKeyState::Retiring);
    assert_eq!(
        status.data_keys[0].rows, 1,
        "only the damaged row stays on the old key"
    );

    // Replacing the damaged credentials lets the rotation finish.
    test.store
        .put_credentials(&damaged_name, &full_credentials("s", "p", "r"))
        .unwrap();
    let report = test.store.rotate_data_key(&mut |_| {}).unwrap();
    assert_eq!(report.retired_key_ids, ["dk-1"]);
}

#[test]
fn rotation_with_no_rows() {
    let test = TestStore::new();

    let report = test.store.rotate_data_key(&mut |_| {}).unwrap();

    assert_eq!(report.reencrypted, 0);
    assert_eq!(report.retired_key_ids, ["dk-1"]);
    assert_eq!(report.rows_per_key, [("dk-2".to_owned(), 0)]);
}

#[test]
fn master_key_rotation_rewraps() {
    let test = TestStore::new();
    let names = seed(&test, 3);
    let sealed_before: Vec<Vec<u8>> = {
        let raw = test.raw();
        let mut statement = raw
            .prepare("SELECT client_secret FROM credentials ORDER BY datasource_id")
            .unwrap();
        let rows = statement.query_map([], |row| row.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    };

    test.store
        .rotate_master_key(&passphrase("correct horse"), &passphrase("new horse"))
        .unwrap();

    assert_all_open(&test.store, &names);
    let sealed_after: Vec<Vec<u8>> = {
        let raw = test.raw();
        let mut statement = raw
            .prepare("SELECT client_secret FROM credentials ORDER BY datasource_id")
            .unwrap();
        let rows = statement.query_map([], |row| row.get(0)).unwrap();
        rows.map(Result::unwrap).collect()
    };
    assert_eq!(sealed_before, sealed_after, "sealed values are not touched");
    let old = Store::open(&test.path, &passphrase("correct horse"), &options()).unwrap_err();
    assert!(matches!(old, Error::WrongMasterKey), "got {old:?}");
    let reopened = Store::open(&test.path, &passphrase("new horse"), &options()).unwrap();
    assert_all_open(&reopened, &names);
    // A data key created after the change is wrapped with the new key.
    reopened.rotate_data_key(&mut |_| {}).unwrap();
    let again = Store::open(&test.path, &passphrase("new horse"), &options()).unwrap();
    assert_all_open(&again, &names);
}

#[test]
fn master_key_rotation_needs_old_key() {
    let test = TestStore::new();
    seed(&test, 1);
    let error = test
        .store
        .rotate_master_key(&passphrase("guessed"), &passphrase("attacker"))
        .unwrap_err();

    assert!(matches!(error, Error::WrongMasterKey), "got {error:?}");
    let still = Store::open(&test.path, &passphrase("correct horse"), &options());
    assert!(still.is_ok());
}

#[test]
fn master_key_rotation_to_key_file() {
    let test = TestStore::new();
    let names = seed(&test, 1);
    let key_path = test.directory.path().join("master.key");
    std::fs::write(&key_path, "file-key\n").unwrap();
    let stronger = StoreOptions {
        argon2: Argon2Params {
            memory_kib: 128,
            iterations: 2,
            parallelism: 1,
        },
        ..options()
    };
    let store = Store::open(&test.path, &passphrase("correct horse"), &stronger).unwrap();

    store
        .rotate_master_key(
            &passphrase("correct horse"),
            &MasterKey::KeyFile(key_path.clone()),
        )
        .unwrap();

    let status = store.key_status().unwrap();
    assert_eq!(
        status.argon2.memory_kib, 128,
        "the options' parameters apply"
    );
    assert!(status.master_key_changed_at >= status.created_at);
    let reopened = Store::open(&test.path, &MasterKey::KeyFile(key_path), &options()).unwrap();
    assert_all_open(&reopened, &names);
}

#[test]
fn backup_opens_with_same_key() {
    let test = TestStore::new();
    let names = seed(&test, 3);
    let backup_path = test.directory.path().join("backup.db");

    test.store.backup(&backup_path).unwrap();
    // Changes after the backup stay out of it.
    test.store.delete_datasource(&names[0]).unwrap();

    let wrong = Store::open(&backup_path, &passphrase("wrong"), &options()).unwrap_err();
    assert!(matches!(wrong, Error::WrongMasterKey), "got {wrong:?}");
    let restored = Store::open(&backup_path, &passphrase("correct horse"), &options()).unwrap();
    assert_all_open(&restored, &names);
    let integrity: String = common::raw(&backup_path)
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&backup_path)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the backup must be private, got {mode:o}");
    }
}

#[test]
fn backup_never_overwrites() {
    let test = TestStore::new();
    let existing = test.directory.path().join("existing.db");
    std::fs::write(&existing, "keep me").unwrap();

    let error = test.store.backup(&existing).unwrap_err();

    assert!(
        matches!(error, Error::BackupDestinationExists { .. }),
        "got {error:?}"
    );
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");
}

#[test]
fn store_file_is_private() {
    let test = TestStore::new();

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&test.path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the store must be private, got {mode:o}");
    }
    assert!(test.path.exists());
}

#[test]
fn change_counter_sees_other_process_writes() {
    let test = TestStore::new();
    let start = test.store.change_counter().unwrap();
    // A second handle acts as another process, such as the command line.
    let other = Store::open(&test.path, &passphrase("correct horse"), &options()).unwrap();

    other.create_datasource(&bearer("crm")).unwrap();
    let after_create = test.store.change_counter().unwrap();
    other
        .put_credentials("crm", &full_credentials("s", "p", "r"))
        .unwrap();
    let after_put = test.store.change_counter().unwrap();
    let (token, _) = other
        .create_api_token("ci", authcfg_model::Role::Admin, &[])
        .unwrap();
    let after_token = test.store.change_counter().unwrap();
    other
        .touch_api_tokens(&[(token.id.clone(), time::OffsetDateTime::now_utc())])
        .unwrap();
    other
        .record_audit(&authcfg_store::NewAuditEvent {
            actor: "cli".to_owned(),
            action: "datasource.create".to_owned(),
            datasource: Some("crm".to_owned()),
            outcome: authcfg_model::AuditOutcome::Success,
            detail: None,
        })
        .unwrap();
    let after_noise = test.store.change_counter().unwrap();
    other.revoke_api_token(&token.id).unwrap();
    let after_revoke = test.store.change_counter().unwrap();

    assert!(after_create > start);
    assert!(after_put > after_create);
    assert!(after_token > after_put);
    assert_eq!(
        after_noise, after_token,
        "last-used times and audit events do not count"
    );
    assert!(after_revoke > after_noise);
}

#[test]
fn data_key_from_other_process_loaded() {
    let test = TestStore::new();
    let names = seed(&test, 2);
    let other = Store::open(&test.path, &passphrase("correct horse"), &options()).unwrap();

    other.rotate_data_key(&mut |_| {}).unwrap();
    test.store
        .put_credentials(
            "source-00",
            &full_credentials("secret-0", "password-0", "new"),
        )
        .unwrap();

    // The first handle seals with the key the other one created, and both open everything.
    assert_eq!(test.store.key_status().unwrap().data_keys[1].rows, 2);
    assert_all_open(&other, &names[1..]);
    let reopened = Store::open(&test.path, &passphrase("correct horse"), &options()).unwrap();
    assert_all_open(&reopened, &names[1..]);
    let refreshed = reopened.unseal_credentials("source-00").unwrap().unwrap();
    assert_eq!(
        refreshed.credentials.refresh_token.unwrap().expose_secret(),
        "new"
    );
}
