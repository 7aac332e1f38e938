//! The interop scenarios: `authcfg serve` against real authorization servers.
//!
//! Data sources are created through the HTTP API. Some get their credentials
//! through the API, others through `AUTHCFG_DS_*` environment variables that
//! `authcfg serve` imports at start, as an operator would provide them. Each
//! scenario is a function that returns an error on the first failed check;
//! the runner records it and goes on with the next scenario.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::authcfg::{env_var, Authcfg, REFRESH_MARGIN_SECS};
use super::http::{Client, Response};
use super::servers::{DotServer, OidcServer};

/// Access token lifetime of oidc-provider in the suite, in seconds.
pub(crate) const OIDC_TOKEN_LIFETIME_SECS: u64 = 6;

/// Access token lifetime of django-oauth-toolkit in the suite, in seconds.
pub(crate) const DOT_TOKEN_LIFETIME_SECS: u64 = 4;

/// How long authcfg may take to recover after an authorization server is back.
/// It backs off after failed token requests, so the first request after the
/// restart may still fail.
const RECOVERY_LIMIT: Duration = Duration::from_secs(30);

/// How long after a token's `expires_at` a scenario requests it again, in seconds.
/// authcfg stops handing out a token at its `expires_at`, which is the
/// server's expiry less the refresh margin.
const PAST_EXPIRY_SECS: f64 = 0.3;

/// Everything the scenarios work with.
pub(crate) struct Context {
    /// The service under test.
    pub(crate) authcfg: Authcfg,
    /// django-oauth-toolkit, when its scenarios run.
    pub(crate) dot: Option<DotServer>,
    /// oidc-provider, when its scenarios run.
    pub(crate) oidc: Option<OidcServer>,
    /// Secrets that no authcfg response and no line of its log may contain.
    pub(crate) secrets: Vec<String>,
    /// Access tokens that authcfg handed out, which no line of its log may contain.
    issued: RefCell<Vec<String>>,
    client: Client,
}

/// The results of a run: the names of passed scenarios and the failures.
#[derive(Default)]
pub(crate) struct Outcome {
    /// Names of the scenarios that passed.
    pub(crate) passed: Vec<String>,
    /// Names and errors of the scenarios that failed.
    pub(crate) failed: Vec<(String, anyhow::Error)>,
}

impl Outcome {
    /// Runs one scenario, prints its result and records it.
    pub(crate) fn run(&mut self, name: &str, scenario: impl FnOnce() -> anyhow::Result<()>) {
        let started = Instant::now();
        match scenario() {
            Ok(()) => {
                super::say(&format!(
                    "ok      {name} ({:.1} s)",
                    started.elapsed().as_secs_f64()
                ));
                self.passed.push(name.to_owned());
            }
            Err(error) => {
                super::say(&format!("FAILED  {name}: {error:#}"));
                self.failed.push((name.to_owned(), error));
            }
        }
    }
}

/// A bearer data source of the suite: its name, token endpoint, grant, client
/// authentication method and scope.
fn bearer(
    name: &str,
    token_url: &str,
    grant: &str,
    client_auth: &str,
    scope: Option<&str>,
) -> Value {
    let mut auth = json!({
        "method": "bearer",
        "token_url": token_url,
        "grant_type": grant,
        "client_auth": client_auth,
    });
    if let Some(scope) = scope {
        auth["scope"] = json!(scope);
    }
    json!({ "name": name, "description": "interop suite", "auth": auth })
}

/// An issued header, as `POST /v1/datasources/{name}/authorization` returns it.
struct Header {
    value: String,
    scope: Option<String>,
    expires_at: Option<OffsetDateTime>,
}

impl Context {
    /// Creates the data sources of the servers given, provides their
    /// credentials, and restarts authcfg so that it imports the environment.
    pub(crate) fn setup(
        mut authcfg: Authcfg,
        dot: Option<DotServer>,
        oidc: Option<OidcServer>,
    ) -> anyhow::Result<Self> {
        authcfg.start()?;
        let mut env = Vec::new();
        let mut secrets = Vec::new();

        if let Some(oidc) = &oidc {
            let url = oidc.token_url();
            let basic = &oidc.basic;
            let post = &oidc.post;
            secrets.extend([basic.client_secret.clone(), post.client_secret.clone()]);

            // Credentials from the environment.
            for (name, scope) in [
                ("oidc-basic", None),
                ("oidc-basic-scoped", Some("api:read")),
                ("oidc-bad-scope", Some("api:admin")),
            ] {
                authcfg.create_datasource(&bearer(
                    name,
                    &url,
                    "client_credentials",
                    "client_secret_basic",
                    scope,
                ))?;
                env.push((env_var(name, "client_id"), basic.client_id.clone()));
                env.push((env_var(name, "client_secret"), basic.client_secret.clone()));
            }

            // Credentials through the API.
            for (name, scope) in [
                ("oidc-post", None),
                ("oidc-post-scoped", Some("api:read api:write")),
            ] {
                authcfg.create_datasource(&bearer(
                    name,
                    &url,
                    "client_credentials",
                    "client_secret_post",
                    scope,
                ))?;
                authcfg.put_credentials(
                    name,
                    &json!({"client_id": post.client_id, "client_secret": post.client_secret}),
                )?;
            }
            for name in ["oidc-lifetime", "oidc-outage"] {
                authcfg.create_datasource(&bearer(
                    name,
                    &url,
                    "client_credentials",
                    "client_secret_basic",
                    None,
                ))?;
                authcfg.put_credentials(
                    name,
                    &json!({"client_id": basic.client_id, "client_secret": basic.client_secret}),
                )?;
            }
            authcfg.create_datasource(&bearer(
                "oidc-wrong-secret",
                &url,
                "client_credentials",
                "client_secret_basic",
                None,
            ))?;
            authcfg.put_credentials(
                "oidc-wrong-secret",
                &json!({"client_id": basic.client_id, "client_secret": "not-the-secret"}),
            )?;
        }

        if let Some(dot) = &dot {
            let url = dot.token_url();
            let fixtures = &dot.fixtures;
            let cc = &fixtures.client_credentials;
            let pw = &fixtures.password_grant;
            secrets.extend([
                cc.client_secret.clone(),
                pw.client_secret.clone(),
                fixtures.password.clone(),
            ]);

            for (name, scope) in [("dot-cc-basic", None), ("dot-bad-scope", Some("admin"))] {
                authcfg.create_datasource(&bearer(
                    name,
                    &url,
                    "client_credentials",
                    "client_secret_basic",
                    scope,
                ))?;
                env.push((env_var(name, "client_id"), cc.client_id.clone()));
                env.push((env_var(name, "client_secret"), cc.client_secret.clone()));
            }
            authcfg.create_datasource(&bearer(
                "dot-cc-post",
                &url,
                "client_credentials",
                "client_secret_post",
                Some("write"),
            ))?;
            authcfg.put_credentials(
                "dot-cc-post",
                &json!({"client_id": cc.client_id, "client_secret": cc.client_secret}),
            )?;
            authcfg.create_datasource(&bearer(
                "dot-lifetime",
                &url,
                "client_credentials",
                "client_secret_basic",
                None,
            ))?;
            authcfg.put_credentials(
                "dot-lifetime",
                &json!({"client_id": cc.client_id, "client_secret": cc.client_secret}),
            )?;
            authcfg.create_datasource(&bearer(
                "dot-wrong-secret",
                &url,
                "client_credentials",
                "client_secret_basic",
                None,
            ))?;
            authcfg.put_credentials(
                "dot-wrong-secret",
                &json!({"client_id": cc.client_id, "client_secret": "not-the-secret"}),
            )?;

            // The password grant, with every credential from the environment.
            authcfg.create_datasource(&bearer(
                "dot-password",
                &url,
                "password",
                "client_secret_basic",
                None,
            ))?;
            env.push((env_var("dot-password", "client_id"), pw.client_id.clone()));
            env.push((
                env_var("dot-password", "client_secret"),
                pw.client_secret.clone(),
            ));
            env.push((
                env_var("dot-password", "username"),
                fixtures.username.clone(),
            ));
            env.push((
                env_var("dot-password", "password"),
                fixtures.password.clone(),
            ));

            authcfg.create_datasource(&bearer(
                "dot-refresh",
                &url,
                "refresh_token",
                "client_secret_basic",
                None,
            ))?;

            // A refresh_token data source with its refresh token from the
            // environment, which stays the same across restarts of authcfg.
            authcfg.create_datasource(&bearer(
                "dot-env-refresh",
                &url,
                "refresh_token",
                "client_secret_basic",
                None,
            ))?;
            let refresh_token = issue_refresh_token(&Client::new(), dot)?;
            secrets.push(refresh_token.clone());
            env.push((
                env_var("dot-env-refresh", "client_id"),
                pw.client_id.clone(),
            ));
            env.push((
                env_var("dot-env-refresh", "client_secret"),
                pw.client_secret.clone(),
            ));
            env.push((env_var("dot-env-refresh", "refresh_token"), refresh_token));
        }

        authcfg.set_env(env);
        authcfg.restart()?;
        Ok(Self {
            authcfg,
            dot,
            oidc,
            secrets,
            issued: RefCell::new(Vec::new()),
            client: Client::new(),
        })
    }

    /// Fails when a response carries one of the suite's secrets.
    fn check_no_secret(&self, what: &str, response: &Response) -> anyhow::Result<()> {
        for secret in &self.secrets {
            ensure!(
                !response.body.contains(secret.as_str()),
                "{what} returned a secret in its body: {}",
                response.status
            );
        }
        Ok(())
    }

    /// Requests a header and fails unless it is a Bearer header.
    fn header(&self, name: &str) -> anyhow::Result<Header> {
        let response = self.authorization(name)?;
        ensure!(
            response.status == 200,
            "authorization of {name} returned {} instead of 200: {}",
            response.status,
            response.body
        );
        let body = response.json()?;
        ensure!(
            body["header"] == "Authorization",
            "unexpected `header` in {body}"
        );
        let value = body["value"]
            .as_str()
            .context("no string `value` in the response")?;
        ensure!(
            value.starts_with("Bearer ") && value.len() > "Bearer ".len(),
            "`value` is not a Bearer header: {value:?}"
        );
        if let Some(token) = value.strip_prefix("Bearer ") {
            self.issued.borrow_mut().push(token.to_owned());
        }
        ensure!(
            body["token_type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("bearer")),
            "unexpected `token_type` in {body}"
        );
        let expires_at = match &body["expires_at"] {
            Value::Null => None,
            Value::String(text) => Some(
                OffsetDateTime::parse(text, &Rfc3339)
                    .with_context(|| format!("`expires_at` {text:?} is not RFC 3339"))?,
            ),
            other => bail!("unexpected `expires_at` {other}"),
        };
        Ok(Header {
            value: value.to_owned(),
            scope: body["scope"].as_str().map(str::to_owned),
            expires_at,
        })
    }

    fn authorization(&self, name: &str) -> anyhow::Result<Response> {
        let response = self.authcfg.authorization(name)?;
        self.check_no_secret(&format!("authorization of {name}"), &response)?;
        Ok(response)
    }

    /// Requests a header and fails unless authcfg returns a problem of
    /// one of `statuses` that carries the upstream error `code`.
    fn upstream_error(
        &self,
        name: &str,
        statuses: &[u16],
        code: Option<&str>,
    ) -> anyhow::Result<Value> {
        let response = self.authorization(name)?;
        ensure!(
            statuses.contains(&response.status),
            "authorization of {name} returned {} instead of one of {statuses:?}: {}",
            response.status,
            response.body
        );
        ensure!(
            response
                .content_type
                .starts_with("application/problem+json"),
            "the error is not application/problem+json but {:?}",
            response.content_type
        );
        let body = response.json()?;
        ensure!(
            body["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "the problem has no `detail`: {body}"
        );
        if let Some(code) = code {
            ensure!(
                body["error"] == code,
                "the problem does not carry `error` {code:?}: {body}"
            );
        }
        Ok(body)
    }

    /// Scenario: client credentials without and with scope.
    fn client_credentials(
        &self,
        name: &str,
        expected_scope: Option<&str>,
        expected_client: &str,
    ) -> anyhow::Result<()> {
        let header = self.header(name)?;
        ensure!(
            header.scope.as_deref() == expected_scope,
            "granted scope {:?}, expected {expected_scope:?}",
            header.scope
        );
        self.check_live(name, &header, expected_client)?;
        let again = self.header(name)?;
        ensure!(
            again.value == header.value,
            "a second request within the lifetime returned a new token"
        );
        Ok(())
    }

    /// Fails unless the server that issued `header` reports its token active
    /// (RFC 7662 introspection) and issued to `expected_client`. The server is
    /// the one that the data source name's prefix, `oidc-` or `dot-`, names.
    fn check_live(&self, name: &str, header: &Header, expected_client: &str) -> anyhow::Result<()> {
        let token = header
            .value
            .strip_prefix("Bearer ")
            .context("the header is not a Bearer header")?;
        let introspection = if name.starts_with("oidc-") {
            self.oidc()?.introspect(&self.client, token)?
        } else {
            self.dot()?.introspect(&self.client, token)?
        };
        ensure!(
            introspection["active"] == true,
            "the server does not know the token of {name} as active: {introspection}"
        );
        ensure!(
            introspection["client_id"] == expected_client,
            "the token of {name} was issued to {}, expected {expected_client}",
            introspection["client_id"]
        );
        Ok(())
    }

    fn oidc(&self) -> anyhow::Result<&OidcServer> {
        self.oidc
            .as_ref()
            .context("oidc-provider is not part of this run")
    }

    fn dot(&self) -> anyhow::Result<&DotServer> {
        self.dot
            .as_ref()
            .context("django-oauth-toolkit is not part of this run")
    }

    /// Scenario: oidc-provider saw each client authenticate with its method.
    fn oidc_auth_methods(&self) -> anyhow::Result<()> {
        let oidc = self.oidc()?;
        let lines = oidc.auth_method_lines();
        for (client, method) in [
            (&oidc.basic.client_id, "client_secret_basic"),
            (&oidc.post.client_id, "client_secret_post"),
        ] {
            let prefix = format!("token request of client {client} with ");
            let used: Vec<&str> = lines
                .iter()
                .filter_map(|line| line.strip_prefix(prefix.as_str()))
                .collect();
            ensure!(
                !used.is_empty(),
                "oidc-provider saw no token request of {client}"
            );
            ensure!(
                used.iter().all(|m| *m == method),
                "client {client} used {used:?}, expected only {method}"
            );
        }
        Ok(())
    }

    /// Scenario: the same token before expiry, a new one after.
    fn token_lifetime(&self, name: &str, lifetime_secs: u64) -> anyhow::Result<()> {
        let requested = OffsetDateTime::now_utc();
        let first = self.header(name)?;
        let expires_at = first
            .expires_at
            .context("`expires_at` is null for a token with `expires_in`")?;
        // authcfg hands a token out until the server's expiry less the refresh
        // margin, and the margin is at most half of the lifetime.
        let lifetime = (expires_at - requested).as_seconds_f64();
        let expected =
            lifetime_secs as f64 - (REFRESH_MARGIN_SECS as f64).min(lifetime_secs as f64 / 2.0);
        ensure!(
            (expected - 1.5..=expected + 2.0).contains(&lifetime),
            "`expires_at` is {lifetime:.1} s after the request, expected about {expected} s"
        );

        let second = self.header(name)?;
        ensure!(
            second.value == first.value,
            "a request before expiry returned a new token"
        );

        sleep_until(expires_at, PAST_EXPIRY_SECS);
        let third = self.header(name)?;
        ensure!(
            third.value != first.value,
            "a request after expiry returned the expired token"
        );
        Ok(())
    }

    /// Scenario: oidc-provider stops, the cached token is served until it
    /// expires, then a clear error; oidc-provider starts again and authcfg
    /// recovers by itself.
    fn authorization_server_outage(&mut self, name: &str) -> anyhow::Result<()> {
        let first = self.header(name)?;
        let expires_at = first.expires_at.context("`expires_at` is null")?;
        self.oidc
            .as_mut()
            .context("oidc-provider is not part of this run")?
            .stop();

        let cached = self.header(name)?;
        ensure!(
            cached.value == first.value,
            "with the server stopped, a valid cached token was not served"
        );

        sleep_until(expires_at, PAST_EXPIRY_SECS);
        let problem = self.upstream_error(name, &[502, 504], None)?;
        super::say(&format!(
            "        with the server stopped: {} {}",
            problem["status"], problem["detail"]
        ));

        // The diagnostics name the failure without an upstream status.
        let response = self.authcfg.test(name)?;
        self.check_no_secret("test", &response)?;
        ensure!(
            response.status == 200,
            "test of {name} with the server stopped returned {}: {}",
            response.status,
            response.body
        );
        let report = response.json()?;
        ensure!(
            report["ok"] == false,
            "test of {name} with the server stopped is ok: {report}"
        );
        ensure!(
            report["upstream_status"].is_null(),
            "test of {name} with the server stopped has an upstream status: {report}"
        );
        ensure!(
            report["message"].as_str().is_some_and(|m| !m.is_empty()),
            "test of {name} with the server stopped has no message: {report}"
        );

        self.oidc
            .as_mut()
            .context("oidc-provider is not part of this run")?
            .start()?;
        let deadline = Instant::now() + RECOVERY_LIMIT;
        loop {
            let response = self.authorization(name)?;
            if response.status == 200 {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "authcfg did not recover within {} s of the server's restart: {} {}",
                RECOVERY_LIMIT.as_secs(),
                response.status,
                response.body
            );
            std::thread::sleep(Duration::from_millis(500));
        }
        let recovered = self.header(name)?;
        ensure!(
            recovered.value != first.value,
            "after the restart the expired token was served"
        );
        Ok(())
    }

    /// Scenario: the password grant, then refreshes with rotation, across a
    /// restart of authcfg.
    ///
    /// The suite counts the refresh tokens that django-oauth-toolkit revoked:
    /// each refresh grant revokes one, a password grant none. The count shows
    /// which grant authcfg sent for each new token.
    fn password_then_refresh(&mut self) -> anyhow::Result<()> {
        let name = "dot-password";
        // Each renewal is one refresh grant with the rotated refresh token.
        let per_renewal = 1;
        let revoked_before = self.dot()?.revoked_refresh_tokens()?;

        let first = self.header(name)?;
        ensure!(
            self.dot()?.revoked_refresh_tokens()? == revoked_before,
            "the first token request revoked a refresh token: it was not a password grant"
        );

        sleep_until(
            first.expires_at.context("`expires_at` is null")?,
            PAST_EXPIRY_SECS,
        );
        let second = self.header(name)?;
        ensure!(
            second.value != first.value,
            "after expiry the expired token was served"
        );
        let revoked = self.dot()?.revoked_refresh_tokens()?;
        ensure!(
            revoked == revoked_before + per_renewal,
            "{} refresh grants for one renewal, expected {per_renewal}",
            revoked - revoked_before
        );

        self.authcfg.restart()?;
        sleep_until(
            second.expires_at.context("`expires_at` is null")?,
            PAST_EXPIRY_SECS,
        );
        let third = self.header(name)?;
        ensure!(
            third.value != second.value,
            "after expiry the expired token was served"
        );
        let password_client = self.dot()?.fixtures.password_grant.client_id.clone();
        self.check_live(name, &third, &password_client)?;
        let revoked = self.dot()?.revoked_refresh_tokens()?;
        ensure!(
            revoked == revoked_before + 2 * per_renewal,
            "{} refresh grants for two renewals across a restart, expected {}",
            revoked - revoked_before,
            2 * per_renewal
        );
        Ok(())
    }

    /// Scenario: a refresh_token data source, whose only way to a token is its
    /// refresh token, still works after rotation and a restart of authcfg.
    fn refresh_token_grant(&mut self) -> anyhow::Result<()> {
        let name = "dot-refresh";
        let (token_url, fixtures) = {
            let dot = self.dot()?;
            (dot.token_url(), dot.fixtures.clone())
        };

        // The operator obtains the first refresh token outside authcfg.
        let pw = &fixtures.password_grant;
        let refresh_token = issue_refresh_token(&self.client, self.dot()?)?;
        self.secrets.push(refresh_token.clone());
        self.authcfg.put_credentials(
            name,
            &json!({"client_id": pw.client_id, "client_secret": pw.client_secret, "refresh_token": refresh_token}),
        )?;

        let first = self.header(name)?;
        self.authcfg.restart()?;
        sleep_until(
            first.expires_at.context("`expires_at` is null")?,
            PAST_EXPIRY_SECS,
        );
        let second = self.header(name)?;
        ensure!(
            second.value != first.value,
            "after expiry the expired token was served"
        );
        self.check_live(name, &second, &pw.client_id)?;

        // The first refresh token is revoked now, so it must not work again.
        let replay = self.client.post_form(
            &token_url,
            Some((&pw.client_id, &pw.client_secret)),
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh_token),
            ],
        )?;
        ensure!(
            replay.status == 400,
            "django-oauth-toolkit accepted a rotated refresh token: {}",
            replay.status
        );
        Ok(())
    }

    /// Scenario: a refresh token from `AUTHCFG_DS_*_REFRESH_TOKEN` is rotated,
    /// then authcfg restarts with the same environment.
    ///
    /// The environment still contains the first refresh token, which the server
    /// revoked when it rotated it.
    fn env_refresh_token_after_rotation(&mut self) -> anyhow::Result<()> {
        let name = "dot-env-refresh";
        let first = self.header(name)?;
        self.authcfg.restart()?;
        sleep_until(
            first.expires_at.context("`expires_at` is null")?,
            PAST_EXPIRY_SECS,
        );

        // The import at start must leave the rotated refresh token alone,
        // because the one in the environment is revoked now.
        let second = self.header(name)?;
        ensure!(
            second.value != first.value,
            "after expiry the expired token was served"
        );
        let client = self.dot()?.fixtures.password_grant.client_id.clone();
        self.check_live(name, &second, &client)?;
        Ok(())
    }

    /// Scenario: `POST /test` reports a success with the granted scope and the
    /// upstream status, and a failure with the RFC error code.
    fn diagnostics(&self, good: &str, good_scope: Option<&str>, bad: &str) -> anyhow::Result<()> {
        let response = self.authcfg.test(good)?;
        self.check_no_secret("test", &response)?;
        ensure!(
            response.status == 200,
            "test of {good} returned {}: {}",
            response.status,
            response.body
        );
        let body = response.json()?;
        ensure!(body["ok"] == true, "test of {good} is not ok: {body}");
        ensure!(
            body["upstream_status"] == 200,
            "test of {good} has no upstream_status 200: {body}"
        );
        if let Some(scope) = good_scope {
            ensure!(
                body.to_string().contains(scope),
                "test of {good} does not report the granted scope {scope:?}: {body}"
            );
        }

        let response = self.authcfg.test(bad)?;
        self.check_no_secret("test", &response)?;
        ensure!(
            response.status == 200,
            "test of {bad} returned {}: {}",
            response.status,
            response.body
        );
        let body = response.json()?;
        ensure!(body["ok"] == false, "test of {bad} is ok: {body}");
        ensure!(
            body["upstream_status"] == 401,
            "test of {bad} has no upstream_status 401: {body}"
        );
        ensure!(
            body.to_string().contains("invalid_client"),
            "test of {bad} does not report invalid_client: {body}"
        );
        Ok(())
    }

    /// Scenario: authcfg's log contains none of the suite's secrets.
    ///
    /// Besides the suite's own secrets it checks every access token that
    /// authcfg handed out and, for django-oauth-toolkit, every access and
    /// refresh token in the server's database, rotated ones included.
    fn log_contains_no_secret(&self) -> anyhow::Result<()> {
        let log = std::fs::read_to_string(self.authcfg.log())
            .context("failed to read the authcfg log")?;
        for (index, secret) in self.secrets.iter().enumerate() {
            ensure!(
                !log.contains(secret.as_str()),
                "secret number {index} of the suite is in the authcfg log"
            );
        }

        let mut tokens = self.issued.borrow().clone();
        if let Some(dot) = &self.dot {
            tokens.extend(dot.issued_tokens()?);
        }
        ensure!(
            !tokens.is_empty(),
            "no token was issued, so none was checked"
        );
        let leaked = tokens
            .iter()
            .filter(|token| token.len() >= 16 && log.contains(token.as_str()))
            .count();
        ensure!(
            leaked == 0,
            "{leaked} of {} issued tokens are in the authcfg log",
            tokens.len()
        );
        Ok(())
    }
}

/// Obtains a refresh token from django-oauth-toolkit with the password grant,
/// as an operator would before giving it to authcfg.
fn issue_refresh_token(client: &Client, dot: &DotServer) -> anyhow::Result<String> {
    let fixtures = &dot.fixtures;
    let pw = &fixtures.password_grant;
    let response = client.post_form(
        &dot.token_url(),
        Some((&pw.client_id, &pw.client_secret)),
        &[
            ("grant_type", "password"),
            ("username", &fixtures.username),
            ("password", &fixtures.password),
        ],
    )?;
    ensure!(
        response.status == 200,
        "the password grant at django-oauth-toolkit failed: {}",
        response.body
    );
    let refresh_token = response.json()?["refresh_token"]
        .as_str()
        .context("no refresh_token in the password grant's response")?
        .to_owned();
    Ok(refresh_token)
}

/// Sleeps until `offset_secs` seconds after `instant` (negative: before).
fn sleep_until(instant: OffsetDateTime, offset_secs: f64) {
    let target = instant + time::Duration::seconds_f64(offset_secs);
    let remaining = (target - OffsetDateTime::now_utc()).as_seconds_f64();
    if remaining > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(remaining));
    }
}

/// Runs every scenario of the servers in `context`.
pub(crate) fn run_all(context: &mut Context, outcome: &mut Outcome) {
    if let Some(oidc) = &context.oidc {
        let oidc_basic = oidc.basic.client_id.clone();
        let oidc_post = oidc.post.client_id.clone();
        outcome.run(
            "oidc-provider: client_credentials, client_secret_basic, no scope",
            || context.client_credentials("oidc-basic", None, &oidc_basic),
        );
        outcome.run(
            "oidc-provider: client_credentials, client_secret_basic, scope",
            || context.client_credentials("oidc-basic-scoped", Some("api:read"), &oidc_basic),
        );
        outcome.run(
            "oidc-provider: client_credentials, client_secret_post, no scope",
            || context.client_credentials("oidc-post", None, &oidc_post),
        );
        outcome.run(
            "oidc-provider: client_credentials, client_secret_post, scope",
            || {
                context.client_credentials(
                    "oidc-post-scoped",
                    Some("api:read api:write"),
                    &oidc_post,
                )
            },
        );
        outcome.run(
            "oidc-provider: each client used its registered method",
            || context.oidc_auth_methods(),
        );
        outcome.run(
            "oidc-provider: wrong client secret is 502 invalid_client",
            || {
                context
                    .upstream_error("oidc-wrong-secret", &[502], Some("invalid_client"))
                    .map(drop)
            },
        );
        outcome.run("oidc-provider: unknown scope is 502 invalid_scope", || {
            context
                .upstream_error("oidc-bad-scope", &[502], Some("invalid_scope"))
                .map(drop)
        });
        outcome.run(
            "oidc-provider: POST /test reports success and failure",
            || context.diagnostics("oidc-basic-scoped", Some("api:read"), "oidc-wrong-secret"),
        );
        outcome.run("oidc-provider: same token before expiry, new after", || {
            context.token_lifetime("oidc-lifetime", OIDC_TOKEN_LIFETIME_SECS)
        });
        outcome.run("oidc-provider: outage, cached token, recovery", || {
            context.authorization_server_outage("oidc-outage")
        });
    }

    if let Some(dot) = &context.dot {
        let dot_cc = dot.fixtures.client_credentials.client_id.clone();
        outcome.run(
            "django-oauth-toolkit: client_credentials, client_secret_basic, no scope",
            || context.client_credentials("dot-cc-basic", Some("read"), &dot_cc),
        );
        outcome.run(
            "django-oauth-toolkit: client_credentials, client_secret_post, scope",
            || context.client_credentials("dot-cc-post", Some("write"), &dot_cc),
        );
        outcome.run(
            "django-oauth-toolkit: wrong client secret is 502 invalid_client",
            || {
                context
                    .upstream_error("dot-wrong-secret", &[502], Some("invalid_client"))
                    .map(drop)
            },
        );
        outcome.run(
            "django-oauth-toolkit: unknown scope is 502 invalid_scope",
            || {
                context
                    .upstream_error("dot-bad-scope", &[502], Some("invalid_scope"))
                    .map(drop)
            },
        );
        outcome.run(
            "django-oauth-toolkit: POST /test reports success and failure",
            || context.diagnostics("dot-cc-post", Some("write"), "dot-wrong-secret"),
        );
        outcome.run(
            "django-oauth-toolkit: same token before expiry, new after",
            || context.token_lifetime("dot-lifetime", DOT_TOKEN_LIFETIME_SECS),
        );
        outcome.run(
            "django-oauth-toolkit: password grant, rotated refresh across restart",
            || context.password_then_refresh(),
        );
        outcome.run(
            "django-oauth-toolkit: refresh_token grant, rotated across restart",
            || context.refresh_token_grant(),
        );
    }

    if context.dot.is_some() {
        outcome.run(
            "django-oauth-toolkit: refresh token from the environment, rotated, restart",
            || context.env_refresh_token_after_rotation(),
        );
    }

    outcome.run("authcfg log contains no secret", || {
        context.log_contains_no_secret()
    });
}
