//! Sealing and the master key: wrong keys, tampered ciphertexts, nonces and
//! redaction, checked against real store files.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use authcfg_model::{CredentialField, Credentials, SecretString};
use authcfg_store::{Error, MasterKey, Store, StoreOptions};
use common::{bearer, file_digest, full_credentials, listing, options, passphrase, TestStore};

const SECRET: &str = "client-secret-7f3a";
const PASSWORD: &str = "password-91bd";
const REFRESH: &str = "refresh-token-c0de";

/// Creates a data source with every secret field set.
fn seeded(names: &[&str]) -> TestStore {
    let test = TestStore::new();
    for name in names {
        test.store.create_datasource(&bearer(name)).unwrap();
        test.store
            .put_credentials(name, &full_credentials(SECRET, PASSWORD, REFRESH))
            .unwrap();
    }
    test
}

/// Returns the error of unsealing `name`, which must fail.
fn unseal_error(test: &TestStore, name: &str) -> Error {
    match test.store.unseal_credentials(name) {
        Ok(_) => panic!("unsealing {name} succeeded after tampering"),
        Err(error) => error,
    }
}

fn assert_unseal_error(error: &Error, datasource: &str, field: CredentialField) {
    match error {
        Error::Unseal {
            datasource: got_datasource,
            field: got_field,
        } => {
            assert_eq!(got_datasource, datasource);
            assert_eq!(*got_field, field);
        }
        other => panic!("expected an unseal error, got {other:?}"),
    }
}

fn column(field: CredentialField) -> &'static str {
    match field {
        CredentialField::ClientSecret => "client_secret",
        CredentialField::Password => "password",
        CredentialField::RefreshToken => "refresh_token",
        other => panic!("{other} is not sealed"),
    }
}

fn read_blob(test: &TestStore, name: &str, field: CredentialField) -> Vec<u8> {
    test.raw()
        .query_row(
            &format!(
                "SELECT c.{} FROM credentials c JOIN datasources d ON d.id = c.datasource_id
                 WHERE d.name = ?1",
                column(field)
            ),
            [name],
            |row| row.get(0),
        )
        .unwrap()
}

fn write_blob(test: &TestStore, name: &str, field: CredentialField, blob: &[u8]) {
    let changed = test
        .raw()
        .execute(
            &format!(
                "UPDATE credentials SET {} = ?1
                 WHERE datasource_id = (SELECT id FROM datasources WHERE name = ?2)",
                column(field)
            ),
            rusqlite::params![blob, name],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

#[test]
fn wrong_passphrase_rejected_file_unchanged() {
    let test = seeded(&["crm"]);
    let TestStore {
        store,
        path,
        directory,
    } = test;
    drop(store);
    let before = file_digest(&path);
    let files_before = listing(directory.path());
    assert_eq!(files_before, ["store.db"]);

    let error = Store::open(&path, &passphrase("wrong horse"), &options()).unwrap_err();

    assert!(matches!(error, Error::WrongMasterKey), "got {error:?}");
    assert!(error
        .to_string()
        .contains("check that the passphrase or key file"));
    assert_eq!(file_digest(&path), before);
    assert_eq!(listing(directory.path()), files_before);
    let reopened = Store::open(&path, &passphrase("correct horse"), &options()).unwrap();
    assert!(reopened.unseal_credentials("crm").unwrap().is_some());
}

#[test]
fn wrong_key_file_rejected_file_unchanged() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("store.db");
    let key_path = directory.path().join("master.key");
    std::fs::write(&key_path, "k3y-file-contents\n").unwrap();
    let store = Store::open(&path, &MasterKey::KeyFile(key_path.clone()), &options()).unwrap();
    store.create_datasource(&bearer("crm")).unwrap();
    drop(store);
    let before = file_digest(&path);
    let wrong_path = directory.path().join("wrong.key");
    std::fs::write(&wrong_path, "another-key\n").unwrap();
    let files_before = listing(directory.path());

    let error = Store::open(&path, &MasterKey::KeyFile(wrong_path), &options()).unwrap_err();

    assert!(matches!(error, Error::WrongMasterKey), "got {error:?}");
    assert_eq!(file_digest(&path), before);
    assert_eq!(listing(directory.path()), files_before);
}

#[test]
fn wrong_key_keeps_wal_files_of_open_store() {
    // The store stays open, so its -wal and -shm files exist and are in use.
    let test = seeded(&["crm"]);
    let files_before = listing(test.directory.path());
    assert_eq!(files_before, ["store.db", "store.db-shm", "store.db-wal"]);

    let error = Store::open(&test.path, &passphrase("wrong horse"), &options()).unwrap_err();

    assert!(matches!(error, Error::WrongMasterKey), "got {error:?}");
    assert_eq!(listing(test.directory.path()), files_before);
    test.store.create_datasource(&bearer("billing")).unwrap();
    assert!(test.store.unseal_credentials("crm").unwrap().is_some());
}

#[test]
fn key_file_trailing_newline_stripped() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("store.db");
    let key_path = directory.path().join("master.key");
    std::fs::write(&key_path, "same-key\r\n").unwrap();
    drop(Store::open(&path, &MasterKey::KeyFile(key_path), &options()).unwrap());

    // The file without its newline and the same text as a passphrase are the
    // same key.
    let reopened = Store::open(&path, &passphrase("same-key"), &options());

    assert!(reopened.is_ok(), "got {reopened:?}");
}

#[test]
fn empty_master_keys_rejected() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("store.db");
    let key_path = directory.path().join("empty.key");
    std::fs::write(&key_path, "\n").unwrap();

    let cases = [
        ("empty passphrase", passphrase("")),
        ("newline-only key file", MasterKey::KeyFile(key_path)),
    ];
    for (case, key) in cases {
        let error = Store::open(&path, &key, &options()).unwrap_err();
        assert!(
            matches!(error, Error::InvalidMasterKey { .. }),
            "{case}: got {error:?}"
        );
    }
    assert!(!path.exists(), "a rejected key must not create the store");
}

#[test]
fn missing_key_file_is_io_error() {
    let directory = tempfile::tempdir().unwrap();
    let missing = directory.path().join("missing.key");

    let error = Store::open(
        &directory.path().join("store.db"),
        &MasterKey::KeyFile(missing.clone()),
        &options(),
    )
    .unwrap_err();

    match error {
        Error::Io { path, .. } => assert_eq!(path, missing),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[test]
fn foreign_sqlite_file_rejected() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("other.db");
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('x');")
        .unwrap();
    drop(connection);
    let before = file_digest(&path);

    let error = Store::open(&path, &passphrase("correct horse"), &options()).unwrap_err();

    assert!(matches!(error, Error::NotAStore { .. }), "got {error:?}");
    assert!(
        error
            .to_string()
            .contains("a SQLite database with other tables"),
        "{error}"
    );
    assert_eq!(file_digest(&path), before);
}

#[test]
fn foreign_wal_database_leaves_no_wal_files() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("other.db");
    let connection = rusqlite::Connection::open(&path).unwrap();
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL;
             CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('x');",
        )
        .unwrap();
    drop(connection);
    let before = file_digest(&path);
    assert_eq!(listing(directory.path()), ["other.db"]);

    let error = Store::open(&path, &passphrase("correct horse"), &options()).unwrap_err();

    assert!(matches!(error, Error::NotAStore { .. }), "got {error:?}");
    assert_eq!(file_digest(&path), before);
    assert_eq!(listing(directory.path()), ["other.db"]);
}

#[test]
fn non_sqlite_file_is_not_a_database() {
    // SQLite's magic string followed by a page size of 768, which is not a
    // power of two.
    let mut invalid_page_size = b"SQLite format 3\0\x03\x00".to_vec();
    invalid_page_size.extend([1; 200]);
    let cases: [(&str, &[u8]); 4] = [
        (
            "text",
            b"this is not a database, just some text that is long enough",
        ),
        ("one byte", b"x"),
        ("binary", &[0xff; 4096]),
        ("sqlite header with invalid page size", &invalid_page_size),
    ];

    for (case, contents) in cases {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("text.db");
        std::fs::write(&path, contents).unwrap();

        let error = Store::open(&path, &passphrase("correct horse"), &options()).unwrap_err();

        assert!(
            matches!(&error, Error::NotADatabase { path: got } if *got == path),
            "{case}: got {error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("is not a SQLite database"),
            "{case}: {message}"
        );
        assert!(!message.contains("other tables"), "{case}: {message}");
        assert_eq!(std::fs::read(&path).unwrap(), contents, "{case}");
        assert_eq!(listing(directory.path()), ["text.db"], "{case}");
    }
}

#[test]
fn flipped_byte_fails_to_open() {
    for field in [
        CredentialField::ClientSecret,
        CredentialField::Password,
        CredentialField::RefreshToken,
    ] {
        let test = seeded(&["crm"]);
        let original = read_blob(&test, "crm", field);
        // Flip one byte in the version, the nonce, the ciphertext and the tag.
        for index in [0, 5, 30, original.len() - 1] {
            let mut tampered = original.clone();
            tampered[index] ^= 0x01;
            write_blob(&test, "crm", field, &tampered);

            let error = unseal_error(&test, "crm");

            assert_unseal_error(&error, "crm", field);
        }
        write_blob(&test, "crm", field, &original);
        assert!(test.store.unseal_credentials("crm").unwrap().is_some());
    }
}

#[test]
fn truncated_values_fail_to_open() {
    let test = seeded(&["crm"]);
    let original = read_blob(&test, "crm", CredentialField::ClientSecret);
    // Cut inside the nonce, just after it, inside the tag, and to nothing.
    for length in [10, 25, original.len() - 1, 0] {
        write_blob(
            &test,
            "crm",
            CredentialField::ClientSecret,
            &original[..length],
        );

        let error = unseal_error(&test, "crm");

        assert_unseal_error(&error, "crm", CredentialField::ClientSecret);
    }
}

#[test]
fn ciphertext_swapped_between_datasources_fails() {
    let test = seeded(&["alpha", "beta"]);
    let from_beta = read_blob(&test, "beta", CredentialField::ClientSecret);
    write_blob(&test, "alpha", CredentialField::ClientSecret, &from_beta);

    let error = unseal_error(&test, "alpha");

    assert_unseal_error(&error, "alpha", CredentialField::ClientSecret);
    assert!(test.store.unseal_credentials("beta").unwrap().is_some());
}

#[test]
fn ciphertext_swapped_between_fields_fails() {
    let test = seeded(&["crm"]);
    let password = read_blob(&test, "crm", CredentialField::Password);
    write_blob(&test, "crm", CredentialField::RefreshToken, &password);

    let error = unseal_error(&test, "crm");

    assert_unseal_error(&error, "crm", CredentialField::RefreshToken);
}

#[test]
fn row_pointed_at_other_key_fails() {
    let test = TestStore::with_options(&StoreOptions {
        rotation_batch_size: 1,
        ..options()
    });
    for name in ["alpha", "beta"] {
        test.store.create_datasource(&bearer(name)).unwrap();
        test.store
            .put_credentials(name, &full_credentials(SECRET, PASSWORD, REFRESH))
            .unwrap();
    }
    // Stop the rotation after its first batch, so both keys stay live.
    let interrupted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        test.store
            .rotate_data_key(&mut |_| panic!("stop after the first batch"))
    }));
    assert!(interrupted.is_err());
    let moved = test
        .raw()
        .execute(
            "UPDATE credentials SET key_id = 'dk-1' WHERE key_id = 'dk-2'",
            [],
        )
        .unwrap();

    let results = [
        test.store.unseal_credentials("alpha"),
        test.store.unseal_credentials("beta"),
    ];

    assert_eq!(moved, 1);
    let failures: Vec<_> = results.into_iter().filter_map(Result::err).collect();
    assert_eq!(failures.len(), 1, "exactly the moved row must fail");
    assert!(matches!(
        failures[0],
        Error::Unseal {
            field: CredentialField::ClientSecret,
            ..
        }
    ));
}

#[test]
fn retired_key_reported_unavailable() {
    let test = seeded(&["crm"]);
    test.store.rotate_data_key(&mut |_| {}).unwrap();
    test.raw()
        .execute("UPDATE credentials SET key_id = 'dk-1'", [])
        .unwrap();

    let error = unseal_error(&test, "crm");

    match error {
        Error::DataKeyUnavailable { key_id } => assert_eq!(key_id, "dk-1"),
        other => panic!("expected an unavailable key, got {other:?}"),
    }
}

#[test]
fn unseal_failure_leaves_row_in_place() {
    let test = seeded(&["crm"]);
    let mut tampered = read_blob(&test, "crm", CredentialField::ClientSecret);
    tampered[40] ^= 0xff;
    write_blob(&test, "crm", CredentialField::ClientSecret, &tampered);

    let _ = test.store.unseal_credentials("crm");
    let _ = test.store.rotate_data_key(&mut |_| {});

    assert_eq!(
        read_blob(&test, "crm", CredentialField::ClientSecret),
        tampered
    );
    assert!(test.store.credentials_summary("crm").unwrap().is_some());
}

#[test]
fn same_secret_twice_differs() {
    let test = seeded(&["alpha"]);
    let first = read_blob(&test, "alpha", CredentialField::ClientSecret);
    test.store
        .put_credentials("alpha", &Credentials::new("reporting", "something-else"))
        .unwrap();
    test.store
        .put_credentials("alpha", &full_credentials(SECRET, PASSWORD, REFRESH))
        .unwrap();
    let second = read_blob(&test, "alpha", CredentialField::ClientSecret);

    assert_ne!(first[1..25], second[1..25], "nonces must differ");
    assert_ne!(first[25..], second[25..], "ciphertexts must differ");
    // The same value in two fields of one row also gets distinct nonces.
    let password = read_blob(&test, "alpha", CredentialField::Password);
    assert_ne!(second[1..25], password[1..25]);
}

#[test]
fn plaintext_absent_from_file() {
    let test = seeded(&["crm"]);
    let mut bytes = std::fs::read(&test.path).unwrap();
    let wal = test.path.with_extension("db-wal");
    if let Ok(wal_bytes) = std::fs::read(&wal) {
        bytes.extend(wal_bytes);
    }

    for secret in [SECRET, PASSWORD, REFRESH, "correct horse"] {
        let found = bytes
            .windows(secret.len())
            .any(|window| window == secret.as_bytes());
        assert!(!found, "{secret:?} is stored in the clear");
    }
}

#[test]
fn secrets_absent_from_debug_and_errors() {
    let test = seeded(&["crm"]);
    let unsealed = test.store.unseal_credentials("crm").unwrap().unwrap();
    let (token, token_secret) = test
        .store
        .create_api_token("pipeline", authcfg_model::Role::Admin, &[])
        .unwrap();
    let mut tampered = read_blob(&test, "crm", CredentialField::Password);
    tampered[30] ^= 1;
    write_blob(&test, "crm", CredentialField::Password, &tampered);
    let unseal_failure = unseal_error(&test, "crm");
    let key = passphrase("correct horse");
    let options = StoreOptions::default();

    let outputs = [
        format!("{:?}", test.store),
        format!("{unsealed:?}"),
        format!("{:?}", unsealed.credentials),
        format!("{token:?}"),
        format!("{token_secret:?}"),
        format!("{key:?}"),
        format!("{options:?}"),
        format!("{unseal_failure:?}"),
        unseal_failure.to_string(),
        format!("{:?}", test.store.key_status().unwrap()),
        format!("{:?}", test.store.credentials_summary("crm").unwrap()),
        format!("{:?}", SecretString::new(SECRET)),
        format!("{:?}", Error::WrongMasterKey),
    ];
    let secrets = [
        SECRET,
        PASSWORD,
        REFRESH,
        "correct horse",
        token_secret.expose_secret(),
    ];
    for output in &outputs {
        for secret in secrets {
            assert!(!output.contains(secret), "{output:?} contains a secret");
        }
    }
    assert!(outputs[1].contains("[redacted]"));
}

#[test]
fn fingerprint_keyed_and_stable() {
    let test = seeded(&["alpha", "beta"]);
    test.store.create_datasource(&bearer("gamma")).unwrap();
    test.store
        .put_credentials(
            "gamma",
            &full_credentials("a-different-secret", PASSWORD, REFRESH),
        )
        .unwrap();
    let fingerprint = |name: &str| {
        test.store
            .credentials_summary(name)
            .unwrap()
            .unwrap()
            .fingerprint
    };
    let other = TestStore::new();
    other.store.create_datasource(&bearer("alpha")).unwrap();
    other
        .store
        .put_credentials("alpha", &full_credentials(SECRET, PASSWORD, REFRESH))
        .unwrap();
    let other_fingerprint = other
        .store
        .credentials_summary("alpha")
        .unwrap()
        .unwrap()
        .fingerprint;

    assert_eq!(fingerprint("alpha"), fingerprint("beta"));
    assert_ne!(fingerprint("alpha"), fingerprint("gamma"));
    assert!(fingerprint("alpha").starts_with("hmac-sha256:"));
    assert_eq!(fingerprint("alpha").len(), "hmac-sha256:".len() + 16);
    assert_ne!(
        fingerprint("alpha"),
        other_fingerprint,
        "the MAC key differs per store"
    );
    test.store.rotate_data_key(&mut |_| {}).unwrap();
    assert_eq!(fingerprint("beta"), fingerprint("alpha"));
}
