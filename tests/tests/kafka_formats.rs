//! How Kafka records become columns, against the dev broker: a record's
//! metadata (key, timestamp, partition, offset, topic, headers) as columns
//! of a `json` job that names them, and a job that does not name them
//! writing exactly the value's fields.

use std::collections::BTreeMap;
use std::time::Duration;
use weir_kafka::rdkafka::message::{Header, OwnedHeaders};
use weir_kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use weir_tests::kafka::{create_topic, kafka_brokers, unique_topic};
use weir_tests::local_job::LocalJob;
use weir_tests::read_file_sink;

const RECORDS: i64 = 200;

/// Record `i` goes to partition `i % 2` with key `u{i % 7}` (none for
/// `i % 10 == 0`), timestamp `1_700_000_000_000 + i`, a header `n: <i>`,
/// and for even `i` a header `trace` without a value.
fn produce(brokers: &str, topic: &str) {
    let producer: BaseProducer = weir_kafka::client_config(brokers, std::iter::empty())
        .create()
        .unwrap();
    for i in 0..RECORDS {
        let key = format!("u{}", i % 7);
        let value = format!("{{\"user\":\"{key}\",\"n\":{i}}}");
        let n = i.to_string();
        let mut headers = OwnedHeaders::new().insert(Header {
            key: "n",
            value: Some(n.as_bytes()),
        });
        if i % 2 == 0 {
            headers = headers.insert(Header::<&[u8]> {
                key: "trace",
                value: None,
            });
        }
        let mut record = BaseRecord::to(topic)
            .partition((i % 2) as i32)
            .payload(&value)
            .timestamp(1_700_000_000_000 + i)
            .headers(headers);
        if i % 10 != 0 {
            record = record.key(&key);
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}

fn spec(name: &str, brokers: &str, topic: &str, out: &std::path::Path, pipeline: &str) -> String {
    format!(
        "name: {name}\nbatch_interval: 50ms\n\
         source:\n  kafka: {{ brokers: \"{brokers}\", topic: {topic}, start: earliest, format: json, schema: {{ user: string, n: bigint }} }}\n\
         pipeline:\n{pipeline}\
         sink:\n  file: {{ path: \"{}\", format: jsonl }}\n",
        out.display()
    )
}

#[test]
fn record_metadata_are_columns_a_step_can_name() {
    let Some(brokers) = kafka_brokers("record_metadata_are_columns_a_step_can_name") else {
        return;
    };
    let topic = unique_topic("formats-meta");
    create_topic(&brokers, &topic, 2);
    produce(&brokers, &topic);
    let dir = tempfile::tempdir().unwrap();

    let out = dir.path().join("meta-out");
    let mut job = LocalJob::new(
        dir.path(),
        "meta",
        &spec(
            "meta",
            &brokers,
            &topic,
            &out,
            "  - map: { k: kafka_key, ts: kafka_timestamp, p: kafka_partition, o: kafka_offset, t: kafka_topic, h: kafka_headers }\n",
        ),
    );
    let (ok, log) = job.run(&[]);
    assert!(ok, "{log}");
    let rows = read_file_sink(&out).unwrap();
    assert_eq!(rows.len(), RECORDS as usize, "every record once");
    let mut offsets: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for r in &rows {
        let v = &r.value;
        let i = v["n"].as_i64().unwrap();
        let key = (i % 10 != 0).then(|| format!("u{}", i % 7));
        assert_eq!(v["k"].as_str(), key.as_deref(), "{v}");
        assert_eq!(v["user"], format!("u{}", i % 7), "{v}");
        assert_eq!(v["ts"].as_i64(), Some(1_700_000_000_000 + i), "{v}");
        assert_eq!(v["p"].as_i64(), Some(i % 2), "{v}");
        assert_eq!(v["t"], topic.as_str(), "{v}");
        let headers: serde_json::Value = serde_json::from_str(v["h"].as_str().unwrap()).unwrap();
        let mut want = serde_json::json!({ "n": i.to_string() });
        if i % 2 == 0 {
            want["trace"] = serde_json::Value::Null;
        }
        assert_eq!(headers, want, "{v}");
        // The metadata a step names are columns of the record from then on.
        assert_eq!(v["kafka_offset"], v["o"], "{v}");
        offsets
            .entry(i % 2)
            .or_default()
            .push(v["o"].as_i64().unwrap());
    }
    // Each partition's offsets are 0, 1, 2, … in the order produced.
    for (p, mut o) in offsets {
        o.sort_unstable();
        assert_eq!(o, (0..RECORDS / 2).collect::<Vec<_>>(), "partition {p}");
    }

    // A job that names no metadata writes exactly the value's fields.
    let plain = dir.path().join("plain-out");
    let mut job = LocalJob::new(
        dir.path(),
        "plain",
        &spec(
            "plain",
            &brokers,
            &topic,
            &plain,
            "  - filter: \"n >= 0\"\n",
        ),
    );
    let (ok, log) = job.run(&[]);
    assert!(ok, "{log}");
    let rows = read_file_sink(&plain).unwrap();
    assert_eq!(rows.len(), RECORDS as usize);
    for r in &rows {
        let fields: Vec<&String> = r.value.as_object().unwrap().keys().collect();
        assert_eq!(fields, ["n", "user"], "{}", r.value);
    }
}

/// A `csv` topic: quoted fields with commas and quotes, empty fields as
/// NULL, a bad line skipped and counted; a running sum per region exact.
#[test]
fn csv_records_decode_into_the_schema_s_columns() {
    let Some(brokers) = kafka_brokers("csv_records_decode_into_the_schema_s_columns") else {
        return;
    };
    let topic = unique_topic("formats-csv");
    create_topic(&brokers, &topic, 2);
    let regions = ["north", "south, east", "the \"west\""];
    let mut records = Vec::new();
    let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for i in 0..300i64 {
        let region = regions[(i % 3) as usize];
        let quoted = format!("\"{}\"", region.replace('"', "\"\""));
        // Every seventh amount is empty: NULL, which sum skips.
        let amount = if i % 7 == 0 {
            String::new()
        } else {
            i.to_string()
        };
        records.push((
            (i % 2) as i32,
            format!("k{i}"),
            format!("{quoted},{amount},{i}"),
        ));
        let e = want.entry(region.to_string()).or_default();
        e.0 += 1;
        if i % 7 != 0 {
            e.1 += i;
        }
    }
    records.push((0, "bad".into(), "\"north\",not-a-number,1".into()));
    weir_tests::kafka::produce(&brokers, &topic, &records);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("csv-out");
    let mut job = LocalJob::new(
        dir.path(),
        "csv",
        &format!(
            "name: csv\nbatch_interval: 50ms\non_error: skip\n\
             source:\n  kafka: {{ brokers: \"{brokers}\", topic: {topic}, start: earliest, format: csv, \
             schema: {{ region: string, amount: bigint, n: bigint }} }}\n\
             pipeline:\n  - key_by: region\n  - aggregate: {{ clicks: {{}}, total: {{ sum: amount }} }}\n\
             sink:\n  file: {{ path: \"{}\", format: jsonl }}\n",
            out.display()
        ),
    );
    let (ok, log) = job.run(&[]);
    assert!(ok, "{log}");
    let mut got: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for r in read_file_sink(&out).unwrap() {
        let v = &r.value;
        got.insert(
            v["key"].as_str().unwrap().to_string(),
            (v["clicks"].as_i64().unwrap(), v["total"].as_i64().unwrap()),
        );
    }
    assert_eq!(got, want, "each region's newest row");
    // The bad line was skipped and counted, once.
    let skipped: u64 = job
        .logs()
        .lines()
        .filter(|l| l.contains("batch committed"))
        .filter_map(|l| {
            l.split("skipped=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(skipped, 1, "{}", job.logs());
}
