//! A chaos job over the real Kafka broker: its input produced to a fresh
//! topic while the job runs ([`KafkaInput`]), its output read back with
//! `isolation.level=read_committed` and split into the sink's transactions
//! ([`KafkaOutput`]).
//!
//! The Kafka sink writes one transaction per `(batch, state partition)`
//! and, in the same transaction, a commit marker with the batch id and the
//! number of records to the control topic. Output records carry no batch
//! id, so the reader rebuilds the units from the log itself:
//!
//! - the input's keys are chosen so that each key's state partition (Weir's
//!   key hash) equals its sink-topic partition (librdkafka's default
//!   partitioner, CRC-32 of the key), so sink partition `p` holds only the
//!   transactions of state partition `p`'s producer, one after another;
//! - every transaction ends with a commit control record, which takes an
//!   offset a `read_committed` reader never sees: the committed records of
//!   one partition split into transactions at the offset gaps (an aborted
//!   transaction between two is a wider gap);
//! - the markers of state partition `p`, in log order, name the batch of
//!   each of those transactions and how many records it wrote; a count that
//!   does not match, or a marker without its records, is reported.

use super::io::{InputProducer, InputRecord, OutputReader, OutputUnit};
use anyhow::{bail, Context};
use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use weir_executor::keys::Key;
use weir_kafka::markers::{control_partition, Marker, COMMITS_TOPIC};
use weir_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use weir_kafka::rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use weir_kafka::rdkafka::message::{DeliveryResult, Message};
use weir_kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer, ProducerContext};
use weir_kafka::rdkafka::{ClientContext, Offset, TopicPartitionList};
use weir_kafka::{client_config, consumer_config, ensure_topic, KafkaError, TopicOffsets};

/// Partitions of the input topic and of the sink topic; also the job's
/// state partitions (the reader relies on sink partition = state partition).
pub const PARTITIONS: u32 = super::workload::STATE_PARTITIONS;

/// How long [`KafkaOutput::read`] waits for the markers and the records of
/// the same transactions to be readable together.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Longest read of one partition.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// The sink-topic partition librdkafka's default partitioner
/// (`consistent_random`) gives a non-empty key: CRC-32 of the key bytes.
pub fn sink_partition(key: &str, partitions: u32) -> u32 {
    crc32fast::hash(key.as_bytes()) % partitions.max(1)
}

/// The state partition Weir gives a string key.
pub fn state_partition(key: &str, partitions: u32) -> u32 {
    Key::Str(key.into()).partition(partitions)
}

/// `n` distinct keys from `seed` (`k<seed>-<i>`) whose state partition is
/// their sink partition among `partitions`.
pub fn aligned_keys(seed: u64, n: usize, partitions: u32) -> Vec<String> {
    (0u64..)
        .map(|i| format!("k{seed}-{i}"))
        .filter(|k| state_partition(k, partitions) == sink_partition(k, partitions))
        .take(n)
        .collect()
}

/// SplitMix64: a well-mixed value from a counter.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Delivery reports of the input producer: the first failure, if any.
#[derive(Default)]
struct Deliveries {
    delivered: AtomicU64,
    failed: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, m)) => {
                let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
                failed.get_or_insert_with(|| format!("record at partition {}: {e}", m.partition()));
            }
        }
    }
}

/// The background producer's state.
enum Producing {
    NotStarted,
    Running(JoinHandle<anyhow::Result<()>>),
    Done,
}

/// Known JSON input for a fresh topic: record `i` goes to partition
/// `i % partitions` with key `keys[mix(seed ^ i) % keys]` and value
/// `mix(seed + i) % 1_000_000` (JSON `{"key": .., "value": ..}`).
#[derive(Debug, Clone)]
pub struct InputPlan {
    /// Bootstrap servers.
    pub brokers: String,
    /// The input topic.
    pub topic: String,
    /// Its partitions.
    pub partitions: u32,
    /// The keys.
    pub keys: Vec<String>,
    /// Seed of keys and values.
    pub seed: u64,
    /// Records produced per second.
    pub rate: u64,
    /// Records in all.
    pub total: u64,
}

impl InputPlan {
    /// Record `i`: `(partition, key, value)`.
    fn record(&self, i: u64) -> (u32, &str, u64) {
        let key = &self.keys[(mix(self.seed ^ i) % self.keys.len().max(1) as u64) as usize];
        (
            (i % u64::from(self.partitions)) as u32,
            key,
            mix(self.seed.wrapping_add(i)) % 1_000_000,
        )
    }

    /// Produces every record at the rate (an idempotent producer: a
    /// retried send is not a second record); returns early when `stop` is
    /// set.
    fn produce_all(&self, stop: &AtomicBool) -> anyhow::Result<()> {
        let producer: BaseProducer<Deliveries> = client_config(&self.brokers, [])
            .set("enable.idempotence", "true")
            .set("linger.ms", "5")
            .create_with_context(Deliveries::default())
            .map_err(|e| KafkaError::from_rd(&self.brokers, "create a producer", &e))?;
        let started = Instant::now();
        let mut value = String::new();
        for i in 0..self.total {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            // every 10 ms of input, wait until it is due
            if i % (self.rate / 100).max(1) == 0 {
                let due = started + Duration::from_micros(i * 1_000_000 / self.rate.max(1));
                while Instant::now() < due {
                    producer.poll(due.saturating_duration_since(Instant::now()));
                }
            }
            let (partition, key, v) = self.record(i);
            value.clear();
            value.push_str(&serde_json::json!({"key": key, "value": v}).to_string());
            let mut record = BaseRecord::to(&self.topic)
                .partition(partition as i32)
                .key(key)
                .payload(&value);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((e, back))
                        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) =>
                    {
                        producer.poll(Duration::from_millis(10));
                        record = back;
                    }
                    Err((e, _)) => bail!("producing input record {i} to {}: {e}", self.topic),
                }
            }
            producer.poll(Duration::ZERO);
        }
        producer
            .flush(Duration::from_secs(120))
            .map_err(|e| KafkaError::from_rd(&self.brokers, "flush the input", &e))?;
        let context = producer.context();
        if let Some(e) = context
            .failed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            bail!("producing the input to {}: {e}", self.topic);
        }
        let delivered = context.delivered.load(Ordering::Relaxed);
        if delivered != self.total {
            bail!(
                "producing the input to {}: {delivered} of {} records delivered",
                self.topic,
                self.total
            );
        }
        Ok(())
    }
}

/// The input side of a Kafka chaos job: an [`InputPlan`] produced in the
/// background from [`InputProducer::produce`] on, so the job keeps reading
/// while faults fire.
pub struct KafkaInput {
    /// What is produced.
    pub plan: InputPlan,
    /// Cap per partition and batch of the source (catch-up batches after
    /// an outage).
    pub max_records_per_partition: u64,
    producing: Mutex<Producing>,
    stop: Arc<AtomicBool>,
}

impl KafkaInput {
    /// `total` records of `keys` aligned keys from `seed`, produced to
    /// `topic` at `rate`.
    pub fn new(
        brokers: &str,
        topic: &str,
        seed: u64,
        keys: usize,
        rate: u64,
        total: u64,
    ) -> KafkaInput {
        KafkaInput {
            plan: InputPlan {
                brokers: brokers.to_string(),
                topic: topic.to_string(),
                partitions: PARTITIONS,
                keys: aligned_keys(seed, keys, PARTITIONS),
                seed,
                rate,
                total,
            },
            max_records_per_partition: (rate / 2).max(1_000),
            producing: Mutex::new(Producing::NotStarted),
            stop: Arc::new(AtomicBool::new(false)),
        }
    }
}

impl Drop for KafkaInput {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl InputProducer for KafkaInput {
    fn source_yaml(&self) -> String {
        format!(
            "{{ kafka: {{ brokers: \"{}\", topic: {}, start: earliest, max_records_per_partition: {}, format: json, schema: {{ key: string, value: bigint }} }} }}",
            self.plan.brokers, self.plan.topic, self.max_records_per_partition
        )
    }

    /// Creates the topic and starts producing in the background.
    fn produce(&self) -> anyhow::Result<()> {
        let plan = self.plan.clone();
        ensure_topic(&plan.brokers, [], &plan.topic, plan.partitions as i32, &[])
            .with_context(|| format!("creating the input topic {}", plan.topic))?;
        let stop = self.stop.clone();
        let handle = std::thread::Builder::new()
            .name(format!("produce {}", plan.topic))
            .spawn(move || plan.produce_all(&stop))?;
        *self.producing.lock().unwrap_or_else(|p| p.into_inner()) = Producing::Running(handle);
        Ok(())
    }

    fn total(&self) -> u64 {
        self.plan.total
    }

    fn for_each(&self, f: &mut dyn FnMut(&InputRecord)) {
        for i in 0..self.plan.total {
            let (_, key, value) = self.plan.record(i);
            f(&InputRecord {
                key: key.to_string(),
                value,
                event_offset_ms: i as i64,
            });
        }
    }

    fn ends_by_itself(&self) -> bool {
        false
    }

    fn produced(&self) -> anyhow::Result<bool> {
        let mut state = self.producing.lock().unwrap_or_else(|p| p.into_inner());
        if let Producing::Running(h) = &*state {
            if !h.is_finished() {
                return Ok(false);
            }
        }
        match std::mem::replace(&mut *state, Producing::Done) {
            Producing::NotStarted => {
                *state = Producing::NotStarted;
                Ok(false)
            }
            Producing::Done => Ok(true),
            Producing::Running(h) => match h.join() {
                Ok(result) => result.map(|()| true),
                Err(_) => bail!("the producer of {} panicked", self.plan.topic),
            },
        }
    }
}

/// The Kafka sink's output topic, read with `read_committed` and split
/// into `(batch, partition)` units (see the module docs).
pub struct KafkaOutput {
    /// Bootstrap servers.
    pub brokers: String,
    /// The sink topic.
    pub topic: String,
    /// The job writing it (its commit markers are read).
    pub job: String,
    /// Partitions of the topic = state partitions of the job.
    pub partitions: u32,
}

/// One committed record: offset, key and value.
type Committed = (i64, Option<String>, Vec<u8>);

impl KafkaOutput {
    fn consumer(&self) -> anyhow::Result<BaseConsumer> {
        consumer_config(&self.brokers, [])
            .set("group.id", "weir-chaos-reader")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(|e| KafkaError::from_rd(&self.brokers, "create a consumer", &e).into())
    }

    /// Every committed record of `topic`/`partition` below its last stable
    /// offset, in offset order.
    fn read_partition(
        &self,
        consumer: &BaseConsumer,
        topic: &str,
        partition: u32,
    ) -> anyhow::Result<Vec<Committed>> {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition as i32, weir_kafka::REQUEST_TIMEOUT)
            .map_err(|e| {
                KafkaError::from_rd(
                    &self.brokers,
                    &format!("offsets of {topic}/{partition}"),
                    &e,
                )
            })?;
        let mut out = Vec::new();
        if high <= low {
            return Ok(out);
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition as i32, Offset::Offset(low))?;
        consumer.assign(&tpl)?;
        let deadline = Instant::now() + READ_TIMEOUT;
        loop {
            if Instant::now() > deadline {
                bail!("reading {topic}/{partition} up to offset {high} took over {READ_TIMEOUT:?}");
            }
            match consumer.poll(Duration::from_millis(200)) {
                None => {}
                Some(Err(RdError::PartitionEOF(p))) if p == partition as i32 => return Ok(out),
                // the end of a partition read before
                Some(Err(RdError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    let e = KafkaError::from_rd(&self.brokers, &format!("reading {topic}"), &e);
                    if !e.is_transient() {
                        return Err(e.into());
                    }
                }
                // left over from a partition read before
                Some(Ok(m)) if m.topic() != topic || m.partition() != partition as i32 => {}
                Some(Ok(m)) => {
                    out.push((
                        m.offset(),
                        m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                        m.payload().unwrap_or_default().to_vec(),
                    ));
                    if m.offset() + 1 >= high {
                        return Ok(out);
                    }
                }
            }
        }
    }

    /// The job's commit markers per state partition, in log order, of its
    /// newest incarnation (an older job of the same name left its own).
    ///
    /// Every marker of the run must still be there: the control topic is
    /// compacted, and a segment that rolls during the run (its
    /// `segment.ms` is an hour) loses the run's earlier markers to the
    /// cleaner, which shifts markers against transactions. The test command
    /// starts a fresh broker for that reason (scripts/test.sh).
    fn markers(&self, consumer: &BaseConsumer) -> anyhow::Result<BTreeMap<u32, Vec<Marker>>> {
        let control = match TopicOffsets::new(&self.brokers, COMMITS_TOPIC, [])?.partitions() {
            Ok(p) => p.len() as i32,
            // nothing committed to any Kafka sink yet
            Err(KafkaError::UnknownTopic { .. }) => return Ok(BTreeMap::new()),
            Err(e) => return Err(e.into()),
        };
        let mut all: Vec<Marker> = Vec::new();
        let mut read = std::collections::BTreeSet::new();
        for p in 0..self.partitions {
            let cp = control_partition(&self.job, p, control);
            if !read.insert(cp) {
                continue;
            }
            for (_, key, value) in self.read_partition(consumer, COMMITS_TOPIC, cp as u32)? {
                let Some(m) = Marker::decode(&value) else {
                    continue;
                };
                if m.job == self.job
                    && key.as_deref() == Some(Marker::key(&m.job, m.partition).as_str())
                {
                    all.push(m);
                }
            }
        }
        let newest = all.iter().map(|m| m.incarnation).max();
        let mut by_partition: BTreeMap<u32, Vec<Marker>> = BTreeMap::new();
        for m in all {
            if Some(m.incarnation) == newest {
                by_partition.entry(m.partition).or_default().push(m);
            }
        }
        Ok(by_partition)
    }

    /// The committed records of sink partition `p` split into transactions
    /// at offset gaps; every key must belong to state partition `p`.
    fn transactions(&self, consumer: &BaseConsumer, p: u32) -> anyhow::Result<Vec<Vec<Committed>>> {
        let mut groups: Vec<Vec<Committed>> = Vec::new();
        let mut next = None;
        for record in self.read_partition(consumer, &self.topic, p)? {
            if let Some(key) = &record.1 {
                let owner = state_partition(key, self.partitions);
                if owner != p {
                    bail!(
                        "{}: key {key} at {}/{p} offset {} belongs to state partition {owner}: the sink's partitioner is not CRC-32 of the key, so records cannot be matched to their transactions",
                        self.job, self.topic, record.0
                    );
                }
            }
            match groups.last_mut() {
                Some(g) if next == Some(record.0) => {
                    next = Some(record.0 + 1);
                    g.push(record);
                }
                _ => {
                    next = Some(record.0 + 1);
                    groups.push(vec![record]);
                }
            }
        }
        Ok(groups)
    }

    /// One attempt: the markers first, then the records. `None` when a
    /// marker's records are not readable yet (the coordinator writes a
    /// transaction's commit to each partition separately).
    fn read_once(
        &self,
        consumer: &BaseConsumer,
    ) -> anyhow::Result<Result<Vec<OutputUnit>, String>> {
        let markers = self.markers(consumer)?;
        let mut units = Vec::new();
        for p in 0..self.partitions {
            let wanted: Vec<&Marker> = markers
                .get(&p)
                .into_iter()
                .flatten()
                .filter(|m| m.records > 0)
                .collect();
            let groups = self.transactions(consumer, p)?;
            if groups.len() < wanted.len() {
                let m = wanted[groups.len()];
                return Ok(Err(format!(
                    "{}: partition {p}: {} transactions readable in {}, but {} commit markers with output; the first without records: batch {} ({} records)",
                    self.job,
                    groups.len(),
                    self.topic,
                    wanted.len(),
                    m.batch_id,
                    m.records
                )));
            }
            // transactions past the last marker committed after the markers
            // were read: the next read takes them
            for (m, g) in wanted.iter().zip(&groups) {
                if g.len() as u64 != m.records {
                    bail!(
                        "{}: partition {p}: the transaction at offsets {}..={} of {} has {} records, its commit marker (batch {}) says {}",
                        self.job,
                        g[0].0,
                        g[g.len() - 1].0,
                        self.topic,
                        g.len(),
                        m.batch_id,
                        m.records
                    );
                }
                let mut h = DefaultHasher::new();
                let mut rows = Vec::with_capacity(g.len());
                for (offset, _, value) in g {
                    value.hash(&mut h);
                    rows.push(serde_json::from_slice(value).with_context(|| {
                        format!("{}/{p} offset {offset}: not JSON", self.topic)
                    })?);
                }
                units.push(OutputUnit {
                    batch: m.batch_id,
                    partition: p,
                    hash: h.finish(),
                    rows,
                });
            }
        }
        units.sort_by_key(|u| (u.batch, u.partition));
        Ok(Ok(units))
    }
}

impl OutputReader for KafkaOutput {
    fn sink_yaml(&self) -> String {
        format!(
            "{{ kafka: {{ brokers: \"{}\", topic: {} }} }}",
            self.brokers, self.topic
        )
    }

    fn prepare(&self) -> anyhow::Result<()> {
        ensure_topic(&self.brokers, [], &self.topic, self.partitions as i32, &[])
            .with_context(|| format!("creating the output topic {}", self.topic))
    }

    /// Every committed transaction whose marker is readable, as units. A
    /// marker whose records stay unreadable for [`SETTLE_TIMEOUT`] (output
    /// lost), or a transaction whose size differs from its marker's, is an
    /// error.
    fn read(&self) -> anyhow::Result<Vec<OutputUnit>> {
        let consumer = self.consumer()?;
        let deadline = Instant::now() + SETTLE_TIMEOUT;
        loop {
            match self.read_once(&consumer)? {
                Ok(units) => return Ok(units),
                Err(why) if Instant::now() > deadline => {
                    bail!("{why} after {SETTLE_TIMEOUT:?}: output lost")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    fn describe(&self) -> String {
        format!("kafka topic {} at {}", self.topic, self.brokers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_is_the_one_librdkafka_partitions_by() {
        // CRC-32 (IEEE) check value
        assert_eq!(crc32fast::hash(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn aligned_keys_are_deterministic_and_aligned() {
        let keys = aligned_keys(7, 40, PARTITIONS);
        assert_eq!(keys, aligned_keys(7, 40, PARTITIONS));
        assert_eq!(keys.len(), 40);
        let mut per_partition = [0; PARTITIONS as usize];
        for k in &keys {
            let p = state_partition(k, PARTITIONS);
            assert_eq!(p, sink_partition(k, PARTITIONS));
            per_partition[p as usize] += 1;
        }
        assert!(per_partition.iter().all(|n| *n > 0), "{per_partition:?}");
        assert_ne!(keys, aligned_keys(8, 40, PARTITIONS));
    }
}
