//! A small HTTP/1.1 token endpoint on 127.0.0.1 whose behaviour each test
//! sets: status, headers, body, delay or hold of the replies, with every
//! request recorded. It speaks just enough HTTP for a token request: one request per
//! connection, a `Content-Length` body, and `Connection: close` replies.

#![allow(
    dead_code,
    unreachable_pub,
    reason = "each test file uses a different part of the support code"
)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// One reply of the token endpoint.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
    /// Holds the reply until the test calls [`TokenServer::release`].
    pub held: bool,
}

impl Reply {
    /// Creates a JSON reply.
    pub fn json(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
            body: body.to_owned(),
            delay: Duration::ZERO,
            held: false,
        }
    }

    /// Creates a successful Bearer token reply.
    pub fn token(access_token: &str, expires_in: u64) -> Self {
        Self::json(
            200,
            &format!(
                r#"{{"access_token":"{access_token}","token_type":"Bearer","expires_in":{expires_in}}}"#
            ),
        )
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Replaces the Content-Type header.
    pub fn content_type(mut self, value: &str) -> Self {
        self.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
        self.headers
            .push(("Content-Type".to_owned(), value.to_owned()));
        self
    }

    /// Delays the reply.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Holds the reply until the test calls [`TokenServer::release`].
    pub fn held(mut self) -> Self {
        self.held = true;
        self
    }
}

/// A request as the endpoint received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Recorded {
    /// Returns the first value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(candidate, _)| candidate.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Default)]
struct Behaviour {
    /// Replies used once each, in order, before `default`.
    queue: VecDeque<Reply>,
    default: Option<Reply>,
    requests: Vec<Recorded>,
}

/// The running token endpoint. It stops when dropped.
pub struct TokenServer {
    addr: SocketAddr,
    behaviour: Arc<Mutex<Behaviour>>,
    arrivals: Arc<AtomicUsize>,
    gate: Arc<Semaphore>,
    task: tokio::task::JoinHandle<()>,
}

impl TokenServer {
    /// Starts an endpoint that replies with `reply` to every request.
    pub async fn start(reply: Reply) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let behaviour = Arc::new(Mutex::new(Behaviour {
            default: Some(reply),
            ..Behaviour::default()
        }));
        let arrivals = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Semaphore::new(0));

        let task = {
            let behaviour = Arc::clone(&behaviour);
            let arrivals = Arc::clone(&arrivals);
            let gate = Arc::clone(&gate);
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let behaviour = Arc::clone(&behaviour);
                    let arrivals = Arc::clone(&arrivals);
                    let gate = Arc::clone(&gate);
                    tokio::spawn(async move {
                        let _ = serve(stream, &behaviour, &arrivals, &gate).await;
                    });
                }
            })
        };

        Self {
            addr,
            behaviour,
            arrivals,
            gate,
            task,
        }
    }

    /// Returns the token endpoint URL.
    pub fn url(&self) -> String {
        format!("http://{}/oauth/token", self.addr)
    }

    /// Replaces the reply to every further request.
    pub fn set(&self, reply: Reply) {
        let mut behaviour = self.behaviour.lock().unwrap();
        behaviour.queue.clear();
        behaviour.default = Some(reply);
    }

    /// Queues a reply for the next request only.
    pub fn push(&self, reply: Reply) {
        self.behaviour.lock().unwrap().queue.push_back(reply);
    }

    /// Lets `count` held replies go.
    pub fn release(&self, count: usize) {
        self.gate.add_permits(count);
    }

    /// Returns the number of requests that arrived, including those whose
    /// reply is still delayed.
    pub fn count(&self) -> usize {
        self.arrivals.load(Ordering::SeqCst)
    }

    /// Returns every recorded request, in arrival order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.behaviour.lock().unwrap().requests.clone()
    }

    /// Returns the last recorded request.
    pub fn last(&self) -> Recorded {
        self.requests().pop().expect("no request arrived")
    }

    /// Waits until `count` requests have arrived.
    pub async fn wait_for_count(&self, count: usize) {
        while self.count() < count {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Returns a loopback URL whose listener never accepts and whose accept
/// queue is full, so that a new connection attempt hangs in the handshake.
/// The returned values keep the listener and the queued connections open.
pub async fn full_backlog_url() -> (String, Vec<TcpStream>, tokio::net::TcpListener) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();

    // Fill the accept queue. Linux queues backlog + 1 connections; further
    // attempts time out while their handshake packets are dropped.
    let mut queued = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => queued.push(stream),
            _ => break,
        }
    }
    (format!("http://{addr}/oauth/token"), queued, listener)
}

/// Returns a loopback URL on which nothing listens.
pub async fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}/oauth/token")
}

async fn serve(
    mut stream: TcpStream,
    behaviour: &Mutex<Behaviour>,
    arrivals: &AtomicUsize,
    gate: &Semaphore,
) -> std::io::Result<()> {
    // Read the head, then as many body bytes as Content-Length gives.
    let mut buffer = Vec::new();
    let head_end = loop {
        let mut chunk = [0_u8; 4096];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(position) = buffer.windows(4).position(|window| window == b"\r\n\r\n") {
            break position;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    let mut body = buffer[head_end + 4..].to_vec();
    while body.len() < length {
        let mut chunk = [0_u8; 4096];
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..read]);
    }

    arrivals.fetch_add(1, Ordering::SeqCst);
    let reply = {
        let mut behaviour = behaviour.lock().unwrap();
        behaviour.requests.push(Recorded {
            method,
            path,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        let queued = behaviour.queue.pop_front();
        queued
            .or_else(|| behaviour.default.clone())
            .unwrap_or_else(|| Reply::json(500, "{}"))
    };

    if reply.held {
        gate.acquire().await.unwrap().forget();
    }
    tokio::time::sleep(reply.delay).await;
    let mut response = format!("HTTP/1.1 {} Status\r\n", reply.status);
    for (name, value) in &reply.headers {
        response.push_str(&format!("{name}: {value}\r\n"));
    }
    response.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        reply.body.len()
    ));
    response.push_str(&reply.body);
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
