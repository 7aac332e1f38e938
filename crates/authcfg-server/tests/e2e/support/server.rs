//! Starts the real `authcfg` binary for one test: a free loopback port, a
//! temporary working directory with its own `authcfg.toml` and data
//! directory, and the whole log output, captured at trace level, in a file.
//!
//! Every reply is recorded so that a test can scan all response bodies for a
//! secret afterwards.

use std::fs::{self, OpenOptions};
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::Value;

/// How long a test waits for the server to start or stop before it fails.
const PATIENCE: Duration = Duration::from_secs(60);

/// Options of one server start.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerOptions {
    /// Extra lines for `authcfg.toml`, such as timeouts.
    pub(crate) extra_config: String,
    /// Extra environment variables, such as `AUTHCFG_DS_*` credentials.
    pub(crate) env: Vec<(String, String)>,
}

/// One HTTP reply with its body read.
#[derive(Debug, Clone)]
pub(crate) struct Reply {
    pub(crate) method: String,
    pub(crate) path: String,
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Reply {
    /// Parses the body as JSON, failing the test with the body when it is not.
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| {
            panic!(
                "{} {} returned a body that is not JSON ({error}): {}",
                self.method, self.path, self.body
            )
        })
    }

    /// Returns a header value as text.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    /// Returns the media type of the body, without parameters.
    pub(crate) fn content_type(&self) -> String {
        self.header("content-type")
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    }
}

/// A running `authcfg serve` and the files that belong to it.
pub(crate) struct Server {
    dir: tempfile::TempDir,
    child: Option<Child>,
    base_url: String,
    admin_token: String,
    client: Client,
    options: ServerOptions,
    replies: Mutex<Vec<Reply>>,
}

impl Server {
    /// Starts a server with the default options.
    pub(crate) fn start() -> Self {
        Self::start_with(ServerOptions::default())
    }

    /// Starts a server with extra configuration and environment.
    pub(crate) fn start_with(options: ServerOptions) -> Self {
        let mut server = Self::start_unspawned(options);
        server.spawn();
        server
    }

    fn start_unspawned(options: ServerOptions) -> Self {
        let dir = tempfile::tempdir().expect("create the server directory");
        let client = Client::builder()
            .timeout(PATIENCE)
            .no_proxy()
            .build()
            .expect("build the HTTP client");
        Self {
            dir,
            child: None,
            base_url: String::new(),
            admin_token: String::new(),
            client,
            options,
            replies: Mutex::new(Vec::new()),
        }
    }

    /// Returns the working directory, which contains `authcfg.toml` and the
    /// data directory.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Returns the data directory.
    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Returns the first admin API token, read from `<data_dir>/admin.token`.
    pub(crate) fn admin(&self) -> &str {
        &self.admin_token
    }

    /// Returns the base URL, `http://127.0.0.1:PORT`.
    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Returns everything the server processes wrote to standard output and
    /// standard error so far.
    pub(crate) fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Returns every reply received so far, in order.
    pub(crate) fn replies(&self) -> Vec<Reply> {
        self.replies
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Sends a request with an optional API token and JSON body.
    pub(crate) fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let body = body.map(|value| ("application/json", value.to_string().into_bytes()));
        self.call_raw(method, path, token, &[], body)
    }

    /// Sends a request with extra headers and a raw body of a given type.
    pub(crate) fn call_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<(&str, Vec<u8>)>,
    ) -> Reply {
        let method = Method::from_bytes(method.as_bytes()).expect("a valid HTTP method");
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base_url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }

        let response = request
            .send()
            .unwrap_or_else(|error| panic!("{method} {path} failed: {error}"));
        let reply = Reply {
            method: method.to_string(),
            path: path.to_owned(),
            status: response.status().as_u16(),
            headers: response.headers().clone(),
            body: response.text().expect("read the response body"),
        };
        self.replies
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(reply.clone());
        reply
    }

    /// `GET` with the admin token.
    pub(crate) fn get(&self, path: &str) -> Reply {
        self.call("GET", path, Some(self.admin()), None)
    }

    /// `POST` of a JSON body with the admin token.
    pub(crate) fn post(&self, path: &str, body: &Value) -> Reply {
        self.call("POST", path, Some(self.admin()), Some(body))
    }

    /// `PUT` of a JSON body with the admin token.
    pub(crate) fn put(&self, path: &str, body: &Value) -> Reply {
        self.call("PUT", path, Some(self.admin()), Some(body))
    }

    /// `DELETE` with the admin token.
    pub(crate) fn delete(&self, path: &str) -> Reply {
        self.call("DELETE", path, Some(self.admin()), None)
    }

    /// `PATCH` of a merge patch with the admin token and an optional `If-Match`.
    pub(crate) fn patch(&self, path: &str, body: &Value, if_match: Option<&str>) -> Reply {
        let headers: Vec<(&str, &str)> = if_match
            .map(|etag| ("if-match", etag))
            .into_iter()
            .collect();
        self.call_raw(
            "PATCH",
            path,
            Some(self.admin()),
            &headers,
            Some((
                "application/merge-patch+json",
                body.to_string().into_bytes(),
            )),
        )
    }

    /// Creates a data source as admin and fails the test unless it returns 201.
    pub(crate) fn create_datasource(&self, body: &Value) -> Reply {
        let reply = self.post("/v1/datasources", body);
        assert_eq!(reply.status, 201, "create failed: {}", reply.body);
        reply
    }

    /// Stores credentials as admin and fails the test unless it returns 204.
    pub(crate) fn put_credentials(&self, name: &str, client_id: &str, client_secret: &str) {
        let reply = self.put(
            &format!("/v1/datasources/{name}/credentials"),
            &serde_json::json!({"client_id": client_id, "client_secret": client_secret}),
        );
        assert_eq!(reply.status, 204, "put credentials failed: {}", reply.body);
    }

    /// Asks for an authorization header as admin.
    pub(crate) fn authorize(&self, name: &str) -> Reply {
        self.call(
            "POST",
            &format!("/v1/datasources/{name}/authorization"),
            Some(self.admin()),
            Some(&serde_json::json!({})),
        )
    }

    /// Runs the `authcfg` command line on the same working directory and data
    /// directory, with `stdin` as standard input.
    pub(crate) fn cli(&self, args: &[&str], env: &[(&str, &str)], stdin: Option<&str>) -> Output {
        let mut command = self.command();
        command.args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        command
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start the authcfg command line");
        if let Some(input) = stdin {
            let mut pipe = child
                .stdin
                .take()
                .expect("standard input of the command line");
            pipe.write_all(input.as_bytes())
                .expect("write standard input");
        }
        let output = child.wait_with_output().expect("wait for the command line");

        // The command line logs too: keep its output with the server's log so
        // that the secret scans cover it.
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the log file");
        let _ = log.write_all(&output.stdout);
        let _ = log.write_all(&output.stderr);
        output
    }

    /// Creates a consumer API token for `datasources` with the command line.
    /// The running server accepts it at once: a request with a token that is
    /// not in its index waits for a reload of the index before it is rejected.
    pub(crate) fn consumer_token(&self, datasources: &[&str]) -> String {
        let mut args = vec![
            "api-token",
            "create",
            "--label",
            "e2e-consumer",
            "--role",
            "consumer",
        ];
        for name in datasources {
            args.push("--datasource");
            args.push(name);
        }
        let output = self.cli(&args, &[], None);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "api-token create failed: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        extract_token(&stdout)
            .unwrap_or_else(|| panic!("no token in the output of api-token create: {stdout}"))
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub(crate) fn terminate(&mut self) -> ExitStatus {
        self.signal("TERM");
        self.wait_exit()
    }

    /// Sends a signal, such as `TERM` or `INT`, to the server process.
    pub(crate) fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the server is running");
        send_signal(child.id(), signal);
    }

    /// Waits for the server process to exit, failing the test after a minute.
    pub(crate) fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        wait_with_deadline(&mut child)
    }

    /// Stops the server with SIGTERM and starts it again on the same data
    /// directory with new extra environment variables.
    pub(crate) fn restart_with_env(&mut self, env: Vec<(String, String)>) {
        let options = ServerOptions {
            env,
            ..self.options.clone()
        };
        self.restart_with(options);
    }

    /// Stops the server with SIGTERM, unless it is stopped already, and
    /// starts it again on the same data directory with new options.
    pub(crate) fn restart_with(&mut self, options: ServerOptions) {
        if self.child.is_some() {
            let status = self.terminate();
            assert!(
                status.success(),
                "the server exited with {status} on SIGTERM"
            );
        }
        self.options = options;
        self.spawn();
    }

    /// Starts a server whose data directory begins with copies of `files`,
    /// such as a master key and a database backup.
    pub(crate) fn start_with_files(options: ServerOptions, files: &[(&str, &Path)]) -> Self {
        let mut server = Self::start_unspawned(options);
        fs::create_dir_all(server.data_dir()).expect("create the data directory");
        for (name, source) in files {
            fs::copy(source, server.data_dir().join(name))
                .unwrap_or_else(|error| panic!("copy {}: {error}", source.display()));
        }
        server.spawn();
        server
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_authcfg"));
        command
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "trace")
            .env("NO_COLOR", "1");
        for (name, value) in &self.options.env {
            command.env(name, value);
        }
        command
    }

    /// Writes `authcfg.toml` for a free port and starts `authcfg serve`,
    /// retrying with another port when the chosen one was taken meanwhile.
    fn spawn(&mut self) {
        for _attempt in 0..3 {
            let listening_before = self.listening_lines();
            let mut child = self.launch();
            if self.wait_until_healthy(&mut child, listening_before) {
                self.child = Some(child);
                self.admin_token = self.read_admin_token();
                return;
            }
        }
        panic!("authcfg serve did not start; log:\n{}", self.log());
    }

    /// Starts a server that must refuse to start, and returns its exit
    /// status and log.
    pub(crate) fn start_expecting_failure(options: ServerOptions) -> (ExitStatus, String) {
        let mut server = Self::start_unspawned(options);
        server.expect_failed_launch()
    }

    /// Stops the server and starts it again on the same data directory,
    /// where it must refuse to start. Returns the exit status and the log
    /// lines of the failed start.
    pub(crate) fn restart_expecting_failure(
        &mut self,
        options: ServerOptions,
    ) -> (ExitStatus, String) {
        if self.child.is_some() {
            let status = self.terminate();
            assert!(
                status.success(),
                "the server exited with {status} on SIGTERM"
            );
        }
        self.options = options;
        let before = self.log().len();
        let (status, log) = self.expect_failed_launch();
        (status, log[before..].to_owned())
    }

    fn expect_failed_launch(&mut self) -> (ExitStatus, String) {
        let mut child = self.launch();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().expect("wait for the server") {
                return (status, self.log());
            }
            let healthy = self
                .client
                .get(format!("{}/healthz", self.base_url))
                .send()
                .is_ok_and(|response| response.status().is_success());
            if healthy || Instant::now() >= deadline {
                self.child = Some(child);
                panic!(
                    "authcfg serve started although it should have refused to; log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes `authcfg.toml` with a free port and starts `authcfg serve`.
    fn launch(&mut self) -> Child {
        let port = free_port();
        let bind = format!("\"127.0.0.1:{port}\"");
        let defaults = [
            ("bind", bind.as_str()),
            ("data_dir", "\"data\""),
            ("log_level", "\"trace\""),
            ("log_format", "\"text\""),
        ];
        // A key set by the test's extra configuration replaces the default,
        // because TOML rejects a key that appears twice.
        let mut config = String::new();
        for (key, value) in defaults {
            let overridden = self.options.extra_config.lines().any(|line| {
                line.split('=')
                    .next()
                    .is_some_and(|name| name.trim() == key)
            });
            if !overridden {
                config.push_str(&format!("{key} = {value}\n"));
            }
        }
        config.push_str(&self.options.extra_config);
        fs::write(self.dir.path().join("authcfg.toml"), config).expect("write authcfg.toml");

        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the log file");
        let log_err = log.try_clone().expect("clone the log file");
        self.base_url = format!("http://127.0.0.1:{port}");
        self.command()
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .expect("start authcfg serve")
    }

    /// Polls `/healthz`; returns false when the process exited first.
    /// Returns how many times the log says that a server started listening.
    fn listening_lines(&self) -> usize {
        self.log().matches(LISTENING).count()
    }

    /// Waits until this child answers `/healthz`. Another test's server can
    /// hold the port that `free_port` returned, so a healthy answer counts
    /// only once this child has logged that it listens.
    fn wait_until_healthy(&self, child: &mut Child, listening_before: usize) -> bool {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log = self.log();
                assert!(
                    log.contains("in use"),
                    "authcfg serve exited with {status} at start; log:\n{log}"
                );
                return false;
            }
            let listening = self.listening_lines() > listening_before;
            if let Ok(response) = self.client.get(format!("{}/healthz", self.base_url)).send() {
                if listening && response.status().is_success() {
                    return true;
                }
            }
            assert!(
                Instant::now() < deadline,
                "authcfg serve was not healthy within {PATIENCE:?}; log:\n{}",
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn read_admin_token(&self) -> String {
        let path = self.data_dir().join("admin.token");
        let token = fs::read_to_string(&path)
            .unwrap_or_else(|error| panic!("read {}: {error}", path.display()));
        token.trim().to_owned()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Returns a port that was free a moment ago.
/// The message that `authcfg serve` logs once it has bound its address.
const LISTENING: &str = "authcfg is listening";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("find a free port")
}

/// Sends a signal to one process by id with the `kill` command, which keeps
/// the tests free of `unsafe` code.
fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Waits for a child to exit, killing it and failing the test after
/// [`PATIENCE`].
fn wait_with_deadline(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("wait for the server") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the server did not exit within {PATIENCE:?} of SIGTERM");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Picks the API token out of the output of `api-token create`: the longest
/// word of at least 32 characters made of URL-safe characters.
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
