//! Workspace chores, run as `cargo xtask <command>`.
//!
//! The commands are plain functions behind a dispatcher on the first
//! argument, so that `cargo xtask` builds quickly and prints its help without
//! any argument.

mod bench;
mod codegen;
mod interop;
mod release;

use std::process::ExitCode;

const HELP: &str = "\
cargo xtask <command> [options]

Commands:
  bench [--smoke]     measure authcfg against a hello-world ceiling with oha
                      on 127.0.0.1 (`bench --help`)
  codegen [--check]   write docs/models/*.md and docs/openapi.json from the code;
                      with --check, fail when the committed files are stale
  ci                  run the checks of .ci/run (fmt, clippy, tests, codegen, deny)
  dist                build the release binary into target/dist/ with SHA256SUMS
  release X.Y.Z       bump every crate's version, date the changelog, run the checks
  interop [options]   run authcfg against django-oauth-toolkit and oidc-provider,
                      and schemathesis against its API (`interop --help`)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        print_help();
        return ExitCode::SUCCESS;
    };
    let rest = &args[1..];

    let result = match command.as_str() {
        "bench" => bench::run(rest),
        "codegen" => codegen::run(rest),
        "ci" => ci(rest),
        "dist" => release::dist(rest),
        "release" => release::release(rest),
        "interop" => interop::run(rest),
        "help" | "--help" | "-h" => {
            print_help();
            return ExitCode::SUCCESS;
        }
        other => Err(anyhow::anyhow!(
            "unknown command {other:?}: run `cargo xtask` for the list of commands"
        )),
    };

    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            report_error(&error);
            ExitCode::FAILURE
        }
    }
}

#[expect(clippy::print_stdout, reason = "help is the output of this command")]
fn print_help() {
    print!("{HELP}");
}

#[expect(
    clippy::print_stderr,
    reason = "the binary's errors go to standard error"
)]
fn report_error(error: &anyhow::Error) {
    eprintln!("error: {error:#}");
}

/// Runs the checks of `.ci/run` without its installs, so that the list of
/// checks lives in one place.
fn ci(args: &[String]) -> anyhow::Result<()> {
    if let Some(extra) = args.first() {
        anyhow::bail!("`cargo xtask ci` takes no arguments, got {extra:?}");
    }
    announce(&["bash", ".ci/run"]);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow::anyhow!("xtask has no parent directory"))?;
    let status = std::process::Command::new("bash")
        .arg(root.join(".ci/run"))
        .env("AUTHCFG_CI_SKIP_INSTALL", "1")
        .status()?;
    anyhow::ensure!(status.success(), "the CI checks failed with {status}");
    Ok(())
}

/// Runs a command, inheriting standard output and error, and fails when it fails.
pub(crate) fn run(command: &[&str]) -> anyhow::Result<()> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("empty command"))?;
    announce(command);
    let status = std::process::Command::new(program).args(args).status()?;
    anyhow::ensure!(
        status.success(),
        "`{}` failed with {status}",
        command.join(" ")
    );
    Ok(())
}

#[expect(
    clippy::print_stderr,
    reason = "progress of the chore goes to standard error"
)]
fn announce(command: &[&str]) {
    eprintln!("==> {}", command.join(" "));
}
