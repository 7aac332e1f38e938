//! Load runs with `oha`: the command line of one run and the figures read
//! from its JSON summary.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use super::process::{self, Process};

/// One endpoint under load.
pub(crate) struct Target {
    /// Short name of the endpoint in the report, such as `bearer`.
    pub(crate) name: &'static str,
    /// `GET` or `POST`.
    pub(crate) method: &'static str,
    /// The full URL, always on 127.0.0.1.
    pub(crate) url: String,
    /// API token sent as `Authorization: Bearer`, if any.
    pub(crate) token: Option<String>,
    /// JSON request body, if any.
    pub(crate) body: Option<&'static str>,
    /// Process id of the server, whose CPU time the run measures.
    pub(crate) server_pid: u32,
}

/// How much load one run sends.
#[derive(Clone, Copy)]
pub(crate) enum Amount {
    /// As many requests as the connections manage for this long.
    For(Duration),
    /// Exactly this many requests.
    Requests(u64),
}

/// The figures of one run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LoadResult {
    /// Successful requests per second.
    pub(crate) requests_per_sec: f64,
    /// Median latency, in seconds.
    pub(crate) p50: f64,
    /// 99th percentile latency, in seconds.
    pub(crate) p99: f64,
    /// Number of responses received.
    pub(crate) responses: u64,
    /// CPU time (user and system) the server spent per response, in
    /// seconds. Unlike throughput, it barely depends on what else runs on
    /// the machine.
    pub(crate) cpu_per_response: f64,
}

/// The part of `oha --output-format json` that the benchmark reads.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OhaSummary {
    summary: OhaTotals,
    latency_percentiles: OhaPercentiles,
    #[serde(default)]
    status_code_distribution: BTreeMap<String, u64>,
    #[serde(default)]
    error_distribution: BTreeMap<String, u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OhaTotals {
    requests_per_sec: f64,
}

#[derive(Deserialize)]
struct OhaPercentiles {
    p50: Option<f64>,
    p99: Option<f64>,
}

/// Runs `oha` against `target` with `connections` connections and returns
/// its figures.
///
/// # Errors
///
/// Fails when `oha` fails, or when any response has a status other than 200
/// or any request fails, because the figures of such a run do not measure the
/// path they are named after.
pub(crate) fn run(
    oha: &Path,
    target: &Target,
    amount: Amount,
    connections: u64,
    scratch: &Path,
) -> anyhow::Result<LoadResult> {
    let mut command = Command::new(oha);
    command.args(["--no-tui", "--output-format", "json", "-c"]);
    command.arg(connections.to_string());
    match amount {
        Amount::For(duration) => {
            // Requests still in flight at the deadline are waited for rather
            // than counted as errors.
            command
                .arg("-z")
                .arg(format!("{}s", duration.as_secs()))
                .arg("--wait-ongoing-requests-after-deadline");
        }
        Amount::Requests(count) => {
            command.arg("-n").arg(count.to_string());
        }
    }
    command.args(["-m", target.method]);
    if let Some(token) = &target.token {
        command
            .arg("-H")
            .arg(format!("authorization: Bearer {token}"));
    }
    if let Some(body) = target.body {
        command.args(["-T", "application/json", "-d", body]);
    }
    command.arg(&target.url);

    let output = scratch.join(format!("oha-{}.json", target.name));
    let log = scratch.join(format!("oha-{}.log", target.name));
    let _ = std::fs::remove_file(&output);
    let limit = match amount {
        Amount::For(duration) => duration + Duration::from_secs(120),
        Amount::Requests(_) => Duration::from_secs(300),
    };
    let cpu_before = process::cpu_time(target.server_pid)?;
    let status =
        Process::spawn(&format!("oha ({})", target.name), command, &output, &log)?.wait(limit)?;
    let cpu = process::cpu_time(target.server_pid)?.saturating_sub(cpu_before);
    anyhow::ensure!(
        status.success(),
        "oha ({}) failed with {status}: {}",
        target.name,
        process::log_tail(&log, 20)
    );

    let text = std::fs::read_to_string(&output)
        .with_context(|| format!("failed to read {:?}", output.display()))?;
    let mut result = parse(target.name, &text)?;
    result.cpu_per_response = cpu.as_secs_f64() / result.responses as f64;
    Ok(result)
}

/// Reads the figures of one run from `oha`'s JSON summary, and checks that
/// every request succeeded with 200.
fn parse(name: &str, text: &str) -> anyhow::Result<LoadResult> {
    let summary: OhaSummary = serde_json::from_str(text)
        .with_context(|| format!("oha ({name}) printed a summary that is not the expected JSON"))?;

    let other_statuses: Vec<String> = summary
        .status_code_distribution
        .iter()
        .filter(|(status, _)| status.as_str() != "200")
        .map(|(status, count)| format!("{count} × {status}"))
        .collect();
    anyhow::ensure!(
        other_statuses.is_empty(),
        "{name}: responses other than 200: {}",
        other_statuses.join(", ")
    );
    let errors: Vec<String> = summary
        .error_distribution
        .iter()
        .map(|(error, count)| format!("{count} × {error}"))
        .collect();
    anyhow::ensure!(
        errors.is_empty(),
        "{name}: failed requests: {}",
        errors.join(", ")
    );

    let responses = summary.status_code_distribution.values().sum();
    anyhow::ensure!(responses > 0, "{name}: no response at all");
    Ok(LoadResult {
        requests_per_sec: summary.summary.requests_per_sec,
        p50: summary.latency_percentiles.p50.unwrap_or(f64::NAN),
        p99: summary.latency_percentiles.p99.unwrap_or(f64::NAN),
        responses,
        cpu_per_response: f64::NAN,
    })
}
