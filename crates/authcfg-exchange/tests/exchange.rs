//! End-to-end tests of the exchange against a real token endpoint on loopback.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail by panicking"
)]

mod support;

use std::collections::BTreeMap;
use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use authcfg_exchange::{
    AuthorizeRequest, BoxError, Error, Exchange, ExchangeConfig, ExchangeOutcome,
    LoadedCredentials, ManualClock, RefreshTokenSink, TestRequest,
};
use authcfg_model::{
    AuthConfig, ClientAuthMethod, Credentials, DataSourceId, GrantType, SecretString,
};
use support::{closed_port_url, full_backlog_url, Reply, TokenServer};

/// Records persisted refresh tokens and returns the next credentials version.
#[derive(Default)]
struct RecordingSink {
    calls: Mutex<Vec<(DataSourceId, u64, String)>>,
    fail: bool,
}

impl RefreshTokenSink for RecordingSink {
    fn persist_refresh_token<'a>(
        &'a self,
        datasource: DataSourceId,
        expected_credentials_version: u64,
        token: &'a SecretString,
    ) -> Pin<Box<dyn Future<Output = Result<u64, BoxError>> + Send + 'a>> {
        self.calls.lock().unwrap().push((
            datasource,
            expected_credentials_version,
            token.expose_secret().to_owned(),
        ));
        let result = if self.fail {
            Err(BoxError::from("version conflict"))
        } else {
            Ok(expected_credentials_version + 1)
        };
        Box::pin(ready(result))
    }
}

struct Harness {
    exchange: Exchange,
    clock: Arc<ManualClock>,
    sink: Arc<RecordingSink>,
    loads: Arc<AtomicUsize>,
}

type Loader = Box<dyn FnOnce() -> Ready<Result<LoadedCredentials, BoxError>> + Send>;

fn test_config() -> ExchangeConfig {
    ExchangeConfig {
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(5),
        refresh_margin: Duration::from_secs(10),
        default_lifetime: Duration::from_secs(600),
        backoff_initial: Duration::from_secs(10),
        backoff_max: Duration::from_secs(60),
        proxy_from_env: false,
        ..ExchangeConfig::default()
    }
}

impl Harness {
    fn new() -> Self {
        Self::with(test_config(), RecordingSink::default())
    }

    fn with(config: ExchangeConfig, sink: RecordingSink) -> Self {
        let clock = Arc::new(ManualClock::new());
        let sink = Arc::new(sink);
        let exchange = Exchange::with_clock(config, sink.clone(), clock.clone()).unwrap();
        Self {
            exchange,
            clock,
            sink,
            loads: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Returns a loader of `demo`/`secret` credentials at `version`.
    fn load(&self, version: u64) -> Loader {
        self.load_with(version, || Credentials::new("demo", "secret"))
    }

    fn load_with(
        &self,
        version: u64,
        make: impl FnOnce() -> Credentials + Send + 'static,
    ) -> Loader {
        let loads = Arc::clone(&self.loads);
        Box::new(move || {
            loads.fetch_add(1, Ordering::SeqCst);
            ready(Ok(LoadedCredentials {
                credentials: make(),
                version,
            }))
        })
    }

    fn loads(&self) -> usize {
        self.loads.load(Ordering::SeqCst)
    }

    async fn bearer(&self, auth: &AuthConfig) -> Result<String, Error> {
        self.exchange
            .authorize(&request(auth, 1), self.load(1))
            .await
            .map(|authorization| authorization.header_value().expose_secret().to_owned())
    }
}

fn datasource() -> DataSourceId {
    DataSourceId(uuid::Uuid::from_u128(0x5eed))
}

fn request(auth: &AuthConfig, version: u64) -> AuthorizeRequest<'_> {
    AuthorizeRequest {
        datasource: datasource(),
        auth,
        client_id: "demo",
        credentials_version: version,
        min_valid_for: Duration::ZERO,
        force_refresh: false,
    }
}

fn client_credentials(server: &TokenServer) -> AuthConfig {
    AuthConfig::bearer(server.url(), GrantType::ClientCredentials)
}

fn with_refresh_token(token: &'static str) -> impl FnOnce() -> Credentials + Send + 'static {
    move || {
        let mut credentials = Credentials::new("demo", "secret");
        credentials.refresh_token = Some(SecretString::new(token));
        credentials
    }
}

// Basic.

#[tokio::test]
async fn basic_header_is_computed_and_cached() {
    let harness = Harness::new();
    let auth = AuthConfig::basic();
    let basic_request = AuthorizeRequest {
        client_id: "apikey",
        ..request(&auth, 1)
    };

    for _ in 0..3 {
        let authorization = harness
            .exchange
            .authorize(
                &basic_request,
                harness.load_with(1, || Credentials::new("apikey", "")),
            )
            .await
            .unwrap();
        assert_eq!(
            authorization.header_value().expose_secret(),
            "Basic YXBpa2V5Og=="
        );
        assert_eq!(authorization.token_type(), "Basic");
        assert_eq!(authorization.expires_at(), None);
    }

    assert_eq!(harness.loads(), 1);
    assert_eq!(harness.exchange.metrics().cache_hits, 2);
}

#[tokio::test]
async fn basic_header_follows_credentials_version() {
    let harness = Harness::new();
    let auth = AuthConfig::basic();
    let basic_request = |version| AuthorizeRequest {
        client_id: "u",
        ..request(&auth, version)
    };

    let first = harness
        .exchange
        .authorize(
            &basic_request(1),
            harness.load_with(1, || Credentials::new("u", "old")),
        )
        .await
        .unwrap();
    let second = harness
        .exchange
        .authorize(
            &basic_request(2),
            harness.load_with(2, || Credentials::new("u", "new")),
        )
        .await
        .unwrap();

    assert_eq!(first.header_value().expose_secret(), "Basic dTpvbGQ=");
    assert_eq!(second.header_value().expose_secret(), "Basic dTpuZXc=");
}

// The token request on the wire.

#[tokio::test]
async fn client_secret_basic_header_on_the_wire() {
    let server = TokenServer::start(Reply::token("at-1", 3600)).await;
    let harness = Harness::new();
    let auth = client_credentials(&server);

    harness
        .exchange
        .authorize(
            &request(&auth, 1),
            harness.load_with(1, || Credentials::new("svc@corp", "p+ss/w:rd%=!")),
        )
        .await
        .unwrap();

    let recorded = server.last();
    assert_eq!(recorded.method, "POST");
    assert_eq!(recorded.path, "/oauth/token");
    assert_eq!(
        recorded.header("authorization"),
        Some("Basic c3ZjJTQwY29ycDpwJTJCc3MlMkZ3JTNBcmQlMjUlM0QlMjE=")
    );
    assert_eq!(recorded.body, "grant_type=client_credentials");
    assert_eq!(recorded.header("accept"), Some("application/json"));
    assert_eq!(
        recorded.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
}

#[tokio::test]
async fn client_secret_post_body_on_the_wire() {
    let server = TokenServer::start(Reply::token("at-1", 3600)).await;
    let harness = Harness::new();
    let mut auth = client_credentials(&server);
    auth.client_auth = Some(ClientAuthMethod::ClientSecretPost);

    harness
        .exchange
        .authorize(
            &request(&auth, 1),
            harness.load_with(1, || Credentials::new("demo", "s3cr&t")),
        )
        .await
        .unwrap();

    let recorded = server.last();
    assert_eq!(
        recorded.body,
        "grant_type=client_credentials&client_id=demo&client_secret=s3cr%26t"
    );
    assert_eq!(recorded.header("authorization"), None);
    assert!(!recorded.path.contains("secret"), "{}", recorded.path);
}

/// A configured scope, token_params, and the expected body.
type ScopeCase = (
    Option<&'static str>,
    &'static [(&'static str, &'static str)],
    &'static str,
);

#[tokio::test]
async fn scope_and_token_params_on_the_wire() {
    let server = TokenServer::start(Reply::token("at-1", 3600)).await;
    let cases: [ScopeCase; 4] = [
        (None, &[], "grant_type=client_credentials"),
        (
            Some("https://graph.microsoft.com/.default"),
            &[],
            "grant_type=client_credentials&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default",
        ),
        (
            Some("read:a,b write"),
            &[],
            "grant_type=client_credentials&scope=read%3Aa%2Cb+write",
        ),
        (
            Some("read"),
            &[("audience", "https://api.example.com")],
            "grant_type=client_credentials&scope=read&audience=https%3A%2F%2Fapi.example.com",
        ),
    ];

    for (scope, params, expected) in cases {
        let harness = Harness::new();
        let mut auth = client_credentials(&server);
        auth.scope = scope.map(str::to_owned);
        auth.token_params = params
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect::<BTreeMap<_, _>>();

        harness.bearer(&auth).await.unwrap();

        assert_eq!(server.last().body, expected, "scope {scope:?}");
    }
}

#[tokio::test]
async fn password_and_refresh_grants_on_the_wire() {
    let server = TokenServer::start(Reply::token("at-1", 3600)).await;

    let harness = Harness::new();
    let auth = AuthConfig::bearer(server.url(), GrantType::Password);
    harness
        .exchange
        .authorize(
            &request(&auth, 1),
            harness.load_with(1, || {
                let mut credentials = Credentials::new("demo", "secret");
                credentials.username = Some("alice".to_owned());
                credentials.password = Some(SecretString::new("p&ss"));
                credentials
            }),
        )
        .await
        .unwrap();
    assert_eq!(
        server.last().body,
        "grant_type=password&username=alice&password=p%26ss"
    );

    for grant_type in [GrantType::RefreshToken, GrantType::AuthorizationCode] {
        let harness = Harness::new();
        let auth = AuthConfig::bearer(server.url(), grant_type);
        harness
            .exchange
            .authorize(
                &request(&auth, 1),
                harness.load_with(1, with_refresh_token("rt-1")),
            )
            .await
            .unwrap();
        assert_eq!(
            server.last().body,
            "grant_type=refresh_token&refresh_token=rt-1",
            "grant {grant_type}"
        );
    }
}

#[tokio::test]
async fn implicit_grant_is_a_clear_error() {
    let server = TokenServer::start(Reply::token("at-1", 3600)).await;
    let harness = Harness::new();
    let mut auth = client_credentials(&server);
    auth.grant_type = Some(GrantType::Implicit);

    let error = harness.bearer(&auth).await.unwrap_err();

    assert!(error.is_permanent(), "{error:?}");
    assert!(error.to_string().contains("implicit"), "{error}");
    assert_eq!(server.count(), 0);
}

#[tokio::test]
async fn missing_refresh_token_is_reported() {
    let server = TokenServer::start(Reply::token("at-1", 3600)).await;
    let harness = Harness::new();
    let auth = AuthConfig::bearer(server.url(), GrantType::RefreshToken);

    let error = harness.bearer(&auth).await.unwrap_err();

    match error {
        Error::MissingCredentials { fields } => {
            assert_eq!(fields, vec![authcfg_model::CredentialField::RefreshToken]);
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(server.count(), 0);
}

// The token response.

#[tokio::test]
async fn form_encoded_response_is_parsed() {
    let server = TokenServer::start(
        Reply::json(
            200,
            "access_token=gho_abc123&scope=repo%2Cgist&token_type=bearer",
        )
        .content_type("application/x-www-form-urlencoded; charset=utf-8"),
    )
    .await;
    let harness = Harness::new();

    let authorization = harness
        .exchange
        .authorize(&request(&client_credentials(&server), 1), harness.load(1))
        .await
        .unwrap();

    assert_eq!(
        authorization.header_value().expose_secret(),
        "Bearer gho_abc123"
    );
    assert_eq!(authorization.scope(), Some("repo,gist"));
    assert!(authorization.lifetime_assumed());
}

#[tokio::test]
async fn ok_status_with_error_body_is_an_error() {
    let server = TokenServer::start(Reply::json(
        200,
        r#"{"error":"invalid_client","error_description":"unknown client"}"#,
    ))
    .await;
    let harness = Harness::new();
    let auth = client_credentials(&server);

    let error = harness.bearer(&auth).await.unwrap_err();

    assert_eq!(error.rfc_error_code(), Some("invalid_client"));
    assert_eq!(error.upstream_status(), Some(200));
    assert!(error.is_permanent());

    // The error was not cached as a token: once the back-off is over, the
    // next call sends a new token request.
    harness.clock.advance(Duration::from_secs(120));
    server.set(Reply::token("at-ok", 3600));
    assert_eq!(harness.bearer(&auth).await.unwrap(), "Bearer at-ok");
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn ok_status_with_empty_object_is_an_error() {
    let server = TokenServer::start(Reply::json(200, "{}")).await;
    let harness = Harness::new();

    let error = harness
        .bearer(&client_credentials(&server))
        .await
        .unwrap_err();

    assert!(matches!(error, Error::InvalidResponse { .. }), "{error:?}");
}

#[tokio::test]
async fn error_classes_are_reported() {
    let cases = [
        (
            Reply::json(400, r#"{"error":"invalid_grant"}"#),
            true,
            Some("invalid_grant"),
        ),
        (
            Reply::json(401, r#"{"error":"invalid_client"}"#),
            true,
            Some("invalid_client"),
        ),
        (
            Reply::json(400, r#"{"error":"invalid_scope"}"#),
            true,
            Some("invalid_scope"),
        ),
        (
            Reply::json(503, r#"{"error":"temporarily_unavailable"}"#),
            false,
            Some("temporarily_unavailable"),
        ),
        (
            Reply::json(500, "<html>down</html>").content_type("text/html"),
            false,
            None,
        ),
        (Reply::json(429, ""), false, None),
        (
            Reply::json(404, "not found").content_type("text/plain"),
            true,
            None,
        ),
    ];
    for (reply, permanent, code) in cases {
        let status = reply.status;
        let server = TokenServer::start(reply).await;
        let harness = Harness::new();

        let error = harness
            .bearer(&client_credentials(&server))
            .await
            .unwrap_err();

        assert_eq!(
            error.is_permanent(),
            permanent,
            "status {status}: {error:?}"
        );
        assert_eq!(error.rfc_error_code(), code, "status {status}");
        assert_eq!(error.upstream_status(), Some(status), "status {status}");
        assert!(!error.is_timeout(), "status {status}");
        let outcome = if permanent {
            ExchangeOutcome::Rejected
        } else {
            ExchangeOutcome::Unavailable
        };
        let metrics = harness.exchange.metrics();
        assert_eq!(metrics.exchanges_with(outcome), 1, "status {status}");
        assert_eq!(metrics.exchanges_total(), 1, "status {status}");
    }
}

#[tokio::test]
async fn token_types_other_than_bearer_are_rejected() {
    for token_type in ["mac", "DPoP"] {
        let server = TokenServer::start(Reply::json(
            200,
            &format!(r#"{{"access_token":"at","token_type":"{token_type}","expires_in":60}}"#),
        ))
        .await;
        let harness = Harness::new();

        let error = harness
            .bearer(&client_credentials(&server))
            .await
            .unwrap_err();

        assert!(
            matches!(&error, Error::UnsupportedTokenType { token_type: actual } if actual == token_type),
            "{error:?}"
        );
    }
}

#[tokio::test]
async fn missing_token_type_is_taken_as_bearer() {
    let server = TokenServer::start(Reply::json(
        200,
        r#"{"access_token":"at-1","expires_in":60}"#,
    ))
    .await;
    let harness = Harness::new();

    let authorization = harness
        .exchange
        .authorize(&request(&client_credentials(&server), 1), harness.load(1))
        .await
        .unwrap();

    assert_eq!(authorization.header_value().expose_secret(), "Bearer at-1");
    assert_eq!(authorization.token_type(), "Bearer");
}

#[tokio::test]
async fn missing_expires_in_assumes_default_lifetime() {
    let server = TokenServer::start(Reply::json(
        200,
        r#"{"access_token":"at-1","token_type":"Bearer"}"#,
    ))
    .await;
    let harness = Harness::new();
    let auth = client_credentials(&server);

    let authorization = harness
        .exchange
        .authorize(&request(&auth, 1), harness.load(1))
        .await
        .unwrap();

    assert!(authorization.lifetime_assumed());
    // The default lifetime is 600 s and the margin 10 s.
    let remaining = authorization.expires_at().unwrap() - time::OffsetDateTime::now_utc();
    assert!(remaining <= time::Duration::seconds(590), "{remaining}");
    assert!(remaining > time::Duration::seconds(580), "{remaining}");

    // The assumed lifetime ends like a real one.
    harness.clock.advance(Duration::from_secs(600));
    harness.bearer(&auth).await.unwrap();
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn zero_expires_in_is_used_once() {
    let server = TokenServer::start(Reply::token("at-once", 0)).await;
    let harness = Harness::new();
    let auth = client_credentials(&server);

    assert_eq!(harness.bearer(&auth).await.unwrap(), "Bearer at-once");
    assert_eq!(harness.bearer(&auth).await.unwrap(), "Bearer at-once");

    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn oversized_response_is_rejected() {
    let big = format!(r#"{{"access_token":"{}"}}"#, "a".repeat(2048));
    let server = TokenServer::start(Reply::json(200, &big)).await;
    let harness = Harness::with(
        ExchangeConfig {
            max_response_bytes: 1024,
            ..test_config()
        },
        RecordingSink::default(),
    );

    let error = harness
        .bearer(&client_credentials(&server))
        .await
        .unwrap_err();

    assert!(matches!(error, Error::InvalidResponse { .. }), "{error:?}");
    assert!(error.to_string().contains("1024"), "{error}");
}

// Rotation.

#[tokio::test]
async fn rotation_persisted_and_cached() {
    let server = TokenServer::start(Reply::json(
        200,
        r#"{"access_token":"at-1","token_type":"Bearer","expires_in":3600,"refresh_token":"rt-2"}"#,
    ))
    .await;
    let harness = Harness::new();
    let auth = AuthConfig::bearer(server.url(), GrantType::RefreshToken);

    let first = harness
        .exchange
        .authorize(
            &request(&auth, 4),
            harness.load_with(4, with_refresh_token("rt-1")),
        )
        .await
        .unwrap();
    let second = harness
        .exchange
        .authorize(
            &request(&auth, 5),
            harness.load_with(5, with_refresh_token("rt-2")),
        )
        .await
        .unwrap();

    assert_eq!(first.header_value().expose_secret(), "Bearer at-1");
    assert_eq!(second.header_value().expose_secret(), "Bearer at-1");
    assert_eq!(
        *harness.sink.calls.lock().unwrap(),
        vec![(datasource(), 4, "rt-2".to_owned())]
    );
    assert_eq!(server.count(), 1);
    assert_eq!(harness.loads(), 1);
}

#[tokio::test]
async fn response_without_refresh_token_keeps_the_old_one() {
    let server = TokenServer::start(Reply::token("at-1", 3600)).await;
    let harness = Harness::new();
    let auth = AuthConfig::bearer(server.url(), GrantType::RefreshToken);

    harness
        .exchange
        .authorize(
            &request(&auth, 4),
            harness.load_with(4, with_refresh_token("rt-1")),
        )
        .await
        .unwrap();
    harness
        .exchange
        .authorize(
            &request(&auth, 4),
            harness.load_with(4, with_refresh_token("rt-1")),
        )
        .await
        .unwrap();

    assert!(harness.sink.calls.lock().unwrap().is_empty());
    assert_eq!(server.count(), 1);
}

#[tokio::test]
async fn failed_persist_withholds_the_token() {
    let server = TokenServer::start(Reply::json(
        200,
        r#"{"access_token":"at-1","expires_in":3600,"refresh_token":"rt-2"}"#,
    ))
    .await;
    let harness = Harness::with(
        test_config(),
        RecordingSink {
            fail: true,
            ..RecordingSink::default()
        },
    );
    let auth = AuthConfig::bearer(server.url(), GrantType::RefreshToken);

    let error = harness
        .exchange
        .authorize(
            &request(&auth, 4),
            harness.load_with(4, with_refresh_token("rt-1")),
        )
        .await
        .unwrap_err();

    assert!(matches!(error, Error::Persist(_)), "{error:?}");
    assert_eq!(
        harness
            .exchange
            .metrics()
            .exchanges_with(ExchangeOutcome::PersistFailed),
        1
    );

    // Nothing was cached: after the back-off, a new token request is sent.
    harness.clock.advance(Duration::from_secs(120));
    let retry = harness
        .exchange
        .authorize(
            &request(&auth, 4),
            harness.load_with(4, with_refresh_token("rt-1")),
        )
        .await;
    assert!(retry.is_err());
    assert_eq!(server.count(), 2);
}

// The password grant with a refresh token.

/// The exact body of the password grant for [`password_credentials`].
const PASSWORD_BODY: &str = "grant_type=password&username=alice&password=p%26ss";

/// Returns a constructor of `password` data source credentials, with a stored
/// refresh token when `refresh_token` is set.
fn password_credentials(
    refresh_token: Option<&'static str>,
) -> impl FnOnce() -> Credentials + Send + 'static {
    move || {
        let mut credentials = Credentials::new("demo", "secret");
        credentials.username = Some("alice".to_owned());
        credentials.password = Some(SecretString::new("p&ss"));
        credentials.refresh_token = refresh_token.map(SecretString::new);
        credentials
    }
}

/// Returns a token reply that carries a refresh token.
fn token_with_refresh(access_token: &str, refresh_token: &str) -> Reply {
    Reply::json(
        200,
        &format!(
            r#"{{"access_token":"{access_token}","token_type":"Bearer","expires_in":3600,"refresh_token":"{refresh_token}"}}"#
        ),
    )
}

#[tokio::test]
async fn password_grant_persists_its_refresh_token() {
    let server = TokenServer::start(token_with_refresh("at-1", "rt-1")).await;
    let harness = Harness::new();
    let auth = AuthConfig::bearer(server.url(), GrantType::Password);

    let first = harness
        .exchange
        .authorize(
            &request(&auth, 1),
            harness.load_with(1, password_credentials(None)),
        )
        .await
        .unwrap();

    assert_eq!(first.header_value().expose_secret(), "Bearer at-1");
    assert_eq!(server.last().body, PASSWORD_BODY);
    assert_eq!(
        *harness.sink.calls.lock().unwrap(),
        vec![(datasource(), 1, "rt-1".to_owned())]
    );

    // The token is cached under the credentials version that the persisted
    // refresh token created.
    let second = harness
        .exchange
        .authorize(
            &request(&auth, 2),
            harness.load_with(2, password_credentials(Some("rt-1"))),
        )
        .await
        .unwrap();
    assert_eq!(second.header_value().expose_secret(), "Bearer at-1");
    assert_eq!(server.count(), 1);
    assert_eq!(harness.loads(), 1);
}

#[tokio::test]
async fn password_grant_failed_persist_withholds_the_token() {
    let server = TokenServer::start(token_with_refresh("at-1", "rt-1")).await;
    let harness = Harness::with(
        test_config(),
        RecordingSink {
            fail: true,
            ..RecordingSink::default()
        },
    );
    let auth = AuthConfig::bearer(server.url(), GrantType::Password);

    let error = harness
        .exchange
        .authorize(
            &request(&auth, 1),
            harness.load_with(1, password_credentials(None)),
        )
        .await
        .unwrap_err();

    assert!(matches!(error, Error::Persist(_)), "{error:?}");
    assert!(!format!("{error:?}").contains("at-1"), "{error:?}");
    assert_eq!(
        harness
            .exchange
            .metrics()
            .exchanges_with(ExchangeOutcome::PersistFailed),
        1
    );
}

#[tokio::test]
async fn password_source_renews_with_refresh_grant() {
    let server = TokenServer::start(Reply::json(500, "{}")).await;
    server.push(token_with_refresh("at-1", "rt-1"));
    server.push(token_with_refresh("at-2", "rt-2"));
    server.push(Reply::token("at-3", 3600));
    let harness = Harness::new();
    let auth = AuthConfig::bearer(server.url(), GrantType::Password);

    // No refresh token is stored yet: the password grant.
    let first = harness
        .exchange
        .authorize(
            &request(&auth, 1),
            harness.load_with(1, password_credentials(None)),
        )
        .await
        .unwrap();

    // After expiry, the stored refresh token renews the token, and the
    // rotated one is persisted.
    harness.clock.advance(Duration::from_secs(3600));
    let second = harness
        .exchange
        .authorize(
            &request(&auth, 2),
            harness.load_with(2, password_credentials(Some("rt-1"))),
        )
        .await
        .unwrap();

    // A response without a refresh token keeps the stored one.
    harness.clock.advance(Duration::from_secs(3600));
    let third = harness
        .exchange
        .authorize(
            &request(&auth, 3),
            harness.load_with(3, password_credentials(Some("rt-2"))),
        )
        .await
        .unwrap();

    assert_eq!(first.header_value().expose_secret(), "Bearer at-1");
    assert_eq!(second.header_value().expose_secret(), "Bearer at-2");
    assert_eq!(third.header_value().expose_secret(), "Bearer at-3");
    let requests = server.requests();
    let bodies: Vec<&str> = requests
        .iter()
        .map(|recorded| recorded.body.as_str())
        .collect();
    assert_eq!(
        bodies,
        vec![
            PASSWORD_BODY,
            "grant_type=refresh_token&refresh_token=rt-1",
            "grant_type=refresh_token&refresh_token=rt-2",
        ]
    );
    assert_eq!(
        requests[1].header("authorization"),
        Some("Basic ZGVtbzpzZWNyZXQ=")
    );
    assert_eq!(
        *harness.sink.calls.lock().unwrap(),
        vec![
            (datasource(), 1, "rt-1".to_owned()),
            (datasource(), 2, "rt-2".to_owned()),
        ]
    );
}

#[tokio::test]
async fn rejected_refresh_token_falls_back_to_password() {
    let server = TokenServer::start(Reply::json(500, "{}")).await;
    server.push(Reply::json(
        400,
        r#"{"error":"invalid_grant","error_description":"refresh token expired"}"#,
    ));
    server.push(token_with_refresh("at-2", "rt-new"));
    let harness = Harness::new();
    let auth = AuthConfig::bearer(server.url(), GrantType::Password);

    let authorization = harness
        .exchange
        .authorize(
            &request(&auth, 3),
            harness.load_with(3, password_credentials(Some("rt-old"))),
        )
        .await
        .unwrap();

    assert_eq!(authorization.header_value().expose_secret(), "Bearer at-2");
    let bodies: Vec<String> = server
        .requests()
        .into_iter()
        .map(|recorded| recorded.body)
        .collect();
    assert_eq!(
        bodies,
        vec![
            "grant_type=refresh_token&refresh_token=rt-old".to_owned(),
            PASSWORD_BODY.to_owned(),
        ]
    );
    assert_eq!(
        *harness.sink.calls.lock().unwrap(),
        vec![(datasource(), 3, "rt-new".to_owned())]
    );
    let metrics = harness.exchange.metrics();
    assert_eq!(metrics.exchanges_with(ExchangeOutcome::Rejected), 1);
    assert_eq!(metrics.exchanges_with(ExchangeOutcome::Success), 1);

    // The token is cached under the new credentials version.
    harness
        .exchange
        .authorize(
            &request(&auth, 4),
            harness.load_with(4, password_credentials(Some("rt-new"))),
        )
        .await
        .unwrap();
    assert_eq!(server.count(), 2);
    assert_eq!(harness.loads(), 1);
}

#[tokio::test]
async fn fallback_password_failure_is_returned() {
    let server = TokenServer::start(Reply::json(
        400,
        r#"{"error":"invalid_grant","error_description":"refresh token revoked"}"#,
    ))
    .await;
    server.push(Reply::json(
        400,
        r#"{"error":"invalid_grant","error_description":"refresh token revoked"}"#,
    ));
    server.push(Reply::json(
        400,
        r#"{"error":"invalid_grant","error_description":"wrong password"}"#,
    ));
    let harness = Harness::new();
    let auth = AuthConfig::bearer(server.url(), GrantType::Password);

    let error = harness
        .exchange
        .authorize(
            &request(&auth, 1),
            harness.load_with(1, password_credentials(Some("rt-old"))),
        )
        .await
        .unwrap_err();

    // The password grant is sent once, and its error is the one returned.
    assert_eq!(server.count(), 2);
    assert_eq!(server.last().body, PASSWORD_BODY);
    assert!(
        matches!(&error, Error::Upstream { description: Some(text), .. } if text == "wrong password"),
        "{error:?}"
    );
    assert!(harness.sink.calls.lock().unwrap().is_empty());
}

#[tokio::test]
async fn other_refresh_errors_skip_fallback() {
    let cases = [
        (
            Reply::json(500, "<html>down</html>").content_type("text/html"),
            None,
        ),
        (
            Reply::json(503, r#"{"error":"temporarily_unavailable"}"#),
            Some("temporarily_unavailable"),
        ),
        (
            Reply::json(401, r#"{"error":"invalid_client"}"#),
            Some("invalid_client"),
        ),
    ];
    for (reply, code) in cases {
        let status = reply.status;
        let server = TokenServer::start(reply).await;
        let harness = Harness::new();
        let auth = AuthConfig::bearer(server.url(), GrantType::Password);

        let error = harness
            .exchange
            .authorize(
                &request(&auth, 1),
                harness.load_with(1, password_credentials(Some("rt-1"))),
            )
            .await
            .unwrap_err();

        assert_eq!(error.upstream_status(), Some(status), "status {status}");
        assert_eq!(error.rfc_error_code(), code, "status {status}");
        assert_eq!(server.count(), 1, "status {status}");
        assert_eq!(
            server.last().body,
            "grant_type=refresh_token&refresh_token=rt-1",
            "status {status}"
        );
        assert!(
            harness.sink.calls.lock().unwrap().is_empty(),
            "status {status}"
        );

        // The failure backs off: the next caller sends neither grant.
        let retry = harness
            .exchange
            .authorize(
                &request(&auth, 1),
                harness.load_with(1, password_credentials(Some("rt-1"))),
            )
            .await
            .unwrap_err();
        assert!(matches!(retry, Error::BackingOff { .. }), "{retry:?}");
        assert_eq!(server.count(), 1, "status {status}");
    }
}

// HTTP failures.

#[tokio::test]
async fn redirect_is_refused_and_not_followed() {
    let elsewhere = TokenServer::start(Reply::token("stolen", 3600)).await;
    let server =
        TokenServer::start(Reply::json(302, "").header("Location", &elsewhere.url())).await;
    let harness = Harness::new();

    let error = harness
        .bearer(&client_credentials(&server))
        .await
        .unwrap_err();

    match &error {
        Error::Redirect { status, location } => {
            assert_eq!(*status, 302);
            assert_eq!(location.as_deref(), Some(elsewhere.url().as_str()));
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(error.to_string().contains(&elsewhere.url()), "{error}");
    assert_eq!(server.count(), 1);
    assert_eq!(elsewhere.count(), 0);
}

#[tokio::test]
async fn redirect_message_names_location() {
    let with_location =
        TokenServer::start(Reply::json(302, "").header("Location", "http://127.0.0.1:1/elsewhere"))
            .await;
    let without_location = TokenServer::start(Reply::json(307, "")).await;
    let cases = [
        (
            &with_location,
            "token endpoint answered HTTP 302 with a redirect to \"http://127.0.0.1:1/elsewhere\": \
             set token_url to the final URL, redirects are not followed",
        ),
        (
            &without_location,
            "token endpoint answered HTTP 307 with a redirect but without a Location header: \
             set token_url to the final URL, redirects are not followed",
        ),
    ];

    for (server, expected) in cases {
        let harness = Harness::new();

        let error = harness
            .bearer(&client_credentials(server))
            .await
            .unwrap_err();

        assert!(matches!(error, Error::Redirect { .. }), "{error:?}");
        assert_eq!(error.to_string(), expected);
    }
}

#[tokio::test]
async fn invalid_config_message_has_one_prefix() {
    let harness = Harness::new();
    let auth = AuthConfig::bearer("ftp://127.0.0.1/oauth/token", GrantType::ClientCredentials);

    let error = harness.bearer(&auth).await.unwrap_err();

    assert!(matches!(error, Error::InvalidConfig { .. }), "{error:?}");
    let message = error.to_string();
    assert!(
        message.starts_with(
            "invalid auth config: /token_url: token_url \"ftp://127.0.0.1/oauth/token\""
        ),
        "{message}"
    );
    assert!(!message.contains("invalid input"), "{message}");
    assert_eq!(harness.exchange.metrics().exchanges_total(), 0);
}

#[tokio::test]
async fn slow_endpoint_times_out() {
    let server = TokenServer::start(Reply::token("late", 3600).delay(Duration::from_secs(5))).await;
    let harness = Harness::with(
        ExchangeConfig {
            request_timeout: Duration::from_millis(300),
            ..test_config()
        },
        RecordingSink::default(),
    );

    let error = harness
        .bearer(&client_credentials(&server))
        .await
        .unwrap_err();

    assert!(error.is_timeout(), "{error:?}");
    assert!(!error.is_permanent());
    assert_eq!(
        harness
            .exchange
            .metrics()
            .exchanges_with(ExchangeOutcome::Timeout),
        1
    );
}

#[tokio::test]
async fn hanging_connect_times_out() {
    let (url, _queued, _listener) = full_backlog_url().await;
    let harness = Harness::with(
        ExchangeConfig {
            connect_timeout: Duration::from_millis(300),
            ..test_config()
        },
        RecordingSink::default(),
    );
    let auth = AuthConfig::bearer(url, GrantType::ClientCredentials);

    let error = harness.bearer(&auth).await.unwrap_err();

    assert!(error.is_timeout(), "{error:?}");
    assert!(
        matches!(error, Error::Timeout { after } if after == Duration::from_millis(300)),
        "{error:?}"
    );
}

#[tokio::test]
async fn refused_connection_is_transient() {
    let harness = Harness::new();
    let auth = AuthConfig::bearer(closed_port_url().await, GrantType::ClientCredentials);

    let error = harness.bearer(&auth).await.unwrap_err();

    assert!(matches!(error, Error::Transport { .. }), "{error:?}");
    assert!(!error.is_permanent());
}

#[tokio::test]
async fn errors_never_contain_secrets() {
    let server = TokenServer::start(Reply::json(
        401,
        r#"{"error":"invalid_client","error_description":"client secret hunter2-secret does not match"}"#,
    ))
    .await;
    let harness = Harness::new();
    let mut auth = client_credentials(&server);
    auth.client_auth = Some(ClientAuthMethod::ClientSecretPost);

    let error = harness
        .exchange
        .authorize(
            &request(&auth, 1),
            harness.load_with(1, || Credentials::new("demo", "hunter2-secret")),
        )
        .await
        .unwrap_err();

    let display = error.to_string();
    let debug = format!("{error:?}");
    assert!(!display.contains("hunter2"), "{display}");
    assert!(!debug.contains("hunter2"), "{debug}");
    assert!(display.contains("[redacted]"), "{display}");
}

// Cache.

#[tokio::test]
async fn cache_hit_skips_loader_and_endpoint() {
    let server = TokenServer::start(Reply::token("at-1", 3600)).await;
    let harness = Harness::new();
    let auth = client_credentials(&server);

    for _ in 0..5 {
        assert_eq!(harness.bearer(&auth).await.unwrap(), "Bearer at-1");
    }

    assert_eq!(server.count(), 1);
    assert_eq!(harness.loads(), 1);
    let metrics = harness.exchange.metrics();
    assert_eq!(metrics.cache_hits, 4);
    assert_eq!(metrics.cache_misses, 1);
    assert_eq!(metrics.exchanges_with(ExchangeOutcome::Success), 1);
    assert_eq!(metrics.latency.count, 1);
    assert_eq!(
        metrics.latency.buckets.last().map(|bucket| bucket.1),
        Some(1)
    );
}

#[tokio::test]
async fn token_expires_after_lifetime_minus_margin() {
    let server = TokenServer::start(Reply::token("at-1", 100)).await;
    let harness = Harness::with(
        ExchangeConfig {
            refresh_margin: Duration::from_secs(10),
            ..test_config()
        },
        RecordingSink::default(),
    );
    let auth = client_credentials(&server);

    harness.bearer(&auth).await.unwrap();
    harness.clock.advance(Duration::from_secs(74));
    harness.bearer(&auth).await.unwrap();
    assert_eq!(server.count(), 1, "still fresh at 74 s of 100 s");

    harness.clock.advance(Duration::from_secs(17));
    server.set(Reply::token("at-2", 100));
    assert_eq!(harness.bearer(&auth).await.unwrap(), "Bearer at-2");
    assert_eq!(
        server.count(),
        2,
        "expired at 91 s: 100 s minus the 10 s margin"
    );
}

#[tokio::test]
async fn refresh_ahead_serves_old_token_meanwhile() {
    let server = TokenServer::start(Reply::token("at-1", 100)).await;
    let harness = Harness::new();
    let auth = Arc::new(client_credentials(&server));

    harness.bearer(&auth).await.unwrap();
    // 25 % of 100 s is more than the 10 s margin, so refresh starts at 75 s.
    harness.clock.advance(Duration::from_secs(80));
    server.set(Reply::token("at-2", 100).held());

    let refresher = {
        let exchange = harness.exchange.clone();
        let auth = Arc::clone(&auth);
        let load = harness.load(1);
        tokio::spawn(async move {
            exchange
                .authorize(&request(&auth, 1), load)
                .await
                .map(|authorization| authorization.header_value().expose_secret().to_owned())
        })
    };
    server.wait_for_count(2).await;

    assert_eq!(harness.bearer(&auth).await.unwrap(), "Bearer at-1");
    server.release(1);
    assert_eq!(refresher.await.unwrap().unwrap(), "Bearer at-2");
    assert_eq!(harness.bearer(&auth).await.unwrap(), "Bearer at-2");
    assert_eq!(server.count(), 2);
}

/// Returns the header that `cached` hands out, if any.
fn cached_header(harness: &Harness, request: &AuthorizeRequest<'_>) -> Option<String> {
    harness
        .exchange
        .cached(request)
        .map(|authorization| authorization.header_value().expose_secret().to_owned())
}

#[tokio::test]
async fn cached_matches_authorize_hits() {
    let server = TokenServer::start(Reply::token("at-1", 100)).await;
    let harness = Harness::new();
    let auth = client_credentials(&server);

    // Cold: nothing cached, and asking creates no slot and sends nothing.
    assert_eq!(cached_header(&harness, &request(&auth, 1)), None);
    assert_eq!(server.count(), 0);

    harness.bearer(&auth).await.unwrap();
    assert_eq!(
        cached_header(&harness, &request(&auth, 1)).as_deref(),
        Some("Bearer at-1")
    );

    // Each row: why authorize would send a request, and the request.
    let forced = AuthorizeRequest {
        force_refresh: true,
        ..request(&auth, 1)
    };
    let too_short = AuthorizeRequest {
        min_valid_for: Duration::from_secs(95),
        ..request(&auth, 1)
    };
    let other_scope = AuthConfig {
        scope: Some("other".to_owned()),
        ..auth.clone()
    };
    let newer_credentials = request(&auth, 2);
    let cases: &[(&str, &AuthorizeRequest<'_>)] = &[
        ("force_refresh", &forced),
        ("min_valid_for beyond expiry", &too_short),
        ("another scope", &request(&other_scope, 1)),
        ("newer credentials version", &newer_credentials),
    ];
    for (why, request) in cases {
        assert_eq!(cached_header(&harness, request), None, "{why}");
    }

    // Due for a refresh ahead of expiry: authorize would refresh, so cached
    // declines, while the token itself is still valid.
    harness.clock.advance(Duration::from_secs(80));
    assert_eq!(cached_header(&harness, &request(&auth, 1)), None);
    server.set(Reply::token("at-2", 100));
    assert_eq!(harness.bearer(&auth).await.unwrap(), "Bearer at-2");
    assert_eq!(
        cached_header(&harness, &request(&auth, 1)).as_deref(),
        Some("Bearer at-2")
    );
    assert_eq!(server.count(), 2);
    assert_eq!(harness.exchange.metrics().cache_hits, 2);
}

#[tokio::test]
async fn failed_refresh_ahead_serves_valid_token_during_backoff() {
    let server = TokenServer::start(Reply::token("at-1", 100)).await;
    // With jitter the first back-off lasts 15 to 30 s.
    let harness = Harness::with(
        ExchangeConfig {
            backoff_initial: Duration::from_secs(30),
            ..test_config()
        },
        RecordingSink::default(),
    );
    let auth = client_credentials(&server);

    harness.bearer(&auth).await.unwrap();
    harness.clock.advance(Duration::from_secs(80));
    server.set(Reply::json(503, r#"{"error":"temporarily_unavailable"}"#));

    // The refreshing caller falls back to the still-valid token, and so does
    // the next caller during the back-off, without a request.
    assert_eq!(harness.bearer(&auth).await.unwrap(), "Bearer at-1");
    assert_eq!(harness.bearer(&auth).await.unwrap(), "Bearer at-1");
    assert_eq!(server.count(), 2);

    // Past the token's validity and within the back-off: the failure shows.
    harness.clock.advance(Duration::from_secs(11));
    let error = harness.bearer(&auth).await.unwrap_err();
    assert!(matches!(error, Error::BackingOff { .. }), "{error:?}");
    assert_eq!(error.rfc_error_code(), Some("temporarily_unavailable"));
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn backoff_honours_retry_after() {
    let server = TokenServer::start(
        Reply::json(503, r#"{"error":"temporarily_unavailable"}"#).header("Retry-After", "120"),
    )
    .await;
    let harness = Harness::new();
    let auth = client_credentials(&server);

    let first = harness.bearer(&auth).await.unwrap_err();
    assert_eq!(first.retry_after(), Some(Duration::from_secs(120)));

    harness.clock.advance(Duration::from_secs(100));
    let second = harness.bearer(&auth).await.unwrap_err();
    match &second {
        Error::BackingOff { retry_after, .. } => {
            assert_eq!(*retry_after, Duration::from_secs(20));
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert_eq!(server.count(), 1);
    assert_eq!(harness.exchange.metrics().backoff_rejections, 1);

    harness.clock.advance(Duration::from_secs(21));
    server.set(Reply::token("at-1", 3600));
    assert_eq!(harness.bearer(&auth).await.unwrap(), "Bearer at-1");
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn backoff_doubles_with_jitter() {
    let server = TokenServer::start(Reply::json(500, "")).await;
    let harness = Harness::new();
    let auth = client_credentials(&server);

    // backoff_initial is 10 s and backoff_max 60 s; jitter takes 0 to 50 %.
    let expected_ranges = [(5, 10), (10, 20), (20, 40), (30, 60), (30, 60)];
    for (round, (low, high)) in expected_ranges.into_iter().enumerate() {
        let failure = harness.bearer(&auth).await.unwrap_err();
        assert!(
            matches!(failure, Error::HttpStatus { status: 500, .. }),
            "{failure:?}"
        );

        let retry_after = match harness.bearer(&auth).await.unwrap_err() {
            Error::BackingOff { retry_after, .. } => retry_after,
            other => panic!("round {round}: unexpected {other:?}"),
        };
        assert!(
            retry_after >= Duration::from_secs(low),
            "round {round}: {retry_after:?}"
        );
        assert!(
            retry_after <= Duration::from_secs(high),
            "round {round}: {retry_after:?}"
        );

        harness
            .clock
            .advance(retry_after + Duration::from_millis(1));
    }
    assert_eq!(server.count(), expected_ranges.len());

    // A success resets the back-off.
    server.set(Reply::token("at-1", 60));
    harness.bearer(&auth).await.unwrap();
    harness.clock.advance(Duration::from_secs(60));
    server.set(Reply::json(500, ""));
    harness.bearer(&auth).await.unwrap_err();
    match harness.bearer(&auth).await.unwrap_err() {
        Error::BackingOff { retry_after, .. } => {
            assert!(retry_after <= Duration::from_secs(10), "{retry_after:?}");
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn min_valid_and_force_refresh() {
    let server = TokenServer::start(Reply::token("at-1", 100)).await;
    let harness = Harness::new();
    let auth = client_credentials(&server);
    harness.bearer(&auth).await.unwrap();

    server.set(Reply::token("at-2", 3600));
    let long = AuthorizeRequest {
        min_valid_for: Duration::from_secs(200),
        ..request(&auth, 1)
    };
    let authorization = harness
        .exchange
        .authorize(&long, harness.load(1))
        .await
        .unwrap();
    assert_eq!(authorization.header_value().expose_secret(), "Bearer at-2");

    server.set(Reply::token("at-3", 3600));
    let forced = AuthorizeRequest {
        force_refresh: true,
        ..request(&auth, 1)
    };
    let authorization = harness
        .exchange
        .authorize(&forced, harness.load(1))
        .await
        .unwrap();
    assert_eq!(authorization.header_value().expose_secret(), "Bearer at-3");

    assert_eq!(harness.bearer(&auth).await.unwrap(), "Bearer at-3");
    assert_eq!(server.count(), 3);
}

#[tokio::test]
async fn min_valid_for_beyond_lifetime_requests_every_call() {
    // A 60 s token is used for 50 s (the 10 s margin), less than the 120 s
    // that every call requests.
    let server = TokenServer::start(Reply::token("at-1", 60)).await;
    let harness = Harness::new();
    let auth = client_credentials(&server);
    let long = AuthorizeRequest {
        min_valid_for: Duration::from_secs(120),
        ..request(&auth, 1)
    };

    for call in 1..=3 {
        let authorization = harness
            .exchange
            .authorize(&long, harness.load(1))
            .await
            .unwrap();
        assert_eq!(authorization.header_value().expose_secret(), "Bearer at-1");
        assert_eq!(server.count(), call, "call {call}");
    }

    let metrics = harness.exchange.metrics();
    assert_eq!(metrics.cache_hits, 0);
    assert_eq!(metrics.cache_misses, 3);
    assert_eq!(metrics.exchanges_with(ExchangeOutcome::Success), 3);
}

#[tokio::test]
async fn key_changes_and_invalidation_fetch_new_token() {
    let server = TokenServer::start(Reply::token("at", 3600)).await;
    let harness = Harness::new();
    let auth = client_credentials(&server);
    harness.bearer(&auth).await.unwrap();

    let mut other_scope = auth.clone();
    other_scope.scope = Some("admin".to_owned());
    harness.bearer(&other_scope).await.unwrap();
    assert_eq!(server.count(), 2, "a scope change needs a new token");

    let mut other_audience = other_scope.clone();
    other_audience
        .token_params
        .insert("audience".to_owned(), "https://b.example".to_owned());
    harness.bearer(&other_audience).await.unwrap();
    assert_eq!(server.count(), 3, "an audience change needs a new token");

    harness
        .exchange
        .authorize(&request(&other_audience, 2), harness.load(2))
        .await
        .unwrap();
    assert_eq!(
        server.count(),
        4,
        "a new credentials version needs a new token"
    );

    harness.exchange.invalidate(datasource());
    harness
        .exchange
        .authorize(&request(&other_audience, 2), harness.load(2))
        .await
        .unwrap();
    assert_eq!(server.count(), 5, "invalidation drops the token");
}

#[tokio::test]
async fn load_failure_is_reported_without_backoff() {
    let server = TokenServer::start(Reply::token("at", 3600)).await;
    let harness = Harness::new();
    let auth = client_credentials(&server);

    let error = harness
        .exchange
        .authorize(&request(&auth, 1), || {
            ready(Err::<LoadedCredentials, BoxError>(BoxError::from(
                "store closed",
            )))
        })
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Load(_)), "{error:?}");

    assert_eq!(harness.bearer(&auth).await.unwrap(), "Bearer at");
    assert_eq!(server.count(), 1);
}

// Single flight.

async fn stampede(
    harness: &Harness,
    auth: Arc<AuthConfig>,
    callers: usize,
) -> Vec<Result<String, Error>> {
    let mut tasks = Vec::with_capacity(callers);
    for _ in 0..callers {
        let exchange = harness.exchange.clone();
        let auth = Arc::clone(&auth);
        let load = harness.load(1);
        tasks.push(tokio::spawn(async move {
            exchange
                .authorize(&request(&auth, 1), load)
                .await
                .map(|authorization| authorization.header_value().expose_secret().to_owned())
        }));
    }
    let mut results = Vec::with_capacity(callers);
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stampede_sends_one_request() {
    let server =
        TokenServer::start(Reply::token("at-1", 3600).delay(Duration::from_millis(500))).await;
    let harness = Harness::new();
    let auth = Arc::new(client_credentials(&server));

    let results = stampede(&harness, auth, 1000).await;

    assert_eq!(server.count(), 1);
    assert_eq!(harness.loads(), 1);
    assert_eq!(results.len(), 1000);
    for result in results {
        assert_eq!(result.unwrap(), "Bearer at-1");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stampede_shares_the_error() {
    let server = TokenServer::start(
        Reply::json(400, r#"{"error":"invalid_client"}"#).delay(Duration::from_millis(500)),
    )
    .await;
    let harness = Harness::new();
    let auth = Arc::new(client_credentials(&server));

    let results = stampede(&harness, auth, 1000).await;

    assert_eq!(server.count(), 1);
    for result in results {
        let error = result.unwrap_err();
        assert_eq!(error.rfc_error_code(), Some("invalid_client"), "{error:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_leader_hands_over_to_waiter() {
    let server = TokenServer::start(Reply::token("at-2", 3600)).await;
    server.push(Reply::token("at-1", 3600).held());
    let harness = Harness::new();
    let auth = Arc::new(client_credentials(&server));

    let spawn_caller = || {
        let exchange = harness.exchange.clone();
        let auth = Arc::clone(&auth);
        let load = harness.load(1);
        tokio::spawn(async move {
            exchange
                .authorize(&request(&auth, 1), load)
                .await
                .map(|authorization| authorization.header_value().expose_secret().to_owned())
        })
    };
    let leader = spawn_caller();
    server.wait_for_count(1).await;
    let waiter = spawn_caller();
    while harness.exchange.metrics().cache_misses < 2 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    leader.abort();

    assert_eq!(waiter.await.unwrap().unwrap(), "Bearer at-2");
    assert_eq!(server.count(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_each_call_once() {
    let server = TokenServer::start(Reply::token("at-1", 3600)).await;
    server.push(Reply::token("at-1", 3600).held());
    let harness = Harness::new();
    let auth = Arc::new(client_credentials(&server));

    // Twenty callers of a cold key: twenty misses, one token request.
    let mut callers = Vec::new();
    for _ in 0..20 {
        let exchange = harness.exchange.clone();
        let auth = Arc::clone(&auth);
        let load = harness.load(1);
        callers.push(tokio::spawn(async move {
            exchange.authorize(&request(&auth, 1), load).await.is_ok()
        }));
    }
    while harness.exchange.metrics().cache_misses < 20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.release(1);
    for caller in callers {
        assert!(caller.await.unwrap());
    }
    let metrics = harness.exchange.metrics();
    assert_eq!(metrics.cache_misses, 20);
    assert_eq!(metrics.cache_hits, 0);
    assert_eq!(metrics.exchanges_total(), 1);

    // A cached token: one hit.
    harness.bearer(&auth).await.unwrap();
    assert_eq!(harness.exchange.metrics().cache_hits, 1);

    // A forced refresh that fails is a miss; the next one, during the
    // back-off, is a back-off rejection.
    server.set(Reply::json(503, r#"{"error":"temporarily_unavailable"}"#));
    let forced = AuthorizeRequest {
        force_refresh: true,
        ..request(&auth, 1)
    };
    for _ in 0..2 {
        let error = harness
            .exchange
            .authorize(&forced, harness.load(1))
            .await
            .unwrap_err();
        assert!(
            error.rfc_error_code() == Some("temporarily_unavailable"),
            "{error:?}"
        );
    }

    let metrics = harness.exchange.metrics();
    assert_eq!(metrics.cache_hits, 1);
    assert_eq!(metrics.cache_misses, 21);
    assert_eq!(metrics.backoff_rejections, 1);
    assert_eq!(
        metrics.cache_hits + metrics.cache_misses + metrics.backoff_rejections,
        23
    );
    assert_eq!(metrics.exchanges_total(), 2);
    assert_eq!(metrics.latency.count, 2);
}

// Connection test.

#[tokio::test]
async fn test_reports_success_without_token() {
    let server = TokenServer::start(Reply::json(
        200,
        r#"{"access_token":"at-secret-value","token_type":"bearer","expires_in":3599,"scope":"read"}"#,
    ))
    .await;
    let harness = Harness::new();
    let auth = client_credentials(&server);
    let credentials = Credentials::new("demo", "secret");

    let diagnostics = harness
        .exchange
        .test(&TestRequest {
            datasource: datasource(),
            auth: &auth,
            credentials: &credentials,
            credentials_version: 1,
        })
        .await;

    assert!(diagnostics.ok);
    assert_eq!(diagnostics.http_status, Some(200));
    assert_eq!(diagnostics.expires_in, Some(3599));
    assert_eq!(diagnostics.scope.as_deref(), Some("read"));
    assert_eq!(diagnostics.token_type.as_deref(), Some("Bearer"));
    assert_eq!(diagnostics.grant_type, Some("client_credentials"));
    assert_eq!(diagnostics.error, None);
    assert!(!format!("{diagnostics:?}").contains("at-secret-value"));
}

#[tokio::test]
async fn test_reports_rfc_error() {
    let server = TokenServer::start(Reply::json(
        401,
        r#"{"error":"invalid_client","error_description":"client authentication failed"}"#,
    ))
    .await;
    let harness = Harness::new();
    let auth = client_credentials(&server);
    let credentials = Credentials::new("demo", "secret");
    let test = TestRequest {
        datasource: datasource(),
        auth: &auth,
        credentials: &credentials,
        credentials_version: 1,
    };

    // A test is never held back by the back-off of an earlier one.
    let first = harness.exchange.test(&test).await;
    let second = harness.exchange.test(&test).await;

    assert!(!first.ok);
    assert_eq!(first.http_status, Some(401));
    assert_eq!(first.error.as_deref(), Some("invalid_client"));
    assert_eq!(
        first.error_description.as_deref(),
        Some("client authentication failed")
    );
    assert_eq!(first.error_kind, Some("rejected"));
    assert_eq!(second.error.as_deref(), Some("invalid_client"));
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn test_reports_timeout() {
    let server = TokenServer::start(Reply::token("late", 3600).delay(Duration::from_secs(5))).await;
    let harness = Harness::with(
        ExchangeConfig {
            request_timeout: Duration::from_millis(200),
            ..test_config()
        },
        RecordingSink::default(),
    );
    let auth = client_credentials(&server);
    let credentials = Credentials::new("demo", "secret");

    let diagnostics = harness
        .exchange
        .test(&TestRequest {
            datasource: datasource(),
            auth: &auth,
            credentials: &credentials,
            credentials_version: 1,
        })
        .await;

    assert!(!diagnostics.ok);
    assert_eq!(diagnostics.error_kind, Some("timeout"));
    assert_eq!(diagnostics.http_status, None);
}

// Settings.

#[test]
fn out_of_range_settings_are_rejected() {
    let cases = [
        ExchangeConfig {
            request_timeout: Duration::ZERO,
            ..test_config()
        },
        ExchangeConfig {
            connect_timeout: Duration::ZERO,
            ..test_config()
        },
        ExchangeConfig {
            max_response_bytes: 0,
            ..test_config()
        },
        ExchangeConfig {
            backoff_initial: Duration::from_secs(61),
            ..test_config()
        },
    ];
    for config in cases {
        let error = Exchange::new(config.clone(), Arc::new(RecordingSink::default())).unwrap_err();
        assert!(
            matches!(error, Error::InvalidSettings { .. }),
            "{config:?}: {error:?}"
        );
    }
    assert!(ExchangeConfig::default().validate().is_ok());
}

#[tokio::test]
async fn test_persists_rotated_refresh_token() {
    let server = TokenServer::start(Reply::json(
        200,
        r#"{"access_token":"at-1","expires_in":60,"refresh_token":"rt-2"}"#,
    ))
    .await;
    let harness = Harness::new();
    let auth = AuthConfig::bearer(server.url(), GrantType::RefreshToken);
    let credentials = with_refresh_token("rt-1")();

    let diagnostics = harness
        .exchange
        .test(&TestRequest {
            datasource: datasource(),
            auth: &auth,
            credentials: &credentials,
            credentials_version: 7,
        })
        .await;

    assert!(diagnostics.ok, "{diagnostics:?}");
    assert!(diagnostics.refresh_token_rotated);
    assert_eq!(diagnostics.grant_type, Some("refresh_token"));
    assert_eq!(
        *harness.sink.calls.lock().unwrap(),
        vec![(datasource(), 7, "rt-2".to_owned())]
    );
}

#[tokio::test]
async fn test_reports_grant_of_password_source() {
    let server = TokenServer::start(Reply::json(500, "{}")).await;
    let harness = Harness::new();
    let auth = AuthConfig::bearer(server.url(), GrantType::Password);
    let test = |credentials| {
        let harness = &harness;
        let auth = &auth;
        async move {
            harness
                .exchange
                .test(&TestRequest {
                    datasource: datasource(),
                    auth,
                    credentials: &credentials,
                    credentials_version: 1,
                })
                .await
        }
    };

    // The stored refresh token works: the refresh_token grant.
    server.push(Reply::token("at-1", 60));
    let refreshed = test(password_credentials(Some("rt-1"))()).await;
    assert!(refreshed.ok, "{refreshed:?}");
    assert_eq!(refreshed.grant_type, Some("refresh_token"));
    assert!(!refreshed.refresh_token_rejected);
    assert!(!refreshed.refresh_token_rotated);

    // The stored refresh token is rejected: the password grant instead.
    server.push(Reply::json(400, r#"{"error":"invalid_grant"}"#));
    server.push(token_with_refresh("at-2", "rt-2"));
    let fell_back = test(password_credentials(Some("rt-1"))()).await;
    assert!(fell_back.ok, "{fell_back:?}");
    assert_eq!(fell_back.grant_type, Some("password"));
    assert!(fell_back.refresh_token_rejected);
    assert!(fell_back.refresh_token_rotated);
    assert_eq!(fell_back.http_status, Some(200));

    // A transient failure of the refresh is reported as it is.
    let failed = test(password_credentials(Some("rt-2"))()).await;
    assert!(!failed.ok, "{failed:?}");
    assert_eq!(failed.grant_type, Some("refresh_token"));
    assert!(!failed.refresh_token_rejected);
    assert_eq!(failed.http_status, Some(500));

    assert_eq!(server.count(), 4);
    assert_eq!(
        *harness.sink.calls.lock().unwrap(),
        vec![(datasource(), 1, "rt-2".to_owned())]
    );
}

#[tokio::test]
async fn test_of_basic_sends_nothing() {
    let harness = Harness::new();
    let auth = AuthConfig::basic();
    let credentials = Credentials::new("apikey", "");

    let diagnostics = harness
        .exchange
        .test(&TestRequest {
            datasource: datasource(),
            auth: &auth,
            credentials: &credentials,
            credentials_version: 1,
        })
        .await;

    assert!(diagnostics.ok);
    assert_eq!(diagnostics.token_type.as_deref(), Some("Basic"));
    assert_eq!(diagnostics.grant_type, None);
    assert_eq!(diagnostics.http_status, None);
    assert_eq!(harness.exchange.metrics().exchanges_total(), 0);
}
