//! Outside systems going away mid-run: the dev MiniDFS (namenode and
//! datanodes) is stopped for 20 s while a job checkpoints its state there,
//! the dev Kafka broker for 15 s while a job reads from it, and the dev
//! PostgreSQL for 8 s while a job upserts into it.
//! The leader must report the job `degraded` with the reason while batches
//! fail and are retried, then resume on its own once the service is back,
//! with the output exact per key.
//!
//! The tests stop and restart the shared dev services through
//! `deploy/dev/{hdfs,kafka,postgres}.sh` (their data is kept across restarts), so
//! they live in a test binary of their own: no other test using those
//! services runs meanwhile.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};
use weir_tests::cluster::{assert_generator_counts, LocalCluster};
use weir_tests::dev::Stopped;
use weir_tests::kafka::{kafka_brokers, produce_users, unique_topic};
use weir_tests::{hdfs, hdfs_url, latest_by_key, read_file_sink};

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

    let mut hdfs_down = Stopped::stop("hdfs.sh");
    let stopped = Instant::now();
    let before = c.committed("outage");
    // Batches cannot checkpoint: the leader says so, with the reason.
    let degraded = c.wait_degraded("outage", stopped);
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

#[test]
fn a_broker_outage_degrades_the_job_which_then_resumes_exactly() {
    let test = "a_broker_outage_degrades_the_job_which_then_resumes_exactly";
    let Some(brokers) = kafka_brokers(test) else {
        return;
    };
    let (partitions, keys, total) = (4i32, 23u64, 40_000u64);
    let topic = unique_topic("outage-in");
    let want: BTreeMap<String, u64> = produce_users(&brokers, &topic, partitions, keys, total)
        .into_iter()
        .map(|(user, n)| (format!("\"{user}\""), n))
        .collect();

    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 1, 1);
    c.start_all();
    c.wait_leader(Duration::from_secs(20));
    let spec = dir.path().join("job.yaml");
    let out = dir.path().join("out");
    // 250 records per partition and batch: the input lasts 40 batches.
    fs::write(
        &spec,
        format!(
            "name: brokerdown\nbatch_interval: 200ms\nstate_partitions: 2\n\
             source:\n  kafka: {{ brokers: \"{brokers}\", topic: {topic}, start: earliest, \
             max_records_per_partition: 250, format: json, schema: {{ user: string, n: bigint }} }}\n\
             pipeline:\n  - key_by: user\n  - aggregate: {{ count: {{}} }}\n\
             sink:\n  file: {{ path: {} }}\n",
            out.display()
        ),
    )
    .unwrap();
    c.weir_json(&["submit", spec.to_str().unwrap()]).unwrap();
    c.wait_committed_beyond("brokerdown", 3, Duration::from_secs(60));

    let mut broker_down = Stopped::stop("kafka.sh");
    let stopped = Instant::now();
    let degraded = c.wait_degraded("brokerdown", stopped);
    let reason = degraded["degraded_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("source") || reason.contains("Kafka") || reason.contains("kafka"),
        "reason does not name the source: {degraded}"
    );
    std::thread::sleep(Duration::from_secs(15).saturating_sub(stopped.elapsed()));
    broker_down.start();

    // A Kafka job runs until stopped: wait until it has read the whole
    // input, then stop it.
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let s = status(&c, "brokerdown");
        if s["totals"]["records_in"].as_u64() == Some(total) && s["pending_batch"].is_null() {
            break;
        }
        assert_eq!(s["state"], "running", "{s}\n{}", c.logs());
        assert!(
            Instant::now() < deadline,
            "input not read after the outage: {s}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Caught up, it keeps running (several empty plans later).
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(status(&c, "brokerdown")["state"], "running");
    c.weir_json(&["stop", "brokerdown"]).unwrap();
    let rows = read_file_sink(&out).unwrap();
    let latest = latest_by_key(&rows);
    assert_eq!(latest.len(), want.len(), "keys in the output");
    for (user, count) in &want {
        assert_eq!(
            latest[user]["count"].as_u64(),
            Some(*count),
            "count of {user}"
        );
    }
    let s = status(&c, "brokerdown");
    assert_eq!(
        s["totals"]["records_in"].as_u64(),
        Some(total),
        "records read: {s}"
    );
}

/// The dev PostgreSQL stopped for 8 s under a running count upserted into
/// it: the job shows degraded naming the sink, then resumes, and the table
/// holds exactly the counts of the input.
#[test]
fn a_database_outage_degrades_the_job_which_then_resumes_exactly() {
    let test = "a_database_outage_degrades_the_job_which_then_resumes_exactly";
    let Some(url) = weir_tests::postgres::postgres_url(test) else {
        return;
    };
    let table = weir_tests::postgres::unique_table("outage_counts");
    weir_tests::postgres::connect(&url)
        .batch_execute(&format!(
            "CREATE TABLE {table} (key text PRIMARY KEY, count bigint NOT NULL)"
        ))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 1, 2);
    c.start_all();
    c.wait_leader(Duration::from_secs(20));
    let (keys, total) = (23u64, 40_000u64);
    let spec = dir.path().join("job.yaml");
    fs::write(
        &spec,
        format!(
            "name: dbdown\nbatch_interval: 200ms\ncheckpoint_every: 2\nstate_partitions: 3\n\
             source:\n  generator: {{ partitions: 2, keys: {keys}, rate: 2000, total: {total} }}\n\
             pipeline:\n  - key_by: key\n  - aggregate: {{ count: {{}} }}\n\
             sink:\n  postgres: {{ url: \"${{env:WEIR_POSTGRES_URL}}\", table: {table}, key: [key] }}\n"
        ),
    )
    .unwrap();
    c.weir_json(&["submit", spec.to_str().unwrap()]).unwrap();
    c.wait_committed_beyond("dbdown", 3, Duration::from_secs(60));

    let mut db_down = Stopped::stop("postgres.sh");
    let stopped = Instant::now();
    let degraded = c.wait_degraded("dbdown", stopped);
    let reason = degraded["degraded_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("sink postgres table {table}")),
        "reason does not name the sink: {degraded}"
    );
    assert!(!reason.contains(&url), "the reason never shows the URL");
    std::thread::sleep(Duration::from_secs(8).saturating_sub(stopped.elapsed()));
    db_down.start();
    c.wait_finished("dbdown", Duration::from_secs(180));
    let mut want: BTreeMap<String, i64> = BTreeMap::new();
    for g in 0..total {
        *want.entry(format!("k{}", g % keys)).or_default() += 1;
    }
    let got: BTreeMap<String, i64> = weir_tests::postgres::connect(&url)
        .query(&format!("SELECT key, count FROM {table}"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(got, want, "the table's rows, key by key");
}
