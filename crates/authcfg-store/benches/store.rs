//! Criterion benchmarks of the store's hot paths: sealing a secret, reading
//! and unsealing credentials by data source name, creating a data source in
//! an empty and in a large store, and opening a store with the default
//! Argon2id parameters. Results are recorded in docs/benchmarks.md.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmarks fail by panicking"
)]
#![allow(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

use std::hint::black_box;

use authcfg_model::{AuthConfig, CreateDataSource, Credentials, GrantType, SecretString};
use authcfg_store::__bench::SealBench;
use authcfg_store::{MasterKey, Store, StoreOptions};
use criterion::{criterion_group, criterion_main, Criterion};

/// Number of data sources in the benchmark store, so lookups use the index.
const DATASOURCES: usize = 200;

fn key() -> MasterKey {
    MasterKey::Passphrase(SecretString::new("benchmark passphrase"))
}

fn seal_open(c: &mut Criterion) {
    let bench = SealBench::new();
    let secret = "s".repeat(64);

    c.bench_function("seal_open_64_byte_secret", |b| {
        b.iter(|| assert!(bench.seal_open(black_box(&secret))));
    });
}

fn unseal_by_name(c: &mut Criterion) {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("bench.db");
    let store = Store::open(&path, &key(), &StoreOptions::default()).unwrap();
    for index in 0..DATASOURCES {
        let name = format!("source-{index:03}");
        store
            .create_datasource(&CreateDataSource {
                name: name.clone(),
                description: None,
                base_url: None,
                auth: AuthConfig::bearer(
                    "https://login.example.com/oauth/token",
                    GrantType::RefreshToken,
                ),
            })
            .unwrap();
        let credentials = Credentials {
            client_id: "reporting".to_owned(),
            client_secret: SecretString::new("c".repeat(64)),
            username: None,
            password: None,
            refresh_token: Some(SecretString::new("r".repeat(64))),
        };
        store.put_credentials(&name, &credentials).unwrap();
    }

    c.bench_function("unseal_credentials_by_name", |b| {
        b.iter(|| {
            let unsealed = store
                .unseal_credentials(black_box("source-100"))
                .unwrap()
                .unwrap();
            black_box(unsealed.version)
        });
    });
    c.bench_function("get_datasource_by_name", |b| {
        b.iter(|| {
            black_box(
                store
                    .get_datasource(black_box("source-100"))
                    .unwrap()
                    .version,
            )
        });
    });
}

/// Number of data sources in the store of the large creation benchmark.
const LARGE_STORE: usize = 10_000;

/// Creates `count` basic data sources named `existing-00000` and up.
fn fill(store: &Store, count: usize) {
    for index in 0..count {
        store
            .create_datasource(&CreateDataSource {
                name: format!("existing-{index:05}"),
                description: None,
                base_url: None,
                auth: AuthConfig::basic(),
            })
            .unwrap();
    }
}

fn create_datasource(c: &mut Criterion) {
    let mut group = c.benchmark_group("create_datasource");
    for (label, existing) in [("empty_store", 0), ("store_with_10k", LARGE_STORE)] {
        let directory = tempfile::tempdir().unwrap();
        let store = Store::open(
            &directory.path().join("create.db"),
            &key(),
            &StoreOptions::default(),
        )
        .unwrap();
        fill(&store, existing);

        // Every iteration creates one more data source, so the store grows
        // by the number of iterations during the measurement.
        let mut next = 0_u64;
        group.bench_function(label, |b| {
            b.iter(|| {
                next += 1;
                let created = store
                    .create_datasource(&CreateDataSource {
                        name: format!("new-{next}"),
                        description: None,
                        base_url: None,
                        auth: AuthConfig::basic(),
                    })
                    .unwrap();
                black_box(created.version)
            });
        });
    }
    group.finish();
}

fn open_store(c: &mut Criterion) {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("open.db");
    drop(Store::open(&path, &key(), &StoreOptions::default()).unwrap());

    let mut group = c.benchmark_group("open");
    group.sample_size(10);
    group.bench_function("open_store_owasp_argon2id", |b| {
        b.iter(|| black_box(Store::open(&path, &key(), &StoreOptions::default()).unwrap()));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = seal_open, unseal_by_name, create_datasource, open_store
}
criterion_main!(benches);
