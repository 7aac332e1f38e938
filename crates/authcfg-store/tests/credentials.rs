//! Credentials: versions, summaries, unsealing and refresh token rotation.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use std::sync::{Arc, Barrier};

use authcfg_model::{CredentialField, Credentials, SecretString};
use authcfg_store::Error;
use common::{bearer, full_credentials, TestStore};

fn with_datasource(name: &str) -> TestStore {
    let test = TestStore::new();
    test.store.create_datasource(&bearer(name)).unwrap();
    test
}

#[test]
fn put_then_unseal_roundtrip() {
    let test = with_datasource("crm");
    let datasource = test.store.get_datasource("crm").unwrap();

    let summary = test
        .store
        .put_credentials("crm", &full_credentials("s1", "p1", "r1"))
        .unwrap();
    let unsealed = test.store.unseal_credentials("crm").unwrap().unwrap();

    assert_eq!(summary.version, 1);
    assert_eq!(summary.client_id, "reporting");
    assert_eq!(summary.username.as_deref(), Some("robot"));
    assert_eq!(
        summary.secrets_set,
        [
            CredentialField::ClientSecret,
            CredentialField::Password,
            CredentialField::RefreshToken
        ]
    );
    assert_eq!(unsealed.version, 1);
    assert_eq!(unsealed.datasource_id, datasource.id);
    let credentials = unsealed.credentials;
    assert_eq!(credentials.client_id, "reporting");
    assert_eq!(credentials.client_secret.expose_secret(), "s1");
    assert_eq!(credentials.username.as_deref(), Some("robot"));
    assert_eq!(credentials.password.unwrap().expose_secret(), "p1");
    assert_eq!(credentials.refresh_token.unwrap().expose_secret(), "r1");
}

#[test]
fn no_credentials_is_none() {
    let test = with_datasource("crm");

    assert!(test.store.credentials_summary("crm").unwrap().is_none());
    assert!(test.store.unseal_credentials("crm").unwrap().is_none());
}

#[test]
fn version_changes_only_with_values() {
    let test = with_datasource("crm");
    let put = |credentials: &Credentials| test.store.put_credentials("crm", credentials).unwrap();

    let cases: [(&str, Credentials, u64); 7] = [
        ("first put", full_credentials("s", "p", "r"), 1),
        ("same values", full_credentials("s", "p", "r"), 1),
        ("new secret", full_credentials("s2", "p", "r"), 2),
        ("new password", full_credentials("s2", "p2", "r"), 3),
        ("new refresh token", full_credentials("s2", "p2", "r2"), 4),
        ("fields removed", Credentials::new("reporting", "s2"), 5),
        ("same again", Credentials::new("reporting", "s2"), 5),
    ];
    for (case, credentials, version) in cases {
        assert_eq!(put(&credentials).version, version, "{case}");
    }
    let renamed = Credentials::new("other-client", "s2");
    assert_eq!(put(&renamed).version, 6, "new client id");
}

#[test]
fn version_never_reused_after_delete() {
    let test = with_datasource("crm");
    test.store
        .put_credentials("crm", &Credentials::new("id", "secret"))
        .unwrap();

    test.store.delete_credentials("crm").unwrap();
    let again = test
        .store
        .put_credentials("crm", &Credentials::new("id", "secret"))
        .unwrap();

    assert!(again.version > 1, "got version {}", again.version);
    assert!(matches!(
        test.store.delete_credentials("other"),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn delete_missing_credentials_not_found() {
    let test = with_datasource("crm");

    let error = test.store.delete_credentials("crm").unwrap_err();

    assert!(matches!(error, Error::NotFound { .. }), "got {error:?}");
}

#[test]
fn invalid_credentials_rejected_without_secret() {
    let test = with_datasource("crm");
    let credentials = Credentials::new("reporting", "line\nbreak-secret");

    let error = test.store.put_credentials("crm", &credentials).unwrap_err();

    assert!(matches!(error, Error::Validation(_)), "got {error:?}");
    assert!(!error.to_string().contains("break-secret"));
    assert!(test.store.credentials_summary("crm").unwrap().is_none());
}

#[test]
fn put_replaces_damaged_value() {
    let test = with_datasource("crm");
    test.store
        .put_credentials("crm", &Credentials::new("id", "secret"))
        .unwrap();
    test.raw()
        .execute("UPDATE credentials SET client_secret = x'0102'", [])
        .unwrap();

    let summary = test
        .store
        .put_credentials("crm", &Credentials::new("id", "secret"))
        .unwrap();

    assert_eq!(summary.version, 2);
    let unsealed = test.store.unseal_credentials("crm").unwrap().unwrap();
    assert_eq!(unsealed.credentials.client_secret.expose_secret(), "secret");
}

#[test]
fn rotate_refresh_token_checks_version() {
    let test = with_datasource("crm");
    let id = test.store.get_datasource("crm").unwrap().id;
    test.store
        .put_credentials("crm", &full_credentials("s", "p", "r1"))
        .unwrap();

    let version = test
        .store
        .rotate_refresh_token(id, 1, &SecretString::new("r2"))
        .unwrap();
    let stale = test
        .store
        .rotate_refresh_token(id, 1, &SecretString::new("r3"))
        .unwrap_err();
    let unchanged = test
        .store
        .rotate_refresh_token(id, 2, &SecretString::new("r2"))
        .unwrap();

    assert_eq!(version, 2);
    assert!(
        matches!(
            stale,
            Error::Conflict {
                expected: 1,
                current: 2,
                ..
            }
        ),
        "got {stale:?}"
    );
    assert_eq!(unchanged, 2, "the same token keeps the version");
    let unsealed = test.store.unseal_credentials("crm").unwrap().unwrap();
    assert_eq!(unsealed.version, 2);
    let credentials = unsealed.credentials;
    assert_eq!(credentials.refresh_token.unwrap().expose_secret(), "r2");
    assert_eq!(credentials.client_secret.expose_secret(), "s");
    assert_eq!(credentials.password.unwrap().expose_secret(), "p");
}

#[test]
fn rotate_refresh_token_rejects_bad_input() {
    let test = with_datasource("crm");
    let id = test.store.get_datasource("crm").unwrap().id;

    let no_credentials = test
        .store
        .rotate_refresh_token(id, 1, &SecretString::new("r"))
        .unwrap_err();
    test.store
        .put_credentials("crm", &full_credentials("s", "p", "r"))
        .unwrap();
    let empty = test
        .store
        .rotate_refresh_token(id, 1, &SecretString::new(""))
        .unwrap_err();
    let control = test
        .store
        .rotate_refresh_token(id, 1, &SecretString::new("a\nb"))
        .unwrap_err();

    assert!(
        matches!(no_credentials, Error::NotFound { .. }),
        "got {no_credentials:?}"
    );
    assert!(matches!(empty, Error::Validation(_)), "got {empty:?}");
    assert!(matches!(control, Error::Validation(_)), "got {control:?}");
    assert_eq!(
        test.store
            .credentials_summary("crm")
            .unwrap()
            .unwrap()
            .version,
        1
    );
}

#[test]
fn concurrent_refresh_rotations_one_wins() {
    const THREADS: usize = 4;
    let test = with_datasource("crm");
    let id = test.store.get_datasource("crm").unwrap().id;
    test.store
        .put_credentials("crm", &full_credentials("s", "p", "r0"))
        .unwrap();
    let barrier = Arc::new(Barrier::new(THREADS));

    // Every thread read version 1; exactly one may store its token.
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let store = test.store.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let token = SecretString::new(format!("r-from-{thread}"));
                store.rotate_refresh_token(id, 1, &token).map(|_| thread)
            })
        })
        .collect();
    let results: Vec<_> = handles
        .into_iter()
        .map(|handle| handle.join().unwrap())
        .collect();

    let winners: Vec<usize> = results
        .iter()
        .filter_map(|result| result.as_ref().ok().copied())
        .collect();
    assert_eq!(winners.len(), 1, "results: {results:?}");
    for result in &results {
        if let Err(error) = result {
            assert!(matches!(error, Error::Conflict { .. }), "got {error:?}");
        }
    }
    let unsealed = test.store.unseal_credentials("crm").unwrap().unwrap();
    assert_eq!(unsealed.version, 2);
    assert_eq!(
        unsealed.credentials.refresh_token.unwrap().expose_secret(),
        format!("r-from-{}", winners[0])
    );
}

#[test]
fn concurrent_puts_keep_versions_consistent() {
    const THREADS: usize = 4;
    const PUTS: usize = 5;
    let test = with_datasource("crm");
    let barrier = Arc::new(Barrier::new(THREADS));

    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let store = test.store.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                (0..PUTS)
                    .map(|put| {
                        let secret = format!("secret-{thread}-{put}");
                        store
                            .put_credentials("crm", &Credentials::new("id", secret.as_str()))
                            .unwrap()
                            .version
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut versions: Vec<u64> = handles
        .into_iter()
        .flat_map(|handle| handle.join().unwrap())
        .collect();
    versions.sort_unstable();

    // Every put changed the value, so every put got its own version.
    let expected: Vec<u64> = (1..=(THREADS * PUTS) as u64).collect();
    assert_eq!(versions, expected);
}
