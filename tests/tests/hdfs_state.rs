//! State checkpoints on a real HDFS (MiniDFS from deploy/dev/hdfs.sh): an
//! executor owning state partitions is SIGKILLed; its partitions are
//! restored from HDFS on another executor and the output stays exact; the
//! file sink writing to HDFS stays exact across the same loss.

use std::fs;
use std::time::Duration;
use weir_tests::cluster::{assert_generator_counts, assert_generator_rows, LocalCluster};
use weir_tests::{hdfs, hdfs_url};

#[test]
fn executor_loss_restores_state_from_hdfs() {
    let Some(url) = hdfs_url("executor_loss_restores_state_from_hdfs") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 1, 2);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    c.state_root = format!(
        "{}/weir-it/{}-{nanos}",
        url.trim_end_matches('/'),
        std::process::id()
    );
    c.start_all();
    c.wait_leader(Duration::from_secs(20));
    let (keys, total) = (13u64, 30_000u64);
    let spec = dir.path().join("job.yaml");
    let out = dir.path().join("out");
    fs::write(
        &spec,
        format!(
            "name: hdfs\nbatch_interval: 500ms\ncheckpoint_every: 1\nstate_partitions: 4\n\
             source:\n  generator: {{ partitions: 2, keys: {keys}, rate: 5000, total: {total} }}\n\
             pipeline:\n  - key_by: key\n  - aggregate: {{ count: {{}} }}\nsink:\n  file: {{ path: {} }}\n",
            out.display()
        ),
    )
    .unwrap();
    c.weir_json(&["submit", spec.to_str().unwrap()]).unwrap();
    c.wait_committed_beyond("hdfs", 2, Duration::from_secs(60));
    c.kill_executor(1);
    c.wait_finished("hdfs", Duration::from_secs(120));
    assert_generator_counts(&out, keys, total);
    let log = fs::read_to_string(dir.path().join("exec-2.log")).unwrap();
    assert!(
        log.contains("HDFS at"),
        "executor 2 did not use HDFS:\n{log}"
    );
    assert!(
        log.contains("state partition restored"),
        "no restore on executor 2"
    );
}

#[test]
fn file_sink_on_hdfs_is_exact_after_executor_sigkill() {
    let test = "file_sink_on_hdfs_is_exact_after_executor_sigkill";
    let Some(url) = hdfs_url(test) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 1, 2);
    let base = hdfs::unique_dir(&url, "sink");
    c.state_root = format!("{base}/state");
    let out = format!("{base}/out");
    c.start_all();
    c.wait_leader(Duration::from_secs(20));
    let (keys, total) = (17u64, 30_000u64);
    let spec = dir.path().join("job.yaml");
    fs::write(
        &spec,
        format!(
            "name: hdfssink\nbatch_interval: 500ms\ncheckpoint_every: 1\nstate_partitions: 4\n\
             source:\n  generator: {{ partitions: 2, keys: {keys}, rate: 5000, total: {total} }}\n\
             pipeline:\n  - key_by: key\n  - aggregate: {{ count: {{}} }}\n\
             sink:\n  file: {{ path: \"{out}\", format: jsonl }}\n"
        ),
    )
    .unwrap();
    c.weir_json(&["submit", spec.to_str().unwrap()]).unwrap();
    c.wait_committed_beyond("hdfssink", 2, Duration::from_secs(60));
    // Mid-run, some batches are visible on HDFS already.
    let early = hdfs::read_file_sink(&out).unwrap();
    assert!(!early.is_empty(), "no committed output on HDFS at {out}");
    c.kill_executor(1);
    c.wait_finished("hdfssink", Duration::from_secs(120));
    let rows = hdfs::read_file_sink(&out).unwrap();
    assert_generator_rows(&rows, keys, total, &out);
    // Every early file is still there with the same rows: a replayed batch
    // rewrote identical output.
    for row in &early {
        assert!(
            rows.iter().any(|r| r.batch == row.batch
                && r.partition == row.partition
                && r.value == row.value),
            "row {row:?} changed after the executor loss"
        );
    }
    let log = fs::read_to_string(dir.path().join("exec-2.log")).unwrap();
    assert!(
        log.contains("state partition restored"),
        "no restore on executor 2"
    );
}
