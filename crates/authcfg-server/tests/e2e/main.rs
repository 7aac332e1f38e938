//! End-to-end tests of the `authcfg` binary.
//!
//! Each test starts the real binary on 127.0.0.1 with a free port, its own
//! temporary data directory and its own token endpoint on loopback, and talks
//! to it over HTTP as a user would. All tests live in this one test binary to
//! keep link time down.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

mod access;
mod bad_input;
mod behaviour;
mod canary;
mod errors;
mod flow;
mod grants;
mod keys;
mod provisioning;
mod shutdown;
mod startup;
mod support;
