//! schemathesis against the running service's `/openapi.json`.
//!
//! schemathesis generates requests for every operation of the OpenAPI
//! document and sends them with an admin token. It checks that no response is
//! a server error, that every status code is documented for its operation, and
//! that every body matches its documented schema.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use super::authcfg::Authcfg;
use super::process::{log_tail, run_bounded};

/// The checks that schemathesis runs on every response.
const CHECKS: &str = "not_a_server_error,status_code_conformance,response_schema_conformance";

/// Fewest generated test cases that a run must reach.
pub(crate) const MIN_CASES: u64 = 1000;

/// Options of a schemathesis run.
pub(crate) struct FuzzOptions {
    /// Test cases per operation and phase (`--max-examples`).
    pub(crate) max_examples: u32,
    /// Time limit of the run; schemathesis is killed after it.
    pub(crate) limit: Duration,
    /// The random seed, for a run that can be repeated.
    pub(crate) seed: u64,
}

/// Runs schemathesis against `authcfg` and fails on any failed check, or when
/// it generated fewer than [`MIN_CASES`] test cases.
pub(crate) fn run(
    schemathesis: &Path,
    authcfg: &Authcfg,
    work: &Path,
    options: &FuzzOptions,
) -> anyhow::Result<()> {
    let log = work.join("schemathesis.log");
    let reports = work.join("schemathesis-report");
    let mut command = Command::new(schemathesis);
    command
        .arg("run")
        .arg(format!("{}/openapi.json", authcfg.base_url()))
        .arg("--header")
        .arg(format!("Authorization: Bearer {}", authcfg.admin_token()?))
        .arg("--checks")
        .arg(CHECKS)
        .arg("--max-examples")
        .arg(options.max_examples.to_string())
        .arg("--seed")
        .arg(options.seed.to_string())
        .arg("--workers")
        .arg("2")
        .arg("--request-timeout")
        .arg("10")
        .arg("--report")
        .arg("junit")
        .arg("--report-dir")
        .arg(&reports)
        .current_dir(work)
        // Colour codes would make the log hard to read and to parse.
        .env("NO_COLOR", "1")
        .env("COLUMNS", "120");

    let result = run_bounded("schemathesis", command, &log, options.limit);
    let summary = log_tail(&log, 40);
    result.with_context(|| {
        format!(
            "schemathesis found problems (full log: {:?})",
            log.display()
        )
    })?;

    let cases = generated_cases(&std::fs::read_to_string(&log).unwrap_or_default())
        .with_context(|| format!("no test case count in the schemathesis output:\n{summary}"))?;
    super::say(&format!(
        "        schemathesis generated {cases} test cases"
    ));
    anyhow::ensure!(
        cases >= MIN_CASES,
        "schemathesis generated {cases} test cases, fewer than {MIN_CASES}: raise --fuzz-examples"
    );
    Ok(())
}

/// Returns the number of generated test cases from schemathesis' summary,
/// which has a line such as `Test cases:  1234 generated, 1234 passed`, or
/// puts the counts on the line after `Test cases:` when the terminal is narrow.
fn generated_cases(output: &str) -> Option<u64> {
    let lines: Vec<&str> = output.lines().collect();
    lines.iter().enumerate().rev().find_map(|(index, line)| {
        let rest = line.trim().strip_prefix("Test cases:")?;
        let counts = if rest.trim().is_empty() {
            lines.get(index + 1)?
        } else {
            rest
        };
        counts.split_whitespace().next()?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_cases_from_summary() {
        let output = "API Operations:  13 selected, 13 tested\nTest cases:  1234 generated, 1230 passed, 4 skipped\n";
        assert_eq!(generated_cases(output), Some(1234));
        assert_eq!(
            generated_cases("Test cases:\n  1969 generated, 1969 passed\n"),
            Some(1969)
        );
        assert_eq!(generated_cases("no summary"), None);
        assert_eq!(generated_cases("Test cases:"), None);
    }
}
