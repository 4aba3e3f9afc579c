//! State checkpoints on a real HDFS (MiniDFS from deploy/dev/hdfs.sh): an
//! executor owning state partitions is SIGKILLed; its partitions are
//! restored from HDFS on another executor and the output stays exact.

use std::fs;
use std::time::Duration;
use weir_tests::cluster::{assert_generator_counts, LocalCluster};
use weir_tests::hdfs_url;

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
