//! Bad input: every case returns a problem with the right status and leaves
//! the stored data sources and credentials exactly as they were, which the
//! test checks by comparing the admin view before and after.

use serde_json::json;

use crate::support::{
    assert_problem, assert_validation_problem, bearer_datasource, Server, TokenEndpoint,
};

/// One bad request and what it must return.
struct Case {
    name: &'static str,
    method: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    status: u16,
    /// For a 400, a JSON pointer that the `errors` list must name, or a word
    /// that the detail must contain.
    expect: Expect,
}

enum Expect {
    Pointer(&'static str),
    DetailMentions(&'static str),
    Status,
}

fn json_case(
    name: &'static str,
    method: &'static str,
    path: &'static str,
    body: serde_json::Value,
    status: u16,
    expect: Expect,
) -> Case {
    Case {
        name,
        method,
        path,
        content_type: if method == "PATCH" {
            "application/merge-patch+json"
        } else {
            "application/json"
        },
        body: body.to_string().into_bytes(),
        status,
        expect,
    }
}

fn raw_case(
    name: &'static str,
    method: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: &str,
    status: u16,
    expect: Expect,
) -> Case {
    Case {
        name,
        method,
        path,
        content_type,
        body: body.as_bytes().to_vec(),
        status,
        expect,
    }
}

fn cases() -> Vec<Case> {
    // Over the default limit of 64 KiB, and small enough for the loopback
    // socket buffers, so the client finishes sending before it reads the 413.
    let huge = "x".repeat(200 * 1024);
    vec![
        raw_case(
            "create malformed json",
            "POST",
            "/v1/datasources",
            "application/json",
            r#"{"name": "new-one", "auth": "#,
            400,
            Expect::DetailMentions("JSON"),
        ),
        raw_case(
            "create not an object",
            "POST",
            "/v1/datasources",
            "application/json",
            "[1, 2]",
            400,
            Expect::Status,
        ),
        raw_case(
            "create empty body",
            "POST",
            "/v1/datasources",
            "application/json",
            "",
            400,
            Expect::Status,
        ),
        json_case(
            "create unknown field",
            "POST",
            "/v1/datasources",
            json!({"name": "new-one", "auth": {"method": "basic"}, "colour": "red"}),
            400,
            Expect::DetailMentions("colour"),
        ),
        json_case(
            "create unknown auth field",
            "POST",
            "/v1/datasources",
            json!({"name": "new-one", "auth": {"method": "basic", "grant-type": "password"}}),
            400,
            Expect::DetailMentions("grant-type"),
        ),
        json_case(
            "create bearer without token url",
            "POST",
            "/v1/datasources",
            json!({"name": "new-one", "auth": {"method": "bearer", "grant_type": "client_credentials"}}),
            400,
            Expect::Pointer("/auth/token_url"),
        ),
        json_case(
            "create invalid name",
            "POST",
            "/v1/datasources",
            json!({"name": "Bad Name", "auth": {"method": "basic"}}),
            400,
            Expect::Pointer("/name"),
        ),
        json_case(
            "create implicit grant",
            "POST",
            "/v1/datasources",
            json!({"name": "new-one", "auth": {"method": "bearer", "token_url": "https://login.example.com/token", "grant_type": "implicit"}}),
            400,
            Expect::Pointer("/auth/grant_type"),
        ),
        json_case(
            "create plain http to a remote host",
            "POST",
            "/v1/datasources",
            json!({"name": "new-one", "auth": {"method": "bearer", "token_url": "http://login.example.com/token", "grant_type": "client_credentials"}}),
            400,
            Expect::Pointer("/auth/token_url"),
        ),
        json_case(
            "create reserved token param",
            "POST",
            "/v1/datasources",
            json!({"name": "new-one", "auth": {"method": "bearer", "token_url": "https://login.example.com/token", "grant_type": "client_credentials", "token_params": {"client_secret": "x"}}}),
            400,
            Expect::Pointer("/auth/token_params/client_secret"),
        ),
        json_case(
            "create duplicate name",
            "POST",
            "/v1/datasources",
            bearer_datasource("stable", "https://login.example.com/token"),
            409,
            Expect::Status,
        ),
        raw_case(
            "create oversized body",
            "POST",
            "/v1/datasources",
            "application/json",
            &format!(
                r#"{{"name": "new-one", "description": "{huge}", "auth": {{"method": "basic"}}}}"#
            ),
            413,
            Expect::Status,
        ),
        raw_case(
            "create duplicate key",
            "POST",
            "/v1/datasources",
            "application/json",
            r#"{"name": "new-one", "name": "other-one", "auth": {"method": "basic"}}"#,
            400,
            Expect::Status,
        ),
        raw_case(
            "create deeply nested",
            "POST",
            "/v1/datasources",
            "application/json",
            &format!("{}{}", "[".repeat(30_000), "]".repeat(30_000)),
            400,
            Expect::Status,
        ),
        Case {
            name: "create invalid utf-8",
            method: "POST",
            path: "/v1/datasources",
            content_type: "application/json",
            body: b"{\"name\": \"new-one\xff\", \"auth\": {\"method\": \"basic\"}}".to_vec(),
            status: 400,
            expect: Expect::Status,
        },
        raw_case(
            "patch malformed json",
            "PATCH",
            "/v1/datasources/stable",
            "application/merge-patch+json",
            "{",
            400,
            Expect::Status,
        ),
        json_case(
            "patch unknown field",
            "PATCH",
            "/v1/datasources/stable",
            json!({"colour": "red"}),
            400,
            Expect::DetailMentions("colour"),
        ),
        json_case(
            "patch rename",
            "PATCH",
            "/v1/datasources/stable",
            json!({"name": "renamed"}),
            400,
            Expect::DetailMentions("name"),
        ),
        json_case(
            "patch clears method",
            "PATCH",
            "/v1/datasources/stable",
            json!({"auth": {"method": null}}),
            400,
            Expect::Pointer("/auth/method"),
        ),
        json_case(
            "patch clears token url",
            "PATCH",
            "/v1/datasources/stable",
            json!({"auth": {"token_url": null}}),
            400,
            Expect::Pointer("/auth/token_url"),
        ),
        json_case(
            "patch bad scheme",
            "PATCH",
            "/v1/datasources/stable",
            json!({"auth": {"token_url": "ftp://login.example.com/token"}}),
            400,
            Expect::Pointer("/auth/token_url"),
        ),
        json_case(
            "patch plain http to a remote host",
            "PATCH",
            "/v1/datasources/stable",
            json!({"auth": {"token_url": "http://login.example.com/token"}}),
            400,
            Expect::Pointer("/auth/token_url"),
        ),
        json_case(
            "patch wrong type",
            "PATCH",
            "/v1/datasources/stable",
            json!({"description": 42}),
            400,
            Expect::Status,
        ),
        raw_case(
            "patch oversized body",
            "PATCH",
            "/v1/datasources/stable",
            "application/merge-patch+json",
            &format!(r#"{{"description": "{huge}"}}"#),
            413,
            Expect::Status,
        ),
        json_case(
            "patch missing data source",
            "PATCH",
            "/v1/datasources/absent",
            json!({"description": "x"}),
            404,
            Expect::Status,
        ),
        raw_case(
            "credentials malformed json",
            "PUT",
            "/v1/datasources/stable/credentials",
            "application/json",
            r#"{"client_id": "#,
            400,
            Expect::Status,
        ),
        json_case(
            "credentials unknown field",
            "PUT",
            "/v1/datasources/stable/credentials",
            json!({"client_id": "other", "client_secret": "other-secret", "api_key": "k"}),
            400,
            Expect::DetailMentions("api_key"),
        ),
        json_case(
            "credentials missing secret",
            "PUT",
            "/v1/datasources/stable/credentials",
            json!({"client_id": "other"}),
            400,
            Expect::DetailMentions("client_secret"),
        ),
        json_case(
            "credentials empty client id",
            "PUT",
            "/v1/datasources/stable/credentials",
            json!({"client_id": "", "client_secret": "other-secret"}),
            400,
            Expect::Pointer("/client_id"),
        ),
        json_case(
            "credentials newline in secret",
            "PUT",
            "/v1/datasources/stable/credentials",
            json!({"client_id": "other", "client_secret": "other-secret\n"}),
            400,
            Expect::Pointer("/client_secret"),
        ),
        raw_case(
            "credentials oversized body",
            "PUT",
            "/v1/datasources/stable/credentials",
            "application/json",
            &format!(r#"{{"client_id": "other", "client_secret": "{huge}"}}"#),
            413,
            Expect::Status,
        ),
        json_case(
            "credentials of missing data source",
            "PUT",
            "/v1/datasources/absent/credentials",
            json!({"client_id": "other", "client_secret": "other-secret"}),
            404,
            Expect::Status,
        ),
        json_case(
            "authorization wrong type",
            "POST",
            "/v1/datasources/stable/authorization",
            json!({"min_valid_for": "soon"}),
            400,
            Expect::Status,
        ),
        json_case(
            "authorization unknown field",
            "POST",
            "/v1/datasources/stable/authorization",
            json!({"force": true}),
            400,
            Expect::DetailMentions("force"),
        ),
        raw_case(
            "authorization duration with an exponent",
            "POST",
            "/v1/datasources/stable/authorization",
            "application/json",
            r#"{"min_valid_for": 1e2}"#,
            400,
            Expect::DetailMentions("an exponent"),
        ),
        raw_case(
            "authorization duration beyond 64 bits",
            "POST",
            "/v1/datasources/stable/authorization",
            "application/json",
            r#"{"min_valid_for": 18446744073709551616}"#,
            400,
            Expect::DetailMentions("out-of-range"),
        ),
        raw_case(
            "authorization field given twice",
            "POST",
            "/v1/datasources/stable/authorization",
            "application/json",
            r#"{"min_valid_for": 30, "min_valid_for": 40}"#,
            400,
            Expect::DetailMentions("more than once"),
        ),
        raw_case(
            "authorization content type without a media type",
            "POST",
            "/v1/datasources/stable/authorization",
            ";;;",
            "{}",
            415,
            Expect::DetailMentions("names no media type"),
        ),
        raw_case(
            "authorization path with a trailing slash",
            "POST",
            "/v1/datasources/stable/authorization/",
            "application/json",
            "{}",
            404,
            Expect::DetailMentions("trailing slash"),
        ),
        json_case(
            "authorization negative duration",
            "POST",
            "/v1/datasources/stable/authorization",
            json!({"min_valid_for": -5}),
            400,
            Expect::Status,
        ),
        raw_case(
            "list limit not a number",
            "GET",
            "/v1/datasources?limit=many",
            "application/json",
            "",
            400,
            Expect::Status,
        ),
        raw_case(
            "get missing data source",
            "GET",
            "/v1/datasources/absent",
            "application/json",
            "",
            404,
            Expect::Status,
        ),
        raw_case(
            "delete missing data source",
            "DELETE",
            "/v1/datasources/absent",
            "application/json",
            "",
            404,
            Expect::Status,
        ),
        raw_case(
            "unknown route",
            "GET",
            "/v1/nothing-here",
            "application/json",
            "",
            404,
            Expect::Status,
        ),
        raw_case(
            "method not allowed",
            "PUT",
            "/v1/datasources",
            "application/json",
            "{}",
            405,
            Expect::Status,
        ),
    ]
}

/// Reads everything a bad request could change, with the admin token.
fn snapshot(server: &Server) -> Vec<String> {
    [
        "/v1/datasources/stable",
        "/v1/datasources",
        "/v1/datasources/new-one",
    ]
    .iter()
    .map(|path| {
        let reply = server.get(path);
        format!("{} {}", reply.status, reply.body)
    })
    .collect()
}

#[test]
fn bad_input_changes_nothing() {
    let endpoint = TokenEndpoint::start("stable-token");
    endpoint.add_client("stable-client", "stable-secret");
    let server = Server::start();
    server.create_datasource(&bearer_datasource("stable", &endpoint.token_url()));
    server.put_credentials("stable", "stable-client", "stable-secret");
    let etag = server
        .get("/v1/datasources/stable")
        .header("etag")
        .unwrap_or_default()
        .to_owned();

    for case in cases() {
        let before = snapshot(&server);
        let headers: Vec<(&str, &str)> = if case.method == "PATCH" && case.path.ends_with("/stable")
        {
            vec![("if-match", etag.as_str())]
        } else {
            Vec::new()
        };
        let body = (!case.body.is_empty()).then(|| (case.content_type, case.body.clone()));
        let reply = server.call_raw(case.method, case.path, Some(server.admin()), &headers, body);

        assert_eq!(
            reply.status, case.status,
            "case {:?}: {}",
            case.name, reply.body
        );
        let problem = match case.expect {
            Expect::Pointer(pointer) => assert_validation_problem(&reply, pointer),
            Expect::DetailMentions(_) | Expect::Status => assert_problem(&reply, case.status),
        };
        if let Expect::DetailMentions(word) = case.expect {
            assert!(
                problem.to_string().contains(word),
                "case {:?}: the problem does not mention {word:?}: {problem}",
                case.name
            );
        }
        assert!(
            !reply.body.contains("other-secret"),
            "case {:?} echoed a secret",
            case.name
        );
        assert_eq!(
            before,
            snapshot(&server),
            "case {:?} changed stored data",
            case.name
        );
    }
}

#[test]
fn stale_if_match_is_precondition_failed() {
    let server = Server::start();
    let created = server.create_datasource(&json!({"name": "stable", "auth": {"method": "basic"}}));
    let first_etag = created.header("etag").expect("an ETag").to_owned();

    let updated = server.patch(
        "/v1/datasources/stable",
        &json!({"description": "first"}),
        Some(&first_etag),
    );
    assert_eq!(updated.status, 200, "patch failed: {}", updated.body);
    let before = server.get("/v1/datasources/stable");

    let stale = server.patch(
        "/v1/datasources/stable",
        &json!({"description": "second"}),
        Some(&first_etag),
    );

    assert_problem(&stale, 412);
    let after = server.get("/v1/datasources/stable");
    assert_eq!(
        before.body, after.body,
        "a stale If-Match changed the data source"
    );
    assert_eq!(after.json()["description"], json!("first"));
}

#[test]
fn wrong_content_type_changes_nothing() {
    let server = Server::start();
    server.create_datasource(&json!({"name": "typed", "auth": {"method": "basic"}}));
    let before = server.get("/v1/datasources");
    // Each row: method, path, media type and a JSON body that would be valid.
    let cases = [
        (
            "POST",
            "/v1/datasources",
            "text/plain",
            json!({"name": "plain", "auth": {"method": "basic"}}),
        ),
        (
            "PUT",
            "/v1/datasources/typed/credentials",
            "application/x-www-form-urlencoded",
            json!({"client_id": "typed-user", "client_secret": "typed-password"}),
        ),
        (
            "PATCH",
            "/v1/datasources/typed",
            "application/xml",
            json!({"description": "changed"}),
        ),
    ];

    for (method, path, content_type, body) in cases {
        let reply = server.call_raw(
            method,
            path,
            Some(server.admin()),
            &[],
            Some((content_type, body.to_string().into_bytes())),
        );

        let problem = assert_problem(&reply, 415);
        assert_eq!(
            problem["type"],
            json!("https://authcfg.dev/problems/unsupported-media-type"),
            "{method} {path} with {content_type}"
        );
    }
    assert_eq!(before.body, server.get("/v1/datasources").body);
}
