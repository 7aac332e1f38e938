//! Turns an auth config and credentials into a ready `Authorization` header.
//!
//! `basic` is a pure computation (RFC 7617). `bearer` sends an OAuth 2.0 token
//! request (RFC 6749) and caches the access token per data source, with a
//! single request in flight per cold key, refresh ahead of expiry, back-off
//! after failures and persisted refresh token rotation. The crate sends HTTP
//! but does no SQL: credentials come from a caller-supplied loader and new
//! refresh tokens leave through a [`RefreshTokenSink`].
//!
//! ```
//! use std::sync::Arc;
//! use authcfg_exchange::{basic_header, NoRotation, Exchange, ExchangeConfig};
//!
//! let header = basic_header("apikey", "");
//! assert_eq!(header.expose_secret(), "Basic YXBpa2V5Og==");
//! let exchange = Exchange::new(ExchangeConfig::default(), Arc::new(NoRotation)).unwrap();
//! assert_eq!(exchange.metrics().cache_hits, 0);
//! ```

mod basic;
mod cache;
mod clock;
mod config;
mod error;
mod exchange;
mod http;
mod metrics;
mod request;
mod response;
mod sink;
mod types;

pub use basic::basic_header;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::ExchangeConfig;
pub use error::{BoxError, Error, SharedError};
pub use exchange::Exchange;
pub use metrics::{ExchangeOutcome, HistogramSnapshot, MetricsSnapshot, LATENCY_BUCKETS_SECONDS};
pub use sink::{NoRotation, RefreshTokenSink};
pub use types::{Authorization, AuthorizeRequest, Diagnostics, LoadedCredentials, TestRequest};
