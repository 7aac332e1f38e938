//! A small blocking HTTP client for the interop suite, built on `ureq`.
//!
//! Every status code is returned as a [`Response`] rather than an error, because
//! the scenarios assert on error statuses as much as on successes. Only a
//! transport failure (connection refused, time-out) is an error.

use std::time::Duration;

use anyhow::Context;
use base64::Engine as _;
use serde_json::Value;

/// Time limit of one request, longer than authcfg's token request time-out.
const REQUEST_LIMIT: Duration = Duration::from_secs(30);

/// A response with its body read.
#[derive(Debug)]
pub(crate) struct Response {
    /// The HTTP status code.
    pub(crate) status: u16,
    /// The `Content-Type` header, empty when absent.
    pub(crate) content_type: String,
    /// The body as text.
    pub(crate) body: String,
}

impl Response {
    /// Parses the body as JSON.
    pub(crate) fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_str(&self.body).with_context(|| {
            format!(
                "the response body is not JSON (status {}): {:?}",
                self.status, self.body
            )
        })
    }
}

/// A client for one run.
pub(crate) struct Client {
    agent: ureq::Agent,
}

impl Client {
    /// Creates a client that never follows redirects.
    pub(crate) fn new() -> Self {
        let agent = ureq::AgentBuilder::new()
            .timeout(REQUEST_LIMIT)
            .redirects(0)
            .build();
        Self { agent }
    }

    /// Sends `method url` with an optional bearer token and JSON body.
    pub(crate) fn send(
        &self,
        method: &str,
        url: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<Response> {
        let mut request = self.agent.request(method, url);
        if let Some(token) = bearer {
            request = request.set("Authorization", &format!("Bearer {token}"));
        }
        let result = match body {
            Some(body) => request.send_json(body),
            None => request.call(),
        };
        read(result).with_context(|| format!("{method} {url} failed"))
    }

    /// Sends a token request: `form` as `application/x-www-form-urlencoded`,
    /// with `basic` as HTTP Basic client authentication when given.
    pub(crate) fn post_form(
        &self,
        url: &str,
        basic: Option<(&str, &str)>,
        form: &[(&str, &str)],
    ) -> anyhow::Result<Response> {
        let mut request = self.agent.post(url);
        if let Some((user, password)) = basic {
            // RFC 6749 section 2.3.1 form-encodes both parts first; the test
            // ids and secrets are URL-safe, so the encoding leaves them as they are.
            let credentials =
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
            request = request.set("Authorization", &format!("Basic {credentials}"));
        }
        read(request.send_form(form)).with_context(|| format!("POST {url} failed"))
    }
}

fn read(result: Result<ureq::Response, ureq::Error>) -> anyhow::Result<Response> {
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(error) => return Err(error.into()),
    };
    let status = response.status();
    let content_type = response
        .header("Content-Type")
        .unwrap_or_default()
        .to_owned();
    let body = response
        .into_string()
        .context("failed to read the response body")?;
    Ok(Response {
        status,
        content_type,
        body,
    })
}
