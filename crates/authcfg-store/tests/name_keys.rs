//! Name keys: a data source name may not take the environment variable
//! identity (`crm-prod` and `crm_prod` both give `CRM_PROD`) of another.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use std::sync::{Arc, Barrier};

use authcfg_model::datasource_name_key;
use authcfg_store::{Error, Store};
use common::{bearer, options, passphrase, TestStore};

fn names(store: &Store) -> Vec<String> {
    store
        .list_datasources(None, 100)
        .unwrap()
        .items
        .into_iter()
        .map(|datasource| datasource.name)
        .collect()
}

#[test]
fn taken_key_rejected_with_both_names() {
    let test = TestStore::new();
    test.store.create_datasource(&bearer("crm-prod")).unwrap();
    let counter = test.store.change_counter().unwrap();

    let error = test
        .store
        .create_datasource(&bearer("crm_prod"))
        .unwrap_err();

    match &error {
        Error::NameKeyTaken {
            name,
            existing,
            key,
        } => {
            assert_eq!(name, "crm_prod");
            assert_eq!(existing, "crm-prod");
            assert_eq!(key, "CRM_PROD");
        }
        other => panic!("expected NameKeyTaken, got {other:?}"),
    }
    let message = error.to_string();
    for part in [
        "\"crm_prod\"",
        "\"crm-prod\"",
        "CRM_PROD",
        "choose another name",
    ] {
        assert!(message.contains(part), "no {part} in: {message}");
    }
    assert_eq!(names(&test.store), ["crm-prod"]);
    assert_eq!(test.store.change_counter().unwrap(), counter);
}

#[test]
fn same_name_stays_already_exists() {
    let test = TestStore::new();
    test.store.create_datasource(&bearer("crm-prod")).unwrap();

    let error = test
        .store
        .create_datasource(&bearer("crm-prod"))
        .unwrap_err();

    assert!(
        matches!(&error, Error::AlreadyExists { name, .. } if name == "crm-prod"),
        "got {error:?}"
    );
}

#[test]
fn distinct_keys_are_created() {
    let test = TestStore::new();

    // Each key differs from the others, even where one name starts with another.
    let created = ["crm", "crm-prod", "crm-prod-eu", "crm-prod2", "billing"];
    for name in created {
        test.store.create_datasource(&bearer(name)).unwrap();
    }

    assert_eq!(
        names(&test.store),
        ["billing", "crm", "crm-prod", "crm-prod-eu", "crm-prod2"]
    );
}

#[test]
fn every_separator_mix_collides() {
    let test = TestStore::new();
    test.store.create_datasource(&bearer("a-b_c")).unwrap();

    for name in ["a-b-c", "a_b_c", "a_b-c"] {
        let error = test.store.create_datasource(&bearer(name)).unwrap_err();
        assert!(
            matches!(&error, Error::NameKeyTaken { existing, .. } if existing == "a-b_c"),
            "{name}: got {error:?}"
        );
    }
    assert_eq!(names(&test.store), ["a-b_c"]);
}

#[test]
fn key_lookup_finds_owner() {
    let test = TestStore::new();
    test.store.create_datasource(&bearer("crm-prod")).unwrap();
    test.store.create_datasource(&bearer("erp2-eu")).unwrap();

    let cases = [
        ("CRM_PROD", Some("crm-prod")),
        ("ERP2_EU", Some("erp2-eu")),
        ("CRM", None),
        ("crm_prod", None),
        ("", None),
    ];
    for (key, expected) in cases {
        assert_eq!(
            test.store.datasource_name_for_key(key).unwrap().as_deref(),
            expected,
            "key {key:?}"
        );
    }
}

#[test]
fn stored_key_matches_model_function() {
    let test = TestStore::new();
    let created = ["crm-prod", "x_y", "a1-b2_c3"];
    for name in created {
        test.store.create_datasource(&bearer(name)).unwrap();
    }

    let raw = test.raw();
    for name in created {
        let stored: String = raw
            .query_row(
                "SELECT name_key FROM datasources WHERE name = ?1",
                [name],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(stored, datasource_name_key(name), "key of {name:?}");
    }
}

#[test]
fn update_keeps_key() {
    let test = TestStore::new();
    let created = test.store.create_datasource(&bearer("crm-prod")).unwrap();

    let mut changed = created.clone();
    changed.description = Some("CRM production".to_owned());
    test.store
        .update_datasource(&changed, created.version)
        .unwrap();

    assert_eq!(
        test.store
            .datasource_name_for_key("CRM_PROD")
            .unwrap()
            .as_deref(),
        Some("crm-prod")
    );
    let error = test
        .store
        .create_datasource(&bearer("crm_prod"))
        .unwrap_err();
    assert!(matches!(error, Error::NameKeyTaken { .. }), "got {error:?}");
}

#[test]
fn delete_frees_key() {
    let test = TestStore::new();
    test.store.create_datasource(&bearer("crm-prod")).unwrap();

    test.store.delete_datasource("crm-prod").unwrap();
    test.store.create_datasource(&bearer("crm_prod")).unwrap();

    assert_eq!(names(&test.store), ["crm_prod"]);
    assert_eq!(
        test.store
            .datasource_name_for_key("CRM_PROD")
            .unwrap()
            .as_deref(),
        Some("crm_prod")
    );
}

#[test]
fn racing_stores_create_one_of_pair() {
    // Two handles on one file stand in for two processes: each has its own
    // writer connection, so only SQLite's write lock orders them.
    let test = TestStore::new();
    let other = Store::open(&test.path, &passphrase("correct horse"), &options()).unwrap();

    for round in 0..20 {
        let dash = format!("crm{round}-prod");
        let underscore = format!("crm{round}_prod");
        let barrier = Arc::new(Barrier::new(2));
        let threads: Vec<_> = [(test.store.clone(), dash), (other.clone(), underscore)]
            .into_iter()
            .map(|(store, name)| {
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    store.create_datasource(&bearer(&name))
                })
            })
            .collect();
        let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();

        let created = results.iter().filter(|result| result.is_ok()).count();
        assert_eq!(created, 1, "round {round}: {results:?}");
        for result in &results {
            if let Err(error) = result {
                assert!(
                    matches!(error, Error::NameKeyTaken { .. }),
                    "round {round}: got {error:?}"
                );
            }
        }
    }
    assert_eq!(names(&test.store).len(), 20);
}
