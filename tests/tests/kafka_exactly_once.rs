//! Kafka → running count → Kafka, exactly once, against a real broker:
//! `weir local` killed at each step of the commit protocol, a cluster whose
//! leader driver and an executor are killed mid-run, malformed records sent
//! to a dead-letter topic, and offsets deleted by retention before they
//! were read. Output is read back with `read_committed`: the newest count
//! per key must equal the count computed from the input, and counts only
//! grow (a duplicated batch would repeat one).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use weir_tests::cluster::LocalCluster;
use weir_tests::kafka::{
    create_topic, kafka_brokers, produce, produce_users, read_committed, unique_topic,
};
use weir_tests::local_job::LocalJob;

const PARTITIONS: i32 = 8;
const KEYS: u64 = 101;

/// `total` JSON records `{"user": "u<i % KEYS>", "n": i}` over 8 partitions;
/// returns the count per user.
fn produce_input(brokers: &str, topic: &str, total: u64) -> BTreeMap<String, u64> {
    produce_users(brokers, topic, PARTITIONS, KEYS, total)
}

/// A running count per user.
const COUNT: &str = "  - key_by: user\n  - aggregate: { count: {} }\n";

fn spec(dir: &Path, name: &str, brokers: &str, input: &str, output: &str, extra: &str) -> PathBuf {
    spec_with(dir, name, brokers, input, output, extra, COUNT)
}

fn spec_with(
    dir: &Path,
    name: &str,
    brokers: &str,
    input: &str,
    output: &str,
    extra: &str,
    pipeline: &str,
) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    fs::write(
        &path,
        format!(
            "name: {name}\nbatch_interval: 100ms\nstate_partitions: 4\n{extra}\
             source:\n  kafka: {{ brokers: \"{brokers}\", topic: {input}, start: earliest, max_records_per_partition: 2500, \
             format: json, schema: {{ user: string, n: bigint }} }}\n\
             pipeline:\n{pipeline}\
             sink:\n  kafka: {{ brokers: \"{brokers}\", topic: {output} }}\n"
        ),
    )
    .unwrap();
    path
}

/// Checks the committed output against the expected counts.
fn check_counts(brokers: &str, output: &str, want: &BTreeMap<String, u64>, context: &str) {
    let records = read_committed(brokers, output);
    let mut latest: BTreeMap<String, u64> = BTreeMap::new();
    for r in &records {
        let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
        let key = v["key"].as_str().unwrap().to_string();
        assert_eq!(r.key.as_deref(), Some(key.as_str()), "record key");
        let count = v["count"].as_u64().unwrap();
        if let Some(last) = latest.get(&key) {
            assert!(
                count > *last,
                "key {key}: count {count} after {last}: a batch was published twice\n{context}"
            );
        }
        latest.insert(key, count);
    }
    assert_eq!(&latest, want, "newest count per key\n{context}");
}

#[test]
fn weir_local_crashing_at_each_commit_step_publishes_each_batch_once() {
    let Some(brokers) = kafka_brokers("weir_local_crashing_at_each_commit_step") else {
        return;
    };
    let input = unique_topic("eo-in");
    let output = unique_topic("eo-out");
    let want = produce_input(&brokers, &input, 200_000);
    create_topic(&brokers, &output, 4);
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(dir.path(), "kafka-crashes", &brokers, &input, &output, "");
    let mut job = LocalJob::with_spec(dir.path(), &spec);
    let log = job.run_with_crashes(&[
        "batch-planned@2",
        "stage-a@5",
        "after-precommit@6",
        "before-committing@1",
        "after-committing@1",
        "sink-commit@2",
        "after-committed@1",
        "after-committing@2",
    ]);
    let all = job.logs();
    assert!(
        all.contains("re-running the batch to produce it again"),
        "a commit after a restart found its transaction aborted"
    );
    check_counts(&brokers, &output, &want, &log);
}

#[test]
fn malformed_records_go_to_the_dead_letter_topic() {
    let Some(brokers) = kafka_brokers("malformed_records_go_to_the_dead_letter_topic") else {
        return;
    };
    let input = unique_topic("dl-in");
    let output = unique_topic("dl-out");
    let dead = unique_topic("dl-dead");
    create_topic(&brokers, &input, 2);
    create_topic(&brokers, &output, 1);
    create_topic(&brokers, &dead, 1);
    let mut records = Vec::new();
    let mut want = BTreeMap::new();
    for i in 0..300u64 {
        let value = match i % 50 {
            7 => "not json".to_string(),
            8 => format!("{{\"user\":\"u1\",\"n\":\"{i}\"}}"),
            _ => {
                *want.entry(format!("u{}", i % 3)).or_insert(0) += 1;
                format!("{{\"user\":\"u{}\",\"n\":{i}}}", i % 3)
            }
        };
        records.push(((i % 2) as i32, format!("k{i}"), value));
    }
    produce(&brokers, &input, &records);
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("on_error: dead_letter\ndead_letter: {{ topic: {dead} }}\n");
    let spec = spec(dir.path(), "kafka-dead", &brokers, &input, &output, &extra);
    let mut job = LocalJob::with_spec(dir.path(), &spec);
    let (ok, log) = job.run(&[]);
    assert!(ok, "{log}");
    check_counts(&brokers, &output, &want, &log);
    let dead = read_committed(&brokers, &dead);
    assert_eq!(dead.len(), 12, "{dead:?}");
    let bad_json = dead.iter().find(|r| r.value == "not json").unwrap();
    assert!(
        bad_json.headers["error"].contains("expected"),
        "{bad_json:?}"
    );
    assert!(bad_json.headers["weir.source"].starts_with(&input));
    assert!(dead
        .iter()
        .any(|r| r.headers["error"].contains("field \"n\": expected bigint, got a string")));
}

/// A value over `max_value_bytes` (16 MiB) does not decode: it is handled
/// like any bad record (skipped here), and the rest is exact.
#[test]
fn a_value_over_the_limit_is_a_bad_record() {
    let Some(brokers) = kafka_brokers("a_value_over_the_limit_is_a_bad_record") else {
        return;
    };
    let input = unique_topic("big-in");
    let output = unique_topic("big-out");
    weir_kafka::ensure_topic(
        &brokers,
        [],
        &input,
        1,
        &[("max.message.bytes", "20000000")],
    )
    .unwrap();
    create_topic(&brokers, &output, 1);
    let mut want = BTreeMap::new();
    let mut records = Vec::new();
    for i in 0..20u64 {
        *want.entry(format!("u{}", i % 2)).or_insert(0) += 1;
        records.push((
            0,
            format!("k{i}"),
            format!("{{\"user\":\"u{}\",\"n\":{i}}}", i % 2),
        ));
    }
    produce(&brokers, &input, &records[..10]);
    // 17 MiB of valid JSON: only its size is wrong.
    let big = format!(
        "{{\"user\":\"u9\",\"n\":1,\"pad\":\"{}\"}}",
        "x".repeat(17 << 20)
    );
    let producer: weir_kafka::rdkafka::producer::BaseProducer =
        weir_kafka::client_config(&brokers, [("message.max.bytes", "20000000")])
            .create()
            .unwrap();
    producer
        .send(
            weir_kafka::rdkafka::producer::BaseRecord::to(&input)
                .partition(0)
                .key("big")
                .payload(&big),
        )
        .map_err(|(e, _)| e)
        .unwrap();
    weir_kafka::rdkafka::producer::Producer::flush(&producer, Duration::from_secs(60)).unwrap();
    produce(&brokers, &input, &records[10..]);
    let dir = tempfile::tempdir().unwrap();
    let spec = spec(
        dir.path(),
        "kafka-big",
        &brokers,
        &input,
        &output,
        "on_error: skip\n",
    );
    let mut job = LocalJob::with_spec(dir.path(), &spec);
    let (ok, log) = job.run(&[]);
    assert!(ok, "{log}");
    check_counts(&brokers, &output, &want, &log);
}

#[test]
fn offsets_deleted_before_they_were_read_are_reported() {
    let Some(brokers) = kafka_brokers("offsets_deleted_before_they_were_read_are_reported") else {
        return;
    };
    let input = unique_topic("ret-in");
    create_topic(&brokers, &input, 1);
    let batch = |from: u64| -> Vec<(i32, String, String)> {
        (from..from + 100)
            .map(|i| {
                (
                    0,
                    "k".into(),
                    format!("{{\"user\":\"u{}\",\"n\":{i}}}", i % 2),
                )
            })
            .collect()
    };
    produce(&brokers, &input, &batch(0));
    let mut jobs: Vec<(tempfile::TempDir, LocalJob)> = ["fail", "skip_to_earliest"]
        .iter()
        .map(|policy| {
            let d = tempfile::tempdir().unwrap();
            let output = unique_topic("ret-out");
            create_topic(&brokers, &output, 1);
            let s = spec(
                d.path(),
                &format!("ret-{}", policy.replace('_', "-")),
                &brokers,
                &input,
                &output,
                "",
            );
            let text = fs::read_to_string(&s).unwrap().replace(
                "format: json,",
                &format!("format: json, on_missing: {policy},"),
            );
            fs::write(&s, text).unwrap();
            let job = LocalJob::with_spec(d.path(), &s);
            (d, job)
        })
        .collect();
    for (_, j) in &mut jobs {
        let (ok, log) = j.run(&[]);
        assert!(ok, "{log}");
    }
    // 100 more records, then retention deletes offsets below 150.
    produce(&brokers, &input, &batch(100));
    weir_kafka::delete_records(&brokers, &input, &[(0, 150)]).unwrap();
    let (ok, log) = jobs[0].1.run(&[]);
    assert!(!ok, "on_missing: fail must fail the job\n{log}");
    assert!(
        log.contains(&format!(
            "offsets [100, 150) of topic {input} partition 0 were deleted"
        )) && log.contains("50 records lost"),
        "{log}"
    );
    let (ok, log) = jobs[1].1.run(&[]);
    assert!(ok, "{log}");
    let all = jobs[1].1.logs();
    assert!(
        all.contains("source offsets were deleted before the job read them")
            && all.contains("lost"),
        "{all}"
    );
}

#[test]
fn a_cluster_losing_its_leader_and_an_executor_publishes_each_batch_once() {
    let Some(brokers) = kafka_brokers("a_cluster_losing_its_leader_and_an_executor") else {
        return;
    };
    let input = unique_topic("cl-in");
    let output = unique_topic("cl-out");
    let want = produce_input(&brokers, &input, 200_000);
    create_topic(&brokers, &output, 4);
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 3, 3);
    c.start_all();
    let leader = c.wait_leader(Duration::from_secs(30));
    let spec = spec(dir.path(), "kafka-cluster", &brokers, &input, &output, "");
    c.weir_json(&["submit", &spec.to_string_lossy()]).unwrap();
    let committed = |c: &LocalCluster| -> u64 {
        c.weir_json(&["status", "kafka-cluster"])
            .ok()
            .and_then(|v| v["last_committed_batch"].as_u64())
            .unwrap_or(0)
    };
    let wait_for = |c: &LocalCluster, batch: u64| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while committed(c) < batch {
            assert!(
                Instant::now() < deadline,
                "batch {batch} not committed\n{}",
                c.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    wait_for(&c, 2);
    c.kill_driver(leader);
    c.wait_leader(Duration::from_secs(30));
    wait_for(&c, 4);
    c.kill_executor(2);
    wait_for(&c, 7);
    c.start_executor(2);
    // 200k records / 8 partitions / 2500 per batch = 10 batches.
    wait_for(&c, 10);
    check_counts(&brokers, &output, &want, &c.logs());
}

#[test]
fn dead_letters_are_written_once_across_crashes() {
    let Some(brokers) = kafka_brokers("dead_letters_are_written_once_across_crashes") else {
        return;
    };
    let input = unique_topic("dlx-in");
    let output = unique_topic("dlx-out");
    let dead = unique_topic("dlx-dead");
    create_topic(&brokers, &input, 4);
    create_topic(&brokers, &output, 4);
    create_topic(&brokers, &dead, 2);
    // 4 partitions × 10 000 records: 4 batches of 2 500 per partition, a
    // malformed record every 97 (two kinds of errors).
    let mut records = Vec::new();
    let mut want = BTreeMap::new();
    let mut bad: BTreeMap<String, &str> = BTreeMap::new();
    for i in 0..40_000u64 {
        let partition = (i % 4) as i32;
        let offset = i / 4;
        let value = match i % 97 {
            5 => {
                bad.insert(format!("{input}/{partition}/{offset}"), "expected");
                "not json".to_string()
            }
            6 => {
                bad.insert(
                    format!("{input}/{partition}/{offset}"),
                    "field \"n\": expected bigint, got a string",
                );
                format!("{{\"user\":\"u1\",\"n\":\"{i}\"}}")
            }
            _ => {
                *want.entry(format!("u{}", i % 7)).or_insert(0) += 1;
                format!("{{\"user\":\"u{}\",\"n\":{i}}}", i % 7)
            }
        };
        records.push((partition, format!("k{i}"), value));
    }
    produce(&brokers, &input, &records);
    let dir = tempfile::tempdir().unwrap();
    let extra = format!("on_error: dead_letter\ndead_letter: {{ topic: {dead} }}\n");
    let spec = spec(
        dir.path(),
        "kafka-dead-crash",
        &brokers,
        &input,
        &output,
        &extra,
    );
    let mut job = LocalJob::with_spec(dir.path(), &spec);
    let log = job.run_with_crashes(&[
        // Dead letters committed, the task not reported: re-run.
        "after-dead-letters@2",
        "after-dead-letters@3",
        // The batch decided, its sink transactions lost: the batch's
        // stage A runs again (not as a replay).
        "after-committing@1",
        "after-precommit@2",
        "sink-commit@2",
        "after-dead-letters@4",
    ]);
    check_counts(&brokers, &output, &want, &log);
    let all = job.logs();
    assert!(
        all.contains("dead letters of this range already committed; not written again"),
        "no re-run found its dead letters committed"
    );
    let letters = read_committed(&brokers, &dead);
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    for r in &letters {
        let source = r.headers["weir.source"].clone();
        let Some(reason) = bad.get(&source) else {
            panic!("dead letter of a record that decodes: {r:?}");
        };
        assert!(r.headers["error"].contains(reason), "{r:?}");
        assert_eq!(r.headers["weir.job"], "kafka-dead-crash");
        *seen.entry(source).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "dead letters written twice: {twice:?}");
    let missing: Vec<_> = bad.keys().filter(|k| !seen.contains_key(*k)).collect();
    assert!(missing.is_empty(), "dead letters missing: {missing:?}");
    assert_eq!(letters.len(), bad.len());
}

#[test]
fn a_stateless_job_crashing_at_each_commit_step_publishes_each_record_once() {
    let Some(brokers) = kafka_brokers("a_stateless_job_crashing_at_each_commit_step") else {
        return;
    };
    let input = unique_topic("sl-in");
    let output = unique_topic("sl-out");
    produce_input(&brokers, &input, 100_000);
    create_topic(&brokers, &output, 3);
    let dir = tempfile::tempdir().unwrap();
    let spec = spec_with(
        dir.path(),
        "kafka-stateless",
        &brokers,
        &input,
        &output,
        "",
        "  - filter: \"n % 3 <> 0\"\n  - map: { doubled: \"n * 2\", user: \"upper(user)\" }\n",
    );
    let mut job = LocalJob::with_spec(dir.path(), &spec);
    // 8 partitions × 12 500 records: 5 batches of 2 500 per partition; the
    // sink's transactions are per source partition.
    let log = job.run_with_crashes(&[
        "batch-planned@2",
        "stage-a@6",
        "before-committing@1",
        "after-committing@1",
        "sink-commit@3",
        "after-committed@1",
        "after-committing@2",
    ]);
    let all = job.logs();
    assert!(
        all.contains("re-running the batch to produce it again"),
        "a commit after a restart found its transaction aborted"
    );
    let records = read_committed(&brokers, &output);
    let mut seen = BTreeMap::new();
    for r in &records {
        assert_eq!(r.key, None, "a job without key_by writes no key: {r:?}");
        let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
        let n = v["n"].as_u64().unwrap();
        assert_eq!(v["doubled"].as_u64(), Some(2 * n), "{v}");
        assert_eq!(v["user"].as_str(), Some(format!("U{}", n % KEYS).as_str()));
        *seen.entry(n).or_insert(0u32) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).take(10).collect();
    assert!(
        twice.is_empty(),
        "records published twice: {twice:?}\n{log}"
    );
    let want: Vec<u64> = (0..100_000).filter(|n| n % 3 != 0).collect();
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        want,
        "published records\n{log}"
    );
}

/// A batch over `max_bytes_per_partition` fails the job at the worst
/// moment for a stateless job: the other partitions' stage A already
/// pre-committed their output in open transactions on live executors.
/// The error names the cap and what to do; the job submitted again with a
/// larger cap reads the same batch again and publishes every record once.
#[test]
fn a_batch_over_its_byte_cap_fails_the_job_and_resumes_once_raised() {
    let Some(brokers) = kafka_brokers("a_batch_over_its_byte_cap_fails_the_job") else {
        return;
    };
    let input = unique_topic("cap-in");
    let output = unique_topic("cap-out");
    create_topic(&brokers, &input, 4);
    create_topic(&brokers, &output, 4);
    // Partition 0's users are 4 KiB long: 500 of them decode to about
    // 2 MiB, the other partitions' to a few KiB.
    let long = "x".repeat(4096);
    let records: Vec<(i32, String, String)> = (0..8_000u64)
        .map(|i| {
            let partition = (i % 4) as i32;
            let user = if partition == 0 {
                format!("u{i}{long}")
            } else {
                format!("u{i}")
            };
            (
                partition,
                format!("k{i}"),
                format!("{{\"user\":\"{user}\",\"n\":{i}}}"),
            )
        })
        .collect();
    produce(&brokers, &input, &records);
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 1, 2);
    c.start_all();
    c.wait_leader(Duration::from_secs(30));
    let write = |cap: &str| {
        let path = dir.path().join(format!("cap-{cap}.yaml"));
        fs::write(
            &path,
            format!(
                "name: capped\nbatch_interval: 100ms\n\
                 source:\n  kafka: {{ brokers: \"{brokers}\", topic: {input}, start: earliest, \
                 max_records_per_partition: 500, max_bytes_per_partition: {cap}, \
                 format: json, schema: {{ user: string, n: bigint }} }}\n\
                 pipeline:\n  - map: {{ size: \"length(user)\" }}\n\
                 sink:\n  kafka: {{ brokers: \"{brokers}\", topic: {output} }}\n"
            ),
        )
        .unwrap();
        path
    };
    c.weir_json(&["submit", &write("1MiB").to_string_lossy()])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let error = loop {
        let s = c.weir_json(&["status", "capped"]).unwrap_or_default();
        if s["state"] == "failed" {
            break s["error"].as_str().unwrap_or_default().to_string();
        }
        assert!(Instant::now() < deadline, "not failed: {s}\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(100));
    };
    for part in [
        "batch 1 read more than 1048576 bytes",
        "source.kafka.max_bytes_per_partition",
        "partition 0, offsets [0, 500)",
        "raise max_bytes_per_partition",
    ] {
        assert!(error.contains(part), "{part:?} in {error}");
    }
    assert!(
        read_committed(&brokers, &output).is_empty(),
        "nothing of the failed batch is visible"
    );
    c.weir_json(&["submit", &write("64MiB").to_string_lossy()])
        .unwrap();
    // 2 000 records per partition, 500 per batch: 4 batches.
    c.wait_committed_beyond("capped", 3, Duration::from_secs(120));
    let mut seen = BTreeMap::new();
    for r in read_committed(&brokers, &output) {
        let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
        let n = v["n"].as_u64().unwrap();
        let size = if n % 4 == 0 { 4096 } else { 0 } + format!("u{n}").len() as u64;
        assert_eq!(v["size"].as_u64(), Some(size), "{v}");
        *seen.entry(n).or_insert(0u32) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).take(10).collect();
    assert!(twice.is_empty(), "records published twice: {twice:?}");
    assert_eq!(
        seen.keys().copied().collect::<Vec<_>>(),
        (0..8_000).collect::<Vec<_>>(),
        "published records\n{}",
        c.logs()
    );
}
