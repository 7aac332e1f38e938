//! Test support: the `authcfg` server harness, a loopback token endpoint, and
//! request fixtures and assertions shared by the test modules.

pub(crate) mod server;
pub(crate) mod token_endpoint;

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

pub(crate) use server::{Reply, Server, ServerOptions};
pub(crate) use token_endpoint::{Behaviour, TokenEndpoint};

/// Returns a value unique in this test run, for canaries and names.
pub(crate) fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::SeqCst);
    let random: u64 = rand::random();
    format!("{prefix}{count}x{random:016x}")
}

/// Turns name and value pairs into environment variables for a server start.
pub(crate) fn env_vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

/// Returns the body that creates a `basic` data source.
pub(crate) fn basic_datasource(name: &str) -> Value {
    json!({
        "name": name,
        "description": "e2e basic data source",
        "auth": {"method": "basic"},
    })
}

/// Returns the body that creates a `bearer` data source with the client
/// credentials grant at `token_url`.
pub(crate) fn bearer_datasource(name: &str, token_url: &str) -> Value {
    json!({
        "name": name,
        "description": "e2e bearer data source",
        "base_url": "https://api.example.com/v2",
        "auth": {
            "method": "bearer",
            "token_url": token_url,
            "grant_type": "client_credentials",
            "scope": "api.read",
        },
    })
}

/// Returns `Basic base64(user:password)` as RFC 7617 builds it.
pub(crate) fn basic_header(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// Checks that a reply is an RFC 9457 problem with `status`, and returns its body.
pub(crate) fn assert_problem(reply: &Reply, status: u16) -> Value {
    assert_eq!(
        reply.status, status,
        "{} {} returned {} instead of {status}: {}",
        reply.method, reply.path, reply.status, reply.body
    );
    assert_eq!(
        reply.content_type(),
        "application/problem+json",
        "{} {} returned {status} without a problem+json body: {}",
        reply.method,
        reply.path,
        reply.body
    );

    let body = reply.json();
    let kind = body["type"].as_str().unwrap_or_default();
    assert!(
        kind.starts_with("https://") || kind == "about:blank",
        "problem type {kind:?} is not an absolute URI: {body}"
    );
    assert!(body["title"].is_string(), "problem without a title: {body}");
    assert_eq!(
        body["status"],
        json!(status),
        "problem status differs from the HTTP status: {body}"
    );
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|detail| !detail.is_empty()),
        "problem without a detail: {body}"
    );
    body
}

/// Checks that a reply is a validation problem with an error at `pointer`.
pub(crate) fn assert_validation_problem(reply: &Reply, pointer: &str) -> Value {
    let body = assert_problem(reply, 400);
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("validation problem without an errors list: {body}"));
    for error in errors {
        assert!(
            error["pointer"].is_string(),
            "error without a pointer: {error}"
        );
        assert!(
            error["detail"].is_string(),
            "error without a detail: {error}"
        );
    }
    assert!(
        errors
            .iter()
            .any(|error| error["pointer"] == json!(pointer)),
        "no error at {pointer:?}: {body}"
    );
    body
}
