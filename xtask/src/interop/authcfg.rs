//! The `authcfg serve` process under test and its HTTP API.
//!
//! The data directory and the master key stay the same across a stop and a
//! start, as on an operator's machine, so that a scenario can restart the
//! service and check what it persisted.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use super::http::{Client, Response};
use super::process::Process;
use super::servers::{free_port, random_hex};

/// How long `authcfg serve` may take after its start to return 200 on `/healthz`.
const START_LIMIT: Duration = Duration::from_secs(30);

/// The refresh margin the suite configures, in seconds: a cached token is
/// served while it is valid for longer than this. The default of 60 s is
/// longer than the suite's short token lifetimes.
pub(crate) const REFRESH_MARGIN_SECS: u64 = 1;

/// The hosts that token URLs may name in the suite: loopback only.
const LOOPBACK_HOSTS: &str = "127.0.0.1,localhost,[::1]";

/// A configured `authcfg serve` with its data directory.
pub(crate) struct Authcfg {
    binary: PathBuf,
    data_dir: PathBuf,
    log: PathBuf,
    master_key: String,
    port: u16,
    env: Vec<(String, String)>,
    process: Option<Process>,
    admin_token: Option<String>,
    client: Client,
}

impl Authcfg {
    /// Prepares a service with a new data directory under `work`.
    pub(crate) fn new(binary: &Path, work: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            binary: binary.to_path_buf(),
            data_dir: work.join("authcfg-data"),
            log: work.join("authcfg.log"),
            master_key: random_hex(32)?,
            port: free_port()?,
            env: Vec::new(),
            process: None,
            admin_token: None,
            client: Client::new(),
        })
    }

    /// Sets the extra environment of the next start, such as
    /// `AUTHCFG_DS_<NAME>_CLIENT_SECRET` variables.
    pub(crate) fn set_env(&mut self, env: Vec<(String, String)>) {
        self.env = env;
    }

    /// Returns the base URL, such as `http://127.0.0.1:41234`.
    pub(crate) fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Returns the log file.
    pub(crate) fn log(&self) -> &Path {
        &self.log
    }

    /// Returns the admin API token that the first start wrote.
    pub(crate) fn admin_token(&self) -> anyhow::Result<&str> {
        self.admin_token
            .as_deref()
            .context("authcfg has not started yet, so there is no admin token")
    }

    /// Starts `authcfg serve` and waits until `/healthz` returns 200.
    pub(crate) fn start(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.process.is_none(), "authcfg is already running");

        let mut command = Command::new(&self.binary);
        command.arg("serve");
        // Settings from the developer's shell must not change the run.
        for (name, _) in std::env::vars_os()
            .filter_map(|(name, value)| Some((name.into_string().ok()?, value)))
            .filter(|(name, _)| name.starts_with("AUTHCFG_"))
        {
            command.env_remove(name);
        }
        command
            .current_dir(self.data_dir.parent().unwrap_or(Path::new(".")))
            .env("AUTHCFG_BIND", format!("127.0.0.1:{}", self.port))
            .env("AUTHCFG_DATA_DIR", &self.data_dir)
            .env("AUTHCFG_MASTER_KEY", &self.master_key)
            .env(
                "AUTHCFG_REFRESH_MARGIN_SECS",
                REFRESH_MARGIN_SECS.to_string(),
            )
            .env("AUTHCFG_TOKEN_CONNECT_TIMEOUT_SECS", "2")
            .env("AUTHCFG_TOKEN_REQUEST_TIMEOUT_SECS", "5")
            // Token requests stay on this machine whatever token_url a test,
            // or schemathesis with the examples of the API description, sets.
            .env("AUTHCFG_TOKEN_HOSTS", LOOPBACK_HOSTS)
            .env("AUTHCFG_LOG_LEVEL", "trace")
            .envs(self.env.iter().map(|(name, value)| (name, value)));
        let mut process = Process::spawn("authcfg serve", command, &self.log)?;

        let deadline = Instant::now() + START_LIMIT;
        let url = format!("{}/healthz", self.base_url());
        loop {
            process.ensure_running()?;
            if let Ok(response) = self.client.send("GET", &url, None, None) {
                if response.status == 200 {
                    break;
                }
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "authcfg did not return 200 on GET /healthz within {} s; the end of its log:\n{}",
                START_LIMIT.as_secs(),
                process.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        self.process = Some(process);

        if self.admin_token.is_none() {
            let path = self.data_dir.join("admin.token");
            let token = std::fs::read_to_string(&path)
                .with_context(|| format!("failed to read the admin token {:?}", path.display()))?;
            self.admin_token = Some(token.trim().to_owned());
        }
        Ok(())
    }

    /// Stops the service with SIGTERM, as an operator would.
    pub(crate) fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }

    /// Stops and starts the service.
    pub(crate) fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.start()
    }

    /// Sends an API request with the admin token.
    pub(crate) fn api(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Response> {
        let url = format!("{}{path}", self.base_url());
        self.client
            .send(method, &url, Some(self.admin_token()?), body)
    }

    /// Creates a data source and fails unless the service returns 201.
    pub(crate) fn create_datasource(&self, body: &Value) -> anyhow::Result<()> {
        let response = self.api("POST", "/v1/datasources", Some(body))?;
        anyhow::ensure!(
            response.status == 201,
            "POST /v1/datasources {body} returned {}: {}",
            response.status,
            response.body
        );
        Ok(())
    }

    /// Sets a data source's credentials and fails unless the service returns 204.
    pub(crate) fn put_credentials(&self, name: &str, credentials: &Value) -> anyhow::Result<()> {
        let response = self.api(
            "PUT",
            &format!("/v1/datasources/{name}/credentials"),
            Some(credentials),
        )?;
        anyhow::ensure!(
            response.status == 204,
            "PUT /v1/datasources/{name}/credentials returned {}: {}",
            response.status,
            response.body
        );
        Ok(())
    }

    /// Requests the `Authorization` header of a data source.
    pub(crate) fn authorization(&self, name: &str) -> anyhow::Result<Response> {
        self.api(
            "POST",
            &format!("/v1/datasources/{name}/authorization"),
            None,
        )
    }

    /// Runs the diagnostics of a data source.
    pub(crate) fn test(&self, name: &str) -> anyhow::Result<Response> {
        self.api("POST", &format!("/v1/datasources/{name}/test"), None)
    }
}

/// Returns the name of the environment variable that sets `field` of the
/// data source `name`: `AUTHCFG_DS_`, the name upper-cased with every other
/// character turned into `_`, then `_` and the field, such as
/// `AUTHCFG_DS_CRM_PROD_CLIENT_SECRET`.
pub(crate) fn env_var(name: &str, field: &str) -> String {
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("AUTHCFG_DS_{name}_{}", field.to_ascii_uppercase())
}
