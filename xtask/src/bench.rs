//! `cargo xtask bench`: measures authcfg side by side with the ceiling of the
//! machine it runs on, in one run.
//!
//! The harness builds `authcfg` and the loopback helper servers in release
//! mode, then measures with `oha`, everything on 127.0.0.1:
//! - a hello-world actix-web server (the ceiling for any HTTP endpoint here),
//!   `GET /healthz`, and cache-hit `POST /v1/datasources/{name}/authorization`
//!   for a bearer and a basic data source with a consumer API token;
//! - a cold stampede: a fresh process and many concurrent first requests for
//!   one bearer data source, counted at the token endpoint;
//! - start-up to `/readyz` for a fresh and for an existing data directory;
//! - resident memory idle and with many distinct cached access tokens.
//!
//! The figures and their targets are printed as Markdown tables, the form
//! that `docs/benchmarks.md` records. A missed target is reported, not an
//! error: the command fails only when the harness cannot measure, for example
//! when a request under load gets a status other than 200.

mod authcfg;
mod load;
mod process;
mod report;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

use self::authcfg::{Authcfg, Shutdown};
use self::load::{Amount, LoadResult, Target};
use self::process::Process;

const HELP: &str = "\
cargo xtask bench [options]

Builds authcfg in release mode and measures it against a hello-world
actix-web server on this machine, all on 127.0.0.1, with oha as the load
generator (installed with `cargo install oha --locked` when missing).

Options:
  --smoke              a short run that checks the harness works: 1 s runs,
                       4 connections, 1 round, a 20-caller stampede and 100
                       cached tokens (later options override these)
  --duration SECS      length of each load run [default: 10]
  --connections N      concurrent connections of each load run [default: 64]
  --runs N             rounds of load runs, stampedes and start-ups; the
                       report gives the median and the range [default: 3]
  --stampede N         concurrent first requests of the cold stampede
                       [default: 1000]
  --cached-tokens N    distinct access tokens cached before the second memory
                       reading [default: 100000]
  --token-bytes N      length of each access token the token endpoint issues
                       [default: 1024]
";

/// Number of threads that create the data sources of the memory reading.
const SETUP_THREADS: usize = 8;

/// Delay of the token endpoint's response to a stampede's token request.
const STAMPEDE_TOKEN_DELAY_MS: u64 = 250;

/// The request body of every authorization request.
const AUTHORIZATION_BODY: &str = "{}";

/// The settings of one `cargo xtask bench`.
#[derive(Debug, Clone, PartialEq)]
struct Options {
    duration: Duration,
    connections: u64,
    runs: usize,
    stampede: u64,
    cached_tokens: u64,
    token_bytes: u64,
}

impl Options {
    const FULL: Options = Options {
        duration: Duration::from_secs(10),
        connections: 64,
        runs: 3,
        stampede: 1000,
        cached_tokens: 100_000,
        token_bytes: 1024,
    };

    const SMOKE: Options = Options {
        duration: Duration::from_secs(1),
        connections: 4,
        runs: 1,
        stampede: 20,
        cached_tokens: 100,
        token_bytes: 1024,
    };
}

/// The figures of one round: the load runs, one start-up on an existing data
/// directory, one stampede and two memory readings.
#[derive(Debug)]
struct Round {
    ceiling: LoadResult,
    healthz: LoadResult,
    bearer: LoadResult,
    basic: LoadResult,
    startup_existing: Duration,
    stampede_upstream: u64,
    upstream_during_load: u64,
    rss_idle: u64,
    rss_after_load: u64,
    audit_dropped: Option<u64>,
}

/// The memory reading with many cached tokens.
#[derive(Debug)]
struct CacheFill {
    tokens: u64,
    failures: u64,
    first_failure: Option<String>,
    upstream: u64,
    rss_before: u64,
    /// Read right after the last data source was filled.
    rss_after: u64,
    /// Read [`SETTLE`] later, without requests in between.
    rss_settled: u64,
    elapsed: Duration,
}

/// The pause between the end of the cache fill and the settled memory
/// reading. The server drops its idle per-request bookkeeping after 5 s
/// without traffic, and jemalloc returns freed pages after 10 s.
const SETTLE: Duration = Duration::from_secs(15);

/// Everything one `cargo xtask bench` measured.
#[derive(Debug)]
struct Results {
    options: Options,
    machine_before: report::Machine,
    machine_after: report::Machine,
    oha_version: String,
    /// `git describe --always --dirty` of the measured source.
    source: String,
    measured: Measured,
}

/// The figures of all rounds.
#[derive(Debug)]
struct Measured {
    startup_fresh: Vec<Duration>,
    rounds: Vec<Round>,
    cache: CacheFill,
    shutdowns: Vec<Shutdown>,
}

/// Runs `cargo xtask bench` with its command line arguments.
pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let Some(options) = parse(args)? else {
        print_help();
        return Ok(());
    };
    process::install_signal_guard()?;
    let machine_before = report::Machine::describe();

    let oha = ensure_oha()?;
    let oha_version = command_output(Command::new(&oha).arg("--version"))?;
    let source = command_output(Command::new("git").args(["describe", "--always", "--dirty"]))
        .unwrap_or_else(|_| "unknown".to_owned());
    let binaries = build()?;

    let scratch = tempfile::Builder::new()
        .prefix("authcfg-bench-")
        .tempdir()
        .context("failed to create the temporary directory")?;
    say(&format!("working directory {:?}", scratch.path().display()));
    process::remove_on_signal(scratch.path());
    let binaries = binaries.copy_to(&scratch.path().join("bin"))?;
    let measured = measure(&options, &oha, &binaries, scratch.path())?;

    let results = Results {
        options,
        machine_before,
        machine_after: report::Machine::describe(),
        oha_version,
        source,
        measured,
    };
    report::print(&results);
    Ok(())
}

/// Parses the options; returns `None` for `--help`.
fn parse(args: &[String]) -> anyhow::Result<Option<Options>> {
    let mut options = if args.iter().any(|arg| arg == "--smoke") {
        Options::SMOKE
    } else {
        Options::FULL
    };

    let mut args = args.iter();
    while let Some(flag) = args.next() {
        if flag == "--smoke" {
            continue;
        }
        if matches!(flag.as_str(), "--help" | "-h") {
            return Ok(None);
        }
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value: run `cargo xtask bench --help`"))?;
        let number = value.parse::<u64>().ok().filter(|number| *number > 0);
        let number = number.with_context(|| {
            format!(
                "{flag} {value:?} is not a whole number above 0: run `cargo xtask bench --help`"
            )
        })?;
        match flag.as_str() {
            "--duration" => options.duration = Duration::from_secs(number),
            "--connections" => options.connections = number,
            "--runs" => options.runs = usize::try_from(number)?,
            "--stampede" => options.stampede = number,
            "--cached-tokens" => options.cached_tokens = number,
            "--token-bytes" => options.token_bytes = number,
            other => anyhow::bail!("unknown option {other:?}: run `cargo xtask bench --help`"),
        }
    }
    Ok(Some(options))
}

#[expect(clippy::print_stdout, reason = "help is the output of this command")]
fn print_help() {
    print!("{HELP}");
}

/// Prints a progress line to standard error.
#[expect(
    clippy::print_stderr,
    reason = "progress of the benchmark goes to standard error"
)]
pub(crate) fn say(message: &str) {
    eprintln!("bench: {message}");
}

/// The release binaries the benchmark runs.
struct Binaries {
    authcfg: PathBuf,
    bench_servers: PathBuf,
}

impl Binaries {
    /// Copies the binaries into `dir`, so that another build in the same
    /// target directory cannot replace them while they are measured.
    fn copy_to(&self, dir: &Path) -> anyhow::Result<Binaries> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {:?}", dir.display()))?;
        let copy = |binary: &Path| -> anyhow::Result<PathBuf> {
            let target = dir.join(
                binary
                    .file_name()
                    .context("a binary path without a file name")?,
            );
            std::fs::copy(binary, &target).with_context(|| {
                format!(
                    "failed to copy {:?} to {:?}",
                    binary.display(),
                    target.display()
                )
            })?;
            Ok(target)
        };
        Ok(Binaries {
            authcfg: copy(&self.authcfg)?,
            bench_servers: copy(&self.bench_servers)?,
        })
    }
}

/// Returns the path of `oha`, installing it with `cargo install oha --locked`
/// when it is neither on `PATH` nor in Cargo's `bin` directory.
fn ensure_oha() -> anyhow::Result<PathBuf> {
    let find = || {
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")));
        std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .unwrap_or_default()
            .into_iter()
            .chain(cargo_home.map(|home| home.join("bin")))
            .map(|dir| dir.join("oha"))
            .find(|candidate| candidate.is_file())
    };
    if let Some(oha) = find() {
        return Ok(oha);
    }

    say("oha is missing: installing it, which takes a few minutes once");
    crate::run(&["cargo", "install", "oha", "--locked"])?;
    find().context("oha is still not found after `cargo install oha --locked`: add Cargo's bin directory to PATH")
}

/// Builds `authcfg` and the helper servers in release mode, in two separate
/// builds so that the helpers' features do not change the measured binary.
fn build() -> anyhow::Result<Binaries> {
    crate::run(&[
        "cargo",
        "build",
        "--release",
        "--package",
        "authcfg-server",
        "--bin",
        "authcfg",
    ])?;
    crate::run(&[
        "cargo",
        "build",
        "--release",
        "--package",
        "xtask",
        "--bin",
        "bench-servers",
        "--features",
        "bench-servers",
    ])?;

    let metadata = command_output(Command::new("cargo").args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
    ]))?;
    let metadata: Value =
        serde_json::from_str(&metadata).context("cargo metadata printed invalid JSON")?;
    let target = metadata["target_directory"]
        .as_str()
        .context("cargo metadata printed no target_directory")?;
    let release = Path::new(target).join("release");
    Ok(Binaries {
        authcfg: release.join("authcfg"),
        bench_servers: release.join("bench-servers"),
    })
}

/// Runs a command and returns its standard output, trimmed.
fn command_output(command: &mut Command) -> anyhow::Result<String> {
    let output = command
        .output()
        .with_context(|| format!("failed to run {command:?}"))?;
    anyhow::ensure!(
        output.status.success(),
        "{command:?} failed with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// Starts the helper servers and authcfg, and takes every measurement.
fn measure(
    options: &Options,
    oha: &Path,
    binaries: &Binaries,
    scratch: &Path,
) -> anyhow::Result<Measured> {
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    let token_port = authcfg::free_port()?;
    let token_base = format!("http://127.0.0.1:{token_port}");
    let mut token_endpoint = start_helper(
        binaries,
        scratch,
        "token",
        token_port,
        &[
            "--token-bytes",
            &options.token_bytes.to_string(),
            "--slow-delay-ms",
            &STAMPEDE_TOKEN_DELAY_MS.to_string(),
        ],
        &format!("{token_base}/count"),
    )?;
    let hello_port = authcfg::free_port()?;
    let hello_url = format!("http://127.0.0.1:{hello_port}/");
    let mut hello = start_helper(
        binaries,
        scratch,
        "hello",
        hello_port,
        &["--workers", &workers.to_string()],
        &hello_url,
    )?;
    let counts = TokenCounts::new(&token_base);
    let mut shutdowns = Vec::new();

    say("start-up on fresh data directories");
    let mut startup_fresh = Vec::new();
    for round in 0..options.runs {
        let mut server = Authcfg::new(&binaries.authcfg, &scratch.join(format!("fresh-{round}")))?;
        startup_fresh.push(server.start()?);
        shutdowns.push(server.stop());
    }

    say("set-up: data sources, credentials and a consumer API token");
    let mut server = Authcfg::new(&binaries.authcfg, &scratch.join("main"))?;
    server.start()?;
    let consumer = set_up(&server, &token_base)?;
    shutdowns.push(server.stop());

    let mut rounds = Vec::new();
    for round in 1..=options.runs {
        say(&format!("round {round} of {}", options.runs));
        let startup_existing = server.start()?;
        let rss_idle = process::resident_memory(server.pid()?)?;
        say(&format!(
            "  start-up on the existing data directory {:.3} s, idle resident memory {:.1} MB",
            startup_existing.as_secs_f64(),
            rss_idle as f64 / 1e6
        ));

        let stampede_upstream = {
            let before = counts.read()?;
            let result = load::run(
                oha,
                &Target {
                    name: "stampede",
                    method: "POST",
                    url: server.url("/v1/datasources/bench-stampede/authorization"),
                    token: Some(consumer.clone()),
                    body: Some(AUTHORIZATION_BODY),
                    server_pid: server.pid()?,
                },
                Amount::Requests(options.stampede),
                options.stampede,
                scratch,
            )?;
            anyhow::ensure!(
                result.responses == options.stampede,
                "the stampede got {} responses to {} requests",
                result.responses,
                options.stampede
            );
            let upstream = counts.read()?.slow_token - before.slow_token;
            say(&format!("  stampede: {upstream} token requests upstream"));
            upstream
        };

        // The first bearer request of the round fetches the token, so that
        // the load runs measure cache hits only.
        for name in ["bench-bearer", "bench-basic"] {
            let reply = server.call(
                "POST",
                &format!("/v1/datasources/{name}/authorization"),
                &consumer,
                Some(&json!({})),
            )?;
            anyhow::ensure!(
                reply.status == 200,
                "the warm-up authorization for {name} returned {}: {}\nthe end of the server log:\n{}",
                reply.status,
                reply.body,
                server.log_tail(20)
            );
        }

        let before_load = counts.read()?;
        let authcfg_pid = server.pid()?;
        let run_load = |name: &'static str,
                        method: &'static str,
                        url: String,
                        token: bool,
                        server_pid: u32| {
            let result = load::run(
                oha,
                &Target {
                    name,
                    method,
                    url,
                    token: token.then(|| consumer.clone()),
                    body: token.then_some(AUTHORIZATION_BODY),
                    server_pid,
                },
                Amount::For(options.duration),
                options.connections,
                scratch,
            )?;
            say(&format!(
                "  {name}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {:.1} µs server CPU per request",
                result.requests_per_sec,
                result.p50 * 1e3,
                result.p99 * 1e3,
                result.cpu_per_response * 1e6
            ));
            anyhow::Ok(result)
        };
        let ceiling = run_load("ceiling", "GET", hello_url.clone(), false, hello.id())?;
        let healthz = run_load("healthz", "GET", server.url("/healthz"), false, authcfg_pid)?;
        let bearer = run_load(
            "bearer",
            "POST",
            server.url("/v1/datasources/bench-bearer/authorization"),
            true,
            authcfg_pid,
        )?;
        let basic = run_load(
            "basic",
            "POST",
            server.url("/v1/datasources/bench-basic/authorization"),
            true,
            authcfg_pid,
        )?;
        let upstream_during_load = counts.read()?.token - before_load.token;
        let rss_after_load = process::resident_memory(server.pid()?)?;
        let audit_dropped = audit_events_dropped(&server);
        shutdowns.push(server.stop());

        hello.ensure_running()?;
        token_endpoint.ensure_running()?;
        rounds.push(Round {
            ceiling,
            healthz,
            bearer,
            basic,
            startup_existing,
            stampede_upstream,
            upstream_during_load,
            rss_idle,
            rss_after_load,
            audit_dropped,
        });
    }

    say(&format!(
        "memory with {} distinct cached tokens",
        options.cached_tokens
    ));
    server.start()?;
    let cache = fill_cache(&server, &token_base, &counts, options.cached_tokens)?;
    shutdowns.push(server.stop());

    token_endpoint.stop();
    hello.stop();
    Ok(Measured {
        startup_fresh,
        rounds,
        cache,
        shutdowns,
    })
}

/// Returns `authcfg_audit_events_dropped_total` from `/metrics`, or `None`
/// when the server does not report it.
fn audit_events_dropped(server: &Authcfg) -> Option<u64> {
    let reply = server
        .call("GET", "/metrics", server.admin_token(), None)
        .ok()?;
    reply
        .body
        .lines()
        .find_map(|line| line.strip_prefix("authcfg_audit_events_dropped_total "))
        .and_then(|value| value.trim().parse::<f64>().ok())
        .map(|value| value as u64)
}

/// Starts `bench-servers COMMAND` on `port` and waits until `probe` returns a response.
fn start_helper(
    binaries: &Binaries,
    scratch: &Path,
    command_name: &str,
    port: u16,
    extra: &[&str],
    probe: &str,
) -> anyhow::Result<Process> {
    let mut command = Command::new(&binaries.bench_servers);
    command
        .arg(command_name)
        .arg("--bind")
        .arg(format!("127.0.0.1:{port}"))
        .args(extra);
    let log = scratch.join(format!("{command_name}.log"));
    let mut process = Process::spawn(
        &format!("bench-servers {command_name}"),
        command,
        &log,
        &log,
    )?;

    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(2))
        .build();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        process.ensure_running()?;
        if agent.get(probe).call().is_ok() {
            return Ok(process);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "bench-servers {command_name} did not answer {probe} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The request counters of the token endpoint.
struct TokenCounts {
    agent: ureq::Agent,
    url: String,
}

/// One reading of [`TokenCounts`].
#[derive(Clone, Copy)]
struct Counts {
    token: u64,
    slow_token: u64,
}

impl TokenCounts {
    fn new(base: &str) -> Self {
        Self {
            agent: ureq::AgentBuilder::new()
                .timeout(Duration::from_secs(10))
                .build(),
            url: format!("{base}/count"),
        }
    }

    fn read(&self) -> anyhow::Result<Counts> {
        let body: Value = self
            .agent
            .get(&self.url)
            .call()
            .context("failed to read the token endpoint's counters")?
            .into_json()
            .context("the token endpoint's counters are not JSON")?;
        let count = |key: &str| {
            body[key]
                .as_u64()
                .with_context(|| format!("the token endpoint's counters have no {key:?}"))
        };
        Ok(Counts {
            token: count("token")?,
            slow_token: count("slow_token")?,
        })
    }
}

/// Creates the data sources of the load runs and the stampede with their
/// credentials, and a consumer API token for them.
fn set_up(server: &Authcfg, token_base: &str) -> anyhow::Result<String> {
    let datasources = [
        (
            bearer_datasource("bench-bearer", &format!("{token_base}/token")),
            json!({"client_id": "bench-client", "client_secret": "bench-client-secret"}),
        ),
        (
            bearer_datasource("bench-stampede", &format!("{token_base}/slow-token")),
            json!({"client_id": "bench-client", "client_secret": "bench-client-secret"}),
        ),
        (
            json!({
                "name": "bench-basic",
                "description": "benchmark basic data source",
                "auth": {"method": "basic"},
            }),
            json!({"client_id": "bench-user", "client_secret": "bench-password"}),
        ),
    ];
    for (datasource, credentials) in &datasources {
        create_with_credentials(server, &server.agent(), datasource, credentials)?;
    }

    server.create_consumer_token(&["bench-bearer", "bench-basic", "bench-stampede"])
}

/// Returns the body that creates a bearer data source with the client
/// credentials grant at `token_url`.
fn bearer_datasource(name: &str, token_url: &str) -> Value {
    json!({
        "name": name,
        "description": "benchmark bearer data source",
        "auth": {
            "method": "bearer",
            "token_url": token_url,
            "grant_type": "client_credentials",
            "scope": "api.read",
        },
    })
}

/// Creates a data source and stores its credentials as admin.
fn create_with_credentials(
    server: &Authcfg,
    agent: &ureq::Agent,
    datasource: &Value,
    credentials: &Value,
) -> anyhow::Result<()> {
    let name = datasource["name"].as_str().unwrap_or_default();
    let token = server.admin_token();

    let created = authcfg::call(
        agent,
        "POST",
        &server.url("/v1/datasources"),
        token,
        Some(datasource),
    )?;
    anyhow::ensure!(
        created.status == 201,
        "creating data source {name:?} returned {}",
        created.describe()
    );
    let path = format!("/v1/datasources/{name}/credentials");
    let stored = authcfg::call(agent, "PUT", &server.url(&path), token, Some(credentials))?;
    anyhow::ensure!(
        stored.status == 204,
        "storing the credentials of {name:?} returned {}",
        stored.describe()
    );
    Ok(())
}

/// Creates `tokens` bearer data sources and requests a header for each, so
/// that the server caches that many distinct access tokens, and reads the
/// resident memory before and after.
fn fill_cache(
    server: &Authcfg,
    token_base: &str,
    counts: &TokenCounts,
    tokens: u64,
) -> anyhow::Result<CacheFill> {
    let pid = server.pid()?;
    let rss_before = process::resident_memory(pid)?;
    let before = counts.read()?;
    let started = Instant::now();

    let done = AtomicU64::new(0);
    let failures = AtomicU64::new(0);
    let first_failure = Mutex::new(None::<String>);
    let max_failures = tokens / 100 + 10;
    let token_url = format!("{token_base}/token");
    let fill_one = |agent: &ureq::Agent, index: u64| -> anyhow::Result<()> {
        let name = format!("bench-cache-{index:06}");
        create_with_credentials(
            server,
            agent,
            &bearer_datasource(&name, &token_url),
            &json!({"client_id": format!("client-{index}"), "client_secret": "bench-client-secret"}),
        )?;
        let path = format!("/v1/datasources/{name}/authorization");
        let reply = authcfg::call(
            agent,
            "POST",
            &server.url(&path),
            server.admin_token(),
            Some(&json!({})),
        )?;
        anyhow::ensure!(
            reply.status == 200,
            "the authorization for {name} returned {}",
            reply.describe()
        );
        Ok(())
    };

    std::thread::scope(|scope| -> anyhow::Result<()> {
        let threads: Vec<_> = (0..SETUP_THREADS as u64)
            .map(|thread| {
                let (done, failures, first_failure, fill_one) =
                    (&done, &failures, &first_failure, &fill_one);
                let agent = server.agent();
                scope.spawn(move || -> anyhow::Result<()> {
                    // A failed data source is counted and skipped, so that a
                    // rare server error is reported with the figures instead
                    // of discarding them. Many failures stop the fill.
                    let mut index = thread;
                    while index < tokens {
                        match fill_one(&agent, index) {
                            Ok(()) => {
                                done.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(error) => {
                                let count = failures.fetch_add(1, Ordering::Relaxed) + 1;
                                let mut first = first_failure
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                                if first.is_none() {
                                    *first = Some(format!("{error:#}"));
                                }
                                anyhow::ensure!(
                                    count <= max_failures,
                                    "{count} data sources failed to fill; the first: {}",
                                    first.as_deref().unwrap_or_default()
                                );
                            }
                        }
                        index += SETUP_THREADS as u64;
                    }
                    Ok(())
                })
            })
            .collect();

        let mut last_report = Instant::now();
        while threads.iter().any(|thread| !thread.is_finished()) {
            if last_report.elapsed() >= Duration::from_secs(15) {
                say(&format!(
                    "  {} of {tokens} data sources cached after {} s",
                    done.load(Ordering::Relaxed),
                    started.elapsed().as_secs()
                ));
                last_report = Instant::now();
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for thread in threads {
            thread
                .join()
                .map_err(|_| anyhow::anyhow!("a set-up thread panicked"))??;
        }
        Ok(())
    })?;

    let elapsed = started.elapsed();
    let rss_after = process::resident_memory(pid)?;
    let upstream = counts.read()?.token - before.token;
    say(&format!(
        "  {:.1} MB resident right after the fill; reading again in {} s",
        rss_after as f64 / 1e6,
        SETTLE.as_secs()
    ));
    std::thread::sleep(SETTLE);
    let rss_settled = process::resident_memory(pid)?;

    // The server's log lines of the first failed request contain the cause.
    let first_failure = first_failure
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .map(|message| {
            let request_id = message
                .split("X-Request-Id ")
                .nth(1)
                .and_then(|rest| rest.split(')').next())
                .unwrap_or("none");
            format!(
                "{message}\nserver log:\n{}",
                server.log_lines_of(request_id)
            )
        });
    Ok(CacheFill {
        tokens: done.into_inner(),
        failures: failures.into_inner(),
        first_failure,
        upstream,
        rss_before,
        rss_after,
        rss_settled,
        elapsed,
    })
}
