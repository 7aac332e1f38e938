//! Tunables of the token exchange: timeouts, size caps, lifetimes and back-off.

use std::time::Duration;

use crate::Error;

/// Settings of an [`Exchange`](crate::Exchange). `Default` gives values that
/// suit a broker in front of typical OAuth providers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeConfig {
    /// Maximum time to establish a connection to the token endpoint.
    pub connect_timeout: Duration,
    /// Maximum time for a whole token request, from connect to the last body byte.
    pub request_timeout: Duration,
    /// Largest accepted token response body, in bytes; a larger one is an
    /// invalid response.
    pub max_response_bytes: usize,
    /// Safety margin against clock skew and request latency: a token counts as
    /// expired this long before its `expires_in` ends (at most half of its
    /// lifetime), and it is refreshed ahead once less than
    /// `max(refresh_margin, 25 % of its lifetime)` remains.
    pub refresh_margin: Duration,
    /// Lifetime assumed for a token whose response has no `expires_in`. Such
    /// an [`Authorization`](crate::Authorization) is marked `lifetime_assumed`.
    pub default_lifetime: Duration,
    /// Back-off after the first failed token request of a data source; it
    /// doubles with each further failure, with random jitter.
    pub backoff_initial: Duration,
    /// Maximum back-off computed from failures. A longer `Retry-After` from the
    /// endpoint is honoured up to [`ExchangeConfig::max_retry_after`].
    pub backoff_max: Duration,
    /// Maximum `Retry-After` that is honoured.
    pub max_retry_after: Duration,
    /// `User-Agent` header of token requests.
    pub user_agent: String,
    /// Whether token requests use the proxy named by the `HTTPS_PROXY`,
    /// `HTTP_PROXY` and `NO_PROXY` environment variables.
    pub proxy_from_env: bool,
}

impl ExchangeConfig {
    /// Checks that every value is in range.
    ///
    /// # Errors
    ///
    /// Returns [`Error::InvalidSettings`] for a zero timeout, a zero response
    /// size cap, or a `backoff_initial` above `backoff_max`.
    pub fn validate(&self) -> Result<(), Error> {
        let invalid = |reason: &str| {
            Err(Error::InvalidSettings {
                reason: reason.to_owned(),
            })
        };
        if self.connect_timeout.is_zero() {
            return invalid("connect_timeout is 0: set it above 0, such as 5 s");
        }
        if self.request_timeout.is_zero() {
            return invalid("request_timeout is 0: set it above 0, such as 15 s");
        }
        if self.max_response_bytes == 0 {
            return invalid("max_response_bytes is 0: set it above 0, such as 65536");
        }
        if self.backoff_initial > self.backoff_max {
            return invalid(
                "backoff_initial is above backoff_max: lower backoff_initial or raise backoff_max",
            );
        }
        Ok(())
    }
}

impl Default for ExchangeConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            max_response_bytes: 64 * 1024,
            refresh_margin: Duration::from_secs(30),
            default_lifetime: Duration::from_secs(600),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(120),
            max_retry_after: Duration::from_secs(3600),
            user_agent: concat!("authcfg/", env!("CARGO_PKG_VERSION")).to_owned(),
            proxy_from_env: true,
        }
    }
}
