//! Criterion benchmarks of the store's hot paths: sealing a secret, reading
//! and unsealing credentials by data source name, and opening a store with
//! the default Argon2id parameters. Results are recorded in docs/benchmarks.md.

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
    targets = seal_open, unseal_by_name, open_store
}
criterion_main!(benches);
