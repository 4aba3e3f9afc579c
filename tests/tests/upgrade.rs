//! Spec upgrades with `weir local` on an existing state directory: a
//! compatible change is applied and the output stays exact across it; a key
//! change is refused with a diff naming the path and class; the same change
//! with `--reset-state` counts from empty state while the offsets continue.
//!
//! A spec referring to a custom operator that no executor has is refused
//! in tests/tests/custom_operators.rs.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use weir_tests::{binary, latest_by_key, read_file_sink, Proc};

const KEYS: u64 = 37;
const PARTITIONS: u64 = 3;
const TOTAL: u64 = 240_000;
const PER_BATCH: u64 = 8_000;

struct Job {
    dir: tempfile::TempDir,
    runs: u32,
}

impl Job {
    fn new() -> Job {
        Job {
            dir: tempfile::tempdir().unwrap(),
            runs: 0,
        }
    }

    /// Writes the spec with `batch_interval`, `max_records_per_partition`
    /// and `key_by` as given; returns its path.
    fn spec(&self, interval: &str, per_batch: u64, key_by: &str) -> PathBuf {
        let path = self.dir.path().join("job.yaml");
        fs::write(
            &path,
            format!(
                "name: upgrade\nbatch_interval: {interval}\ncheckpoint_every: 2\nstate_partitions: 4\n\
                 source:\n  generator: {{ partitions: {PARTITIONS}, keys: {KEYS}, rate: 0, total: {TOTAL}, \
                 max_records_per_partition: {per_batch}, event_time_rate: 4000 }}\n\
                 pipeline:\n  - key_by: \"{key_by}\"\n  - aggregate: {{ count: {{}}, total: {{ sum: value }} }}\n\
                 sink:\n  file: {{ path: {} }}\n",
                self.out().display()
            ),
        )
        .unwrap();
        path
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn state(&self) -> String {
        self.dir.path().join("state").to_string_lossy().into_owned()
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("weir.log")
    }

    fn run(&mut self, spec: &Path, extra: &[&str], env: &[(&str, &str)]) -> (bool, String) {
        self.runs += 1;
        let log = self.dir.path().join(format!("run-{}.log", self.runs));
        let spec = spec.to_string_lossy().into_owned();
        let state = self.state();
        let mut args = vec!["local", &spec, "--state-dir", &state, "--exit-when-idle"];
        args.extend_from_slice(extra);
        let mut p = Proc::start(
            &format!("weir local (run {})", self.runs),
            &binary("weir"),
            &args,
            env,
            &log,
        )
        .unwrap();
        let status = p.wait_timeout(Duration::from_secs(180)).unwrap();
        let text = fs::read_to_string(&log).unwrap();
        fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.log())
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
            .unwrap();
        (status.success(), text)
    }

    /// Runs until batch 3 is committed, then dies like `kill -9`.
    fn run_three_batches(&mut self, spec: &Path) {
        let (ok, log) = self.run(spec, &[], &[("WEIR_CRASH_AT", "after-committed@3")]);
        assert!(
            !ok && log.contains("crash point after-committed@3"),
            "{log}"
        );
    }

    fn weir(&self, args: &[&str]) -> (bool, String, String) {
        let out = Command::new(binary("weir"))
            .args(args)
            .env("WEIR_LOG", "warn")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// count and sum of `value` per key over the records `g` in `range`, keyed
/// by `key` (as printed, without JSON quotes).
fn expected(
    range: std::ops::Range<u64>,
    key: impl Fn(u64) -> String,
) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for g in range {
        let e = out.entry(key(g)).or_insert((0, 0));
        e.0 += 1;
        e.1 += g;
    }
    out
}

fn latest(job: &Job) -> BTreeMap<String, serde_json::Value> {
    let rows = read_file_sink(&job.out()).unwrap();
    latest_by_key(&rows)
        .into_iter()
        .map(|(k, v)| (k.trim_matches('"').to_string(), v))
        .collect()
}

fn check(
    got: &BTreeMap<String, serde_json::Value>,
    want: &BTreeMap<String, (u64, u64)>,
    log: &str,
) {
    for (key, (count, sum)) in want {
        let row = got
            .get(key)
            .unwrap_or_else(|| panic!("key {key} missing from the output\n{log}"));
        assert_eq!(row["count"].as_u64(), Some(*count), "count of {key}");
        assert_eq!(row["total"].as_u64(), Some(*sum), "sum of {key}");
    }
}

#[test]
fn compatible_change_is_applied_and_output_stays_exact() {
    let mut job = Job::new();
    let spec = job.spec("100ms", PER_BATCH, "key");
    job.run_three_batches(&spec);

    // Smaller batches, a shorter interval: compatible.
    let spec = job.spec("50ms", 5_000, "key");
    let (ok, out, err) = job.weir(&[
        "--json",
        "diff",
        spec.to_str().unwrap(),
        "--state-dir",
        &job.state(),
    ]);
    assert!(ok, "{err}");
    let diff: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(diff["verdict"], "compatible", "{out}");
    let paths: Vec<&str> = diff["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        vec![
            "batch_interval",
            "source.generator.max_records_per_partition"
        ]
    );

    let (ok, log) = job.run(&spec, &[], &[]);
    assert!(ok, "{log}");
    assert!(log.contains("resuming with an upgraded spec"), "{log}");
    let got = latest(&job);
    check(
        &got,
        &expected(0..TOTAL, |g| format!("k{}", g % KEYS)),
        &log,
    );
    // Batches after the upgrade read 5000 records per partition.
    let batches = read_file_sink(&job.out()).unwrap().last().unwrap().batch;
    assert_eq!(
        batches,
        3 + (TOTAL / PARTITIONS - 3 * PER_BATCH).div_ceil(5_000)
    );

    let (ok, out, err) = job.weir(&["history", "upgrade", "--state-dir", &job.state()]);
    assert!(ok, "{err}");
    assert!(out.contains("version 1 at "), "{out}");
    assert!(out.contains("version 2 at "), "{out}");
    assert!(out.contains("batch_interval"), "{out}");
    assert!(out.contains("(current)"), "{out}");
}

#[test]
fn key_change_is_refused_then_applied_with_reset_state() {
    let mut job = Job::new();
    let spec = job.spec("100ms", PER_BATCH, "key");
    job.run_three_batches(&spec);

    let spec = job.spec("100ms", PER_BATCH, "value % 7");
    let (ok, out, err) = job.weir(&["diff", spec.to_str().unwrap(), "--state-dir", &job.state()]);
    assert!(ok, "{err}");
    assert!(out.contains("pipeline[0].key_by"), "{out}");
    assert!(out.contains("needs-state-decision"), "{out}");
    assert!(out.contains("verdict: needs-state-decision"), "{out}");

    let (ok, log) = job.run(&spec, &[], &[]);
    assert!(!ok, "a key change must be refused\n{log}");
    assert!(
        log.contains("pipeline[0].key_by: key -> value % 7 (needs-state-decision; allowed with --reset-state"),
        "{log}"
    );

    // With --reset-state: empty state from batch 4 on, offsets continue
    // where batch 3 ended (3 * 8000 records per partition).
    let (ok, log) = job.run(&spec, &["--reset-state"], &[]);
    assert!(ok, "{log}");
    let reset_at = 3 * PER_BATCH * PARTITIONS;
    let got = latest(&job);
    check(
        &got,
        &expected(reset_at..TOTAL, |g| (g % 7).to_string()),
        &log,
    );
    // Old state was not read: its directory is still there, the new
    // generation has its own.
    let state = PathBuf::from(job.state()).join("state").join("upgrade");
    assert!(state.join("aggregate").is_dir());
    assert!(state.join("aggregate-g1").is_dir());

    // Resubmitting the new spec later resumes it (no decision needed).
    let (ok, log) = job.run(&spec, &[], &[]);
    assert!(ok, "{log}");
    assert!(
        log.contains("resuming from the checkpoint") || log.contains("resuming with"),
        "{log}"
    );
}

#[test]
fn reset_state_without_changes_counts_from_the_reset_point() {
    let mut job = Job::new();
    let spec = job.spec("100ms", PER_BATCH, "key");
    job.run_three_batches(&spec);
    // Same keys as before: any old state read would show in the counts.
    let (ok, log) = job.run(&spec, &["--reset-state"], &[]);
    assert!(ok, "{log}");
    let reset_at = 3 * PER_BATCH * PARTITIONS;
    check(
        &latest(&job),
        &expected(reset_at..TOTAL, |g| format!("k{}", g % KEYS)),
        &log,
    );
}

#[test]
fn from_earliest_reprocesses_everything_with_fresh_state() {
    let mut job = Job::new();
    let spec = job.spec("100ms", PER_BATCH, "key");
    job.run_three_batches(&spec);
    let (ok, log) = job.run(&spec, &["--from", "earliest"], &[]);
    assert!(ok, "{log}");
    check(
        &latest(&job),
        &expected(0..TOTAL, |g| format!("k{}", g % KEYS)),
        &log,
    );
    // A bad --from is refused before anything changes.
    let (ok, log) = job.run(&spec, &["--from", "7:10"], &[]);
    assert!(!ok);
    assert!(log.contains("--from 7:..."), "{log}");
}

#[test]
fn purge_needs_confirmation_then_deletes_metadata_and_state() {
    let mut job = Job::new();
    let spec = job.spec("100ms", PER_BATCH, "key");
    job.run_three_batches(&spec);
    let state = job.state();
    let (ok, _, err) = job.weir(&["stop", "upgrade", "--purge", "--state-dir", &state]);
    assert!(!ok);
    assert!(err.contains("pass --yes to confirm"), "{err}");
    assert!(PathBuf::from(&state).join("state/upgrade").is_dir());

    let (ok, out, err) = job.weir(&["stop", "upgrade", "--purge", "--yes", "--state-dir", &state]);
    assert!(ok, "{err}");
    assert!(out.contains("purged"), "{out}");
    assert!(!PathBuf::from(&state).join("state/upgrade").exists());
    let (ok, _, err) = job.weir(&["history", "upgrade", "--state-dir", &state]);
    assert!(!ok);
    assert!(err.contains("does not exist"), "{err}");

    // A changed spec now starts a new job: counts cover every record.
    let spec = job.spec("100ms", PER_BATCH, "value % 7");
    let (ok, log) = job.run(&spec, &[], &[]);
    assert!(ok, "{log}");
    assert!(log.contains("starting a new job"), "{log}");
    check(
        &latest(&job),
        &expected(0..TOTAL, |g| (g % 7).to_string()),
        &log,
    );
}

/// A cluster (one driver, one executor as processes): a compatible change
/// submitted while the job runs is picked up at a batch boundary by the
/// running driver; a key change is refused with the diff.
#[test]
fn running_cluster_job_takes_a_compatible_change_between_batches() {
    use std::time::Instant;
    use weir_tests::cluster::LocalCluster;
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 1, 1);
    c.start_all();
    c.wait_leader(Duration::from_secs(20));
    let total = 120_000u64;
    let write = |interval: &str, per_batch: u64, key_by: &str| {
        let spec = dir.path().join("live.yaml");
        fs::write(
            &spec,
            format!(
                "name: live\nbatch_interval: {interval}\ncheckpoint_every: 2\nstate_partitions: 4\n\
                 source:\n  generator: {{ partitions: 2, keys: {KEYS}, rate: 15000, total: {total}, max_records_per_partition: {per_batch} }}\n\
                 pipeline:\n  - key_by: \"{key_by}\"\n  - aggregate: {{ count: {{}}, total: {{ sum: value }} }}\nsink:\n  file: {{ path: {} }}\n",
                dir.path().join("out").display()
            ),
        )
        .unwrap();
        spec.to_string_lossy().into_owned()
    };
    let committed = |c: &LocalCluster| -> (u64, String) {
        match c.weir_json(&["status", "live"]) {
            Ok(s) => (
                s["last_committed_batch"].as_u64().unwrap_or(0),
                s["state"].as_str().unwrap_or("").to_string(),
            ),
            Err(_) => (0, String::new()),
        }
    };
    let spec = write("200ms", 5_000, "key");
    let r = c.weir_json(&["submit", &spec]).unwrap();
    assert_eq!(r["verdict"], "new", "{r}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while committed(&c).0 < 2 {
        assert!(Instant::now() < deadline, "no progress\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    }

    let spec = write("100ms", 3_000, "key");
    let d = c.weir_json(&["diff", &spec]).unwrap();
    assert_eq!(d["verdict"], "compatible", "{d}");
    let r = c.weir_json(&["submit", &spec]).unwrap();
    assert_eq!(r["verdict"], "compatible", "{r}");
    assert_eq!(r["version"], 2, "{r}");

    let refused = write("100ms", 3_000, "value % 7");
    let e = c.weir_json(&["submit", &refused]).unwrap_err();
    assert!(
        e.contains("pipeline[0].key_by: key -> value % 7 (needs-state-decision"),
        "{e}"
    );

    let deadline = Instant::now() + Duration::from_secs(120);
    while committed(&c).1 != "finished" {
        assert!(Instant::now() < deadline, "not finished\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
    let driver_log = fs::read_to_string(dir.path().join("driver-1.log")).unwrap();
    assert!(
        driver_log.contains("the job's spec changed"),
        "the running driver did not pick the change up\n{}",
        c.logs()
    );
    let rows = read_file_sink(&dir.path().join("out")).unwrap();
    let got: BTreeMap<String, serde_json::Value> = latest_by_key(&rows)
        .into_iter()
        .map(|(k, v)| (k.trim_matches('"').to_string(), v))
        .collect();
    check(
        &got,
        &expected(0..total, |g| format!("k{}", g % KEYS)),
        &c.logs(),
    );
    let h = c.weir_json(&["history", "live"]).unwrap();
    let versions = h["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{h}");
    assert_eq!(versions[1]["changes"][0]["path"], "batch_interval", "{h}");
}
