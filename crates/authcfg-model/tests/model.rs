//! Tests of the model's wire format and validation rules.
//!
//! Each rule is a table of cases run through one `check` helper, so that a
//! new case is one line.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::collections::BTreeMap;

use authcfg_model::{
    parse_json, AuthConfig, AuthMethod, ClientAuthMethod, CreateDataSource, CredentialField,
    Credentials, DataSource, DataSourceId, GrantType, SecretString, UpdateDataSource,
};
use proptest::prelude::*;
use serde_json::json;

/// Parses a create request and returns `(pointer, detail)` for every problem,
/// from parsing or from validation.
fn problems(request: serde_json::Value) -> Vec<(String, String)> {
    let bytes = serde_json::to_vec(&request).unwrap();
    let result = parse_json::<CreateDataSource>(&bytes).and_then(|parsed| parsed.validate());
    match result {
        Ok(()) => Vec::new(),
        Err(errors) => errors
            .into_errors()
            .into_iter()
            .map(|error| (error.pointer, error.detail))
            .collect(),
    }
}

/// Asserts that `auth` is accepted, or rejected with exactly the given
/// pointers, each detail containing the given fragment.
fn check(auth: serde_json::Value, expected: &[(&str, &str)]) {
    let found = problems(json!({ "name": "crm-prod", "auth": auth }));
    let pointers: Vec<&str> = found.iter().map(|(pointer, _)| pointer.as_str()).collect();
    let expected_pointers: Vec<&str> = expected.iter().map(|(pointer, _)| *pointer).collect();
    assert_eq!(
        pointers, expected_pointers,
        "auth {auth}: problems {found:?}"
    );
    for ((_, detail), (_, fragment)) in found.iter().zip(expected) {
        assert!(
            detail.contains(fragment),
            "auth {auth}: detail {detail:?} lacks {fragment:?}"
        );
    }
}

#[test]
fn auth_config_rules() {
    let url = "https://login.example.com/oauth/token";
    let cases: Vec<(serde_json::Value, Vec<(&str, &str)>)> = vec![
        // Valid configs.
        (json!({"method": "basic"}), vec![]),
        (
            json!({"method": "basic", "token_url": null, "grant_type": null, "scope": null}),
            vec![],
        ),
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "client_credentials"}),
            vec![],
        ),
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "password", "scope": "a b:c d,e"}),
            vec![],
        ),
        (
            json!({"method": "bearer", "token_url": "http://127.0.0.1:8080/token?tenant=1", "grant_type": "refresh_token"}),
            vec![],
        ),
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "authorization_code", "client_auth": "client_secret_post"}),
            vec![],
        ),
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "client_credentials", "scope": "https://graph.microsoft.com/.default"}),
            vec![],
        ),
        // Fields that matter only to bearer are accepted, and checked, for basic.
        (
            json!({"method": "basic", "token_url": url, "grant_type": "client_credentials", "scope": "read"}),
            vec![],
        ),
        (
            json!({"method": "basic", "token_url": "ftp://x"}),
            vec![("/auth/token_url", "scheme")],
        ),
        // Bearer needs token_url and grant_type, omitted or null alike.
        (
            json!({"method": "bearer"}),
            vec![
                ("/auth/token_url", "required"),
                ("/auth/grant_type", "required"),
            ],
        ),
        (
            json!({"method": "bearer", "token_url": null, "grant_type": null}),
            vec![
                ("/auth/token_url", "required"),
                ("/auth/grant_type", "required"),
            ],
        ),
        (
            json!({"method": "bearer", "token_url": url}),
            vec![("/auth/grant_type", "required")],
        ),
        // token_url shape.
        (
            json!({"method": "bearer", "token_url": " https://a.example/token", "grant_type": "password"}),
            vec![("/auth/token_url", "whitespace")],
        ),
        (
            json!({"method": "bearer", "token_url": "https://a.example/token\n", "grant_type": "password"}),
            vec![("/auth/token_url", "whitespace")],
        ),
        (
            json!({"method": "bearer", "token_url": "", "grant_type": "password"}),
            vec![("/auth/token_url", "empty")],
        ),
        (
            json!({"method": "bearer", "token_url": "/oauth/token", "grant_type": "password"}),
            vec![("/auth/token_url", "not an absolute URL")],
        ),
        (
            json!({"method": "bearer", "token_url": "ftp://a.example/token", "grant_type": "password"}),
            vec![("/auth/token_url", "\"ftp\"")],
        ),
        (
            json!({"method": "bearer", "token_url": "https://user:pw@a.example/token", "grant_type": "password"}),
            vec![("/auth/token_url", "user info")],
        ),
        (
            json!({"method": "bearer", "token_url": "https://a.example/token#frag", "grant_type": "password"}),
            vec![("/auth/token_url", "fragment")],
        ),
        (
            json!({"method": "bearer", "token_url": "https://a.example/to ken", "grant_type": "password"}),
            vec![("/auth/token_url", "space")],
        ),
        // Implicit is never accepted.
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "implicit"}),
            vec![("/auth/grant_type", "browser redirect")],
        ),
        (
            json!({"method": "basic", "grant_type": "implicit"}),
            vec![("/auth/grant_type", "browser redirect")],
        ),
        // Scope grammar.
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "password", "scope": ""}),
            vec![("/auth/scope", "omit scope to use the server's default")],
        ),
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "password", "scope": "   "}),
            vec![("/auth/scope", "omit scope to use the server's default")],
        ),
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "password", "scope": "a  b"}),
            vec![("/auth/scope", "single spaces")],
        ),
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "password", "scope": " a"}),
            vec![("/auth/scope", "single spaces")],
        ),
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "password", "scope": "a\tb"}),
            vec![("/auth/scope", "\"\\t\"")],
        ),
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "password", "scope": "a \"b\""}),
            vec![("/auth/scope", "RFC 6749 section 3.3")],
        ),
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "password", "scope": "a\\b"}),
            vec![("/auth/scope", "RFC 6749 section 3.3")],
        ),
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "password", "scope": "café"}),
            vec![("/auth/scope", "RFC 6749 section 3.3")],
        ),
        // Token parameters.
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "client_credentials", "token_params": {"audience": "https://api.example.com", "resource": "https://api.example.com/v1"}}),
            vec![],
        ),
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "client_credentials", "token_params": {"client_secret": "x"}}),
            vec![("/auth/token_params/client_secret", "may not set")],
        ),
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "client_credentials", "token_params": {"grant_type": "password"}}),
            vec![("/auth/token_params/grant_type", "may not set")],
        ),
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "client_credentials", "token_params": {"scope": "x"}}),
            vec![("/auth/token_params/scope", "may not set")],
        ),
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "client_credentials", "token_params": {"resource": "api"}}),
            vec![("/auth/token_params/resource", "absolute URI")],
        ),
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "client_credentials", "token_params": {"resource": "https://api.example.com#x"}}),
            vec![("/auth/token_params/resource", "fragment")],
        ),
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "client_credentials", "token_params": {"a/b": "x"}}),
            vec![("/auth/token_params/a~1b", "may only contain")],
        ),
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "client_credentials", "token_params": {"": "x"}}),
            vec![("/auth/token_params/", "empty parameter name")],
        ),
        (
            json!({"method": "bearer", "token_url": url, "grant_type": "client_credentials", "token_params": {"audience": "a\nb"}}),
            vec![("/auth/token_params/audience", "control character")],
        ),
        // Every problem at once.
        (
            json!({"method": "bearer", "grant_type": "implicit", "scope": ""}),
            vec![
                ("/auth/token_url", "required"),
                ("/auth/grant_type", "implicit"),
                ("/auth/scope", "omit scope"),
            ],
        ),
    ];
    for (auth, expected) in cases {
        check(auth, &expected);
    }
}

#[test]
fn parse_errors_point_at_field() {
    let cases: Vec<(serde_json::Value, &str, &str)> = vec![
        (
            json!({"name": "crm", "auth": {"method": "bearer", "grant-type": "password"}}),
            "/auth/grant-type",
            "unknown field \"grant-type\"",
        ),
        (
            json!({"name": "crm", "auth": {"method": "oauth"}}),
            "/auth/method",
            "unknown variant `oauth`",
        ),
        (
            json!({"name": "crm", "auth": {"method": "bearer", "grant_type": "jwt"}}),
            "/auth/grant_type",
            "unknown variant `jwt`",
        ),
        (
            json!({"name": "crm", "auth": {"token_url": "https://a.example"}}),
            "/auth/method",
            "missing required field \"method\"",
        ),
        (
            json!({"name": "crm"}),
            "/auth",
            "missing required field \"auth\"",
        ),
        (
            json!({"name": "crm", "auth": {"method": "basic"}, "extra": 1}),
            "/extra",
            "unknown field \"extra\"",
        ),
        (
            json!({"name": 5, "auth": {"method": "basic"}}),
            "/name",
            "invalid type",
        ),
        (
            json!({"name": "crm", "auth": {"method": "bearer", "scope": ["a", "b"]}}),
            "/auth/scope",
            "invalid type",
        ),
    ];
    for (request, pointer, fragment) in cases {
        let found = problems(request.clone());
        assert_eq!(found.len(), 1, "{request}: {found:?}");
        assert_eq!(found[0].0, pointer, "{request}: {found:?}");
        assert!(found[0].1.contains(fragment), "{request}: {found:?}");
    }
}

#[test]
fn parse_rejects_malformed_json() {
    for input in [
        &b"{"[..],
        b"",
        b"[1]",
        b"{\"name\": \"a\"} trailing",
        b"\xff",
    ] {
        let error = parse_json::<CreateDataSource>(input).unwrap_err();
        assert_eq!(error.errors().len(), 1, "{input:?}");
        assert!(!error.errors()[0].detail.is_empty());
    }
    let error = parse_json::<CreateDataSource>(b"{").unwrap_err();
    assert!(
        error.errors()[0].detail.contains("not valid JSON"),
        "{error}"
    );
}

#[test]
fn datasource_name_rules() {
    let long = "a".repeat(64);
    let too_long = "a".repeat(65);
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("crm-prod", None),
        ("a", None),
        ("a1_b-2", None),
        (long.as_str(), None),
        ("", Some("empty")),
        (too_long.as_str(), Some("the maximum is 64")),
        ("1crm", Some("start with a lowercase letter")),
        ("-crm", Some("start with a lowercase letter")),
        ("Crm", Some("start with a lowercase letter")),
        ("crm.prod", Some("\".\"")),
        ("crm prod", Some("\" \"")),
        ("crmÉ", Some("\"É\"")),
    ];
    for (name, fragment) in cases {
        let found = problems(json!({"name": name, "auth": {"method": "basic"}}));
        match fragment {
            None => assert!(found.is_empty(), "{name:?}: {found:?}"),
            Some(fragment) => {
                assert_eq!(found.len(), 1, "{name:?}: {found:?}");
                assert_eq!(found[0].0, "/name");
                assert!(found[0].1.contains(fragment), "{name:?}: {found:?}");
            }
        }
    }
}

#[test]
fn datasource_optional_fields() {
    let found = problems(json!({
        "name": "crm",
        "description": "a\u{0}b",
        "base_url": "api.example.com",
        "auth": {"method": "basic"}
    }));
    let pointers: Vec<&str> = found.iter().map(|(pointer, _)| pointer.as_str()).collect();
    assert_eq!(pointers, ["/description", "/base_url"]);
}

#[test]
fn reference_wire_names_round_trip() {
    let input = json!({
        "method": "bearer",
        "token_url": "https://api.example.com/oauth/token",
        "grant_type": "client_credentials",
        "scope": "api.read api.write"
    });
    let config: AuthConfig = serde_json::from_value(input.clone()).unwrap();
    assert_eq!(config.method, AuthMethod::Bearer);
    assert_eq!(config.grant_type, Some(GrantType::ClientCredentials));
    assert_eq!(config.scope_tokens(), ["api.read", "api.write"]);
    assert_eq!(
        config.client_auth_or_default(),
        ClientAuthMethod::ClientSecretBasic
    );
    // The extensions are left out when unset, so the output is the input.
    assert_eq!(serde_json::to_value(&config).unwrap(), input);

    for (value, name) in [
        (GrantType::ClientCredentials, "client_credentials"),
        (GrantType::Password, "password"),
        (GrantType::AuthorizationCode, "authorization_code"),
        (GrantType::RefreshToken, "refresh_token"),
        (GrantType::Implicit, "implicit"),
    ] {
        assert_eq!(serde_json::to_value(value).unwrap(), json!(name));
        assert_eq!(value.as_str(), name);
    }
    for (value, name) in [(AuthMethod::Basic, "basic"), (AuthMethod::Bearer, "bearer")] {
        assert_eq!(serde_json::to_value(value).unwrap(), json!(name));
    }
    for (value, name) in [
        (ClientAuthMethod::ClientSecretBasic, "client_secret_basic"),
        (ClientAuthMethod::ClientSecretPost, "client_secret_post"),
    ] {
        assert_eq!(serde_json::to_value(value).unwrap(), json!(name));
    }
}

#[test]
fn basic_config_serializes_method_only() {
    assert_eq!(
        serde_json::to_value(AuthConfig::basic()).unwrap(),
        json!({"method": "basic"})
    );
}

fn sample_datasource() -> DataSource {
    let mut auth = AuthConfig::bearer(
        "https://login.example.com/token",
        GrantType::ClientCredentials,
    );
    auth.scope = Some("read".to_owned());
    auth.token_params
        .insert("audience".to_owned(), "https://api.example.com".to_owned());
    DataSource {
        id: DataSourceId(uuid::Uuid::nil()),
        name: "crm".to_owned(),
        description: Some("CRM".to_owned()),
        base_url: None,
        auth,
        created_at: time::OffsetDateTime::UNIX_EPOCH,
        updated_at: time::OffsetDateTime::UNIX_EPOCH,
        version: 3,
    }
}

#[test]
fn merge_patch_absent_null_value() {
    let current = sample_datasource();
    let patch: UpdateDataSource = parse_json(
        br#"{"description": null, "base_url": "https://api.example.com",
             "auth": {"scope": null, "token_params": {"audience": null, "resource": "https://r.example.com"}}}"#,
    )
    .unwrap();
    let next = patch.apply(&current).unwrap();

    assert_eq!(next.description, None);
    assert_eq!(next.base_url.as_deref(), Some("https://api.example.com"));
    assert_eq!(next.auth.scope, None);
    assert_eq!(
        next.auth.token_url, current.auth.token_url,
        "absent field stays"
    );
    assert_eq!(
        next.auth.grant_type, current.auth.grant_type,
        "absent field stays"
    );
    assert_eq!(
        next.auth.token_params,
        BTreeMap::from([("resource".to_owned(), "https://r.example.com".to_owned())])
    );
    assert_eq!(next.version, current.version, "the store bumps the version");
}

#[test]
fn merge_patch_rejects_invalid_result() {
    let current = sample_datasource();
    let cases: Vec<(&[u8], &str)> = vec![
        (br#"{"auth": {"method": null}}"#, "/auth/method"),
        (br#"{"auth": {"token_url": null}}"#, "/auth/token_url"),
        (
            br#"{"auth": {"grant_type": "implicit"}}"#,
            "/auth/grant_type",
        ),
        (br#"{"auth": {"scope": ""}}"#, "/auth/scope"),
    ];
    for (body, pointer) in cases {
        let patch: UpdateDataSource = parse_json(body).unwrap();
        let errors = patch.apply(&current).unwrap_err();
        assert_eq!(
            errors.errors()[0].pointer,
            pointer,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    let error = parse_json::<UpdateDataSource>(br#"{"name": "other"}"#).unwrap_err();
    assert_eq!(error.errors()[0].pointer, "/name");
}

#[test]
fn merge_patch_empty_is_empty() {
    let patch: UpdateDataSource = parse_json(b"{}").unwrap();
    assert!(patch.is_empty());
    assert_eq!(
        patch.apply(&sample_datasource()).unwrap(),
        sample_datasource()
    );
}

#[test]
fn credentials_rules() {
    let cases: Vec<(serde_json::Value, AuthMethod, Vec<&str>)> = vec![
        (
            json!({"client_id": "svc", "client_secret": "s"}),
            AuthMethod::Basic,
            vec![],
        ),
        (
            json!({"client_id": "apikey", "client_secret": ""}),
            AuthMethod::Basic,
            vec![],
        ),
        (
            json!({"client_id": "svc:1", "client_secret": "s"}),
            AuthMethod::Basic,
            vec!["/client_id"],
        ),
        (
            json!({"client_id": "svc:1", "client_secret": "s"}),
            AuthMethod::Bearer,
            vec![],
        ),
        (
            json!({"client_id": "", "client_secret": "s"}),
            AuthMethod::Bearer,
            vec!["/client_id"],
        ),
        (
            json!({"client_id": "svc", "client_secret": "s\n"}),
            AuthMethod::Bearer,
            vec!["/client_secret"],
        ),
        (
            json!({"client_id": "svc", "client_secret": "s", "password": "p\u{7f}"}),
            AuthMethod::Bearer,
            vec!["/password"],
        ),
        (
            json!({"client_id": "svc", "client_secret": "s", "refresh_token": "r\r"}),
            AuthMethod::Bearer,
            vec!["/refresh_token"],
        ),
        (
            json!({"client_id": "s\tv", "client_secret": "s\t"}),
            AuthMethod::Bearer,
            vec!["/client_id", "/client_secret"],
        ),
    ];
    for (input, method, expected) in cases {
        let credentials: Credentials = serde_json::from_value(input.clone()).unwrap();
        let found: Vec<String> = match credentials.validate(method) {
            Ok(()) => Vec::new(),
            Err(errors) => errors
                .into_errors()
                .into_iter()
                .map(|error| error.pointer)
                .collect(),
        };
        assert_eq!(found, expected, "{input} as {method}");
    }
}

#[test]
fn credentials_errors_never_quote_secrets() {
    let credentials: Credentials = serde_json::from_value(json!({
        "client_id": "svc",
        "client_secret": "canary-secret\n",
        "password": "canary-password\u{1}",
        "refresh_token": "canary-refresh\u{2}",
    }))
    .unwrap();
    let errors = credentials.validate(AuthMethod::Bearer).unwrap_err();
    let text = format!("{errors} {errors:?} {credentials:?}");
    assert!(!text.contains("canary"), "{text}");
    assert_eq!(errors.errors().len(), 3);
}

#[test]
fn parse_errors_never_quote_values() {
    let cases: [(&[u8], &str, &str); 4] = [
        (
            br#"{"client_id": "a", "client_secret": 12345678}"#,
            "/client_secret",
            "invalid type: integer, expected a string",
        ),
        (
            br#"{"client_id": "a", "client_secret": true}"#,
            "/client_secret",
            "invalid type: boolean, expected a string",
        ),
        (
            br#"{"client_id": "a", "client_secret": "b", "password": 3.25}"#,
            "/password",
            "invalid type: floating point, expected a string",
        ),
        (
            br#"{"client_id": "a", "client_secret": "b", "refresh_token": ["r-1"]}"#,
            "/refresh_token",
            "invalid type: sequence, expected a string",
        ),
    ];
    for (body, pointer, detail) in cases {
        let error = parse_json::<Credentials>(body).unwrap_err();
        assert_eq!(error.errors()[0].pointer, pointer);
        assert_eq!(error.errors()[0].detail, detail);
    }
}

#[test]
fn credentials_reject_unknown_fields() {
    let error =
        parse_json::<Credentials>(br#"{"client_id": "a", "client_secret": "b", "secret": "c"}"#)
            .unwrap_err();
    assert_eq!(error.errors()[0].pointer, "/secret");
}

#[test]
fn credentials_missing_for_grant() {
    let url = "https://login.example.com/token";
    let credentials = Credentials::new("svc", "secret");
    let cases = [
        (AuthConfig::basic(), vec![]),
        (
            AuthConfig::bearer(url, GrantType::ClientCredentials),
            vec![],
        ),
        (
            AuthConfig::bearer(url, GrantType::Password),
            vec![CredentialField::Username, CredentialField::Password],
        ),
        (
            AuthConfig::bearer(url, GrantType::RefreshToken),
            vec![CredentialField::RefreshToken],
        ),
        (
            AuthConfig::bearer(url, GrantType::AuthorizationCode),
            vec![CredentialField::RefreshToken],
        ),
    ];
    for (auth, expected) in cases {
        assert_eq!(credentials.missing_for(&auth), expected, "{auth:?}");
    }
}

#[test]
fn secret_string_is_redacted() {
    let secret = SecretString::new("hunter2");
    assert_eq!(format!("{secret:?}"), "[redacted]");
    assert_eq!(format!("{secret}"), "[redacted]");
    assert_eq!(secret.expose_secret(), "hunter2");
    assert_eq!(secret.duplicate().expose_secret(), "hunter2");
}

#[test]
fn secret_string_is_two_words() {
    // A server caches one access token per data source in this type.
    assert_eq!(
        std::mem::size_of::<SecretString>(),
        2 * std::mem::size_of::<usize>()
    );

    let mut spare = String::with_capacity(64);
    spare.push_str("s3cret");
    let secret = SecretString::new(spare);
    assert_eq!(secret.expose_secret(), "s3cret");
    assert_eq!(
        SecretString::from(String::from("exact")).expose_secret(),
        "exact"
    );
    assert!(SecretString::new("").is_empty());
}

fn scope_token() -> impl Strategy<Value = String> {
    "[!#-\\[\\]-~]{1,12}"
}

fn valid_config() -> impl Strategy<Value = AuthConfig> {
    let grant = prop_oneof![
        Just(GrantType::ClientCredentials),
        Just(GrantType::Password),
        Just(GrantType::AuthorizationCode),
        Just(GrantType::RefreshToken),
    ];
    let client_auth = prop_oneof![
        Just(None),
        Just(Some(ClientAuthMethod::ClientSecretBasic)),
        Just(Some(ClientAuthMethod::ClientSecretPost)),
    ];
    (
        any::<bool>(),
        "[a-z]{1,10}(\\.[a-z]{2,5}){1,2}",
        "(/[a-zA-Z0-9_.-]{1,8}){0,3}",
        proptest::option::of(grant),
        proptest::option::of(proptest::collection::vec(scope_token(), 1..5)),
        client_auth,
        proptest::collection::btree_map("[a-z_]{1,8}", "[ -~]{0,16}", 0..4),
    )
        .prop_map(|(bearer, host, path, grant, scope, client_auth, params)| {
            let token_params = params
                .into_iter()
                .filter(|(key, _)| {
                    !authcfg_model::RESERVED_TOKEN_PARAMS.contains(&key.as_str())
                        && key != "resource"
                })
                .collect();
            AuthConfig {
                method: if bearer {
                    AuthMethod::Bearer
                } else {
                    AuthMethod::Basic
                },
                token_url: Some(format!("https://{host}{path}")),
                grant_type: Some(grant.unwrap_or(GrantType::ClientCredentials)),
                scope: scope.map(|tokens| tokens.join(" ")),
                client_auth,
                token_params,
            }
        })
}

proptest! {
    #[test]
    fn valid_config_round_trips(config in valid_config()) {
        prop_assert!(config.validate().is_ok(), "{:?}", config.validate());
        let json = serde_json::to_vec(&config).unwrap();
        let back: AuthConfig = parse_json(&json).unwrap();
        prop_assert_eq!(back, config);
    }
}
