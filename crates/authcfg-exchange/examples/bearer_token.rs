//! Fetches a bearer token twice through the exchange, from a token endpoint
//! that the example starts itself on 127.0.0.1:
//! `cargo run -p authcfg-exchange --example bearer_token`.
//!
//! The endpoint is a few lines of tokio: it reads one HTTP/1.1 request per
//! connection and replies with a fixed client_credentials token response. The
//! first call misses the cache and sends the token request; the second is
//! served from the cache, as the printed counters show.

#![allow(clippy::print_stdout, reason = "an example prints its result")]

use std::sync::Arc;
use std::time::Duration;

use authcfg_exchange::{AuthorizeRequest, Exchange, ExchangeConfig, LoadedCredentials, NoRotation};
use authcfg_model::{AuthConfig, Credentials, DataSourceId, GrantType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The token response of the example endpoint: a made-up token valid for an hour.
const TOKEN_RESPONSE: &str =
    r#"{"access_token":"example-access-token","token_type":"Bearer","expires_in":3600}"#;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let token_url = format!("http://{}/oauth/token", listener.local_addr()?);
    tokio::spawn(serve_token_endpoint(listener));
    println!("token endpoint: {token_url}");

    let exchange = Exchange::new(
        ExchangeConfig {
            // The endpoint is on loopback, so a proxy from the environment
            // must not be used.
            proxy_from_env: false,
            ..ExchangeConfig::default()
        },
        Arc::new(NoRotation),
    )?;
    let auth = AuthConfig::bearer(token_url, GrantType::ClientCredentials);
    let request = AuthorizeRequest {
        datasource: DataSourceId(uuid::Uuid::from_u128(7)),
        auth: &auth,
        client_id: "reporting-service",
        credentials_version: 1,
        min_valid_for: Duration::from_secs(60),
        force_refresh: false,
    };

    for call in 1..=2 {
        let authorization = exchange
            .authorize(&request, || async {
                Ok(LoadedCredentials {
                    credentials: Credentials::new("reporting-service", "example-secret"),
                    version: 1,
                })
            })
            .await?;
        // Printing a header is fine for this made-up token only: a real
        // header is a live credential.
        let expiry = match authorization.expires_at() {
            Some(expires_at) => format!("used until {expires_at}"),
            None => "does not expire".to_owned(),
        };
        println!(
            "call {call}: Authorization: {} ({expiry})",
            authorization.header_value().expose_secret()
        );
    }

    let metrics = exchange.metrics();
    println!(
        "cache hits: {}, misses: {}, token requests: {}",
        metrics.cache_hits,
        metrics.cache_misses,
        metrics.exchanges_total()
    );
    Ok(())
}

/// Accepts connections until the program ends and replies to each with the
/// token response.
async fn serve_token_endpoint(listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(async move {
                    if let Err(error) = reply(stream).await {
                        println!("token endpoint: failed to reply: {error}");
                    }
                });
            }
            Err(error) => {
                println!("token endpoint: failed to accept a connection: {error}");
                return;
            }
        }
    }
}

/// Reads one request, head and `Content-Length` body, and writes the token
/// response with `Connection: close`.
async fn reply(mut stream: TcpStream) -> std::io::Result<()> {
    let mut received = Vec::new();
    let mut chunk = [0_u8; 4096];
    let request_length = loop {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            return Ok(());
        }
        received.extend_from_slice(&chunk[..read]);
        if let Some(head_end) = received.windows(4).position(|window| window == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&received[..head_end]).to_ascii_lowercase();
            let content_length = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|value| value.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break head_end + 4 + content_length;
        }
    };
    while received.len() < request_length {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        received.extend_from_slice(&chunk[..read]);
    }

    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{TOKEN_RESPONSE}",
        TOKEN_RESPONSE.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}
