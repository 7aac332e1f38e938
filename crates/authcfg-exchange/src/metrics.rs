//! Counters of the token cache and a latency histogram of token requests.
//!
//! Everything is a relaxed atomic, so recording never blocks a caller. A
//! snapshot is shaped for Prometheus: cumulative bucket counts, a sum and a count.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in seconds. The implicit
/// last bucket is `+Inf`.
pub const LATENCY_BUCKETS_SECONDS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// The outcome of one token request, as counted in [`MetricsSnapshot::exchanges`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExchangeOutcome {
    /// A usable token arrived.
    Success,
    /// The endpoint rejected the request for good (an error such as
    /// `invalid_client`, or a 4xx status).
    Rejected,
    /// The endpoint was temporarily unavailable (5xx, 429, `temporarily_unavailable`).
    Unavailable,
    /// The request timed out.
    Timeout,
    /// The connection failed.
    Transport,
    /// The response could not be used: malformed, too large, a redirect or an
    /// unsupported token type.
    InvalidResponse,
    /// The token arrived but persisting the new refresh token failed.
    PersistFailed,
}

impl ExchangeOutcome {
    /// Every outcome, in the order of [`MetricsSnapshot::exchanges`].
    pub const ALL: [ExchangeOutcome; 7] = [
        ExchangeOutcome::Success,
        ExchangeOutcome::Rejected,
        ExchangeOutcome::Unavailable,
        ExchangeOutcome::Timeout,
        ExchangeOutcome::Transport,
        ExchangeOutcome::InvalidResponse,
        ExchangeOutcome::PersistFailed,
    ];

    /// Returns the label value, such as `success`.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeOutcome::Success => "success",
            ExchangeOutcome::Rejected => "rejected",
            ExchangeOutcome::Unavailable => "unavailable",
            ExchangeOutcome::Timeout => "timeout",
            ExchangeOutcome::Transport => "transport",
            ExchangeOutcome::InvalidResponse => "invalid_response",
            ExchangeOutcome::PersistFailed => "persist_failed",
        }
    }

    fn index(self) -> usize {
        match self {
            ExchangeOutcome::Success => 0,
            ExchangeOutcome::Rejected => 1,
            ExchangeOutcome::Unavailable => 2,
            ExchangeOutcome::Timeout => 3,
            ExchangeOutcome::Transport => 4,
            ExchangeOutcome::InvalidResponse => 5,
            ExchangeOutcome::PersistFailed => 6,
        }
    }
}

/// A point-in-time copy of the exchange counters.
///
/// The three call counters count [`Exchange::authorize`](crate::Exchange::authorize)
/// calls, each call once, by its first decision, so `cache_hits +
/// cache_misses + backoff_rejections` is the number of calls made. Token
/// requests are counted apart, in `exchanges`: 100 callers of a cold key are
/// 100 misses and one token request.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsSnapshot {
    /// Calls served from the cache at once, without waiting and without a
    /// token request. With a back-off in progress, a call served with a
    /// still-valid cached token is a hit.
    pub cache_hits: u64,
    /// Calls that found no cached token they could use, and so sent a token
    /// request or waited for the one in flight. This includes calls with
    /// `force_refresh`, the caller that refreshes a token ahead of expiry
    /// (even when it falls back to the still-valid token), and calls whose
    /// loader or token request failed.
    pub cache_misses: u64,
    /// Calls that failed at once with [`Error::BackingOff`](crate::Error::BackingOff)
    /// because the data source was backing off and no cached token was usable.
    pub backoff_rejections: u64,
    /// Token requests sent, per outcome, in the order of [`ExchangeOutcome::ALL`].
    /// A `password` data source whose stored refresh token is rejected sends
    /// two in one call. Requests of [`Exchange::test`](crate::Exchange::test)
    /// are included; a Basic header sends none.
    pub exchanges: Vec<(ExchangeOutcome, u64)>,
    /// Latency of token requests, from sending to the parsed response or the
    /// failure, whatever the outcome. Its count equals the sum of `exchanges`.
    pub latency: HistogramSnapshot,
}

impl MetricsSnapshot {
    /// Returns the number of token requests with `outcome`.
    pub fn exchanges_with(&self, outcome: ExchangeOutcome) -> u64 {
        self.exchanges
            .iter()
            .find(|(candidate, _)| *candidate == outcome)
            .map_or(0, |(_, count)| *count)
    }

    /// Returns the number of token requests sent, whatever their outcome.
    pub fn exchanges_total(&self) -> u64 {
        self.exchanges.iter().map(|(_, count)| count).sum()
    }
}

/// A latency histogram in the Prometheus shape.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(upper bound in seconds, observations at or below it)`, cumulative and
    /// ascending; the `+Inf` bucket equals [`HistogramSnapshot::count`].
    pub buckets: Vec<(f64, u64)>,
    /// Sum of all observations, in seconds.
    pub sum_seconds: f64,
    /// Number of observations.
    pub count: u64,
}

/// The live counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    hits: AtomicU64,
    misses: AtomicU64,
    backoff_rejections: AtomicU64,
    exchanges: [AtomicU64; 7],
    buckets: [AtomicU64; LATENCY_BUCKETS_SECONDS.len()],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Metrics {
    pub(crate) fn record_hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_backoff_rejection(&self) {
        self.backoff_rejections.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_exchange(&self, outcome: ExchangeOutcome, latency: Duration) {
        self.exchanges[outcome.index()].fetch_add(1, Ordering::Relaxed);

        let seconds = latency.as_secs_f64();
        if let Some(bucket) = LATENCY_BUCKETS_SECONDS
            .iter()
            .position(|bound| seconds <= *bound)
        {
            self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let mut cumulative = 0;
        let buckets = LATENCY_BUCKETS_SECONDS
            .iter()
            .zip(&self.buckets)
            .map(|(bound, count)| {
                cumulative += count.load(Ordering::Relaxed);
                (*bound, cumulative)
            })
            .collect();

        MetricsSnapshot {
            cache_hits: self.hits.load(Ordering::Relaxed),
            cache_misses: self.misses.load(Ordering::Relaxed),
            backoff_rejections: self.backoff_rejections.load(Ordering::Relaxed),
            exchanges: ExchangeOutcome::ALL
                .iter()
                .map(|outcome| {
                    (
                        *outcome,
                        self.exchanges[outcome.index()].load(Ordering::Relaxed),
                    )
                })
                .collect(),
            latency: HistogramSnapshot {
                buckets,
                sum_seconds: self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
                count: self.count.load(Ordering::Relaxed),
            },
        }
    }
}
