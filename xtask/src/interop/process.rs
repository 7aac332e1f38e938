//! Child processes of the interop suite, stopped even when something hangs.
//!
//! Every child runs in a process group of its own, so that stopping it also
//! stops whatever it started (a shell's children, a server's workers). The
//! groups of live children are kept in a registry. A watchdog thread kills them
//! all and exits when the suite's time limit passes. A signal thread does the
//! same on SIGINT, SIGTERM and SIGHUP, because a child in a group of its own
//! does not receive the signals that a terminal or `timeout` sends to the suite.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;

/// Process group ids of the children that may still run.
static GROUPS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// Exit status of the suite when its time limit passes, as `timeout` uses.
const TIMED_OUT_EXIT: i32 = 124;

/// How long a stopped child gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How often a wait checks on a child.
const POLL: Duration = Duration::from_millis(50);

fn groups() -> MutexGuard<'static, BTreeSet<u32>> {
    // A poisoned registry still contains valid ids: a panic cannot leave it half
    // changed, since every change is a single insert or remove.
    GROUPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends `signal` (such as `TERM`) to the process group `group`.
///
/// The `kill` program is used because this workspace forbids `unsafe`, which a
/// direct `kill(2)` call through `libc` needs.
fn signal_group(group: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg("--")
        .arg(format!("-{group}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Kills every registered process group.
fn kill_all() {
    let groups = groups();
    for group in groups.iter() {
        signal_group(*group, "KILL");
    }
}

/// Starts the watchdog and the signal thread for a suite limited to `limit`.
pub(crate) fn install_guards(limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    std::thread::spawn(move || {
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
        }
        crate::interop::say(&format!(
            "error: the interop suite timed out after {} s: every process it started is killed",
            limit.as_secs()
        ));
        kill_all();
        std::process::exit(TIMED_OUT_EXIT);
    });

    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ])
    .context("failed to install the signal handlers")?;
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            crate::interop::say(&format!(
                "error: the interop suite received signal {signal}: every process it started is killed"
            ));
            kill_all();
            std::process::exit(128 + signal);
        }
    });
    Ok(())
}

/// A child process in its own process group, with its output in a log file.
///
/// Dropping it stops it.
pub(crate) struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Process {
    /// Starts `command` as `name`, with standard output and error appended to
    /// `log` and standard input closed.
    pub(crate) fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Self> {
        let file = File::options()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("failed to open the log file {:?}", log.display()))?;
        let file_err = file
            .try_clone()
            .context("failed to duplicate a log file handle")?;
        command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(file_err)
            .process_group(0);

        // The registry stays locked from the spawn to the insert, so that the
        // watchdog never misses a child that has started.
        let mut groups = groups();
        let child = command
            .spawn()
            .with_context(|| format!("failed to start {name} ({command:?})"))?;
        groups.insert(child.id());
        drop(groups);

        Ok(Self {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
            exited: None,
        })
    }

    /// Returns the exit status if the process has exited.
    pub(crate) fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = Some(status);
            }
        }
        self.exited
    }

    /// Returns an error with the end of the log if the process has exited.
    pub(crate) fn ensure_running(&mut self) -> anyhow::Result<()> {
        match self.exit_status() {
            None => Ok(()),
            Some(status) => anyhow::bail!(
                "{} exited with {status}; the end of its log {:?}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail(30)
            ),
        }
    }

    /// Stops the process group: SIGTERM, then SIGKILL after a grace period.
    pub(crate) fn stop(&mut self) {
        let group = self.child.id();
        if self.exit_status().is_none() {
            signal_group(group, "TERM");
            let deadline = Instant::now() + STOP_GRACE;
            while self.exit_status().is_none() && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
        }

        // The leader may be gone while processes that it started still run
        // in its group.
        signal_group(group, "KILL");
        if self.exited.is_none() {
            self.exited = self.child.wait().ok();
        }
        groups().remove(&group);
    }

    /// Returns up to the last `lines` lines of the log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs `command` to completion as `name`, killed after `limit`, with its
/// output in `log`. An exit other than success is an error.
pub(crate) fn run_bounded(
    name: &str,
    command: Command,
    log: &Path,
    limit: Duration,
) -> anyhow::Result<()> {
    let mut process = Process::spawn(name, command, log)?;
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = process.exit_status() {
            process.stop();
            anyhow::ensure!(
                status.success(),
                "{name} failed with {status}; the end of its log {:?}:\n{}",
                log.display(),
                log_tail(log, 30)
            );
            return Ok(());
        }
        if Instant::now() >= deadline {
            process.stop();
            anyhow::bail!(
                "{name} timed out after {} s and was killed; the end of its log {:?}:\n{}",
                limit.as_secs(),
                log.display(),
                log_tail(log, 30)
            );
        }
        std::thread::sleep(POLL);
    }
}

/// Returns up to the last `lines` lines of the file at `path`.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    const MAX_BYTES: u64 = 64 * 1024;

    let Ok(mut file) = File::open(path) else {
        return String::from("(no log)");
    };
    let length = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(MAX_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);

    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
