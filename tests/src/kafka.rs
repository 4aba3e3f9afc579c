//! Kafka helpers for tests: the broker address, producing input, reading a
//! topic with `read_committed`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use weir_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use weir_kafka::rdkafka::message::{Headers, Message};
use weir_kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use weir_kafka::rdkafka::{Offset, TopicPartitionList};
use weir_kafka::{client_config, TopicOffsets};

/// The test broker (`WEIR_KAFKA_BROKERS`, set by `deploy/dev/kafka.sh`
/// through scripts/test.sh). `None` means skip — but under `CI=true` a
/// missing broker fails the test instead, so CI never passes without it.
pub fn kafka_brokers(test: &str) -> Option<String> {
    match std::env::var("WEIR_KAFKA_BROKERS") {
        Ok(b) if !b.is_empty() => Some(b),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: WEIR_KAFKA_BROKERS is not set under CI=true; start Kafka with deploy/dev/kafka.sh start (scripts/test.sh does)")
        }
        _ => {
            eprintln!("SKIPPED {test}: WEIR_KAFKA_BROKERS is not set; start Kafka with deploy/dev/kafka.sh start");
            None
        }
    }
}

/// A topic name no other test run uses.
pub fn unique_topic(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{name}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000_000
    )
}

/// Creates a topic.
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    weir_kafka::ensure_topic(brokers, [], topic, partitions, &[]).unwrap();
}

/// Creates `topic` with `partitions` partitions and produces `total` JSON
/// records `{"user": "u<i % keys>", "n": i}` (key `u<i % keys>`, record `i`
/// to partition `i % partitions`); returns the number of records per user.
pub fn produce_users(
    brokers: &str,
    topic: &str,
    partitions: i32,
    keys: u64,
    total: u64,
) -> BTreeMap<String, u64> {
    create_topic(brokers, topic, partitions);
    let mut want = BTreeMap::new();
    let records: Vec<(i32, String, String)> = (0..total)
        .map(|i| {
            let user = format!("u{}", i % keys);
            *want.entry(user.clone()).or_insert(0) += 1;
            (
                (i % partitions as u64) as i32,
                user.clone(),
                format!("{{\"user\":\"{user}\",\"n\":{i}}}"),
            )
        })
        .collect();
    produce(brokers, topic, &records);
    want
}

/// Produces `(partition, key, value)` records and waits for all of them.
pub fn produce(brokers: &str, topic: &str, records: &[(i32, String, String)]) {
    produce_with(brokers, topic, records, &[]);
}

/// One record read back.
#[derive(Debug, Clone)]
pub struct Record {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key as text.
    pub key: Option<String>,
    /// Value as text.
    pub value: String,
    /// Headers as text.
    pub headers: BTreeMap<String, String>,
}

/// Every committed record of `topic`, per partition in offset order.
pub fn read_committed(brokers: &str, topic: &str) -> Vec<Record> {
    let lister = TopicOffsets::new(brokers, topic, []).unwrap();
    let marks = lister.watermarks().unwrap();
    let consumer: BaseConsumer = client_config(brokers, [])
        .set("group.id", "weir-tests")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()
        .unwrap();
    let mut out = Vec::new();
    for w in marks {
        if w.high <= w.low {
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, w.partition as i32, Offset::Offset(w.low as i64))
            .unwrap();
        consumer.assign(&tpl).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            assert!(Instant::now() < deadline, "reading {topic} timed out");
            match consumer.poll(Duration::from_millis(200)) {
                None => continue,
                Some(Err(weir_kafka::rdkafka::error::KafkaError::PartitionEOF(_))) => break,
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                Some(Ok(m)) => {
                    let mut headers = BTreeMap::new();
                    if let Some(h) = m.headers() {
                        for x in h.iter() {
                            headers.insert(
                                x.key.to_string(),
                                String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                            );
                        }
                    }
                    out.push(Record {
                        partition: m.partition(),
                        offset: m.offset(),
                        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        value: String::from_utf8_lossy(m.payload().unwrap_or_default())
                            .into_owned(),
                        headers,
                    });
                    if m.offset() as u64 + 1 >= w.high {
                        break;
                    }
                }
            }
        }
    }
    out
}

/// The dev broker's secured listener (deploy/dev/kafka.sh writes it to
/// kafka.env): the SASL_SSL listener with the SCRAM-SHA-512 (and PLAIN)
/// user. (`kafka/tests/security.rs` also uses the SSL listener.)
#[derive(Debug, Clone)]
pub struct SecureKafka {
    /// The PLAINTEXT listener of the same broker (for setting up topics).
    pub plain: String,
    /// The SASL_SSL listener.
    pub sasl_ssl: String,
    /// The CA that signed the broker's (and the client's) certificate.
    pub ca: String,
    /// The SASL user.
    pub user: String,
    /// Its password, also in the environment as `WEIR_KAFKA_SASL_PASSWORD`.
    pub password: String,
}

/// [`SecureKafka`] from the environment; `None` means skip, and under
/// `CI=true` a missing setting fails the test instead.
pub fn secure_kafka(test: &str) -> Option<SecureKafka> {
    let var = |n: &str| std::env::var(n).ok().filter(|v| !v.is_empty());
    let got = (|| {
        Some(SecureKafka {
            plain: var("WEIR_KAFKA_BROKERS")?,
            sasl_ssl: var("WEIR_KAFKA_SASL_SSL_BROKERS")?,
            ca: var("WEIR_KAFKA_CA")?,
            user: var("WEIR_KAFKA_SASL_USER")?,
            password: var("WEIR_KAFKA_SASL_PASSWORD")?,
        })
    })();
    match got {
        Some(s) => Some(s),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("{test}: the secured Kafka listeners (WEIR_KAFKA_SASL_SSL_BROKERS, WEIR_KAFKA_CA, WEIR_KAFKA_SASL_*) are not set under CI=true; start Kafka with deploy/dev/kafka.sh start and load kafka.env (scripts/test.sh does)")
        }
        None => {
            eprintln!("SKIPPED {test}: WEIR_KAFKA_SASL_SSL_BROKERS is not set; start Kafka with deploy/dev/kafka.sh start and load kafka.env");
            None
        }
    }
}

/// Produces `(partition, key, value)` records with extra producer
/// `properties` (e.g. `compression.type`) and waits for all of them.
pub fn produce_with(
    brokers: &str,
    topic: &str,
    records: &[(i32, String, String)],
    properties: &[(&str, &str)],
) {
    let mut config = client_config(brokers, properties.iter().copied());
    config
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000");
    let producer: BaseProducer = config.create().unwrap();
    for (p, k, v) in records {
        let mut r = BaseRecord::to(topic).partition(*p).key(k).payload(v);
        loop {
            match producer.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    producer.poll(Duration::from_millis(10));
                    r = back;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(60)).unwrap();
}
