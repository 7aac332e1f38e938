//! schemathesis against the running service's `/openapi.json`.
//!
//! schemathesis generates requests for every operation of the OpenAPI
//! document and sends them with an admin token. It checks that no response is
//! a server error, that every status code is documented for its operation, and
//! that every body matches its documented schema.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

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
///
/// A run whose only problems are schemathesis' own internal errors is
/// repeated once. schemathesis reports them as "Runtime Error", and no
/// response of authcfg causes them. The first run's details are printed.
pub(crate) fn run(
    schemathesis: &Path,
    authcfg: &Authcfg,
    work: &Path,
    options: &FuzzOptions,
) -> anyhow::Result<()> {
    let first = run_once(schemathesis, authcfg, work, options, "schemathesis");
    let Err(Failure {
        internal_only: true,
        error,
    }) = first
    else {
        return first.map_err(|failure| failure.error);
    };
    super::say(&format!(
        "        schemathesis stopped on an internal error of its own, not on a response of authcfg; running it once more. Its report:\n{error:#}"
    ));
    run_once(schemathesis, authcfg, work, options, "schemathesis-again")
        .map_err(|failure| failure.error)
}

/// A failed schemathesis run.
struct Failure {
    /// True when the run reported errors of schemathesis itself and nothing else.
    internal_only: bool,
    /// The error, with the failures, the errors and the summary of the log.
    error: anyhow::Error,
}

fn run_once(
    schemathesis: &Path,
    authcfg: &Authcfg,
    work: &Path,
    options: &FuzzOptions,
    name: &str,
) -> Result<(), Failure> {
    let log = work.join(format!("{name}.log"));
    let reports = work.join(format!("{name}-report"));
    let admin_token = authcfg.admin_token().map_err(|error| Failure {
        internal_only: false,
        error,
    })?;
    let mut command = Command::new(schemathesis);
    command
        .arg("run")
        .arg(format!("{}/openapi.json", authcfg.base_url()))
        .arg("--header")
        .arg(format!("Authorization: Bearer {admin_token}"))
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
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    if let Err(error) = result {
        // The sections come first and the summary last, so that the end of
        // the output shows what failed and why.
        let mut report = String::new();
        for title in ["FAILURES", "ERRORS"] {
            if let Some(section) = section(&text, title, 80) {
                report.push_str(&format!("\n{section}"));
            }
        }
        report.push_str(&format!("\n{}", log_tail(&log, 30)));
        return Err(Failure {
            internal_only: internal_errors_only(&text),
            error: error.context(format!(
                "schemathesis found problems (full log: {:?}):{report}",
                log.display()
            )),
        });
    }

    let fail = |error: anyhow::Error| Failure {
        internal_only: false,
        error,
    };
    let cases = generated_cases(&text).ok_or_else(|| {
        fail(anyhow::anyhow!(
            "no test case count in the schemathesis output:\n{}",
            log_tail(&log, 40)
        ))
    })?;
    super::say(&format!(
        "        schemathesis generated {cases} test cases"
    ));
    if cases < MIN_CASES {
        return Err(fail(anyhow::anyhow!(
            "schemathesis generated {cases} test cases, fewer than {MIN_CASES}: raise --fuzz-examples"
        )));
    }
    Ok(())
}

/// Returns the section of schemathesis' output headed by `title` (a line of
/// `=` around the title), up to the next such heading, cut after `max_lines`.
fn section(output: &str, title: &str, max_lines: usize) -> Option<String> {
    let is_heading = |line: &str| line.starts_with("====") && line.trim_end().ends_with("====");
    let mut lines = output.lines();
    lines.find(|line| is_heading(line) && line.trim_matches('=').trim() == title)?;
    let body: Vec<&str> = lines.take_while(|line| !is_heading(line)).collect();
    let mut text = format!("{title}:\n{}", body[..body.len().min(max_lines)].join("\n"));
    if body.len() > max_lines {
        text.push_str(&format!(
            "\n({} more lines in the log)",
            body.len() - max_lines
        ));
    }
    Some(text)
}

/// Returns true when the summary of schemathesis' output lists errors that
/// are all of the "Runtime Error" kind, its own unexpected exceptions, and
/// no failed check.
fn internal_errors_only(output: &str) -> bool {
    let Some(summary) = section(output, "SUMMARY", usize::MAX) else {
        return false;
    };
    let mut in_errors = false;
    let mut kinds = Vec::new();
    for line in summary.lines() {
        let trimmed = line.trim();
        // Headings such as "Errors:" start the line; their entries are indented.
        if !line.starts_with(' ') && !trimmed.is_empty() {
            in_errors = trimmed == "Errors:";
        } else if in_errors && !trimmed.is_empty() {
            kinds.push(trimmed.to_owned());
        }
        if trimmed.starts_with("Failures:") || trimmed.contains("unique failure") {
            return false;
        }
    }
    !kinds.is_empty()
        && kinds.iter().all(|kind| {
            kind.trim_start_matches(|c: char| !c.is_ascii_alphabetic())
                .starts_with("Runtime Error:")
        })
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

    const ERROR_RUN: &str = "\
=================================== ERRORS ===================================
___________________________ POST /v1/datasources ____________________________
Runtime Error

something broke inside
=================================== SUMMARY ==================================

API Operations:
  Selected: 13/13

Errors:
  🚫 Runtime Error: 1

Warnings:
  ⚠️ Missing test data: 3 operations repeatedly returned 404 responses

Test cases:
  1935 generated, 1935 passed

============================ 1 error in 26.34s ===============================
";

    #[test]
    fn sections_are_cut_at_the_next_heading() {
        let errors = section(ERROR_RUN, "ERRORS", 10).unwrap();
        assert!(errors.starts_with("ERRORS:\n"), "{errors}");
        assert!(errors.contains("something broke inside"), "{errors}");
        assert!(!errors.contains("SUMMARY"), "{errors}");
        assert!(section(ERROR_RUN, "FAILURES", 10).is_none());

        let cut = section(ERROR_RUN, "ERRORS", 1).unwrap();
        assert!(cut.contains("more lines in the log"), "{cut}");
    }

    #[test]
    fn only_runtime_errors_count_as_internal() {
        assert!(internal_errors_only(ERROR_RUN));
        assert!(!internal_errors_only(
            &ERROR_RUN.replace("Runtime Error: 1", "Network Error: 1")
        ));
        assert!(!internal_errors_only(&ERROR_RUN.replace(
            "1935 generated, 1935 passed",
            "1935 generated, 2 found 1 unique failure"
        )));
        assert!(!internal_errors_only("no summary"));
    }

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
