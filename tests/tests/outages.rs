//! Outside systems going away mid-run: the dev MiniDFS (namenode and
//! datanodes) is stopped for 20 s while a job checkpoints its state there.
//! The leader must report the job `degraded` with the reason while batches
//! fail and are retried, then resume on its own once HDFS is back, with the
//! output exact per key.
//!
//! The test stops and restarts the shared dev HDFS through
//! `deploy/dev/hdfs.sh` (its data is kept across restarts), so it lives in
//! a test binary of its own: no other HDFS test runs while it does.

use serde_json::Value;
use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use weir_tests::cluster::{assert_generator_counts, LocalCluster};
use weir_tests::{hdfs, hdfs_url};

fn dev_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/dev")
        .join(name)
}

/// Runs `deploy/dev/NAME COMMAND`. Its output goes to a file, not a pipe:
/// the service it starts keeps its inherited descriptors open.
fn run_script(name: &str, command: &str) {
    let log = std::env::temp_dir().join(format!("weir-outages-{name}-{command}.log"));
    let file = fs::File::create(&log).unwrap();
    let status = Command::new("bash")
        .arg(dev_script(name))
        .arg(command)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .status()
        .unwrap_or_else(|e| panic!("{name} {command}: {e}"));
    assert!(
        status.success(),
        "{name} {command} failed:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
}

/// Restarts HDFS if the test panics while it is stopped, so later tests
/// find it running.
struct HdfsStopped(bool);

impl HdfsStopped {
    fn stop() -> Self {
        run_script("hdfs.sh", "stop");
        HdfsStopped(true)
    }

    fn start(&mut self) {
        run_script("hdfs.sh", "start");
        self.0 = false;
    }
}

impl Drop for HdfsStopped {
    fn drop(&mut self) {
        if self.0 {
            let _ = Command::new("bash")
                .arg(dev_script("hdfs.sh"))
                .arg("start")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

fn status(c: &LocalCluster, job: &str) -> Value {
    c.weir_json(&["status", job]).unwrap_or_default()
}

#[test]
fn a_namenode_outage_degrades_the_job_which_then_resumes_exactly() {
    let test = "a_namenode_outage_degrades_the_job_which_then_resumes_exactly";
    let Some(url) = hdfs_url(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 1, 1);
    c.state_root = format!("{}/state", hdfs::unique_dir(&url, "outage"));
    c.start_all();
    c.wait_leader(Duration::from_secs(20));
    let (keys, total) = (19u64, 120_000u64);
    let spec = dir.path().join("job.yaml");
    let out = dir.path().join("out");
    fs::write(
        &spec,
        format!(
            "name: outage\nbatch_interval: 200ms\ncheckpoint_every: 1\nstate_partitions: 2\n\
             source:\n  generator: {{ partitions: 2, keys: {keys}, rate: 1000, total: {total} }}\n\
             pipeline:\n  - key_by: key\n  - aggregate: {{ count: {{}} }}\n\
             sink:\n  file: {{ path: {} }}\n",
            out.display()
        ),
    )
    .unwrap();
    c.weir_json(&["submit", spec.to_str().unwrap()]).unwrap();
    c.wait_committed_beyond("outage", 3, Duration::from_secs(60));
    assert_eq!(status(&c, "outage")["health"], "healthy");

    let mut hdfs_down = HdfsStopped::stop();
    let stopped = Instant::now();
    let before = c.committed("outage");
    // Batches cannot checkpoint: the leader says so, with the reason.
    let degraded = loop {
        let s = status(&c, "outage");
        if s["health"] == "degraded" {
            break s;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "not degraded 20 s into the outage: {s}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let reason = degraded["degraded_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("state") || reason.contains("HDFS") || reason.contains("hdfs"),
        "reason does not name the state store: {degraded}"
    );
    assert!(degraded["degraded_since_ms"]
        .as_i64()
        .is_some_and(|t| t > 0));
    std::thread::sleep(Duration::from_secs(20).saturating_sub(stopped.elapsed()));
    // Nothing commits without the state store (at most the batch that was
    // past its checkpoint when HDFS went away).
    assert!(
        c.committed("outage") <= before + 1,
        "batches committed while HDFS was down"
    );
    hdfs_down.start();

    // It resumes by itself and finishes exact.
    c.wait_finished("outage", Duration::from_secs(240));
    assert_generator_counts(&out, keys, total);
}
