//! Crash safety: a child process writes in a loop and is killed with SIGKILL;
//! every write it reported as committed must be present afterwards, and the
//! file must pass `PRAGMA integrity_check`.
//!
//! SIGKILL leaves the operating system's page cache intact, so this test
//! checks commit ordering and file integrity after a process crash. It cannot
//! tell `synchronous = FULL` from weaker settings, which differ only after an
//! operating system crash or power loss.
//!
//! This test runs without the libtest harness: the same binary is the parent
//! and, when `AUTHCFG_CRASH_CHILD` names a store path, the child writer.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests fail by panicking"
)]

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use authcfg_model::{AuthConfig, CreateDataSource, Credentials, SecretString};
use authcfg_store::{Argon2Params, MasterKey, Store, StoreOptions};

const CHILD_ENV: &str = "AUTHCFG_CRASH_CHILD";
const ROUND_ENV: &str = "AUTHCFG_CRASH_ROUND";
const PASSPHRASE: &str = "crash test passphrase";

/// Reported writes after which each round kills its child; varied so that
/// the kill lands at different points of the loop.
const KILL_AFTER: [usize; 6] = [1, 7, 25, 3, 40, 12];

fn options() -> StoreOptions {
    StoreOptions {
        argon2: Argon2Params {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        ..StoreOptions::default()
    }
}

fn key() -> MasterKey {
    MasterKey::Passphrase(SecretString::new(PASSPHRASE))
}

/// Writes data sources with credentials until killed, reporting each one
/// after its call returned.
fn run_child(path: &Path, round: &str) {
    let store = Store::open(path, &key(), &options()).unwrap();
    let mut out = std::io::stdout().lock();
    for index in 0.. {
        let name = format!("r{round}-{index}");
        store
            .create_datasource(&CreateDataSource {
                name: name.clone(),
                description: None,
                base_url: None,
                auth: AuthConfig::basic(),
            })
            .unwrap();
        store
            .put_credentials(&name, &Credentials::new("client", format!("secret-{name}")))
            .unwrap();
        writeln!(out, "committed {name}").unwrap();
        out.flush().unwrap();
    }
}

fn main() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        let round = std::env::var(ROUND_ENV).unwrap();
        run_child(Path::new(&path), &round);
        return;
    }

    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("crash.db");
    let mut log = std::io::stderr().lock();
    let mut all_reported: Vec<String> = Vec::new();

    for (round, kill_after) in KILL_AFTER.iter().enumerate() {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env(CHILD_ENV, &path)
            .env(ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();

        let mut reported = Vec::new();
        while reported.len() < *kill_after {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("round {round}: the child exited early"))
                .unwrap();
            reported.push(line);
        }
        // Child::kill sends SIGKILL on Unix: no destructor or flush runs.
        child.kill().unwrap();
        child.wait().unwrap();
        // Lines the child wrote before it died are still in the pipe.
        for line in lines {
            match line {
                Ok(line) => reported.push(line),
                Err(_) => break,
            }
        }
        let names: Vec<String> = reported
            .iter()
            .map(|line| line.strip_prefix("committed ").unwrap().to_owned())
            .collect();
        all_reported.extend(names);

        let store = Store::open(&path, &key(), &options()).unwrap();
        for name in &all_reported {
            let unsealed = store
                .unseal_credentials(name)
                .unwrap_or_else(|error| panic!("round {round}: {name} is missing: {error}"))
                .unwrap_or_else(|| panic!("round {round}: {name} has no credentials"));
            assert_eq!(
                unsealed.credentials.client_secret.expose_secret(),
                format!("secret-{name}")
            );
        }
        drop(store);
        let integrity: String = rusqlite::Connection::open(&path)
            .unwrap()
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(integrity, "ok", "round {round}");
        writeln!(
            log,
            "round {round}: killed after {} reported writes; {} writes checked, integrity ok",
            reported.len(),
            all_reported.len()
        )
        .unwrap();
    }
    writeln!(log, "crash safety: {} rounds passed", KILL_AFTER.len()).unwrap();
}
