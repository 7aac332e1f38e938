//! The loopback servers that `cargo xtask bench` measures authcfg against.
//!
//! `bench-servers hello` is a hello-world actix-web server: the ceiling for
//! any HTTP endpoint on the machine, since it does nothing beyond HTTP.
//! `bench-servers token` is an OAuth 2.0 token endpoint that issues a new,
//! distinct access token for every request and counts the requests, so that
//! the harness can tell how many token requests authcfg sent upstream.
//!
//! Both listen on the address given with `--bind`, which the harness always
//! sets to 127.0.0.1. The harness builds this binary in release mode with
//! `--features bench-servers`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};

const HELP: &str = "\
bench-servers <hello|token> --bind ADDR [options]

  hello --bind ADDR [--workers N]
      answer GET / with \"Hello, world!\"
  token --bind ADDR [--workers N] [--token-bytes N] [--slow-delay-ms N]
      answer POST /token and POST /slow-token (after the delay) with a new
      access token of N bytes that expires in 3600 s; GET /count returns
      {\"token\": requests to /token, \"slow_token\": requests to /slow-token}

--workers defaults to the number of CPU cores.
";

/// The options of either server.
struct Options {
    bind: SocketAddr,
    workers: usize,
    token_bytes: usize,
    slow_delay: Duration,
}

/// The request counters of the token endpoint.
#[derive(Default)]
struct Counters {
    token: AtomicU64,
    slow_token: AtomicU64,
}

/// The state shared by the token endpoint's handlers.
struct TokenState {
    counters: Counters,
    token_bytes: usize,
    slow_delay: Duration,
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, options) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(message) => {
            report_usage_error(&message);
            std::process::exit(2);
        }
    };

    actix_web::rt::System::new().block_on(async move {
        match command.as_str() {
            "hello" => serve_hello(&options).await,
            _ => serve_token(&options).await,
        }
    })
}

#[expect(
    clippy::print_stderr,
    reason = "usage errors of a command line tool go to standard error"
)]
fn report_usage_error(message: &str) {
    eprintln!("error: {message}\n\n{HELP}");
}

/// Parses `<hello|token> --bind ADDR [options]`.
fn parse(args: &[String]) -> Result<(String, Options), String> {
    let Some((command, rest)) = args.split_first() else {
        return Err("missing command: use hello or token".to_owned());
    };
    if command != "hello" && command != "token" {
        return Err(format!("unknown command {command:?}: use hello or token"));
    }

    let mut bind = None;
    let mut options = Options {
        bind: SocketAddr::from(([127, 0, 0, 1], 0)),
        workers: std::thread::available_parallelism().map_or(1, usize::from),
        token_bytes: 64,
        slow_delay: Duration::from_millis(250),
    };
    let mut rest = rest.iter();
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag} {value:?} is not a whole number"))
        };
        match flag.as_str() {
            "--bind" => {
                bind = Some(
                    value
                        .parse::<SocketAddr>()
                        .map_err(|_| format!("--bind {value:?} is not an address and port"))?,
                );
            }
            "--workers" => options.workers = usize::try_from(number()?.max(1)).unwrap_or(1),
            "--token-bytes" => {
                options.token_bytes = usize::try_from(number()?).unwrap_or(usize::MAX);
            }
            "--slow-delay-ms" => options.slow_delay = Duration::from_millis(number()?),
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    options.bind = bind.ok_or("--bind is required")?;

    Ok((command.clone(), options))
}

async fn serve_hello(options: &Options) -> std::io::Result<()> {
    HttpServer::new(|| {
        App::new().route(
            "/",
            web::get().to(|| async { HttpResponse::Ok().body("Hello, world!") }),
        )
    })
    .workers(options.workers)
    .shutdown_timeout(1)
    .bind(options.bind)?
    .run()
    .await
}

async fn serve_token(options: &Options) -> std::io::Result<()> {
    let state = web::Data::new(TokenState {
        counters: Counters::default(),
        token_bytes: options.token_bytes,
        slow_delay: options.slow_delay,
    });

    HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .route("/token", web::post().to(issue_token))
            .route("/slow-token", web::post().to(issue_slow_token))
            .route("/count", web::get().to(count))
    })
    .workers(options.workers)
    .shutdown_timeout(1)
    .bind(options.bind)?
    .run()
    .await
}

async fn issue_token(state: web::Data<TokenState>) -> HttpResponse {
    let number = state.counters.token.fetch_add(1, Ordering::SeqCst) + 1;
    token_response("fast", number, state.token_bytes)
}

async fn issue_slow_token(state: web::Data<TokenState>) -> HttpResponse {
    let number = state.counters.slow_token.fetch_add(1, Ordering::SeqCst) + 1;

    // The delay keeps the first exchange in flight while the other callers of
    // a cold stampede arrive, so that each of them would reach this endpoint
    // unless authcfg makes them wait for the one request in flight.
    actix_web::rt::time::sleep(state.slow_delay).await;

    token_response("slow", number, state.token_bytes)
}

async fn count(state: web::Data<TokenState>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "token": state.counters.token.load(Ordering::SeqCst),
        "slow_token": state.counters.slow_token.load(Ordering::SeqCst),
    }))
}

/// Builds an RFC 6749 section 5.1 response with a distinct access token of
/// `token_bytes` bytes (at least as long as its unique prefix).
fn token_response(kind: &str, number: u64, token_bytes: usize) -> HttpResponse {
    let mut access_token = format!("bench-{kind}-{number:012}-");
    let padding = token_bytes.saturating_sub(access_token.len());
    access_token.extend(std::iter::repeat_n('x', padding));

    HttpResponse::Ok()
        .insert_header(("cache-control", "no-store"))
        .json(serde_json::json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 3600,
        }))
}
