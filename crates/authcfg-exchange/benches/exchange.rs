//! Criterion benchmarks of the exchange: a cache-hit header lookup in
//! process, and a 1000-caller stampede on a cold key against a loopback
//! token endpoint that replies after 500 ms.
//!
//! Run with `cargo bench -p authcfg-exchange`. The stampede benchmark checks
//! after every round that exactly one request reached the endpoint and prints
//! the count, because that count, not the time, is its result.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmarks fail by panicking"
)]
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]

#[path = "../tests/support/mod.rs"]
mod support;

use std::future::ready;
use std::sync::Arc;
use std::time::{Duration, Instant};

use authcfg_exchange::{
    AuthorizeRequest, BoxError, Exchange, ExchangeConfig, LoadedCredentials, NoRotation,
};
use authcfg_model::{AuthConfig, Credentials, DataSourceId, GrantType};
use criterion::{criterion_group, criterion_main, Criterion};
use futures_util::FutureExt as _;
use support::{Reply, TokenServer};

fn config() -> ExchangeConfig {
    ExchangeConfig {
        proxy_from_env: false,
        ..ExchangeConfig::default()
    }
}

fn load() -> impl FnOnce() -> std::future::Ready<Result<LoadedCredentials, BoxError>> + Send {
    || {
        ready(Ok(LoadedCredentials {
            credentials: Credentials::new("demo", "secret"),
            version: 1,
        }))
    }
}

fn request(datasource: DataSourceId, auth: &AuthConfig) -> AuthorizeRequest<'_> {
    AuthorizeRequest {
        datasource,
        auth,
        client_id: "demo",
        credentials_version: 1,
        min_valid_for: Duration::ZERO,
        force_refresh: false,
    }
}

/// Measures cache hits of a bearer token and of a Basic header. A hit
/// completes on its first poll, so it is polled once without an executor.
fn cache_hit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(TokenServer::start(Reply::token("at-bench", 3600)));
    let exchange =
        runtime.block_on(async { Exchange::new(config(), Arc::new(NoRotation)).unwrap() });
    let mut auth = AuthConfig::bearer(server.url(), GrantType::ClientCredentials);
    auth.scope = Some("api.read api.write".to_owned());
    let datasource = DataSourceId(uuid::Uuid::from_u128(1));

    // Fill the cache and a few neighbours, as a server with several data
    // sources would have.
    runtime.block_on(async {
        for id in 1..=16 {
            exchange
                .authorize(
                    &request(DataSourceId(uuid::Uuid::from_u128(id)), &auth),
                    load(),
                )
                .await
                .unwrap();
        }
    });

    c.bench_function("cache_hit_bearer", |b| {
        b.iter(|| {
            exchange
                .authorize(&request(datasource, &auth), load())
                .now_or_never()
                .expect("a cache hit completes on its first poll")
                .unwrap()
        });
    });

    let basic = AuthConfig::basic();
    exchange
        .authorize(&request(datasource, &basic), load())
        .now_or_never()
        .unwrap()
        .unwrap();
    c.bench_function("cache_hit_basic", |b| {
        b.iter(|| {
            exchange
                .authorize(&request(datasource, &basic), load())
                .now_or_never()
                .expect("a cache hit completes on its first poll")
                .unwrap()
        });
    });
}

/// Measures 1000 concurrent callers of a cold key against an endpoint that
/// takes 500 ms, and checks that one request reaches it.
fn stampede(c: &mut Criterion) {
    const CALLERS: usize = 1000;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(TokenServer::start(
        Reply::token("at-stampede", 3600).delay(Duration::from_millis(500)),
    ));
    let auth = Arc::new(AuthConfig::bearer(
        server.url(),
        GrantType::ClientCredentials,
    ));

    let mut group = c.benchmark_group("stampede");
    group.sample_size(10);
    group.bench_function("cold_key_1000_callers", |b| {
        b.iter_custom(|rounds| {
            let mut total = Duration::ZERO;
            for _ in 0..rounds {
                let before = server.count();
                let exchange = Exchange::new(config(), Arc::new(NoRotation)).unwrap();
                let started = Instant::now();
                runtime.block_on(async {
                    let tasks: Vec<_> = (0..CALLERS)
                        .map(|_| {
                            let exchange = exchange.clone();
                            let auth = Arc::clone(&auth);
                            tokio::spawn(async move {
                                exchange
                                    .authorize(
                                        &request(DataSourceId(uuid::Uuid::from_u128(1)), &auth),
                                        load(),
                                    )
                                    .await
                                    .map(|_| ())
                            })
                        })
                        .collect();
                    for task in tasks {
                        task.await.unwrap().unwrap();
                    }
                });
                total += started.elapsed();
                let upstream = server.count() - before;
                assert_eq!(
                    upstream, 1,
                    "{CALLERS} callers sent {upstream} token requests"
                );
            }
            total
        });
    });
    group.finish();

    #[allow(
        clippy::print_stderr,
        reason = "the upstream count is the benchmark's result"
    )]
    {
        eprintln!(
            "stampede: {} token requests reached the endpoint in total, one per round of {CALLERS} callers",
            server.count()
        );
    }
}

criterion_group!(benches, cache_hit, stampede);
criterion_main!(benches);
