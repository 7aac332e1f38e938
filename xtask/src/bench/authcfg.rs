//! One `authcfg serve` process under benchmark: its working directory, its
//! start-up time to `/readyz`, and the admin calls that set it up.
//!
//! The server runs with its default configuration except for the listen
//! address, always 127.0.0.1, and the data directory inside the benchmark's
//! temporary directory. The environment is cleared so that `AUTHCFG_*`
//! variables of the caller do not change what is measured.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use super::process::Process;

/// How long a start-up may take before the benchmark gives up.
const START_LIMIT: Duration = Duration::from_secs(60);

/// How often `/readyz` is polled during a start-up; this is the resolution of
/// the start-up time.
const READY_POLL: Duration = Duration::from_millis(5);

/// How long a shutdown may take before the server is killed.
const SHUTDOWN_LIMIT: Duration = Duration::from_secs(30);

/// The end of one `authcfg serve` process after SIGTERM.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Shutdown {
    /// Time from SIGTERM to the exit, or to the kill.
    pub(crate) elapsed: Duration,
    /// True when the process exited by itself with status 0.
    pub(crate) clean: bool,
}

/// A reply to an HTTP request: status and body.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: String,
    /// The `X-Request-Id` response header, which the server's log lines carry.
    pub(crate) request_id: Option<String>,
}

impl Reply {
    /// Describes a reply with an unexpected status for an error message.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{} (X-Request-Id {}): {}",
            self.status,
            self.request_id.as_deref().unwrap_or("none"),
            self.body
        )
    }
}

/// An `authcfg serve` process and its working directory.
pub(crate) struct Authcfg {
    binary: PathBuf,
    dir: PathBuf,
    process: Option<Process>,
    base_url: String,
    agent: ureq::Agent,
    admin_token: String,
}

impl Authcfg {
    /// Prepares a server that will run `binary` in `dir`, with the data
    /// directory `dir/data`. Nothing starts yet.
    pub(crate) fn new(binary: &Path, dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("failed to create {:?}", dir.display()))?;
        let agent = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(60))
            .max_idle_connections_per_host(64)
            .build();
        Ok(Self {
            binary: binary.to_path_buf(),
            dir: dir.to_path_buf(),
            process: None,
            base_url: String::new(),
            agent,
            admin_token: String::new(),
        })
    }

    /// Starts `authcfg serve` on a free loopback port and returns the time
    /// from the start of the process to the first `/readyz` response with status 200.
    pub(crate) fn start(&mut self) -> anyhow::Result<Duration> {
        anyhow::ensure!(self.process.is_none(), "authcfg serve is already running");
        let port = free_port()?;
        let base_url = format!("http://127.0.0.1:{port}");
        let probe = ureq::AgentBuilder::new()
            .timeout(Duration::from_secs(2))
            .build();

        let mut command = self.command();
        command
            .arg("serve")
            .env("AUTHCFG_BIND", format!("127.0.0.1:{port}"));
        let log = self.log_path();
        let started = Instant::now();
        let mut process = Process::spawn("authcfg serve", command, &log, &log)?;

        let elapsed = loop {
            process.ensure_running()?;
            if let Ok(response) = probe.get(&format!("{base_url}/readyz")).call() {
                if response.status() == 200 {
                    break started.elapsed();
                }
            }
            if started.elapsed() > START_LIMIT {
                anyhow::bail!(
                    "authcfg serve was not ready within {} s; the end of its log:\n{}",
                    START_LIMIT.as_secs(),
                    process.log_tail(30)
                );
            }
            std::thread::sleep(READY_POLL);
        };

        self.process = Some(process);
        self.base_url = base_url;
        if self.admin_token.is_empty() {
            let path = self.dir.join("data").join("admin.token");
            let token = std::fs::read_to_string(&path)
                .with_context(|| format!("failed to read the admin token {:?}", path.display()))?;
            self.admin_token = token.trim().to_owned();
        }
        Ok(elapsed)
    }

    /// Stops the server with SIGTERM, kills it when it has not exited after
    /// [`SHUTDOWN_LIMIT`], and returns how the shutdown went.
    pub(crate) fn stop(&mut self) -> Shutdown {
        let Some(mut process) = self.process.take() else {
            return Shutdown {
                elapsed: Duration::ZERO,
                clean: true,
            };
        };
        let started = Instant::now();
        let status = process.stop_within(SHUTDOWN_LIMIT);
        let shutdown = Shutdown {
            elapsed: started.elapsed(),
            clean: status.is_some_and(|status| status.success()),
        };
        if !shutdown.clean {
            super::say(&format!(
                "authcfg serve exited with {status:?} {:.1} s after SIGTERM; the end of its log:\n{}",
                shutdown.elapsed.as_secs_f64(),
                process.log_tail(5)
            ));
        }
        shutdown
    }

    /// Returns the process id of the running server.
    pub(crate) fn pid(&self) -> anyhow::Result<u32> {
        self.process
            .as_ref()
            .map(Process::id)
            .context("authcfg serve is not running")
    }

    /// Returns `http://127.0.0.1:PORT` followed by `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Returns the end of the server's log, for error messages.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        super::process::log_tail(&self.log_path(), lines)
    }

    /// Returns up to five lines of the server's log that contain `request_id`.
    pub(crate) fn log_lines_of(&self, request_id: &str) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log
            .lines()
            .filter(|line| line.contains(request_id))
            .take(5)
            .collect();
        lines.join("\n")
    }

    /// Sends a request with an API token and an optional JSON body, and
    /// returns the reply whatever its status.
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        call(&self.agent, method, &self.url(path), token, body)
    }

    /// Returns a copy of the HTTP client, which shares its connection pool.
    pub(crate) fn agent(&self) -> ureq::Agent {
        self.agent.clone()
    }

    /// Returns the admin API token.
    pub(crate) fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Creates a consumer API token for `datasources` with
    /// `authcfg api-token create`, and waits until the running server
    /// accepts it.
    pub(crate) fn create_consumer_token(&self, datasources: &[&str]) -> anyhow::Result<String> {
        let mut command = self.command();
        command.args([
            "api-token",
            "create",
            "--label",
            "bench-consumer",
            "--role",
            "consumer",
        ]);
        for name in datasources {
            command.args(["--datasource", name]);
        }
        let output = command
            .output()
            .context("failed to run authcfg api-token create")?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        anyhow::ensure!(
            output.status.success(),
            "authcfg api-token create failed with {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let token = extract_token(&stdout)
            .context("no token found in the output of authcfg api-token create")?;

        // A token created by another process reaches the running server's
        // in-memory index after a short delay.
        let deadline = Instant::now() + Duration::from_secs(30);
        let probe = format!(
            "/v1/datasources/{}",
            datasources.first().copied().unwrap_or("x")
        );
        while self.call("GET", &probe, &token, None)?.status == 401 {
            anyhow::ensure!(
                Instant::now() < deadline,
                "authcfg serve did not accept the new consumer token within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(token)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// Returns the `authcfg` command with a clean environment, run in the
    /// working directory so that `./authcfg.toml` and `./data` are its own.
    fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command
            .current_dir(&self.dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AUTHCFG_DATA_DIR", "data")
            // The benchmark's token endpoints are on loopback; nothing else is reachable.
            .env("AUTHCFG_TOKEN_HOSTS", "127.0.0.1")
            .env("NO_COLOR", "1");
        command
    }
}

impl Drop for Authcfg {
    fn drop(&mut self) {
        // Dropping the process kills it; a failed shutdown is no longer news
        // when the benchmark is already leaving.
        self.process.take();
    }
}

/// Sends one request with a bearer token and an optional JSON body, and
/// returns the reply whatever its status.
pub(crate) fn call(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: &str,
    body: Option<&Value>,
) -> anyhow::Result<Reply> {
    let request = agent
        .request(method, url)
        .set("authorization", &format!("Bearer {token}"));
    let result = match body {
        Some(body) => request.send_json(body),
        None => request.call(),
    };
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(error) => return Err(error).with_context(|| format!("{method} {url} failed")),
    };
    let status = response.status();
    let request_id = response.header("x-request-id").map(str::to_owned);
    let body = response
        .into_string()
        .with_context(|| format!("failed to read the body of {method} {url}"))?;
    Ok(Reply {
        status,
        body,
        request_id,
    })
}

/// Returns a loopback port that was free a moment ago.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("failed to find a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Picks the API token out of the output of `api-token create`: the longest
/// word of at least 32 URL-safe characters.
fn extract_token(output: &str) -> Option<String> {
    output
        .split(|c: char| c.is_whitespace() || c == '"' || c == ',')
        .filter(|word| word.len() >= 32)
        .filter(|word| {
            word.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '~' | '+' | '/' | '=')
            })
        })
        .max_by_key(|word| word.len())
        .map(str::to_owned)
}
