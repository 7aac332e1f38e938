//! API tokens and the audit log.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod common;

use authcfg_model::{AuditOutcome, Role};
use authcfg_store::{Error, NewAuditEvent, API_TOKEN_PREFIX};
use common::TestStore;
use time::{Duration, OffsetDateTime};

fn sha256(value: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(value.as_bytes()).into()
}

fn event(actor: &str, datasource: Option<&str>) -> NewAuditEvent {
    NewAuditEvent {
        actor: actor.to_owned(),
        action: "authorization.issue".to_owned(),
        datasource: datasource.map(str::to_owned),
        outcome: AuditOutcome::Success,
        detail: Some(serde_json::json!({"status": 200})),
    }
}

#[test]
fn token_created_found_and_hashed() {
    let test = TestStore::new();

    let (info, value) = test
        .store
        .create_api_token("etl", Role::Consumer, &["crm".to_owned()])
        .unwrap();

    let value = value.expose_secret().to_owned();
    assert!(value.starts_with(API_TOKEN_PREFIX));
    assert_eq!(
        value.len(),
        API_TOKEN_PREFIX.len() + 43,
        "256 bits in base64url"
    );
    assert_eq!(
        test.store.find_api_token(&value).unwrap(),
        Some(info.clone())
    );
    let hashes = test.store.api_token_hashes().unwrap();
    assert_eq!(hashes, [(sha256(&value), info.clone())]);
    // Only the hash is stored.
    let stored: Vec<u8> = test
        .raw()
        .query_row("SELECT token_hash FROM api_tokens", [], |row| row.get(0))
        .unwrap();
    assert_eq!(stored, sha256(&value));
    let file = std::fs::read(&test.path).unwrap();
    let wal = std::fs::read(test.path.with_extension("db-wal")).unwrap_or_default();
    for bytes in [file, wal] {
        assert!(!bytes
            .windows(value.len())
            .any(|window| window == value.as_bytes()));
    }
}

#[test]
fn tokens_are_unique() {
    let test = TestStore::new();

    let (first, first_value) = test.store.create_api_token("a", Role::Admin, &[]).unwrap();
    let (second, second_value) = test.store.create_api_token("a", Role::Admin, &[]).unwrap();

    assert_ne!(first.id, second.id);
    assert_ne!(first_value.expose_secret(), second_value.expose_secret());
    assert_eq!(test.store.list_api_tokens().unwrap().len(), 2);
}

#[test]
fn unknown_and_malformed_tokens_none() {
    let test = TestStore::new();
    test.store.create_api_token("a", Role::Admin, &[]).unwrap();
    let long = format!("{API_TOKEN_PREFIX}{}", "x".repeat(1000));

    for presented in ["", "acfg_", "acfg_nope", "Bearer acfg_x", long.as_str()] {
        assert_eq!(
            test.store.find_api_token(presented).unwrap(),
            None,
            "{presented:?}"
        );
    }
}

#[test]
fn revoked_token_not_found() {
    let test = TestStore::new();
    let (info, value) = test.store.create_api_token("a", Role::Admin, &[]).unwrap();

    assert!(test.store.revoke_api_token(&info.id).unwrap());
    let first_revocation = test.store.list_api_tokens().unwrap()[0].revoked_at;
    assert!(
        !test.store.revoke_api_token(&info.id).unwrap(),
        "revoked twice"
    );

    assert_eq!(
        test.store.find_api_token(value.expose_secret()).unwrap(),
        None
    );
    assert!(test.store.api_token_hashes().unwrap().is_empty());
    let listed = test.store.list_api_tokens().unwrap();
    assert!(first_revocation.is_some());
    assert_eq!(
        listed[0].revoked_at, first_revocation,
        "a second revoke keeps the time"
    );
    assert!(matches!(
        test.store.revoke_api_token("tok_missing"),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn invalid_token_requests_rejected() {
    let test = TestStore::new();
    let crm = vec!["crm".to_owned()];
    let cases: [(&str, &str, Role, Vec<String>, &str); 5] = [
        ("empty label", " ", Role::Admin, vec![], "/label"),
        ("control in label", "a\tb", Role::Admin, vec![], "/label"),
        (
            "admin with data sources",
            "a",
            Role::Admin,
            crm.clone(),
            "/datasources",
        ),
        (
            "consumer without data sources",
            "a",
            Role::Consumer,
            vec![],
            "/datasources",
        ),
        (
            "bad data source name",
            "a",
            Role::Consumer,
            vec!["CRM".to_owned()],
            "/datasources/0",
        ),
    ];

    for (case, label, role, datasources, pointer) in cases {
        match test.store.create_api_token(label, role, &datasources) {
            Err(Error::Validation(errors)) => {
                assert!(errors.detail_at(pointer).is_some(), "{case}: {errors}");
            }
            other => panic!("{case}: expected a validation error, got {other:?}"),
        }
    }
    assert!(test.store.list_api_tokens().unwrap().is_empty());
}

#[test]
fn touch_keeps_latest_time() {
    let test = TestStore::new();
    let (info, _) = test.store.create_api_token("a", Role::Admin, &[]).unwrap();
    let later = OffsetDateTime::now_utc() + Duration::hours(1);
    let earlier = later - Duration::minutes(30);

    test.store
        .touch_api_tokens(&[
            (info.id.clone(), later),
            (info.id.clone(), earlier),
            ("tok_unknown".to_owned(), later),
        ])
        .unwrap();

    let listed = test.store.list_api_tokens().unwrap();
    assert_eq!(listed[0].last_used_at, Some(later));
}

#[test]
fn audit_batch_is_atomic() {
    let test = TestStore::new();
    let batch = [
        event("tok_a", Some("crm")),
        event("tok_b", None),
        event("tok_c", Some("erp")),
    ];

    let ids = test.store.record_audits(&batch).unwrap();

    assert_eq!(ids.len(), 3);
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");
    let listed = test.store.list_audit(None, None, 10).unwrap();
    let actors: Vec<&str> = listed
        .items
        .iter()
        .map(|item| item.actor.as_str())
        .collect();
    assert_eq!(actors, ["tok_c", "tok_b", "tok_a"]);

    // One invalid event rejects the batch, and nothing of it is written.
    let mut secret = event("tok_d", None);
    secret.detail = Some(serde_json::json!({ "refresh_token": "x" }));
    let error = test
        .store
        .record_audits(&[event("tok_e", None), secret])
        .unwrap_err();
    assert!(
        matches!(error, authcfg_store::Error::Validation(_)),
        "{error:?}"
    );
    assert_eq!(
        test.store.list_audit(None, None, 10).unwrap().items.len(),
        3
    );
}

#[test]
fn audit_lists_newest_first_with_pages() {
    let test = TestStore::new();
    let mut ids = Vec::new();
    for index in 0..5 {
        let datasource = if index % 2 == 0 {
            Some("crm")
        } else {
            Some("erp")
        };
        ids.push(
            test.store
                .record_audit(&event(&format!("tok_{index}"), datasource))
                .unwrap(),
        );
    }

    let first = test.store.list_audit(None, None, 2).unwrap();
    let cursor: i64 = first.next_cursor.clone().unwrap().parse().unwrap();
    let second = test.store.list_audit(None, Some(cursor), 2).unwrap();
    let crm = test.store.list_audit(Some("crm"), None, 10).unwrap();

    let first_ids: Vec<i64> = first.items.iter().map(|event| event.id).collect();
    let second_ids: Vec<i64> = second.items.iter().map(|event| event.id).collect();
    let crm_ids: Vec<i64> = crm.items.iter().map(|event| event.id).collect();
    assert_eq!(first_ids, [ids[4], ids[3]]);
    assert_eq!(second_ids, [ids[2], ids[1]]);
    assert_eq!(crm_ids, [ids[4], ids[2], ids[0]]);
    assert_eq!(crm.next_cursor, None);
    let newest = &first.items[0];
    assert_eq!(newest.actor, "tok_4");
    assert_eq!(newest.outcome, AuditOutcome::Success);
    assert_eq!(newest.detail, Some(serde_json::json!({"status": 200})));
}

#[test]
fn audit_rejects_secret_details() {
    let test = TestStore::new();
    let cases = [
        (
            "top-level password",
            serde_json::json!({"password": "x"}),
            "/detail/password",
        ),
        (
            "nested refresh token",
            serde_json::json!({"upstream": {"Refresh_Token": "x"}}),
            "/detail/upstream/Refresh_Token",
        ),
        (
            "token in array",
            serde_json::json!({"items": [{"access_token": "x"}]}),
            "/detail/items/0/access_token",
        ),
    ];

    for (case, detail, pointer) in cases {
        let mut event = event("cli", None);
        event.detail = Some(detail);
        match test.store.record_audit(&event) {
            Err(Error::Validation(errors)) => {
                assert!(errors.detail_at(pointer).is_some(), "{case}: {errors}");
            }
            other => panic!("{case}: expected a validation error, got {other:?}"),
        }
    }
    assert!(test
        .store
        .list_audit(None, None, 10)
        .unwrap()
        .items
        .is_empty());
}

#[test]
fn audit_rejects_bad_fields() {
    let test = TestStore::new();
    let cases = [
        (
            "empty actor",
            NewAuditEvent {
                actor: String::new(),
                ..event("a", None)
            },
            "/actor",
        ),
        (
            "newline in action",
            NewAuditEvent {
                action: "a\nb".to_owned(),
                ..event("a", None)
            },
            "/action",
        ),
        (
            "long data source",
            NewAuditEvent {
                datasource: Some("d".repeat(300)),
                ..event("a", None)
            },
            "/datasource",
        ),
    ];

    for (case, event, pointer) in cases {
        match test.store.record_audit(&event) {
            Err(Error::Validation(errors)) => {
                assert!(errors.detail_at(pointer).is_some(), "{case}: {errors}");
            }
            other => panic!("{case}: expected a validation error, got {other:?}"),
        }
    }
}

#[test]
fn audit_survives_datasource_delete() {
    let test = TestStore::new();
    test.store
        .create_datasource(&common::bearer("crm"))
        .unwrap();
    test.store.record_audit(&event("cli", Some("crm"))).unwrap();

    test.store.delete_datasource("crm").unwrap();

    assert_eq!(
        test.store
            .list_audit(Some("crm"), None, 10)
            .unwrap()
            .items
            .len(),
        1
    );
}
