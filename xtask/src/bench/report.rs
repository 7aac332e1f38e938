//! The benchmark's report: the machine, the load figures with their ratios
//! to the ceiling, and every target with its verdict, as Markdown tables.
//!
//! Every figure is the median over the rounds; the range (lowest to highest)
//! shows how noisy the rounds were.

use std::fmt::Write as _;
use std::time::Duration;

use super::{LoadResult, Results, Round};

/// Minimum ratio of cache-hit throughput to the ceiling's throughput.
const MIN_THROUGHPUT_RATIO: f64 = 0.75;

/// Largest ratio of cache-hit p99 latency to the ceiling's p99.
const MAX_P99_RATIO: f64 = 2.0;

/// Maximum time from the start of the process to ready.
const MAX_STARTUP: Duration = Duration::from_secs(1);

/// Largest resident memory when idle, in bytes (25 MB).
const MAX_RSS_IDLE: u64 = 25_000_000;

/// Largest resident memory with 100 000 cached tokens, in bytes (150 MB).
const MAX_RSS_CACHED: u64 = 150_000_000;

/// Number of cached tokens that [`MAX_RSS_CACHED`] is stated for.
const TARGET_CACHED_TOKENS: u64 = 100_000;

/// Picks the figures of one endpoint from a round.
type PickLoad = fn(&Round) -> LoadResult;

/// A description of the machine at one moment.
#[derive(Debug)]
pub(crate) struct Machine {
    date: String,
    cores: usize,
    memory: String,
    cpu: String,
    load_average: String,
}

impl Machine {
    /// Reads the date, the cores, the memory, the CPU model and the load
    /// average; a value that cannot be read is shown as `unknown`.
    pub(crate) fn describe() -> Self {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let field = |text: &str, name: &str| {
            text.lines()
                .find(|line| line.starts_with(name))
                .and_then(|line| line.split_once(':'))
                .map(|(_, value)| value.trim().to_owned())
                .unwrap_or_else(|| "unknown".to_owned())
        };

        let memory = field(&read("/proc/meminfo"), "MemTotal")
            .strip_suffix(" kB")
            .and_then(|kib| kib.trim().parse::<u64>().ok())
            .map_or_else(
                || "unknown".to_owned(),
                |kib| format!("{:.1} GiB", kib as f64 / 1024.0 / 1024.0),
            );
        let load_average = read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ");
        let date = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_else(|_| "unknown".to_owned());

        Self {
            date,
            cores: std::thread::available_parallelism().map_or(0, usize::from),
            memory,
            cpu: field(&read("/proc/cpuinfo"), "model name"),
            load_average,
        }
    }
}

/// Prints the report to standard output.
#[expect(
    clippy::print_stdout,
    reason = "the report is the output of this command"
)]
pub(crate) fn print(results: &Results) {
    print!("{}", render(results));
}

fn render(results: &Results) -> String {
    let options = &results.options;
    let rounds = &results.measured.rounds;
    let mut out = String::new();

    let machine = &results.machine_before;
    let _ = writeln!(out, "# authcfg benchmark");
    if *options != super::Options::FULL {
        let _ = writeln!(
            out,
            "\nThese settings differ from those of the full benchmark (`cargo xtask \
             bench` without options). The verdicts below show that the harness works; \
             they do not say whether authcfg meets its targets."
        );
    }
    let _ = writeln!(out, "\n## Machine and settings\n");
    let _ = writeln!(out, "- date: {}", machine.date);
    let _ = writeln!(
        out,
        "- machine: {} cores, {} memory, {}",
        machine.cores, machine.memory, machine.cpu
    );
    let _ = writeln!(
        out,
        "- load average (1, 5, 15 min): {} at the start, {} at the end",
        machine.load_average, results.machine_after.load_average
    );
    let _ = writeln!(out, "- source: `{}` (git describe)", results.source);
    let _ = writeln!(out, "- load generator: {}", results.oha_version);
    let _ = writeln!(
        out,
        "- {} rounds; load runs of {} s at {} connections; a {}-caller stampede; \
         {} cached tokens of {} bytes",
        options.runs,
        options.duration.as_secs(),
        options.connections,
        options.stampede,
        options.cached_tokens,
        options.token_bytes
    );

    let _ = writeln!(
        out,
        "\n## Load (median of {} rounds; range in brackets)\n",
        rounds.len()
    );
    let _ = writeln!(
        out,
        "| endpoint | req/s | req/s ÷ ceiling | p50 (ms) | p99 (ms) | p99 ÷ ceiling p99 | server CPU per request (µs) | CPU ÷ ceiling CPU |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    let endpoints: [(&str, PickLoad); 4] = [
        ("hello-world ceiling", |round| round.ceiling),
        ("`GET /healthz`", |round| round.healthz),
        ("cache-hit authorization, bearer", |round| round.bearer),
        ("cache-hit authorization, basic", |round| round.basic),
    ];
    for (name, pick) in endpoints {
        let column = |value: fn(&LoadResult) -> f64, scale: f64, decimals: usize| {
            summary(
                &rounds
                    .iter()
                    .map(|round| value(&pick(round)) * scale)
                    .collect::<Vec<_>>(),
                decimals,
            )
        };
        let ratio = |value: fn(&LoadResult) -> f64| {
            summary(
                &rounds
                    .iter()
                    .map(|round| value(&pick(round)) / value(&round.ceiling))
                    .collect::<Vec<_>>(),
                2,
            )
        };
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} | {} | {} | {} | {} |",
            column(|result| result.requests_per_sec, 1.0, 0),
            ratio(|result| result.requests_per_sec),
            column(|result| result.p50, 1000.0, 2),
            column(|result| result.p99, 1000.0, 2),
            ratio(|result| result.p99),
            column(|result| result.cpu_per_response, 1e6, 1),
            ratio(|result| result.cpu_per_response),
        );
    }

    let _ = writeln!(out, "\n## Targets\n");
    let _ = writeln!(out, "| figure | target | median | rounds | result |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for (name, pick) in [
        ("bearer", (|round: &Round| round.bearer) as PickLoad),
        ("basic", |round: &Round| round.basic),
    ] {
        let throughput: Vec<f64> = rounds
            .iter()
            .map(|round| pick(round).requests_per_sec / round.ceiling.requests_per_sec)
            .collect();
        target_row(
            &mut out,
            &format!("cache-hit {name} req/s ÷ ceiling req/s"),
            &format!("≥ {MIN_THROUGHPUT_RATIO}"),
            &throughput,
            2,
            |median| median >= MIN_THROUGHPUT_RATIO,
        );
        let latency: Vec<f64> = rounds
            .iter()
            .map(|round| pick(round).p99 / round.ceiling.p99)
            .collect();
        target_row(
            &mut out,
            &format!("cache-hit {name} p99 ÷ ceiling p99"),
            &format!("≤ {MAX_P99_RATIO}"),
            &latency,
            2,
            |median| median <= MAX_P99_RATIO,
        );
    }

    let stampede: Vec<f64> = rounds
        .iter()
        .map(|round| round.stampede_upstream as f64)
        .collect();
    target_row(
        &mut out,
        &format!(
            "token requests upstream for a {}-caller cold stampede",
            options.stampede
        ),
        "exactly 1 in every round",
        &stampede,
        0,
        |_| stampede.iter().all(|count| *count == 1.0),
    );
    let fresh: Vec<f64> = results
        .measured
        .startup_fresh
        .iter()
        .map(Duration::as_secs_f64)
        .collect();
    target_row(
        &mut out,
        "start-up to ready, fresh data directory (s)",
        "≤ 1 s",
        &fresh,
        3,
        |median| median <= MAX_STARTUP.as_secs_f64(),
    );
    let existing: Vec<f64> = rounds
        .iter()
        .map(|round| round.startup_existing.as_secs_f64())
        .collect();
    target_row(
        &mut out,
        "start-up to ready, existing data directory (s)",
        "≤ 1 s",
        &existing,
        3,
        |median| median <= MAX_STARTUP.as_secs_f64(),
    );
    let idle: Vec<f64> = rounds
        .iter()
        .map(|round| megabytes(round.rss_idle))
        .collect();
    target_row(
        &mut out,
        "resident memory idle (MB)",
        "≤ 25 MB",
        &idle,
        1,
        |median| median <= megabytes(MAX_RSS_IDLE),
    );
    let cache = &results.measured.cache;
    let cached_figure = format!("resident memory with {} cached tokens (MB)", cache.tokens);
    // The target is the memory of a server that keeps the tokens, read after
    // the fill's own short-lived allocations are returned.
    let cached_rss = megabytes(cache.rss_settled);
    // The target applies to a run that asked for 100 000 tokens, even when a
    // few data sources failed to fill and were skipped.
    if options.cached_tokens == TARGET_CACHED_TOKENS {
        target_row(
            &mut out,
            &cached_figure,
            "≤ 150 MB",
            &[cached_rss],
            1,
            |median| median <= megabytes(MAX_RSS_CACHED),
        );
    } else {
        row(
            &mut out,
            &cached_figure,
            &format!("≤ 150 MB at {TARGET_CACHED_TOKENS} tokens"),
            &[cached_rss],
            1,
            "not applicable",
        );
    }

    let _ = writeln!(out, "\n## Other readings\n");
    let _ = writeln!(
        out,
        "- token requests upstream during the cache-hit load runs: {} (every round)",
        join(
            &rounds
                .iter()
                .map(|round| round.upstream_during_load as f64)
                .collect::<Vec<_>>(),
            0
        )
    );
    let _ = writeln!(
        out,
        "- resident memory after the load runs: {} MB",
        summary(
            &rounds
                .iter()
                .map(|round| megabytes(round.rss_after_load))
                .collect::<Vec<_>>(),
            1
        )
    );
    let audit_dropped: Vec<String> = rounds
        .iter()
        .map(|round| {
            round
                .audit_dropped
                .map_or_else(|| "unknown".to_owned(), |count| count.to_string())
        })
        .collect();
    let _ = writeln!(
        out,
        "- audit events dropped by the server during each round (`authcfg_audit_events_dropped_total`): {}",
        audit_dropped.join(", ")
    );
    let shutdowns = &results.measured.shutdowns;
    let unclean = shutdowns.iter().filter(|shutdown| !shutdown.clean).count();
    let slowest = shutdowns
        .iter()
        .map(|shutdown| shutdown.elapsed.as_secs_f64())
        .fold(0.0, f64::max);
    let _ = writeln!(
        out,
        "- shutdowns on SIGTERM: {} of {} exited cleanly; the slowest took {slowest:.1} s",
        shutdowns.len() - unclean,
        shutdowns.len()
    );
    if cache.failures > 0 {
        let _ = writeln!(
            out,
            "- cache fill: {} data sources failed and were skipped; the first failure:\n\n```text\n{}\n```",
            cache.failures,
            cache.first_failure.as_deref().unwrap_or_default()
        );
    }
    let growth = cache.rss_settled.saturating_sub(cache.rss_before) as f64 / cache.tokens as f64;
    let _ = writeln!(
        out,
        "- cache fill: {} data sources created and authorized in {:.0} s, {} token requests \
         upstream, resident memory {:.1} MB before, {:.1} MB right after and {:.1} MB {} s \
         later ({growth:.0} bytes per cached token)",
        cache.tokens,
        cache.elapsed.as_secs_f64(),
        cache.upstream,
        megabytes(cache.rss_before),
        megabytes(cache.rss_after),
        megabytes(cache.rss_settled),
        super::SETTLE.as_secs()
    );
    out
}

/// Writes one row of the targets table.
fn target_row(
    out: &mut String,
    figure: &str,
    target: &str,
    values: &[f64],
    decimals: usize,
    met: impl Fn(f64) -> bool,
) {
    let verdict = if met(median(values)) {
        "met"
    } else {
        "**missed**"
    };
    row(out, figure, target, values, decimals, verdict);
}

/// Writes one row of the targets table with a given verdict.
fn row(
    out: &mut String,
    figure: &str,
    target: &str,
    values: &[f64],
    decimals: usize,
    verdict: &str,
) {
    let median = median(values);
    let _ = writeln!(
        out,
        "| {figure} | {target} | {median:.decimals$} | {} | {verdict} |",
        join(values, decimals)
    );
}

/// Formats the median and, for more than one value, the range.
fn summary(values: &[f64], decimals: usize) -> String {
    let median = median(values);
    if values.len() < 2 {
        return format!("{median:.decimals$}");
    }
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{median:.decimals$} ({low:.decimals$}–{high:.decimals$})")
}

/// Joins the values of the rounds with commas.
fn join(values: &[f64], decimals: usize) -> String {
    values
        .iter()
        .map(|value| format!("{value:.decimals$}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Returns the median; the mean of the two middle values for an even count.
fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => f64::NAN,
        length if length % 2 == 1 => sorted[length / 2],
        length => (sorted[length / 2 - 1] + sorted[length / 2]) / 2.0,
    }
}

fn megabytes(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        let cases: &[(&[f64], f64)] = &[
            (&[3.0], 3.0),
            (&[3.0, 1.0, 2.0], 2.0),
            (&[4.0, 1.0, 3.0, 2.0], 2.5),
        ];
        for (values, expected) in cases {
            assert_eq!(median(values), *expected, "values {values:?}");
        }
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn summary_shows_range_of_several_rounds() {
        assert_eq!(summary(&[2.0, 1.0, 3.0], 1), "2.0 (1.0–3.0)");
        assert_eq!(summary(&[2.0], 1), "2.0");
    }
}
