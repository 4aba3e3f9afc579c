//! One driver and three `weir-executor` processes: every executor is
//! killed mid-run and new incarnations start; the job resumes from the
//! state store and its output stays exact per key.

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};
use weir_tests::cluster::LocalCluster;
use weir_tests::{latest_by_key, read_file_sink};

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
    let committed = |c: &LocalCluster| {
        c.weir_json(&["status", "lost"])
            .map(|s| s["last_committed_batch"].as_u64().unwrap_or(0))
            .unwrap_or(0)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed(&c) < 5 {
        assert!(Instant::now() < deadline, "no progress\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 1..=3 {
        c.kill_executor(i);
    }
    let stalled = committed(&c);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        committed(&c) <= stalled + 1,
        "batches committed without executors"
    );
    for i in 1..=3 {
        c.start_executor(i);
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = c.weir_json(&["status", "lost"]).unwrap_or_default();
        if s["state"] == "finished" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "job did not finish: {s}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let latest = latest_by_key(&read_file_sink(&out).unwrap());
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for g in 0..total {
        *want.entry(format!("\"k{}\"", g % keys)).or_default() += 1;
    }
    assert_eq!(latest.len(), want.len());
    for (k, n) in want {
        assert_eq!(latest[&k]["count"].as_u64(), Some(n), "count of {k}");
    }
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
