//! The authcfg service: the REST API v1, access control, configuration and
//! the `authcfg` command line, wired on top of the store and the exchange.
//!
//! The binary in `main.rs` only calls [`cli::main`]. Everything else lives
//! here so that tests and `xtask` can use it: [`openapi()`] returns the OpenAPI
//! document that `GET /openapi.json` serves and that `docs/openapi.json` holds.
//!
//! This is the only crate that uses actix-web and the HTTP wire formats.
//! Store calls are synchronous and always run on the blocking thread pool;
//! a cache-hit authorization takes no SQLite, Argon2 or lock across an await.

pub mod access;
pub mod api;
pub mod audit;
pub mod bootstrap;
pub mod cli;
pub mod config;
pub mod create;
pub mod env_import;
pub mod metrics;
pub mod openapi;
pub mod problem;
pub mod provisioning;
pub mod serve;
pub mod snapshot;
pub mod state;
pub mod telemetry;
pub mod token_url;

#[cfg(test)]
mod test_support;

pub use openapi::openapi;
