//! Child processes of the benchmark, stopped on every way out of it.
//!
//! Each child runs in a process group of its own, and the groups of live
//! children are kept in a registry. Dropping a [`Process`] stops its group,
//! which covers returns and errors. A signal thread kills every registered
//! group and exits on SIGINT, SIGTERM and SIGHUP, because children in groups
//! of their own do not receive the signals that a terminal sends.
//!
//! NOTE: `interop/process.rs` has the same registry, group signalling and
//! signal thread with other grace periods; a shared module would serve both.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use anyhow::Context;

/// Process group ids of the children that may still run.
static GROUPS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// The benchmark's temporary directory, removed by the signal thread, which
/// exits without running destructors.
static SCRATCH: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Registers the temporary directory that the signal thread removes.
pub(crate) fn remove_on_signal(dir: &Path) {
    *SCRATCH
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(dir.to_path_buf());
}

/// How long a stopped child gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// How often a wait checks on a child.
const POLL: Duration = Duration::from_millis(20);

fn groups() -> MutexGuard<'static, BTreeSet<u32>> {
    // Every change to the registry is a single insert or remove, so a
    // poisoned registry still contains valid ids.
    GROUPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends `signal` (such as `TERM`) to the process group `group`.
///
/// The `kill` program is used because the workspace forbids `unsafe`, which a
/// direct `kill(2)` call needs.
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

/// Starts the thread that kills every child and exits on SIGINT, SIGTERM or
/// SIGHUP. Later calls do nothing.
pub(crate) fn install_signal_guard() -> anyhow::Result<()> {
    static INSTALLED: Once = Once::new();
    let mut result = Ok(());
    INSTALLED.call_once(|| {
        result = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ])
        .map(|mut signals| {
            std::thread::spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    super::say(&format!(
                        "received signal {signal}: killing every process the benchmark started"
                    ));
                    for group in groups().iter() {
                        signal_group(*group, "KILL");
                    }
                    let scratch = SCRATCH
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .take();
                    if let Some(dir) = scratch {
                        let _ = std::fs::remove_dir_all(dir);
                    }
                    std::process::exit(128 + signal);
                }
            });
        });
    });
    result.context("failed to install the signal handlers")
}

/// A child process in its own process group. Dropping it stops it.
pub(crate) struct Process {
    name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Process {
    /// Starts `command` as `name` with standard input closed, standard output
    /// written to `stdout` and standard error appended to `log`.
    pub(crate) fn spawn(
        name: &str,
        mut command: Command,
        stdout: &Path,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let open = |path: &Path| {
            File::options()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("failed to open {:?}", path.display()))
        };
        command
            .stdin(Stdio::null())
            .stdout(open(stdout)?)
            .stderr(open(log)?)
            .process_group(0);

        // The registry stays locked from the spawn to the insert, so that the
        // signal thread never misses a child that has started.
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

    /// Returns the process id.
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
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
                log_tail(&self.log, 30)
            ),
        }
    }

    /// Waits for the process to exit by itself, for at most `limit`, and kills
    /// it when the limit passes.
    pub(crate) fn wait(&mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exit_status() {
                self.stop();
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.stop();
                anyhow::bail!(
                    "{} did not finish within {} s and was killed; the end of its log {:?}:\n{}",
                    self.name,
                    limit.as_secs(),
                    self.log.display(),
                    log_tail(&self.log, 30)
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Stops the process group: SIGTERM, then SIGKILL after a grace period.
    /// Returns the exit status of the process.
    pub(crate) fn stop(&mut self) -> Option<ExitStatus> {
        self.stop_within(STOP_GRACE)
    }

    /// Stops the process group: SIGTERM, then SIGKILL after `grace`.
    /// Returns the exit status of the process.
    pub(crate) fn stop_within(&mut self, grace: Duration) -> Option<ExitStatus> {
        let group = self.child.id();
        if self.exit_status().is_none() {
            signal_group(group, "TERM");
            let deadline = Instant::now() + grace;
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
        self.exited
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

/// Returns up to the last `lines` lines of the file at `path`.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    const MAX_BYTES: u64 = 64 * 1024;

    let Ok(mut file) = File::open(path) else {
        return String::from("(no log)");
    };
    let length = file.metadata().map_or(0, |meta| meta.len());
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(MAX_BYTES)));
    let mut bytes = Vec::new();
    let _ = file.read_to_end(&mut bytes);

    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Returns the resident set size of process `pid` in bytes, read from the
/// `VmRSS` line of `/proc/PID/status`.
pub(crate) fn resident_memory(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status =
        std::fs::read_to_string(&path).with_context(|| format!("failed to read {path}"))?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|value| value.trim().parse::<u64>().ok())
        .with_context(|| format!("no VmRSS line in {path}"))?;
    Ok(kib * 1024)
}

/// Returns the CPU time, user and system, that process `pid` has used so
/// far, read from fields 14 and 15 of `/proc/PID/stat`.
pub(crate) fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("failed to read {path}"))?;

    // The command name in field 2 may contain spaces, so the fields are
    // counted from the closing parenthesis after it: field 3 is the first.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| {
        fields
            .get(index)
            .and_then(|value| value.parse::<u64>().ok())
            .with_context(|| format!("{path} has no CPU time in field {}", index + 3))
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(
        total as f64 / clock_ticks_per_second() as f64,
    ))
}

/// Returns the kernel's clock ticks per second (`getconf CLK_TCK`), the unit
/// of the CPU times in `/proc`; 100 when `getconf` fails, the value on every
/// common Linux platform.
fn clock_ticks_per_second() -> u64 {
    static TICKS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .filter(|ticks| *ticks > 0)
            .unwrap_or(100)
    })
}
