//! Installs of the interop suite into the ignored folder `.interop/`.
//!
//! A Python virtual environment with the packages pinned in
//! `interop/requirements.txt` (django-oauth-toolkit, Django, schemathesis), and
//! `npm ci` of `interop/package-lock.json` (oidc-provider). Each install leaves
//! a stamp file with the pin file's content, and is reused while the pins are
//! unchanged.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use super::process::run_bounded;

/// Time limit of one install command. A cold install takes about 15 s for pip
/// and 3 s for npm on a 2-core machine with a fast registry connection.
const INSTALL_LIMIT: Duration = Duration::from_secs(600);

/// Paths of the installed tools.
pub(crate) struct Installs {
    /// The virtual environment's Python interpreter.
    pub(crate) python: PathBuf,
    /// The virtual environment's `schemathesis` command.
    pub(crate) schemathesis: PathBuf,
    /// The folder with `node_modules/oidc-provider` and the start script.
    pub(crate) node_dir: PathBuf,
}

/// Installs what is missing or stale, and returns the paths of the tools.
pub(crate) fn ensure(root: &Path, state: &Path, logs: &Path) -> anyhow::Result<Installs> {
    let pins = root.join("interop");
    let venv = state.join("venv");
    let node_dir = state.join("node");

    ensure_venv(&venv, &pins.join("requirements.txt"), logs)?;
    ensure_node(&node_dir, &pins, logs)?;

    // The start script is copied beside `node_modules/`, because Node resolves
    // an ES module import relative to the importing file.
    let script = pins.join("oidc_provider.mjs");
    std::fs::copy(&script, node_dir.join("oidc_provider.mjs")).with_context(|| {
        format!(
            "failed to copy {:?} into {:?}",
            script.display(),
            node_dir.display()
        )
    })?;

    Ok(Installs {
        python: venv.join("bin").join("python"),
        schemathesis: venv.join("bin").join("schemathesis"),
        node_dir,
    })
}

fn ensure_venv(venv: &Path, requirements: &Path, logs: &Path) -> anyhow::Result<()> {
    let pins = read(requirements)?;
    let stamp = venv.join(".authcfg-requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(pins.as_str()) {
        super::say(&format!(
            "reusing the Python environment {}",
            venv.display()
        ));
        return Ok(());
    }

    super::say(&format!(
        "installing {} into {}",
        requirements.display(),
        venv.display()
    ));
    let log = logs.join("install-python.log");
    if !venv.join("bin").join("python").exists() {
        let python =
            std::env::var("AUTHCFG_INTEROP_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let mut command = Command::new(python);
        command.arg("-m").arg("venv").arg(venv);
        run_bounded("python3 -m venv", command, &log, INSTALL_LIMIT)?;
    }
    let mut command = Command::new(venv.join("bin").join("pip"));
    command
        .args([
            "install",
            "--disable-pip-version-check",
            "--no-input",
            "--quiet",
            "-r",
        ])
        .arg(requirements);
    run_bounded("pip install", command, &log, INSTALL_LIMIT)?;

    write(&stamp, &pins)
}

/// Oldest Node.js major version that runs oidc-provider 9.
const MIN_NODE_MAJOR: u32 = 20;

/// Fails unless `node --version` reports at least [`MIN_NODE_MAJOR`].
fn check_node_version() -> anyhow::Result<()> {
    let output = Command::new("node")
        .arg("--version")
        .output()
        .context("failed to run `node --version`: install Node.js 20 or later with npm")?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let major: Option<u32> = version
        .strip_prefix('v')
        .and_then(|rest| rest.split('.').next())
        .and_then(|major| major.parse().ok());
    match major {
        Some(major) if major >= MIN_NODE_MAJOR => Ok(()),
        _ => anyhow::bail!(
            "Node.js {version:?} is too old or unknown for oidc-provider: install Node.js {MIN_NODE_MAJOR} or later"
        ),
    }
}

fn ensure_node(node_dir: &Path, pins: &Path, logs: &Path) -> anyhow::Result<()> {
    check_node_version()?;
    let lock = read(&pins.join("package-lock.json"))?;
    let stamp = node_dir.join(".authcfg-package-lock.json");
    let installed = node_dir.join("node_modules").join("oidc-provider").exists();
    if installed && std::fs::read_to_string(&stamp).ok().as_deref() == Some(lock.as_str()) {
        super::say(&format!(
            "reusing the Node packages in {}",
            node_dir.display()
        ));
        return Ok(());
    }

    super::say(&format!(
        "installing oidc-provider with npm ci into {}",
        node_dir.display()
    ));
    std::fs::create_dir_all(node_dir)
        .with_context(|| format!("failed to create {:?}", node_dir.display()))?;
    for file in ["package.json", "package-lock.json"] {
        std::fs::copy(pins.join(file), node_dir.join(file)).with_context(|| {
            format!(
                "failed to copy interop/{file} into {:?}",
                node_dir.display()
            )
        })?;
    }
    let mut command = Command::new("npm");
    command
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(node_dir);
    run_bounded(
        "npm ci",
        command,
        &logs.join("install-node.log"),
        INSTALL_LIMIT,
    )?;

    write(&stamp, &lock)
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("failed to read {:?}", path.display()))
}

fn write(path: &Path, text: &str) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("failed to write {:?}", path.display()))
}
