//! Helpers for Weir's integration tests: start real `weir` processes with
//! a log file each, kill them, and read what they wrote.

pub mod chaos;
pub mod cluster;
pub mod dev;
pub mod hbase;
pub mod hdfs;
pub mod http;
pub mod kafka;
pub mod local_job;
pub mod pki;
pub mod postgres;
pub mod redis;

use anyhow::{bail, Context};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Path of a binary built from this workspace (`weir`, `weir-driver`, ...),
/// next to the test executable's directory.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace binaries first (cargo build --workspace --bins, or run scripts/test.sh)",
        path.display()
    );
    path
}

/// A child process with its output in a log file.
pub struct Proc {
    /// Name used in messages.
    pub name: String,
    child: Child,
    log: PathBuf,
}

impl Proc {
    /// Starts `bin` with `args` and extra environment, logging to `log`.
    pub fn start(
        name: &str,
        bin: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> anyhow::Result<Proc> {
        let out = fs::OpenOptions::new().create(true).append(true).open(log)?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(bin);
        cmd.args(args).stdin(Stdio::null()).stdout(out).stderr(err);
        // WEIR_TEST_LOG sets the log filter of every process a test starts.
        let filter = std::env::var("WEIR_TEST_LOG").unwrap_or_else(|_| "info,sled=warn".into());
        cmd.env("WEIR_LOG", filter);
        // An error a process exits with is printed without a backtrace
        // (panics keep theirs), so the error itself stays in a log's tail.
        cmd.env("RUST_LIB_BACKTRACE", "0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        Ok(Proc {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    /// Sends SIGKILL and waits for the process to be gone.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        let _ = self.child.kill();
        self.child.wait()?;
        Ok(())
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it has exited (with its status).
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_timeout(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                bail!(
                    "{} did not exit within {timeout:?}\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last `lines` lines of the log, for failure messages.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The last `lines` lines of a log file, framed for failure messages.
pub fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    format!(
        "--- last {lines} lines of {} ---\n{tail}\n---",
        path.display()
    )
}

/// One row of a file-sink output file.
#[derive(Debug, Clone)]
pub struct Row {
    /// Batch id from the file name.
    pub batch: u64,
    /// Partition from the file name.
    pub partition: u32,
    /// The JSON object.
    pub value: serde_json::Value,
}

/// The `(batch, partition)` of a file-sink file name `batch-<id>-part-<p>.jsonl`.
pub fn sink_file_batch(name: &str) -> Option<(u64, u32)> {
    let (b, p) = name
        .strip_prefix("batch-")?
        .strip_suffix(".jsonl")?
        .split_once("-part-")?;
    Some((b.parse().ok()?, p.parse().ok()?))
}

/// Every row of every visible (committed) file of a file sink, checking
/// that file names follow `batch-<id>-part-<p>.jsonl`.
pub fn read_file_sink(dir: &Path) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    if !dir.exists() {
        return Ok(rows);
    }
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let text = fs::read_to_string(dir.join(&name))?;
        rows.extend(
            parse_sink_file(&name, &text).with_context(|| format!("in {}", dir.display()))?,
        );
    }
    rows.sort_by_key(|r| (r.batch, r.partition));
    Ok(rows)
}

/// The rows of the file-sink file `name` holding `text`; fails unless the
/// name is `batch-<id>-part-<p>.jsonl` and every line is a JSON value.
pub fn parse_sink_file(name: &str, text: &str) -> anyhow::Result<Vec<Row>> {
    let Some((batch, partition)) = sink_file_batch(name) else {
        bail!("unexpected file {name} in a file sink's directory");
    };
    text.lines()
        .map(|line| {
            let value = serde_json::from_str(line)
                .with_context(|| format!("{name}: bad JSON line {line:?}"))?;
            Ok(Row {
                batch,
                partition,
                value,
            })
        })
        .collect()
}

/// The latest row per `key` (running aggregates emit changed keys each batch).
pub fn latest_by_key(rows: &[Row]) -> BTreeMap<String, serde_json::Value> {
    let mut out = BTreeMap::new();
    for r in rows {
        out.insert(r.value["key"].to_string(), r.value.clone());
    }
    out
}

/// A small deterministic generator for test schedules (xorshift64*).
pub struct Rng(u64);

impl Rng {
    /// Seeded; the same seed gives the same schedule.
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// The next value in `[lo, hi)`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        lo + self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % (hi - lo).max(1)
    }
}

/// The URL of the test HDFS (`WEIR_HDFS_URL`, set by `deploy/dev/hdfs.sh`
/// through scripts/test.sh). `None` means skip — but under `CI=true` a
/// missing HDFS fails the test instead, so CI never passes without it.
pub fn hdfs_url(test: &str) -> Option<String> {
    match std::env::var("WEIR_HDFS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: WEIR_HDFS_URL is not set under CI=true; start HDFS with deploy/dev/hdfs.sh start (scripts/test.sh does)")
        }
        _ => {
            eprintln!("SKIPPED {test}: WEIR_HDFS_URL is not set; start HDFS with deploy/dev/hdfs.sh start");
            None
        }
    }
}
