//! Sending the token request with reqwest and reading a size-capped response.
//!
//! Redirects are never followed: the client is built with no redirect policy,
//! and a 3xx response becomes [`Error::Redirect`], because following it would
//! resend the credentials to wherever it points.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use time::OffsetDateTime;
use zeroize::Zeroize;

use crate::request::TokenRequest;
use crate::response::scrub;
use crate::{Error, ExchangeConfig};

/// A response as received, with its body read.
pub(crate) struct HttpResponse {
    pub(crate) status: u16,
    pub(crate) content_type: Option<String>,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) body: Vec<u8>,
}

impl Drop for HttpResponse {
    fn drop(&mut self) {
        // The body contains the access and refresh tokens.
        self.body.zeroize();
    }
}

/// Builds the HTTP client: rustls, connect and total timeouts, no redirects.
pub(crate) fn build_client(config: &ExchangeConfig) -> Result<reqwest::Client, Error> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout)
        .user_agent(config.user_agent.clone());
    if !config.proxy_from_env {
        builder = builder.no_proxy();
    }
    builder
        .build()
        .map_err(|error| Error::Client(error.to_string()))
}

/// Sends `request` and reads the response, at most `max_response_bytes` of body.
pub(crate) async fn send(
    client: &reqwest::Client,
    config: &ExchangeConfig,
    request: &TokenRequest,
) -> Result<HttpResponse, Error> {
    let mut builder = client
        .post(&request.url)
        .header(ACCEPT, "application/json")
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(request.body.expose_secret().to_owned());
    if let Some(authorization) = &request.authorization {
        let mut value = HeaderValue::from_str(authorization.expose_secret()).map_err(|_| {
            Error::InvalidConfig {
                reason: "the client id or secret cannot be sent in an Authorization header"
                    .to_owned(),
            }
        })?;
        value.set_sensitive(true);
        builder = builder.header(AUTHORIZATION, value);
    }

    let mut response = builder
        .send()
        .await
        .map_err(|error| map_error(error, config))?;

    let status = response.status().as_u16();
    let headers = response.headers();
    if response.status().is_redirection() {
        let location = headers
            .get(LOCATION)
            .map(|value| scrub(&String::from_utf8_lossy(value.as_bytes()), &request.secrets));
        return Err(Error::Redirect { status, location });
    }
    let content_type = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(parse_retry_after);

    let too_large = || {
        Error::InvalidResponse {
        reason: format!(
            "the response body is larger than {} bytes: check token_url, or raise max_response_bytes",
            config.max_response_bytes
        ),
        status: Some(status),
    }
    };
    if response
        .content_length()
        .is_some_and(|length| length > config.max_response_bytes as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| map_error(error, config))?
    {
        if body.len() + chunk.len() > config.max_response_bytes {
            body.zeroize();
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }

    Ok(HttpResponse {
        status,
        content_type,
        retry_after,
        body,
    })
}

/// Maps a reqwest error to a timeout or transport error, with the cause chain
/// in the message. The URL stays in the message: a token URL contains no secret,
/// because validation rejects user info in it.
fn map_error(error: reqwest::Error, config: &ExchangeConfig) -> Error {
    if error.is_timeout() {
        let after = if error.is_connect() {
            config.connect_timeout
        } else {
            config.request_timeout
        };
        return Error::Timeout { after };
    }

    let mut message = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    // Connection setup can also time out below reqwest (for example in the TLS
    // handshake); such an error names it in its chain.
    if message.contains("timed out") {
        return Error::Timeout {
            after: config.connect_timeout,
        };
    }
    Error::Transport {
        message,
        source: Some(Arc::new(error)),
    }
}

/// Parses `Retry-After` as delay seconds or an HTTP date (RFC 9110 section 10.2.3).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let delay = date - OffsetDateTime::now_utc();
    Some(Duration::try_from(delay).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("120"), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }
}
