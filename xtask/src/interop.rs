//! `cargo xtask interop`: authcfg against authorization servers that other
//! people wrote, and an API fuzzer against its OpenAPI document.
//!
//! The suite installs django-oauth-toolkit, oidc-provider and schemathesis
//! into the ignored folder `.interop/`, and reuses them while the pins in
//! `interop/` are unchanged. It starts each server on 127.0.0.1 with a free
//! port, runs the scenarios through the real `authcfg serve` binary and its
//! HTTP API, then runs schemathesis. Every process it starts is stopped at the end, and all
//! of them are killed when the time limit passes or a signal arrives.

mod authcfg;
mod fuzz;
mod http;
mod install;
mod process;
mod scenarios;
mod servers;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use self::authcfg::Authcfg;
use self::scenarios::{Context, Outcome, DOT_TOKEN_LIFETIME_SECS, OIDC_TOKEN_LIFETIME_SECS};
use self::servers::{DotServer, OidcServer};

const HELP: &str = "\
cargo xtask interop [options]

Runs authcfg against django-oauth-toolkit and oidc-provider, and schemathesis
against its API. Installs go into .interop/ and are reused. Logs of the last run
are in .interop/run/.

Options:
  --server NAME         run the scenarios of one server only: django or oidc
  --no-fuzz             skip schemathesis
  --fuzz-only           run schemathesis only
  --fuzz-examples N     test cases per operation and phase (default 150)
  --authcfg PATH        test this authcfg binary instead of building one
  --timeout SECS        kill everything and fail after SECS (default 900)
";

/// Time limit of the whole suite by default, installs and build included.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(900);

/// Time limit of the debug build of authcfg.
const BUILD_LIMIT: Duration = Duration::from_secs(600);

/// Time limit of the schemathesis run.
const FUZZ_LIMIT: Duration = Duration::from_secs(300);

/// The seed of schemathesis, fixed so that a failure can be repeated.
const FUZZ_SEED: u64 = 20_261_204;

struct Options {
    dot: bool,
    oidc: bool,
    scenarios: bool,
    fuzz: bool,
    fuzz_examples: u32,
    authcfg: Option<PathBuf>,
    timeout: Duration,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Option<Self>> {
        let mut options = Self {
            dot: true,
            oidc: true,
            scenarios: true,
            fuzz: true,
            fuzz_examples: 150,
            authcfg: None,
            timeout: DEFAULT_TIMEOUT,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = |name: &str| {
                args.next().cloned().with_context(|| {
                    format!("{name} needs a value: run `cargo xtask interop --help`")
                })
            };
            match arg.as_str() {
                "--help" | "-h" => return Ok(None),
                "--server" => match value("--server")?.as_str() {
                    "django" => options.oidc = false,
                    "oidc" => options.dot = false,
                    other => bail!("unknown server {other:?} for --server: give django or oidc"),
                },
                "--no-fuzz" => options.fuzz = false,
                "--fuzz-only" => options.scenarios = false,
                "--fuzz-examples" => {
                    let text = value("--fuzz-examples")?;
                    options.fuzz_examples =
                        text.parse().ok().filter(|n| *n > 0).with_context(|| {
                            format!("invalid --fuzz-examples {text:?}: give a positive number")
                        })?;
                }
                "--authcfg" => options.authcfg = Some(PathBuf::from(value("--authcfg")?)),
                "--timeout" => {
                    let text = value("--timeout")?;
                    let secs: u64 = text.parse().ok().filter(|n| *n > 0).with_context(|| {
                        format!("invalid --timeout {text:?}: give a positive number of seconds")
                    })?;
                    options.timeout = Duration::from_secs(secs);
                }
                other => bail!("unknown option {other:?}: run `cargo xtask interop --help`"),
            }
        }
        if !options.scenarios && !options.fuzz {
            bail!("--fuzz-only and --no-fuzz together leave nothing to run: drop one");
        }
        Ok(Some(options))
    }
}

/// Prints a progress or result line to standard output.
#[expect(clippy::print_stdout, reason = "the suite's results are its output")]
pub(crate) fn say(line: &str) {
    println!("{line}");
    let _ = std::io::stdout().flush();
}

/// Runs `cargo xtask interop`.
pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let Some(options) = Options::parse(args)? else {
        say(HELP.trim_end());
        return Ok(());
    };
    let started = Instant::now();
    process::install_guards(options.timeout)?;

    let root = crate::release::workspace_root();
    let state = root.join(".interop");
    let work = state.join("run");
    if work.exists() {
        std::fs::remove_dir_all(&work)
            .with_context(|| format!("failed to clear {:?}", work.display()))?;
    }
    std::fs::create_dir_all(&work)
        .with_context(|| format!("failed to create {:?}", work.display()))?;

    let installs = install::ensure(&root, &state, &work)?;
    let binary = match &options.authcfg {
        // authcfg runs in its own working directory, so a relative path
        // given on the command line is resolved here.
        Some(binary) => std::fs::canonicalize(binary).with_context(|| {
            format!(
                "--authcfg {:?} is not a file: give the path of an authcfg binary",
                binary.display()
            )
        })?,
        None => build_authcfg(&root, &work)?,
    };

    let mut outcome = Outcome::default();
    let (dot, oidc) = if options.scenarios {
        start_servers(&options, &installs, &root, &work, &mut outcome)?
    } else {
        (None, None)
    };

    if options.scenarios {
        let authcfg = Authcfg::new(&binary, &work.join("scenarios"))?;
        std::fs::create_dir_all(work.join("scenarios"))?;
        match Context::setup(authcfg, dot, oidc) {
            Ok(mut context) => {
                scenarios::run_all(&mut context, &mut outcome);
                context.authcfg.stop();
            }
            Err(error) => {
                say(&format!("FAILED  set-up of the scenarios: {error:#}"));
                outcome
                    .failed
                    .push(("set-up of the scenarios".to_owned(), error));
            }
        }
    }

    if options.fuzz {
        let fuzz_work = work.join("fuzz");
        std::fs::create_dir_all(&fuzz_work)?;
        let fuzz_options = fuzz::FuzzOptions {
            max_examples: options.fuzz_examples,
            limit: FUZZ_LIMIT,
            seed: FUZZ_SEED,
        };
        outcome.run("schemathesis against /openapi.json", || {
            let mut authcfg = Authcfg::new(&binary, &fuzz_work)?;
            authcfg.start()?;
            let result = fuzz::run(&installs.schemathesis, &authcfg, &fuzz_work, &fuzz_options);
            authcfg.stop();
            result
        });
    }

    say(&format!(
        "interop suite took {:.0} s; logs in {}",
        started.elapsed().as_secs_f64(),
        work.display()
    ));
    // The count stands alone on its line, in the form CI tools read.
    say(&format!(
        "interop: {} passed, {} failed",
        outcome.passed.len(),
        outcome.failed.len()
    ));
    if outcome.failed.is_empty() {
        return Ok(());
    }
    let names: Vec<&str> = outcome
        .failed
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    bail!(
        "{} interop check(s) failed: {}",
        names.len(),
        names.join("; ")
    )
}

/// Builds the debug `authcfg` binary and returns its path.
fn build_authcfg(root: &Path, work: &Path) -> anyhow::Result<PathBuf> {
    say("building authcfg (cargo build --locked -p authcfg-server --bin authcfg)");
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
    command
        .args([
            "build",
            "--locked",
            "--package",
            "authcfg-server",
            "--bin",
            "authcfg",
        ])
        .current_dir(root);
    process::run_bounded("cargo build", command, &work.join("build.log"), BUILD_LIMIT)?;
    Ok(crate::release::target_dir(root)
        .join("debug")
        .join("authcfg"))
}

/// Starts the selected servers and checks, without authcfg, that each issues
/// tokens with the generated clients.
fn start_servers(
    options: &Options,
    installs: &install::Installs,
    root: &Path,
    work: &Path,
    outcome: &mut Outcome,
) -> anyhow::Result<(Option<DotServer>, Option<OidcServer>)> {
    let client = http::Client::new();
    let mut dot = None;
    let mut oidc = None;

    if options.dot {
        let mut server = DotServer::create(installs, root, work, DOT_TOKEN_LIFETIME_SECS)?;
        server.start()?;
        outcome.run("django-oauth-toolkit issues tokens directly", || {
            let cc = &server.fixtures.client_credentials;
            let response = client.post_form(
                &server.token_url(),
                Some((&cc.client_id, &cc.client_secret)),
                &[("grant_type", "client_credentials")],
            )?;
            anyhow::ensure!(
                response.status == 200,
                "token request returned {}: {}",
                response.status,
                response.body
            );
            anyhow::ensure!(
                response.json()?["access_token"].is_string(),
                "no access_token in {}",
                response.body
            );
            Ok(())
        });
        dot = Some(server);
    }

    if options.oidc {
        let mut server = OidcServer::create(installs, work, OIDC_TOKEN_LIFETIME_SECS)?;
        server.start()?;
        outcome.run("oidc-provider issues tokens directly", || {
            let basic = &server.basic;
            let response = client.post_form(
                &server.token_url(),
                Some((&basic.client_id, &basic.client_secret)),
                &[("grant_type", "client_credentials")],
            )?;
            anyhow::ensure!(
                response.status == 200,
                "token request returned {}: {}",
                response.status,
                response.body
            );
            anyhow::ensure!(
                response.json()?["access_token"].is_string(),
                "no access_token in {}",
                response.body
            );

            let post = &server.post;
            let response = client.post_form(
                &server.token_url(),
                None,
                &[
                    ("grant_type", "client_credentials"),
                    ("client_id", &post.client_id),
                    ("client_secret", &post.client_secret),
                ],
            )?;
            anyhow::ensure!(
                response.status == 200,
                "token request returned {}: {}",
                response.status,
                response.body
            );
            Ok(())
        });
        oidc = Some(server);
    }
    Ok((dot, oidc))
}
