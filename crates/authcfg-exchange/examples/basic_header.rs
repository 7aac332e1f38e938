//! Builds a Basic `Authorization` header through the exchange, without any
//! network: `cargo run -p authcfg-exchange --example basic_header`.
//!
//! The loader replaces the store. It runs once, on the first call; the
//! second call is served from the cache, as the printed counters show.

#![allow(clippy::print_stdout, reason = "an example prints its result")]

use std::sync::Arc;
use std::time::Duration;

use authcfg_exchange::{AuthorizeRequest, Exchange, ExchangeConfig, LoadedCredentials, NoRotation};
use authcfg_model::{AuthConfig, Credentials, DataSourceId};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let exchange = Exchange::new(ExchangeConfig::default(), Arc::new(NoRotation))?;
    let auth = AuthConfig::basic();
    let request = AuthorizeRequest {
        datasource: DataSourceId(uuid::Uuid::from_u128(42)),
        auth: &auth,
        client_id: "reporting-service",
        credentials_version: 1,
        min_valid_for: Duration::ZERO,
        force_refresh: false,
    };

    for _ in 0..2 {
        let authorization = exchange
            .authorize(&request, || async {
                Ok(LoadedCredentials {
                    credentials: Credentials::new("reporting-service", "example-password"),
                    version: 1,
                })
            })
            .await?;
        // Printing a header is fine for these made-up credentials only: a real
        // header is a live credential.
        println!(
            "Authorization: {}",
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
