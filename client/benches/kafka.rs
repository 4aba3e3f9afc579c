//! Kafka → running count → Kafka through `weir local`, next to the raw
//! rate of one rdkafka consumer reading the same topic in the same run.
//!
//!     WEIR_KAFKA_BROKERS=127.0.0.1:9092 cargo bench -p weir --bench kafka
//!
//! `WEIR_BENCH_RECORDS` sets the input size (default 4 million JSON records
//! over 8 partitions, 100 000 keys). With `RUST_LOG` set, Weir's log goes
//! to stderr (e.g. `RUST_LOG=weir_executor=debug` for the timing of each
//! task); each batch's commit time is printed to stderr.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use weir::local::run_job;
use weir_driver::{DriverOptions, Outcome};
use weir_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use weir_kafka::rdkafka::error::KafkaError;
use weir_kafka::rdkafka::message::Message;
use weir_kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use weir_kafka::rdkafka::{Offset, TopicPartitionList};
use weir_kafka::{client_config, consumer_config, ensure_topic};

const PARTITIONS: i32 = 8;
const KEYS: u64 = 100_000;

fn produce(brokers: &str, topic: &str, records: u64) -> anyhow::Result<()> {
    let producer: BaseProducer = client_config(brokers, [])
        .set("linger.ms", "50")
        .set("batch.num.messages", "50000")
        .set("compression.type", "none")
        .create()?;
    let mut value = String::new();
    for i in 0..records {
        value.clear();
        use std::fmt::Write;
        let _ = write!(value, "{{\"user\":\"u{}\",\"n\":{i}}}", i % KEYS);
        let mut r = BaseRecord::<str, str>::to(topic)
            .partition((i % PARTITIONS as u64) as i32)
            .payload(&value);
        loop {
            match producer.send(r) {
                Ok(()) => break,
                Err((_, back)) => {
                    producer.poll(Duration::from_millis(5));
                    r = back;
                }
            }
        }
    }
    producer.flush(Duration::from_secs(120))?;
    Ok(())
}

/// Reads the whole topic with one consumer; returns records and seconds.
fn raw_consume(brokers: &str, topic: &str) -> anyhow::Result<(u64, f64)> {
    // The same consumer defaults as Weir's source.
    let consumer: BaseConsumer = consumer_config(brokers, [])
        .set("group.id", "weir-bench-raw")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..PARTITIONS {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    let started = Instant::now();
    consumer.assign(&tpl)?;
    let mut n = 0u64;
    let mut bytes = 0usize;
    let mut done = 0;
    while done < PARTITIONS {
        match consumer.poll(Duration::from_secs(5)) {
            Some(Ok(m)) => {
                n += 1;
                bytes += m.payload().map_or(0, <[u8]>::len);
            }
            Some(Err(KafkaError::PartitionEOF(_))) => done += 1,
            Some(Err(e)) => anyhow::bail!("raw consumer: {e}"),
            None => anyhow::bail!("raw consumer: no record for 5 s"),
        }
    }
    std::hint::black_box(bytes);
    Ok((n, started.elapsed().as_secs_f64()))
}

fn main() -> anyhow::Result<()> {
    // As `weir local` and `weir-executor` do.
    weir_executor::allocator::keep_freed_memory();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let Ok(brokers) = std::env::var("WEIR_KAFKA_BROKERS") else {
        println!("SKIPPED: WEIR_KAFKA_BROKERS is not set (deploy/dev/kafka.sh start)");
        return Ok(());
    };
    let records: u64 = std::env::var("WEIR_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000_000);
    let run = std::process::id();
    let input = format!("bench-in-{run}");
    let output = format!("bench-out-{run}");
    ensure_topic(&brokers, [], &input, PARTITIONS, &[])?;
    ensure_topic(&brokers, [], &output, PARTITIONS, &[])?;
    let started = Instant::now();
    produce(&brokers, &input, records)?;
    eprintln!(
        "produced {records} records in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let (raw_n, raw_s) = raw_consume(&brokers, &input)?;
    anyhow::ensure!(raw_n == records, "raw consumer read {raw_n} of {records}");

    let dir = tempfile::tempdir()?;
    let spec = weir_proto::spec::parse_spec(&format!(
        "name: bench-kafka-{run}\nbatch_interval: 10ms\nstate_partitions: 8\ncheckpoint_every: 1\n\
         source:\n  kafka: {{ brokers: \"{brokers}\", topic: {input}, start: earliest, max_records_per_partition: 250000, \
         format: json, schema: {{ user: string, n: bigint }} }}\n\
         pipeline:\n  - key_by: user\n  - aggregate: {{ count: {{}} }}\n\
         sink:\n  kafka: {{ brokers: \"{brokers}\", topic: {output} }}\n"
    ))?;
    let shutdown = AtomicBool::new(false);
    let options = DriverOptions {
        exit_when_idle: true,
        ..Default::default()
    };
    let mut records_in = 0;
    let mut records_out = 0;
    let mut batches = 0;
    let started = Instant::now();
    let outcome = run_job(spec, dir.path(), options, &shutdown, &mut |r| {
        records_in += r.commit.records_in;
        records_out += r.commit.records_out;
        batches += 1;
        eprintln!(
            "batch {} committed at {:.2} s ({} ms)",
            r.commit.batch_id,
            started.elapsed().as_secs_f64(),
            r.commit.duration_ms
        );
    })?;
    let weir_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(outcome == Outcome::Finished, "the job did not finish");
    anyhow::ensure!(
        records_in == records,
        "read {records_in} of {records} records"
    );
    let raw_rate = raw_n as f64 / raw_s;
    let weir_rate = records as f64 / weir_s;
    println!("| what | records | seconds | records/s | batches | records out |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| rdkafka consumer (1 thread, read only) | {raw_n} | {raw_s:.2} | {raw_rate:.0} | - | - |"
    );
    println!("| weir local: Kafka → running count → Kafka | {records} | {weir_s:.2} | {weir_rate:.0} | {batches} | {records_out} |");
    println!("weir / raw = {:.0}%", 100.0 * weir_rate / raw_rate);
    let _ = weir_kafka::delete_topics(&brokers, &[&input, &output]);
    Ok(())
}
