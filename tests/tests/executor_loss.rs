//! One driver and three `weir-executor` processes: every executor is
//! killed mid-run and new incarnations start; the job resumes from the
//! state store and its output stays exact per key.

use std::fs;
use std::time::Duration;
use weir_tests::cluster::{assert_generator_counts, LocalCluster};

#[test]
fn all_executors_lost_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 1, 3);
    c.start_all();
    c.wait_leader(Duration::from_secs(20));
    let (keys, total) = (17u64, 90_000u64);
    let spec = dir.path().join("job.yaml");
    let out = dir.path().join("out");
    fs::write(
        &spec,
        format!(
            "name: lost\nbatch_interval: 200ms\ncheckpoint_every: 3\nstate_partitions: 6\n\
             source:\n  generator: {{ partitions: 3, keys: {keys}, rate: 15000, total: {total} }}\n\
             pipeline:\n  - key_by: key\n  - aggregate: {{ count: {{}} }}\nsink:\n  file: {{ path: {} }}\n",
            out.display()
        ),
    )
    .unwrap();
    c.weir_json(&["submit", spec.to_str().unwrap()]).unwrap();
    c.wait_committed_beyond("lost", 4, Duration::from_secs(60));
    for i in 1..=3 {
        c.kill_executor(i);
    }
    let stalled = c.committed("lost");
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        c.committed("lost") <= stalled + 1,
        "batches committed without executors"
    );
    for i in 1..=3 {
        c.start_executor(i);
    }
    c.wait_finished("lost", Duration::from_secs(120));
    assert_generator_counts(&out, keys, total);
    let restored: usize = (1..=3)
        .map(|i| {
            fs::read_to_string(dir.path().join(format!("exec-{i}.log")))
                .unwrap_or_default()
                .matches("state partition restored")
                .count()
        })
        .sum();
    assert!(
        restored >= 6,
        "the new executors restored every partition ({restored} restores)"
    );
    let cluster = c.weir_json(&["cluster"]).unwrap();
    let alive = cluster["executors"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["health"] == "alive")
        .count();
    assert_eq!(alive, 3, "{cluster}");
}
