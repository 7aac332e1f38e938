//! The access-control matrix: every `/v1` route called without a token, with
//! an invalid token, as a consumer of another data source, as a consumer of
//! the data source, and as admin.

use serde_json::{json, Value};

use crate::support::{assert_problem, bearer_datasource, Reply, Server, TokenEndpoint};

/// Who calls a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    NoToken,
    InvalidToken,
    OtherConsumer,
    OwnConsumer,
    Admin,
}

/// One route of the matrix, with the status each caller must get.
struct Route {
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    own_consumer: u16,
    /// The status for a consumer of another data source. A route that is
    /// not about one data source may treat it like its own consumer.
    other_consumer: u16,
    admin: u16,
}

fn routes() -> Vec<Route> {
    // Destructive routes come last so that the earlier rows still find the
    // data source and its credentials.
    vec![
        Route {
            method: "GET",
            path: "/v1/datasources",
            body: None,
            own_consumer: 200,
            other_consumer: 200,
            admin: 200,
        },
        Route {
            method: "GET",
            path: "/v1/datasources/alpha",
            body: None,
            own_consumer: 200,
            other_consumer: 403,
            admin: 200,
        },
        Route {
            method: "POST",
            path: "/v1/datasources/alpha/authorization",
            body: Some(json!({})),
            own_consumer: 200,
            other_consumer: 403,
            admin: 200,
        },
        Route {
            method: "POST",
            path: "/v1/datasources",
            body: Some(json!({"name": "created-by-matrix", "auth": {"method": "basic"}})),
            own_consumer: 403,
            other_consumer: 403,
            admin: 201,
        },
        Route {
            method: "PATCH",
            path: "/v1/datasources/alpha",
            body: Some(json!({"description": "patched by the matrix"})),
            own_consumer: 403,
            other_consumer: 403,
            admin: 200,
        },
        Route {
            method: "POST",
            path: "/v1/datasources/alpha/test",
            body: None,
            own_consumer: 403,
            other_consumer: 403,
            admin: 200,
        },
        Route {
            method: "GET",
            path: "/v1/audit",
            body: None,
            own_consumer: 403,
            other_consumer: 403,
            admin: 200,
        },
        Route {
            method: "PUT",
            path: "/v1/datasources/alpha/credentials",
            body: Some(json!({"client_id": "alpha-client", "client_secret": "alpha-secret"})),
            own_consumer: 403,
            other_consumer: 403,
            admin: 204,
        },
        Route {
            method: "DELETE",
            path: "/v1/datasources/alpha/credentials",
            body: None,
            own_consumer: 403,
            other_consumer: 403,
            admin: 204,
        },
        Route {
            method: "DELETE",
            path: "/v1/datasources/alpha",
            body: None,
            own_consumer: 403,
            other_consumer: 403,
            admin: 204,
        },
    ]
}

/// Everything a denied call could change, read as admin.
fn snapshot(server: &Server) -> (u16, String, String, String) {
    let datasource = server.get("/v1/datasources/alpha");
    let list = server.get("/v1/datasources");
    let created = server.get("/v1/datasources/created-by-matrix");
    (
        datasource.status,
        datasource.body,
        list.body,
        created.status.to_string(),
    )
}

#[test]
fn access_control_matrix() {
    let endpoint = TokenEndpoint::start("matrix-token");
    endpoint.add_client("alpha-client", "alpha-secret");
    endpoint.add_client("beta-client", "beta-secret");
    let server = Server::start();
    server.create_datasource(&bearer_datasource("alpha", &endpoint.token_url()));
    server.create_datasource(&bearer_datasource("beta", &endpoint.token_url()));
    server.put_credentials("alpha", "alpha-client", "alpha-secret");
    server.put_credentials("beta", "beta-client", "beta-secret");
    let own = server.consumer_token(&["alpha"]);
    let other = server.consumer_token(&["beta"]);

    let callers = [
        Caller::NoToken,
        Caller::InvalidToken,
        Caller::OtherConsumer,
        Caller::OwnConsumer,
        Caller::Admin,
    ];
    for route in routes() {
        for caller in callers {
            let token = match caller {
                Caller::NoToken => None,
                Caller::InvalidToken => Some("invalid-token-that-was-never-issued"),
                Caller::OtherConsumer => Some(other.as_str()),
                Caller::OwnConsumer => Some(own.as_str()),
                Caller::Admin => Some(server.admin()),
            };
            let expected = match caller {
                Caller::NoToken | Caller::InvalidToken => 401,
                Caller::OtherConsumer => route.other_consumer,
                Caller::OwnConsumer => route.own_consumer,
                Caller::Admin => route.admin,
            };
            let denied = expected == 401 || expected == 403;

            let before = denied.then(|| snapshot(&server));
            let reply = call_route(&server, &route, token);
            let context = format!("{} {} as {caller:?}", route.method, route.path);
            assert_eq!(reply.status, expected, "{context}: {}", reply.body);

            if denied {
                assert_problem(&reply, expected);
                assert_eq!(
                    before,
                    Some(snapshot(&server)),
                    "{context} was denied but changed data"
                );
            }
            if expected == 401 {
                assert_challenge(&reply, &context);
            }
            if route.path == "/v1/datasources" && route.method == "GET" {
                let allowed: &[&str] = match caller {
                    Caller::OwnConsumer => &["alpha"],
                    Caller::OtherConsumer => &["beta"],
                    _ => &["alpha", "beta"],
                };
                if reply.status == 200 {
                    assert_eq!(
                        listed_names(&reply),
                        allowed,
                        "{context} listed the wrong data sources"
                    );
                }
            }
        }
    }
}

fn listed_names(reply: &Reply) -> Vec<String> {
    reply.json()["items"]
        .as_array()
        .expect("an items list")
        .iter()
        .map(|item| item["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Calls a route; a merge patch goes with its media type and the current ETag,
/// so that only the caller decides the outcome.
fn call_route(server: &Server, route: &Route, token: Option<&str>) -> Reply {
    if route.method != "PATCH" {
        return server.call(route.method, route.path, token, route.body.as_ref());
    }
    let current = server.get(route.path);
    let etag = current.header("etag").unwrap_or_default().to_owned();
    let body = route.body.as_ref().map(|body| {
        (
            "application/merge-patch+json",
            body.to_string().into_bytes(),
        )
    });
    server.call_raw(
        route.method,
        route.path,
        token,
        &[("if-match", etag.as_str())],
        body,
    )
}

fn assert_challenge(reply: &Reply, context: &str) {
    let challenge = reply.header("www-authenticate").unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer"),
        "{context}: 401 without a WWW-Authenticate: Bearer challenge (got {challenge:?})"
    );
}

#[test]
fn consumer_list_shows_only_its_datasources() {
    let server = Server::start();
    for name in ["alpha", "beta", "gamma"] {
        server.create_datasource(&json!({"name": name, "auth": {"method": "basic"}}));
    }
    let consumer = server.consumer_token(&["beta"]);

    // A consumer may either be refused the list or see only its own data
    // sources; it must never learn of the others.
    let reply = server.call("GET", "/v1/datasources", Some(&consumer), None);
    match reply.status {
        200 => {
            let names: Vec<String> = reply.json()["items"]
                .as_array()
                .expect("an items list")
                .iter()
                .map(|item| item["name"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(names, ["beta"], "a consumer saw other data sources");
        }
        403 => {
            assert_problem(&reply, 403);
        }
        status => panic!(
            "a consumer listing data sources got {status}: {}",
            reply.body
        ),
    }
}

#[test]
fn malformed_authorization_headers_are_401() {
    let server = Server::start();
    let admin = server.admin().to_owned();
    let cases = [
        format!("Basic {admin}"),
        "Bearer".to_owned(),
        "Bearer ".to_owned(),
        format!("Bearer {admin}x"),
        format!("bearer{admin}"),
        "Bearer a b".to_owned(),
    ];
    for value in &cases {
        let reply = server.call_raw(
            "GET",
            "/v1/datasources",
            None,
            &[("authorization", value)],
            None,
        );
        assert_problem(&reply, 401);
        let redacted = value.replace(&admin, "<admin token>");
        assert_challenge(&reply, &format!("Authorization {redacted:?}"));
    }

    // A second Authorization header is rejected whichever comes first.
    let valid = format!("Bearer {admin}");
    let reply = server.call_raw(
        "GET",
        "/v1/datasources",
        None,
        &[("authorization", &valid), ("authorization", "Bearer other")],
        None,
    );
    assert_problem(&reply, 401);
    let detail = reply.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(detail.contains("more than one Authorization"), "{detail}");

    // The scheme alone is named as a missing token, not as another scheme.
    for value in ["Bearer", "Bearer  "] {
        let reply = server.call_raw(
            "GET",
            "/v1/datasources",
            None,
            &[("authorization", value)],
            None,
        );
        let detail = reply.json()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            detail.contains("no token after Bearer"),
            "{value:?}: {detail}"
        );
    }
}

#[test]
fn consumer_gets_403_for_unknown_datasource() {
    let server = Server::start();
    server.create_datasource(&json!({"name": "alpha", "auth": {"method": "basic"}}));
    let consumer = server.consumer_token(&["alpha"]);

    // A consumer learns nothing about data sources outside its token, not
    // even whether they exist.
    for (method, path) in [
        ("GET", "/v1/datasources/ghost"),
        ("POST", "/v1/datasources/ghost/authorization"),
    ] {
        let reply = server.call(method, path, Some(&consumer), None);
        assert_problem(&reply, 403);
    }
}

#[test]
fn bearer_scheme_is_case_insensitive() {
    let server = Server::start();
    let admin = server.admin().to_owned();
    assert!(
        admin.len() >= 43,
        "the admin token is shorter than 256 bits in base64"
    );

    // RFC 9110 section 11.1: the authentication scheme is case-insensitive.
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let value = format!("{scheme} {admin}");
        let reply = server.call_raw(
            "GET",
            "/v1/datasources",
            None,
            &[("authorization", &value)],
            None,
        );
        assert_eq!(
            reply.status, 200,
            "scheme {scheme:?} was rejected: {}",
            reply.body
        );
    }
}

#[test]
fn consumer_pages_reach_its_datasource() {
    let server = Server::start();
    for name in ["a1", "a2", "a3", "a4", "a5", "zeta"] {
        server.create_datasource(&json!({"name": name, "auth": {"method": "basic"}}));
    }
    let consumer = server.consumer_token(&["zeta"]);

    let mut names = Vec::new();
    let mut path = "/v1/datasources?limit=2".to_owned();
    for _page in 0..10 {
        let reply = server.call("GET", &path, Some(&consumer), None);
        assert_eq!(reply.status, 200, "list failed: {}", reply.body);
        names.extend(listed_names(&reply));
        match reply.json()["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/datasources?limit=2&cursor={cursor}"),
            None => break,
        }
    }

    assert_eq!(
        names,
        ["zeta"],
        "paging as a consumer did not yield exactly its data source"
    );
}

#[test]
fn audit_names_token_id_not_value() {
    let server = Server::start();
    server.create_datasource(&json!({"name": "alpha", "auth": {"method": "basic"}}));
    server.put_credentials("alpha", "alpha-user", "alpha-password");
    let consumer = server.consumer_token(&["alpha"]);
    let issued = server.call(
        "POST",
        "/v1/datasources/alpha/authorization",
        Some(&consumer),
        None,
    );
    assert_eq!(issued.status, 200, "authorization failed: {}", issued.body);

    let listed = server.cli(&["api-token", "list"], &[], None);
    let tokens: Value = serde_json::from_slice(&listed.stdout).expect("api-token list prints JSON");
    let consumer_id = tokens
        .as_array()
        .expect("a list of tokens")
        .iter()
        .find(|token| token["role"] == json!("consumer"))
        .and_then(|token| token["id"].as_str())
        .expect("the consumer token in the list")
        .to_owned();

    // Audit events are written by a background queue.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let audit = loop {
        let reply = server.get("/v1/audit?datasource=alpha");
        if reply.body.contains(&consumer_id) || std::time::Instant::now() >= deadline {
            break reply;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let events = audit.json()["items"]
        .as_array()
        .expect("an items list")
        .clone();
    let issue = events
        .iter()
        .find(|event| event["actor"] == json!(consumer_id))
        .unwrap_or_else(|| panic!("no audit event by the consumer token id: {events:?}"));
    assert!(
        issue["action"]
            .as_str()
            .is_some_and(|action| action.contains("authorization")),
        "{issue}"
    );
    assert!(
        !audit.body.contains(&consumer),
        "the audit log shows an API token value"
    );
    assert!(
        !audit.body.contains(server.admin()),
        "the audit log shows the admin token"
    );
}
