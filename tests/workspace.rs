//! Workspace-wide rules that no single crate can check: the direction of
//! dependencies between the crates, which crate may use which I/O library,
//! and that every Rust file opens with a `//!` paragraph.

#![allow(clippy::unwrap_used, reason = "tests fail by panicking")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap().to_path_buf()
}

/// Returns the names of a crate's normal (non-dev, non-build) dependencies.
fn dependencies(crate_dir: &str) -> BTreeSet<String> {
    let path = workspace_root().join(crate_dir).join("Cargo.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let manifest: toml::Table = text.parse().unwrap();
    manifest
        .get("dependencies")
        .and_then(toml::Value::as_table)
        .map(|table| table.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn crate_dependency_direction() {
    let ours = [
        "authcfg-model",
        "authcfg-store",
        "authcfg-exchange",
        "authcfg-server",
    ];
    let allowed: [(&str, &[&str]); 4] = [
        ("authcfg-model", &[]),
        ("authcfg-store", &["authcfg-model"]),
        ("authcfg-exchange", &["authcfg-model"]),
        (
            "authcfg-server",
            &["authcfg-model", "authcfg-store", "authcfg-exchange"],
        ),
    ];
    for (name, expected) in allowed {
        let found: Vec<String> = dependencies(&format!("crates/{name}"))
            .into_iter()
            .filter(|dependency| ours.contains(&dependency.as_str()))
            .collect();
        let unexpected: Vec<&String> = found
            .iter()
            .filter(|dependency| !expected.contains(&dependency.as_str()))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{name} must not depend on {unexpected:?}"
        );
    }
}

#[test]
fn io_libraries_stay_in_their_layer() {
    // Each library is allowed in the listed crates only.
    let rules: [(&str, &[&str]); 8] = [
        ("rusqlite", &["authcfg-store"]),
        ("argon2", &["authcfg-store"]),
        ("chacha20poly1305", &["authcfg-store"]),
        ("reqwest", &["authcfg-exchange"]),
        ("actix-web", &["authcfg-server"]),
        ("config", &["authcfg-server"]),
        ("tokio", &["authcfg-exchange", "authcfg-server"]),
        ("clap", &["authcfg-server"]),
    ];
    for crate_name in [
        "authcfg-model",
        "authcfg-store",
        "authcfg-exchange",
        "authcfg-server",
    ] {
        let found = dependencies(&format!("crates/{crate_name}"));
        for (library, owners) in rules {
            if found.contains(library) {
                assert!(
                    owners.contains(&crate_name),
                    "{crate_name} depends on {library}, which only {owners:?} may use"
                );
            }
        }
    }
}

#[test]
fn model_does_no_io() {
    let found = dependencies("crates/authcfg-model");
    let io = ["tokio", "reqwest", "rusqlite", "actix-web", "tracing"];
    for library in io {
        assert!(
            !found.contains(library),
            "authcfg-model must not depend on {library}"
        );
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') && name != "node_modules" {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_has_module_docs() {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["crates", "xtask", "tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 10, "found only {} Rust files", files.len());

    let missing: Vec<String> = files
        .iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|path| path.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` opening paragraph: {missing:?}"
    );
}
