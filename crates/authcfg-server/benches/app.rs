//! Criterion benchmarks of a request through the whole actix-web application,
//! in process and without a socket: what authcfg adds on top of HTTP parsing
//! and the kernel's TCP work, which `cargo xtask bench` measures end to end.
//!
//! Each figure has a baseline in the same harness: a hello-world route, and a
//! route that takes the authorization request's shape (a `POST` with a JSON
//! body) and returns a body of the same length. The difference between the
//! cache hit and that baseline is the cost of authentication, the snapshot,
//! the exchange's cache, the audit counter, the metrics and the middleware.
//!
//! Run with `cargo bench -p authcfg-server --bench app`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "benchmarks fail by panicking"
)]
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]

use std::fs;
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header;
use actix_web::{test, web, App, HttpResponse};
use authcfg_model::Role;
use authcfg_server::config::Settings;
use authcfg_server::state::AppState;
use authcfg_server::{api, bootstrap, telemetry};
use criterion::{criterion_group, criterion_main, Criterion};

/// The body of the cache-hit response for the basic data source below.
const SHAPED_BODY: &str = r#"{"header":"Authorization","value":"Basic YmVuY2gtdXNlcjpiZW5jaC1wYXNzd29yZA==","token_type":"Basic","expires_at":null,"scope":null}"#;

/// Sends `$iters` requests made by `$make` one after another through
/// `$app` on `$system` and returns the elapsed time.
macro_rules! run {
    ($system:expr, $app:expr, $iters:expr, $make:expr) => {{
        let make = $make;
        $system.block_on(async {
            let started = Instant::now();
            for _ in 0..$iters {
                let response = test::call_service($app, make().to_request()).await;
                assert!(response.status().is_success(), "{}", response.status());
            }
            started.elapsed()
        })
    }};
}

/// Returns the default settings with the data directory under `dir`.
fn settings(dir: &std::path::Path) -> Settings {
    let config = dir.join("authcfg.toml");
    fs::write(&config, "").unwrap();
    let vars = vec![(
        "AUTHCFG_DATA_DIR".to_owned(),
        dir.join("data").display().to_string(),
    )];
    Settings::load_from(Some(&config), &vars).unwrap()
}

/// Fills a data directory with the admin token, one basic data source with
/// credentials and a consumer token for it. Returns the consumer token.
fn prepare(system: &actix_web::rt::SystemRunner, dir: &std::path::Path) -> String {
    let settings = settings(dir);
    let store = bootstrap::open_store(&settings).unwrap();
    bootstrap::ensure_admin_token(&settings, &store).unwrap();
    let admin = fs::read_to_string(settings.data_dir.join("admin.token")).unwrap();
    let admin = admin.trim().to_owned();

    system.block_on(async {
        let (state, _writer) = AppState::build(Arc::new(settings), store.clone()).unwrap();
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(state))
                .configure(|config| api::configure(config, 64 * 1024)),
        )
        .await;
        let call = |method: &str, path: &str, body: serde_json::Value| {
            test::TestRequest::default()
                .method(method.parse().unwrap())
                .uri(path)
                .insert_header((header::AUTHORIZATION, format!("Bearer {admin}")))
                .set_json(body)
                .to_request()
        };
        let created = test::call_service(
            &app,
            call(
                "POST",
                "/v1/datasources",
                serde_json::json!({"name": "b1", "auth": {"method": "basic"}}),
            ),
        )
        .await;
        assert!(created.status().is_success(), "{}", created.status());
        let put = test::call_service(
            &app,
            call(
                "PUT",
                "/v1/datasources/b1/credentials",
                serde_json::json!({"client_id": "bench-user", "client_secret": "bench-password"}),
            ),
        )
        .await;
        assert!(put.status().is_success(), "{}", put.status());
    });
    let (_, consumer) = store
        .create_api_token("bench", Role::Consumer, &["b1".to_owned()])
        .unwrap();
    consumer.expose_secret().to_owned()
}

fn app(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let system = actix_web::rt::System::new();
    let consumer = prepare(&system, dir.path());
    let settings = settings(dir.path());
    let store = bootstrap::open_store(&settings).unwrap();
    let (state, writer) = AppState::build(Arc::new(settings), store).unwrap();
    let state = web::Data::new(state);

    let (authcfg, baseline) = system.block_on(async {
        actix_web::rt::spawn(writer);
        let authcfg = test::init_service(
            App::new()
                .app_data(state.clone())
                .configure(|config| api::configure(config, 64 * 1024))
                .wrap(api::shortcut::CacheHitShortcut)
                .wrap(telemetry::RequestContext),
        )
        .await;
        let baseline = test::init_service(
            App::new()
                .route(
                    "/",
                    web::get().to(|| async { HttpResponse::Ok().body("Hello, world!") }),
                )
                .route(
                    "/v1/datasources/{name}/authorization",
                    web::post().to(|_body: web::Bytes| async move {
                        HttpResponse::Ok()
                            .content_type("application/json")
                            .body(SHAPED_BODY)
                    }),
                ),
        )
        .await;
        (authcfg, baseline)
    });

    let authorization = || {
        test::TestRequest::post()
            .uri("/v1/datasources/b1/authorization")
            .insert_header((header::AUTHORIZATION, format!("Bearer {consumer}")))
            .insert_header((header::CONTENT_TYPE, "application/json"))
            .set_payload("{}")
    };
    // The first request fills the cache.
    let _ = run!(system, &authcfg, 1, authorization);

    let mut group = c.benchmark_group("app");
    group.bench_function("hello world (baseline)", |b| {
        b.iter_custom(|iters| {
            run!(system, &baseline, iters, || test::TestRequest::get()
                .uri("/"))
        });
    });
    group.bench_function("authorization-shaped hello (baseline)", |b| {
        b.iter_custom(|iters| run!(system, &baseline, iters, authorization));
    });
    group.bench_function("GET /healthz", |b| {
        b.iter_custom(|iters| {
            run!(system, &authcfg, iters, || test::TestRequest::get()
                .uri("/healthz"))
        });
    });
    group.bench_function("cache-hit authorization, basic", |b| {
        b.iter_custom(|iters| run!(system, &authcfg, iters, authorization));
    });
    group.finish();
}

criterion_group!(benches, app);
criterion_main!(benches);
