//! Prometheus metrics: HTTP requests by route and status, and the exchange's
//! cache and token request counters, rendered in the text exposition format.
//!
//! Counting a request takes a read lock and one relaxed atomic add. The write
//! lock is taken only the first time a route is seen. Routes are the patterns
//! of the router (or `unmatched`), so the label set stays bounded.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};

use authcfg_exchange::MetricsSnapshot;

/// Lowest HTTP status that is counted.
const FIRST_STATUS: u16 = 100;
/// Number of distinct statuses counted per route (100 to 599).
const STATUS_SLOTS: usize = 500;

type StatusCounters = Box<[AtomicU64; STATUS_SLOTS]>;

/// Request counters by route pattern and status.
#[derive(Default)]
pub struct HttpMetrics {
    routes: RwLock<HashMap<String, StatusCounters>>,
}

impl std::fmt::Debug for HttpMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpMetrics").finish_non_exhaustive()
    }
}

impl HttpMetrics {
    /// Counts one response.
    pub fn record(&self, route: &str, status: u16) {
        let Some(slot) = status
            .checked_sub(FIRST_STATUS)
            .map(usize::from)
            .filter(|slot| *slot < STATUS_SLOTS)
        else {
            return;
        };

        {
            let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(counters) = routes.get(route) {
                counters[slot].fetch_add(1, Ordering::Relaxed);
                return;
            }
        }

        let mut routes = self.routes.write().unwrap_or_else(PoisonError::into_inner);
        let counters = routes
            .entry(route.to_owned())
            .or_insert_with(|| Box::new(std::array::from_fn(|_| AtomicU64::new(0))));
        counters[slot].fetch_add(1, Ordering::Relaxed);
    }

    /// Returns `(route, status, count)` for every non-zero counter, sorted.
    pub fn counts(&self) -> Vec<(String, u16, u64)> {
        let routes = self.routes.read().unwrap_or_else(PoisonError::into_inner);
        let mut counts = Vec::new();
        for (route, counters) in routes.iter() {
            for (slot, counter) in counters.iter().enumerate() {
                let count = counter.load(Ordering::Relaxed);
                if count > 0 {
                    let status = FIRST_STATUS + u16::try_from(slot).unwrap_or(0);
                    counts.push((route.clone(), status, count));
                }
            }
        }
        counts.sort();
        counts
    }
}

/// Renders every metric in the Prometheus text exposition format (version 0.0.4).
pub fn render(http: &HttpMetrics, exchange: &MetricsSnapshot, audit_dropped: u64) -> String {
    let mut out = String::new();

    // Writing to a String cannot fail, so the fmt::Results are ignored.
    let _ = writeln!(
        out,
        "# HELP authcfg_http_requests_total HTTP requests by route pattern and status."
    );
    let _ = writeln!(out, "# TYPE authcfg_http_requests_total counter");
    for (route, status, count) in http.counts() {
        let _ = writeln!(
            out,
            "authcfg_http_requests_total{{route=\"{}\",status=\"{status}\"}} {count}",
            escape_label(&route)
        );
    }

    let _ = writeln!(
        out,
        "# HELP authcfg_token_cache_hits_total Authorization requests answered from the token cache."
    );
    let _ = writeln!(out, "# TYPE authcfg_token_cache_hits_total counter");
    let _ = writeln!(
        out,
        "authcfg_token_cache_hits_total {}",
        exchange.cache_hits
    );
    let _ = writeln!(
        out,
        "# HELP authcfg_token_cache_misses_total Authorization requests that needed a token request."
    );
    let _ = writeln!(out, "# TYPE authcfg_token_cache_misses_total counter");
    let _ = writeln!(
        out,
        "authcfg_token_cache_misses_total {}",
        exchange.cache_misses
    );
    let _ = writeln!(
        out,
        "# HELP authcfg_token_backoff_rejections_total Authorization requests rejected while a data source backs off."
    );
    let _ = writeln!(out, "# TYPE authcfg_token_backoff_rejections_total counter");
    let _ = writeln!(
        out,
        "authcfg_token_backoff_rejections_total {}",
        exchange.backoff_rejections
    );

    let _ = writeln!(
        out,
        "# HELP authcfg_token_exchanges_total Token requests sent, by outcome."
    );
    let _ = writeln!(out, "# TYPE authcfg_token_exchanges_total counter");
    for (outcome, count) in &exchange.exchanges {
        let _ = writeln!(
            out,
            "authcfg_token_exchanges_total{{outcome=\"{}\"}} {count}",
            outcome.as_str()
        );
    }

    let _ = writeln!(
        out,
        "# HELP authcfg_token_exchange_duration_seconds Latency of token requests."
    );
    let _ = writeln!(
        out,
        "# TYPE authcfg_token_exchange_duration_seconds histogram"
    );
    for (bound, count) in &exchange.latency.buckets {
        let bound = if bound.is_infinite() {
            "+Inf".to_owned()
        } else {
            bound.to_string()
        };
        let _ = writeln!(
            out,
            "authcfg_token_exchange_duration_seconds_bucket{{le=\"{bound}\"}} {count}"
        );
    }
    if !exchange
        .latency
        .buckets
        .last()
        .is_some_and(|(bound, _)| bound.is_infinite())
    {
        let _ = writeln!(
            out,
            "authcfg_token_exchange_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            exchange.latency.count
        );
    }
    let _ = writeln!(
        out,
        "authcfg_token_exchange_duration_seconds_sum {}",
        exchange.latency.sum_seconds
    );
    let _ = writeln!(
        out,
        "authcfg_token_exchange_duration_seconds_count {}",
        exchange.latency.count
    );

    let _ = writeln!(
        out,
        "# HELP authcfg_audit_events_dropped_total Audit events lost because the audit queue was full or the write failed."
    );
    let _ = writeln!(out, "# TYPE authcfg_audit_events_dropped_total counter");
    let _ = writeln!(out, "authcfg_audit_events_dropped_total {audit_dropped}");

    out
}

/// Escapes a label value: backslash, double quote and newline.
fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    use authcfg_exchange::{ExchangeOutcome, HistogramSnapshot};

    #[test]
    fn record_counts_by_route_and_status() {
        let metrics = HttpMetrics::default();

        metrics.record("/healthz", 200);
        metrics.record("/healthz", 200);
        metrics.record("/v1/datasources/{name}", 404);
        metrics.record("/healthz", 42);

        assert_eq!(
            metrics.counts(),
            vec![
                ("/healthz".to_owned(), 200, 2),
                ("/v1/datasources/{name}".to_owned(), 404, 1),
            ]
        );
    }

    #[test]
    fn render_has_every_family() {
        let metrics = HttpMetrics::default();
        metrics.record("/healthz", 200);
        let snapshot = MetricsSnapshot {
            cache_hits: 5,
            cache_misses: 2,
            backoff_rejections: 0,
            exchanges: vec![(ExchangeOutcome::Success, 2)],
            latency: HistogramSnapshot {
                buckets: vec![(0.1, 2)],
                sum_seconds: 0.05,
                count: 2,
            },
        };

        let text = render(&metrics, &snapshot, 0);

        assert!(text.contains("authcfg_http_requests_total{route=\"/healthz\",status=\"200\"} 1"));
        assert!(text.contains("authcfg_token_cache_hits_total 5"));
        assert!(text.contains("authcfg_token_cache_misses_total 2"));
        assert!(text.contains("authcfg_token_exchanges_total{outcome=\"success\"} 2"));
        assert!(text.contains("authcfg_token_exchange_duration_seconds_bucket{le=\"0.1\"} 2"));
        assert!(text.contains("authcfg_token_exchange_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("authcfg_token_exchange_duration_seconds_count 2"));
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape_label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
