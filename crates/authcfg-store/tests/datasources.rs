//! Data source lifecycle: create, read, list (with and without credentials
//! summaries), versioned update, delete.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use std::sync::{Arc, Barrier};

use authcfg_model::{AuthConfig, Credentials, CredentialsSummary, DataSource, SecretString};
use authcfg_store::{Error, Store};
use common::{bearer, full_credentials, TestStore};

#[test]
fn create_then_get_by_name_and_id() {
    let test = TestStore::new();

    let created = test.store.create_datasource(&bearer("crm-prod")).unwrap();

    assert_eq!(created.version, 1);
    assert_eq!(created.created_at, created.updated_at);
    assert_eq!(test.store.get_datasource("crm-prod").unwrap(), created);
    assert_eq!(
        test.store.get_datasource_by_id(created.id).unwrap(),
        created
    );
}

#[test]
fn duplicate_name_already_exists() {
    let test = TestStore::new();
    test.store.create_datasource(&bearer("crm")).unwrap();

    let error = test.store.create_datasource(&bearer("crm")).unwrap_err();

    assert!(
        matches!(&error, Error::AlreadyExists { name, .. } if name == "crm"),
        "got {error:?}"
    );
}

#[test]
fn invalid_request_rejected() {
    let test = TestStore::new();
    let cases = [
        (
            "uppercase name",
            {
                let mut request = bearer("crm");
                request.name = "CRM".to_owned();
                request
            },
            "/name",
        ),
        (
            "bearer without token_url",
            {
                let mut request = bearer("crm");
                request.auth.token_url = None;
                request
            },
            "/auth/token_url",
        ),
    ];

    for (case, request, pointer) in cases {
        let error = test.store.create_datasource(&request).unwrap_err();
        match error {
            Error::Validation(errors) => {
                assert!(errors.detail_at(pointer).is_some(), "{case}: {errors}");
            }
            other => panic!("{case}: expected a validation error, got {other:?}"),
        }
    }
    assert!(test
        .store
        .list_datasources(None, 10)
        .unwrap()
        .items
        .is_empty());
}

#[test]
fn unknown_names_not_found() {
    let test = TestStore::new();

    let errors = [
        test.store.get_datasource("missing").unwrap_err(),
        test.store.delete_datasource("missing").unwrap_err(),
        test.store.credentials_summary("missing").unwrap_err(),
        test.store.unseal_credentials("missing").unwrap_err(),
        test.store
            .put_credentials("missing", &Credentials::new("id", "secret"))
            .unwrap_err(),
    ];

    for error in errors {
        assert!(
            matches!(&error, Error::NotFound { name, .. } if name == "missing"),
            "got {error:?}"
        );
    }
}

#[test]
fn list_pages_in_name_order() {
    let test = TestStore::new();
    let names = ["delta", "alpha", "echo", "charlie", "bravo"];
    for name in names {
        test.store.create_datasource(&bearer(name)).unwrap();
    }

    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = test.store.list_datasources(cursor.as_deref(), 2).unwrap();
        pages += 1;
        assert!(page.items.len() <= 2);
        seen.extend(page.items.into_iter().map(|item| item.name));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }

    assert_eq!(seen, ["alpha", "bravo", "charlie", "delta", "echo"]);
    assert_eq!(pages, 3);
}

#[test]
fn list_exact_page_has_no_cursor() {
    let test = TestStore::new();
    for name in ["alpha", "bravo"] {
        test.store.create_datasource(&bearer(name)).unwrap();
    }

    let page = test.store.list_datasources(None, 2).unwrap();
    let clamped = test.store.list_datasources(None, 0).unwrap();

    assert_eq!(page.items.len(), 2);
    assert_eq!(page.next_cursor, None);
    assert_eq!(clamped.items.len(), 1, "a zero limit is clamped to 1");
    assert_eq!(clamped.next_cursor.as_deref(), Some("alpha"));
}

/// Lists every data source with its credentials summary through
/// `list_datasources_with_credentials`, `limit` per page.
fn list_all_with_credentials(
    store: &Store,
    limit: usize,
) -> Vec<(DataSource, Option<CredentialsSummary>)> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store
            .list_datasources_with_credentials(cursor.as_deref(), limit)
            .unwrap();
        let plain = store.list_datasources(cursor.as_deref(), limit).unwrap();
        assert_eq!(page.next_cursor, plain.next_cursor, "after {cursor:?}");
        all.extend(
            page.items
                .into_iter()
                .map(|entry| (entry.datasource, entry.credentials)),
        );
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
}

/// Lists the same through one `list_datasources` page per `limit` data
/// sources and one `credentials_summary` call per data source.
fn list_all_per_name(store: &Store, limit: usize) -> Vec<(DataSource, Option<CredentialsSummary>)> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.list_datasources(cursor.as_deref(), limit).unwrap();
        for datasource in page.items {
            let summary = store.credentials_summary(&datasource.name).unwrap();
            all.push((datasource, summary));
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
}

#[test]
fn list_with_credentials_matches_per_name() {
    let test = TestStore::new();
    assert!(list_all_with_credentials(&test.store, 10).is_empty());

    // Without any credentials.
    let names = [
        "delta", "alpha", "echo", "charlie", "bravo", "foxtrot", "golf",
    ];
    for name in names {
        test.store.create_datasource(&bearer(name)).unwrap();
    }
    for limit in [1, 2, 3, 7, 100] {
        let listed = list_all_with_credentials(&test.store, limit);
        assert_eq!(
            listed,
            list_all_per_name(&test.store, limit),
            "limit {limit}"
        );
        assert!(listed.iter().all(|(_, summary)| summary.is_none()));
    }

    // With credentials of every shape, one changed twice and one deleted.
    test.store
        .put_credentials("alpha", &Credentials::new("alpha-client", "secret-a"))
        .unwrap();
    test.store
        .put_credentials(
            "charlie",
            &full_credentials("secret-c", "password-c", "refresh-c"),
        )
        .unwrap();
    let mut password_only = Credentials::new("echo-client", "secret-e");
    password_only.username = Some("robot".to_owned());
    password_only.password = Some(SecretString::new("password-e"));
    test.store.put_credentials("echo", &password_only).unwrap();
    test.store
        .put_credentials("golf", &Credentials::new("golf-client", "secret-g1"))
        .unwrap();
    test.store
        .put_credentials("golf", &Credentials::new("golf-client", "secret-g2"))
        .unwrap();
    test.store
        .put_credentials("bravo", &Credentials::new("bravo-client", "secret-b"))
        .unwrap();
    test.store.delete_credentials("bravo").unwrap();

    for limit in [1, 2, 3, 7, 100] {
        let listed = list_all_with_credentials(&test.store, limit);
        assert_eq!(
            listed,
            list_all_per_name(&test.store, limit),
            "limit {limit}"
        );
        let with: Vec<&str> = listed
            .iter()
            .filter(|(_, summary)| summary.is_some())
            .map(|(datasource, _)| datasource.name.as_str())
            .collect();
        assert_eq!(with, ["alpha", "charlie", "echo", "golf"], "limit {limit}");
    }
    let golf = test.store.credentials_summary("golf").unwrap().unwrap();
    assert_eq!(golf.version, 2);
}

#[test]
fn list_with_credentials_cursor_and_clamp() {
    let test = TestStore::new();
    for name in ["alpha", "bravo", "charlie"] {
        test.store.create_datasource(&bearer(name)).unwrap();
    }

    let clamped = test
        .store
        .list_datasources_with_credentials(None, 0)
        .unwrap();
    let after = test
        .store
        .list_datasources_with_credentials(Some("alpha"), 10)
        .unwrap();
    let past_end = test
        .store
        .list_datasources_with_credentials(Some("zulu"), 10)
        .unwrap();

    assert_eq!(clamped.items.len(), 1, "a zero limit is clamped to 1");
    assert_eq!(clamped.next_cursor.as_deref(), Some("alpha"));
    let after_names: Vec<&str> = after
        .items
        .iter()
        .map(|entry| entry.datasource.name.as_str())
        .collect();
    assert_eq!(after_names, ["bravo", "charlie"]);
    assert_eq!(after.next_cursor, None);
    assert!(past_end.items.is_empty());
    assert_eq!(past_end.next_cursor, None);
}

#[test]
fn update_bumps_version() {
    let test = TestStore::new();
    let created = test.store.create_datasource(&bearer("crm")).unwrap();
    let mut changed = created.clone();
    changed.description = Some("billing".to_owned());
    changed.auth = AuthConfig::basic();

    let updated = test.store.update_datasource(&changed, 1).unwrap();

    assert_eq!(updated.version, 2);
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(updated.created_at, created.created_at);
    assert_eq!(updated.auth, AuthConfig::basic());
    assert_eq!(test.store.get_datasource("crm").unwrap(), updated);
}

#[test]
fn stale_update_conflicts_changes_nothing() {
    let test = TestStore::new();
    let created = test.store.create_datasource(&bearer("crm")).unwrap();
    let mut first = created.clone();
    first.description = Some("first".to_owned());
    test.store.update_datasource(&first, 1).unwrap();
    let mut second = created;
    second.description = Some("second".to_owned());

    let error = test.store.update_datasource(&second, 1).unwrap_err();

    match error {
        Error::Conflict {
            expected, current, ..
        } => {
            assert_eq!(expected, 1);
            assert_eq!(current, 2);
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let stored = test.store.get_datasource("crm").unwrap();
    assert_eq!(stored.description.as_deref(), Some("first"));
    assert_eq!(stored.version, 2);
}

#[test]
fn update_cannot_rename() {
    let test = TestStore::new();
    let mut renamed = test.store.create_datasource(&bearer("crm")).unwrap();
    renamed.name = "erp".to_owned();

    let error = test.store.update_datasource(&renamed, 1).unwrap_err();

    assert!(matches!(error, Error::Validation(_)), "got {error:?}");
    assert!(test.store.get_datasource("crm").is_ok());
}

#[test]
fn concurrent_updates_lose_nothing() {
    const THREADS: usize = 4;
    const UPDATES: usize = 10;
    let test = TestStore::new();
    test.store.create_datasource(&bearer("counter")).unwrap();
    let barrier = Arc::new(Barrier::new(THREADS));

    // Each thread appends its mark to the description with a
    // read-modify-write loop that retries on conflict.
    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let store = test.store.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let mut conflicts = 0;
                for update in 0..UPDATES {
                    loop {
                        let mut current = store.get_datasource("counter").unwrap();
                        let version = current.version;
                        let mark = format!("{thread}.{update};");
                        current.description = Some(current.description.unwrap_or_default() + &mark);
                        match store.update_datasource(&current, version) {
                            Ok(_) => break,
                            Err(Error::Conflict { .. }) => conflicts += 1,
                            Err(other) => panic!("update failed: {other}"),
                        }
                    }
                }
                conflicts
            })
        })
        .collect();
    for handle in handles {
        handle.join().unwrap();
    }

    let stored = test.store.get_datasource("counter").unwrap();
    let description = stored.description.unwrap();
    assert_eq!(stored.version, 1 + (THREADS * UPDATES) as u64);
    assert_eq!(description.matches(';').count(), THREADS * UPDATES);
    for thread in 0..THREADS {
        for update in 0..UPDATES {
            assert!(description.contains(&format!("{thread}.{update};")));
        }
    }
}

#[test]
fn delete_removes_credentials() {
    let test = TestStore::new();
    test.store.create_datasource(&bearer("crm")).unwrap();
    test.store
        .put_credentials("crm", &Credentials::new("id", "secret"))
        .unwrap();

    test.store.delete_datasource("crm").unwrap();

    let rows: i64 = test
        .raw()
        .query_row("SELECT COUNT(*) FROM credentials", [], |row| row.get(0))
        .unwrap();
    assert_eq!(rows, 0);
    assert!(matches!(
        test.store.get_datasource("crm"),
        Err(Error::NotFound { .. })
    ));
    // The name is free again and starts without credentials.
    test.store.create_datasource(&bearer("crm")).unwrap();
    assert!(test.store.credentials_summary("crm").unwrap().is_none());
}
