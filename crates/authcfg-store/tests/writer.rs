//! Concurrent writers of one store: they queue on its writer connection, so
//! none of them fails with `database is locked`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use std::sync::{Arc, Barrier};

use authcfg_model::{AuditOutcome, Credentials};
use authcfg_store::{NewAuditEvent, StoreOptions};
use common::{bearer, options, TestStore};

const THREADS: usize = 8;
const CREATES: usize = 200;

#[test]
fn eight_writers_all_succeed() {
    // A busy timeout far shorter than the whole run: a writer that waited on
    // SQLite's lock instead of queueing for the writer connection would soon
    // fail with SQLITE_BUSY.
    let test = TestStore::with_options(&StoreOptions {
        busy_timeout: std::time::Duration::from_millis(50),
        ..options()
    });
    let barrier = Arc::new(Barrier::new(THREADS));

    let handles: Vec<_> = (0..THREADS)
        .map(|thread| {
            let store = test.store.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                let mut failures = Vec::new();
                for index in 0..CREATES {
                    let name = format!("source-{thread}-{index:03}");
                    let result = store.create_datasource(&bearer(&name)).and_then(|_| {
                        store.put_credentials(
                            &name,
                            &Credentials::new(format!("client-{index}"), "secret"),
                        )
                    });
                    if let Err(error) = result {
                        failures.push(format!("{name}: {error}"));
                    }
                }
                failures
            })
        })
        .collect();
    let failures: Vec<String> = handles
        .into_iter()
        .flat_map(|handle| handle.join().unwrap())
        .collect();

    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    let mut listed = 0;
    let mut cursor: Option<String> = None;
    loop {
        let page = test
            .store
            .list_datasources_with_credentials(cursor.as_deref(), 1000)
            .unwrap();
        for entry in &page.items {
            assert!(entry.credentials.is_some(), "{}", entry.datasource.name);
        }
        listed += page.items.len();
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(listed, THREADS * CREATES);
}

#[test]
fn mixed_writes_all_succeed() {
    // Every kind of write at once: data sources, credentials, tokens,
    // audit events and a data key rotation.
    let test = TestStore::with_options(&StoreOptions {
        busy_timeout: std::time::Duration::from_millis(50),
        ..options()
    });
    for thread in 0..4 {
        test.store
            .create_datasource(&bearer(&format!("shared-{thread}")))
            .unwrap();
    }
    let barrier = Arc::new(Barrier::new(5));

    let mut handles: Vec<_> = (0..4)
        .map(|thread| {
            let store = test.store.clone();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || -> Result<(), authcfg_store::Error> {
                barrier.wait();
                let name = format!("shared-{thread}");
                for round in 0..25 {
                    store.put_credentials(
                        &name,
                        &Credentials::new("client", format!("secret-{round}")),
                    )?;
                    let (token, _) = store.create_api_token(
                        &format!("token {thread}.{round}"),
                        authcfg_model::Role::Admin,
                        &[],
                    )?;
                    store
                        .touch_api_tokens(&[(token.id.clone(), time::OffsetDateTime::now_utc())])?;
                    store.record_audit(&NewAuditEvent {
                        actor: token.id.clone(),
                        action: "datasource.update".to_owned(),
                        datasource: Some(name.clone()),
                        outcome: AuditOutcome::Success,
                        detail: None,
                    })?;
                    store.revoke_api_token(&token.id)?;
                }
                Ok(())
            })
        })
        .collect();
    let rotating = test.store.clone();
    let rotation_barrier = Arc::clone(&barrier);
    handles.push(std::thread::spawn(move || {
        rotation_barrier.wait();
        for _ in 0..3 {
            rotating.rotate_data_key(&mut |_| {})?;
        }
        Ok(())
    }));

    for handle in handles {
        handle.join().unwrap().unwrap();
    }
    for thread in 0..4 {
        let unsealed = test
            .store
            .unseal_credentials(&format!("shared-{thread}"))
            .unwrap()
            .unwrap();
        assert_eq!(
            unsealed.credentials.client_secret.expose_secret(),
            "secret-24"
        );
        assert_eq!(unsealed.version, 25);
    }
    assert_eq!(test.store.list_api_tokens().unwrap().len(), 100);
    assert_eq!(
        test.store.list_audit(None, None, 1000).unwrap().items.len(),
        100
    );
}

#[test]
fn external_change_marker_moves_only_for_other_processes() {
    let test = TestStore::new();
    let store = &test.store;
    let start = store.external_change_marker().unwrap();

    // Writes through this store and its clones leave the marker alone.
    store.create_datasource(&bearer("crm")).unwrap();
    store
        .clone()
        .put_credentials("crm", &Credentials::new("client", "secret"))
        .unwrap();
    assert_eq!(store.external_change_marker().unwrap(), start);

    // A second store on the same file stands for another process.
    let other =
        authcfg_store::Store::open(&test.path, &common::passphrase("correct horse"), &options())
            .unwrap();
    other.create_datasource(&bearer("billing")).unwrap();
    let moved = store.external_change_marker().unwrap();
    assert_ne!(moved, start);

    store.delete_datasource("billing").unwrap();
    assert_eq!(store.external_change_marker().unwrap(), moved);
}
