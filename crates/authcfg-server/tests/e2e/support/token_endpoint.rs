//! A real OAuth 2.0 token endpoint on 127.0.0.1 for the end-to-end tests.
//!
//! It implements just enough HTTP/1.1 for one request per connection, and
//! every response sends `Connection: close`. Clients authenticate with
//! `client_secret_basic` or `client_secret_post` against the clients a test
//! registers. Access tokens are a per-test prefix and a counter, so a test can
//! tell a fresh token from a cached one, and refresh tokens rotate on every
//! use. A test can switch the endpoint to reject every request, to respond
//! late, or to hang.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;

/// The endpoint's response to token requests.
#[derive(Debug, Clone)]
pub(crate) enum Behaviour {
    /// Issue a token to a registered client, and return `invalid_client` otherwise.
    Issue,
    /// Issue tokens like [`Behaviour::Issue`], after a delay.
    Delay(Duration),
    /// Return this status and RFC 6749 error body for every request.
    Reject {
        status: u16,
        error: String,
        description: String,
    },
    /// Read the request and never respond, until the endpoint is dropped.
    Hang,
}

/// One token request as the endpoint received it.
#[derive(Debug, Clone)]
pub(crate) struct RecordedRequest {
    pub(crate) path: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) form: Vec<(String, String)>,
}

impl RecordedRequest {
    /// Returns the first form parameter called `name`.
    pub(crate) fn param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Debug)]
struct State {
    behaviour: Behaviour,
    clients: HashMap<String, String>,
    /// The one refresh token per client that the endpoint accepts now.
    refresh_tokens: HashMap<String, String>,
    token_prefix: String,
    refresh_prefix: String,
    refreshed: u64,
    issued: u64,
    requests: Vec<RecordedRequest>,
}

/// The running endpoint; it stops accepting connections when dropped.
pub(crate) struct TokenEndpoint {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stopped: Arc<AtomicBool>,
}

impl TokenEndpoint {
    /// Starts an endpoint on a free loopback port. Its tokens are
    /// `{token_prefix}-1`, `{token_prefix}-2` and so on.
    pub(crate) fn start(token_prefix: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token endpoint");
        let addr = listener.local_addr().expect("token endpoint address");
        let state = Arc::new(Mutex::new(State {
            behaviour: Behaviour::Issue,
            clients: HashMap::new(),
            refresh_tokens: HashMap::new(),
            token_prefix: token_prefix.to_owned(),
            refresh_prefix: format!("{token_prefix}-refresh"),
            refreshed: 0,
            issued: 0,
            requests: Vec::new(),
        }));
        let stopped = Arc::new(AtomicBool::new(false));

        let accept_state = Arc::clone(&state);
        let accept_stopped = Arc::clone(&stopped);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if accept_stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = Arc::clone(&accept_state);
                let stopped = Arc::clone(&accept_stopped);
                thread::spawn(move || handle_connection(stream, &state, &stopped));
            }
        });

        Self {
            addr,
            state,
            stopped,
        }
    }

    /// Returns the token URL, `http://127.0.0.1:PORT/oauth/token`.
    pub(crate) fn token_url(&self) -> String {
        format!("http://{}/oauth/token", self.addr)
    }

    /// Registers (or replaces) a client and its secret.
    pub(crate) fn add_client(&self, client_id: &str, client_secret: &str) {
        self.lock()
            .clients
            .insert(client_id.to_owned(), client_secret.to_owned());
    }

    /// Accepts `refresh_token` for `client_id` in the refresh_token grant.
    /// Each use rotates it: the response carries a new refresh token
    /// `{refresh_prefix}-N` and the used one stops working (`invalid_grant`).
    pub(crate) fn set_refresh_token(&self, client_id: &str, refresh_token: &str) {
        self.lock()
            .refresh_tokens
            .insert(client_id.to_owned(), refresh_token.to_owned());
    }

    /// Changes the prefix of rotated refresh tokens, `{token_prefix}-refresh`
    /// by default.
    pub(crate) fn set_refresh_prefix(&self, prefix: &str) {
        self.lock().refresh_prefix = prefix.to_owned();
    }

    /// Changes how the endpoint responds from now on.
    pub(crate) fn set_behaviour(&self, behaviour: Behaviour) {
        self.lock().behaviour = behaviour;
    }

    /// Returns the number of tokens issued so far.
    pub(crate) fn issued(&self) -> u64 {
        self.lock().issued
    }

    /// Returns every request received so far.
    pub(crate) fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// Waits until at least `count` requests have arrived, for up to 30 s.
    pub(crate) fn wait_for_requests(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.lock().requests.len() < count {
            assert!(
                Instant::now() < deadline,
                "the token endpoint received fewer than {count} requests within 30 s"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        // Wake the accept loop so that it reads the flag and ends.
        self.stopped.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
    }
}

fn handle_connection(stream: TcpStream, state: &Mutex<State>, stopped: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let Some(request) = read_request(&stream) else {
        return;
    };

    let behaviour = {
        let mut state = state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.requests.push(request.clone());
        state.behaviour.clone()
    };

    let (status, body) = match behaviour {
        Behaviour::Hang => {
            // Keep the connection open without a byte of response, so that the
            // client under test runs into its own timeout.
            while !stopped.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(50));
            }
            return;
        }
        Behaviour::Reject {
            status,
            error,
            description,
        } => (
            status,
            serde_json::json!({"error": error, "error_description": description}),
        ),
        Behaviour::Delay(delay) => {
            thread::sleep(delay);
            issue(&request, state)
        }
        Behaviour::Issue => issue(&request, state),
    };

    let body = body.to_string();
    let response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nCache-Control: no-store\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        reason(status),
        body.len()
    );
    let mut stream = stream;
    let _ = stream.write_all(response.as_bytes());
    let _ = stream.flush();
}

/// Authenticates the client and issues the next token, or returns
/// `invalid_client` (RFC 6749 section 5.2).
fn issue(request: &RecordedRequest, state: &Mutex<State>) -> (u16, serde_json::Value) {
    let presented = client_from_basic(request).or_else(|| {
        Some((
            request.param("client_id")?.to_owned(),
            request.param("client_secret")?.to_owned(),
        ))
    });

    let mut state = state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let known = presented.as_ref().is_some_and(|(id, secret)| {
        state
            .clients
            .get(id)
            .is_some_and(|expected| expected == secret)
    });
    if !known {
        return (
            401,
            serde_json::json!({
                "error": "invalid_client",
                "error_description": "client authentication failed",
            }),
        );
    }

    // The refresh_token grant: the presented token must be the current one,
    // and a new one replaces it.
    let mut rotated = None;
    if request.param("grant_type") == Some("refresh_token") {
        let client_id = presented.map(|(id, _)| id).unwrap_or_default();
        let current = state.refresh_tokens.get(&client_id);
        if current.is_none() || current.map(String::as_str) != request.param("refresh_token") {
            return (
                400,
                serde_json::json!({
                    "error": "invalid_grant",
                    "error_description": "the refresh token is invalid or was rotated",
                }),
            );
        }
        state.refreshed += 1;
        let next = format!("{}-{}", state.refresh_prefix, state.refreshed);
        state.refresh_tokens.insert(client_id, next.clone());
        rotated = Some(next);
    }

    state.issued += 1;
    let token = format!("{}-{}", state.token_prefix, state.issued);
    let scope = request.param("scope").unwrap_or("default");
    let mut body = serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 3600,
        "scope": scope,
    });
    if let Some(refresh_token) = rotated {
        body["refresh_token"] = serde_json::Value::String(refresh_token);
    }
    (200, body)
}

/// Decodes `client_secret_basic`: base64 of the form-urlencoded id and secret.
fn client_from_basic(request: &RecordedRequest) -> Option<(String, String)> {
    let value = request
        .headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
        .map(|(_, value)| value.as_str())?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    Some((form_decode(id), form_decode(secret)))
}

fn form_decode(value: &str) -> String {
    form_urlencoded::parse(format!("x={value}").as_bytes())
        .next()
        .map(|(_, decoded)| decoded.into_owned())
        .unwrap_or_default()
}

fn read_request(stream: &TcpStream) -> Option<RecordedRequest> {
    let mut reader = BufReader::new(stream);

    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let path = request_line.split_whitespace().nth(1)?.to_owned();

    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }

    let length: usize = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    let form = form_urlencoded::parse(&body).into_owned().collect();

    Some(RecordedRequest {
        path,
        headers,
        form,
    })
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}
