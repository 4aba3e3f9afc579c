//! The Kafka source: reads exactly the offsets `[start, end)` of one
//! partition with an assigned consumer (no consumer group, no committed
//! offsets: the plan in the metadata checkpoint is the only position) and
//! `isolation.level=read_committed`, so records of aborted transactions are
//! never read and the planned end (a last stable offset) is always reached.
//!
//! Formats (see docs/kafka.md): `json` (the fields of `schema`, typed),
//! `text` (one `value` string column) and `raw` (`key`, `value`,
//! `timestamp`, `partition`, `offset`; headers are not exposed).
//!
//! A record that fails to decode is handled per the job's `on_error`:
//! `fail` fails the task (a user error naming the record), `skip` drops and
//! counts it, `dead_letter` also sends its original key and bytes, with an
//! `error` header, to the dead-letter topic before the task reports success.

use super::json::JsonDecoder;
use super::SourceReader;
use crate::error::ExecError;
use arrow_array::builder::{BinaryBuilder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{debug, warn};
use weir_kafka::rdkafka::consumer::{BaseConsumer, Consumer};
use weir_kafka::rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use weir_kafka::rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use weir_kafka::rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use weir_kafka::rdkafka::{Offset, TopicPartitionList};
use weir_kafka::{client_config, consumer_config, KafkaError};
use weir_proto::pb;

/// Rows per batch handed to the pipeline.
const CHUNK_ROWS: usize = 65_536;
/// A read that makes no progress for this long fails (and is retried).
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Every column a Kafka source of this spec can produce.
pub fn full_schema(source: &pb::KafkaSource) -> Schema {
    match pb::KafkaFormat::try_from(source.format).unwrap_or(pb::KafkaFormat::Json) {
        pb::KafkaFormat::Json => Schema::new(
            source
                .schema
                .iter()
                .map(|f| {
                    let t = pb::FieldType::try_from(f.r#type).unwrap_or(pb::FieldType::String);
                    Field::new(&f.name, super::json::arrow_type(t), true)
                })
                .collect::<Vec<_>>(),
        ),
        pb::KafkaFormat::Text => Schema::new(vec![Field::new("value", DataType::Utf8, true)]),
        pb::KafkaFormat::Raw => Schema::new(vec![
            Field::new("key", DataType::Utf8, true),
            Field::new("value", DataType::Binary, true),
            Field::new("timestamp", DataType::Int64, true),
            Field::new("partition", DataType::Int64, false),
            Field::new("offset", DataType::Int64, false),
        ]),
    }
}

/// What to do with a record that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRecords {
    /// Fail the task.
    Fail,
    /// Drop and count it.
    Skip,
    /// Send it to the dead-letter topic, drop and count it.
    DeadLetter,
}

/// Reads a Kafka topic's offset ranges.
pub struct KafkaReader {
    job: String,
    source: pb::KafkaSource,
    schema: SchemaRef,
    /// Every JSON field of the schema (all are type-checked).
    json_fields: Vec<(String, pb::FieldType)>,
    /// Indexes of the projected JSON fields.
    json_output: Vec<usize>,
    bad: BadRecords,
    dead_letters: Option<DeadLetters>,
}

impl std::fmt::Debug for KafkaReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaReader")
            .field("topic", &self.source.topic)
            .finish()
    }
}

impl KafkaReader {
    /// A reader producing the named columns (all when `None`).
    pub fn new(
        job: &str,
        source: &pb::KafkaSource,
        columns: Option<&[String]>,
        bad: BadRecords,
        dead_letter: Option<&pb::DeadLetter>,
    ) -> Result<Self, String> {
        let full = full_schema(source);
        let fields: Vec<Field> = full
            .fields()
            .iter()
            .filter(|f| columns.is_none_or(|c| c.iter().any(|n| n == f.name())))
            .map(|f| f.as_ref().clone())
            .collect();
        let json_fields: Vec<(String, pb::FieldType)> = source
            .schema
            .iter()
            .map(|f| {
                (
                    f.name.clone(),
                    pb::FieldType::try_from(f.r#type).unwrap_or(pb::FieldType::String),
                )
            })
            .collect();
        let json_output = json_fields
            .iter()
            .enumerate()
            .filter(|(_, (n, _))| fields.iter().any(|x| x.name() == n))
            .map(|(i, _)| i)
            .collect();
        let dead_letters = match (bad, dead_letter) {
            (BadRecords::DeadLetter, Some(d)) => Some(DeadLetters {
                brokers: if d.brokers.is_empty() {
                    source.brokers.clone()
                } else {
                    d.brokers.clone()
                },
                topic: d.topic.clone(),
                job: job.to_string(),
                producer: Mutex::new(None),
            }),
            (BadRecords::DeadLetter, None) => {
                return Err("on_error: dead_letter needs dead_letter: { topic }".into())
            }
            _ => None,
        };
        Ok(KafkaReader {
            job: job.to_string(),
            source: source.clone(),
            schema: Arc::new(Schema::new(fields)),
            json_fields,
            json_output,
            bad,
            dead_letters,
        })
    }

    fn properties(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.source
            .properties
            .iter()
            .map(|p| (p.key.as_str(), p.value.as_str()))
    }

    fn error(&self, message: String, transient: bool) -> ExecError {
        ExecError::Source {
            job: self.job.clone(),
            source_name: format!("kafka topic {}", self.source.topic),
            message,
            transient,
        }
    }

    fn kafka_error(&self, e: KafkaError) -> ExecError {
        let transient = e.is_transient();
        self.error(e.to_string(), transient)
    }

    fn consumer(&self) -> Result<BaseConsumer, ExecError> {
        consumer_config(&self.source.brokers, self.properties())
            .set("group.id", format!("weir-{}", self.job))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "error")
            .set("isolation.level", "read_committed")
            .create()
            .map_err(|e| {
                self.kafka_error(KafkaError::from_rd(
                    &self.source.brokers,
                    "create a consumer",
                    &e,
                ))
            })
    }

    fn decoder(&self) -> Decoder {
        match pb::KafkaFormat::try_from(self.source.format).unwrap_or(pb::KafkaFormat::Json) {
            pb::KafkaFormat::Json => {
                Decoder::Json(JsonDecoder::projected(&self.json_fields, &self.json_output))
            }
            pb::KafkaFormat::Text => Decoder::Text {
                project: self.schema.fields().len() == 1,
                value: StringBuilder::new(),
                rows: 0,
            },
            pb::KafkaFormat::Raw => Decoder::Raw(Box::new(RawBuilders::new(&self.schema))),
        }
    }

    /// Where retention left the partition: its low watermark.
    fn low_watermark(&self, consumer: &BaseConsumer, partition: u32) -> Result<u64, ExecError> {
        let (low, _) = consumer
            .fetch_watermarks(
                &self.source.topic,
                partition as i32,
                weir_kafka::REQUEST_TIMEOUT,
            )
            .map_err(|e| {
                self.kafka_error(KafkaError::from_rd(
                    &self.source.brokers,
                    &format!("list offsets of partition {partition}"),
                    &e,
                ))
            })?;
        Ok(low.max(0) as u64)
    }
}

impl SourceReader for KafkaReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn read(
        &self,
        partition: u32,
        start: u64,
        end: u64,
        replay: bool,
        sink: &mut dyn FnMut(RecordBatch) -> Result<(), ExecError>,
    ) -> Result<u64, ExecError> {
        if start >= end {
            return Ok(0);
        }
        let topic = self.source.topic.as_str();
        let consumer = self.consumer()?;
        let mut from = start;
        let mut skipped = 0;
        // Offsets below the low watermark were deleted after planning.
        let low = self.low_watermark(&consumer, partition)?;
        if low > from {
            let lost = low.min(end) - from;
            if self.source.on_missing != pb::OnMissing::SkipToEarliest as i32 {
                return Err(self.error(
                    format!(
                        "offsets [{from}, {}) of partition {partition} were deleted (retention) before this batch read them: {lost} records lost; set source.kafka.on_missing: skip_to_earliest to skip such gaps",
                        low.min(end)
                    ),
                    false,
                ));
            }
            warn!(job = %self.job, topic, partition, from, to = low.min(end), lost, "source offsets were deleted before the batch read them; skipped (on_missing: skip_to_earliest)");
            skipped += lost;
            from = low;
            if from >= end {
                return Ok(skipped);
            }
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition as i32, Offset::Offset(from as i64))
            .and_then(|()| consumer.assign(&tpl))
            .map_err(|e| {
                self.kafka_error(KafkaError::from_rd(&self.source.brokers, "assign", &e))
            })?;
        let mut decoder = self.decoder();
        let mut dead = Vec::new();
        let mut last_progress = Instant::now();
        loop {
            let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
                if last_progress.elapsed() > STALL_TIMEOUT {
                    return Err(self.error(
                        format!("reading partition {partition} stalled before offset {end} (at {from}); is the broker up?"),
                        true,
                    ));
                }
                continue;
            };
            let m = match polled {
                Ok(m) => m,
                // Reached the last stable offset, which is at or past the
                // planned end: every record of the range was delivered
                // (the rest are transaction markers or aborted records).
                Err(RdError::PartitionEOF(_)) => break,
                Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::AutoOffsetReset) => {
                    return Err(self.error(
                        format!("partition {partition}: offset {from} is out of range ({e}); records were deleted while the batch read them"),
                        false,
                    ))
                }
                Err(e) => {
                    let e = KafkaError::from_rd(&self.source.brokers, "read", &e);
                    if !e.is_transient() {
                        return Err(self.kafka_error(e));
                    }
                    debug!(job = %self.job, error = %e, "transient read error");
                    continue;
                }
            };
            last_progress = Instant::now();
            let offset = m.offset() as u64;
            if offset >= end {
                break;
            }
            from = offset + 1;
            if let Err(reason) = decoder.push(&m) {
                match self.bad {
                    BadRecords::Fail => {
                        return Err(self.error(
                            format!("record at partition {partition} offset {offset} does not decode: {reason}; set on_error: skip or dead_letter to pass over such records"),
                            false,
                        ))
                    }
                    BadRecords::Skip => {}
                    BadRecords::DeadLetter => {
                        if !replay {
                            dead.push(DeadRecord {
                                key: m.key().map(<[u8]>::to_vec),
                                value: m.payload().map(<[u8]>::to_vec),
                                partition,
                                offset,
                                error: reason,
                            });
                        }
                    }
                }
                skipped += 1;
            }
            if decoder.rows() >= CHUNK_ROWS {
                sink(decoder.finish())?;
            }
            if offset + 1 >= end {
                break;
            }
        }
        if decoder.rows() > 0 {
            sink(decoder.finish())?;
        }
        if let Some(d) = &self.dead_letters {
            if !dead.is_empty() {
                d.send(topic, &dead)
                    .map_err(|m| self.error(format!("dead-letter topic {}: {m}", d.topic), true))?;
            }
        }
        Ok(skipped)
    }
}

enum Decoder {
    Json(JsonDecoder),
    Text {
        project: bool,
        value: StringBuilder,
        rows: usize,
    },
    Raw(Box<RawBuilders>),
}

impl Decoder {
    fn rows(&self) -> usize {
        match self {
            Decoder::Json(d) => d.rows(),
            Decoder::Text { rows, .. } => *rows,
            Decoder::Raw(r) => r.rows,
        }
    }

    fn push(&mut self, m: &BorrowedMessage<'_>) -> Result<(), String> {
        match self {
            Decoder::Json(d) => match m.payload() {
                Some(p) => d.push(p),
                None => Err("the record has no value (a tombstone)".into()),
            },
            Decoder::Text {
                project,
                value,
                rows,
            } => {
                match m.payload() {
                    Some(p) => {
                        let s = std::str::from_utf8(p)
                            .map_err(|e| format!("the value is not UTF-8 text: {e}"))?;
                        if *project {
                            value.append_value(s);
                        }
                    }
                    None if *project => value.append_null(),
                    None => {}
                }
                *rows += 1;
                Ok(())
            }
            Decoder::Raw(r) => {
                r.push(m);
                Ok(())
            }
        }
    }

    fn finish(&mut self) -> RecordBatch {
        match self {
            Decoder::Json(d) => d.finish(),
            Decoder::Text {
                project,
                value,
                rows,
            } => {
                let n = std::mem::take(rows);
                let columns: Vec<ArrayRef> = if *project {
                    vec![Arc::new(value.finish())]
                } else {
                    Vec::new()
                };
                let schema = Arc::new(Schema::new(if *project {
                    vec![Field::new("value", DataType::Utf8, true)]
                } else {
                    Vec::new()
                }));
                RecordBatch::try_new_with_options(
                    schema,
                    columns,
                    &arrow_array::RecordBatchOptions::new().with_row_count(Some(n)),
                )
                .expect("columns match the schema")
            }
            Decoder::Raw(r) => r.finish(),
        }
    }
}

/// Column builders of the `raw` format (only the projected ones are filled).
struct RawBuilders {
    schema: SchemaRef,
    key: Option<StringBuilder>,
    value: Option<BinaryBuilder>,
    timestamp: Option<Int64Builder>,
    partition: Option<Int64Builder>,
    offset: Option<Int64Builder>,
    rows: usize,
}

impl RawBuilders {
    fn new(schema: &SchemaRef) -> Self {
        let has = |n: &str| schema.column_with_name(n).is_some();
        RawBuilders {
            schema: schema.clone(),
            key: has("key").then(StringBuilder::new),
            value: has("value").then(BinaryBuilder::new),
            timestamp: has("timestamp").then(Int64Builder::new),
            partition: has("partition").then(Int64Builder::new),
            offset: has("offset").then(Int64Builder::new),
            rows: 0,
        }
    }

    fn push(&mut self, m: &BorrowedMessage<'_>) {
        if let Some(b) = &mut self.key {
            match m.key() {
                Some(k) => b.append_value(String::from_utf8_lossy(k)),
                None => b.append_null(),
            }
        }
        if let Some(b) = &mut self.value {
            b.append_option(m.payload());
        }
        if let Some(b) = &mut self.timestamp {
            b.append_option(m.timestamp().to_millis());
        }
        if let Some(b) = &mut self.partition {
            b.append_value(i64::from(m.partition()));
        }
        if let Some(b) = &mut self.offset {
            b.append_value(m.offset());
        }
        self.rows += 1;
    }

    fn finish(&mut self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = Vec::new();
        for f in self.schema.fields() {
            let col: ArrayRef = match f.name().as_str() {
                "key" => Arc::new(self.key.as_mut().expect("projected").finish()),
                "value" => Arc::new(self.value.as_mut().expect("projected").finish()),
                "timestamp" => Arc::new(self.timestamp.as_mut().expect("projected").finish()),
                "partition" => Arc::new(self.partition.as_mut().expect("projected").finish()),
                _ => Arc::new(self.offset.as_mut().expect("projected").finish()),
            };
            columns.push(col);
        }
        let n = std::mem::take(&mut self.rows);
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(n)),
        )
        .expect("columns match the schema")
    }
}

struct DeadRecord {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    partition: u32,
    offset: u64,
    error: String,
}

/// Sends records that do not decode to the dead-letter topic with an
/// idempotent producer. Records are flushed before the stage-A task that
/// found them succeeds; a task that is re-run sends them again (the
/// `weir.source` header identifies duplicates: topic/partition/offset).
struct DeadLetters {
    brokers: String,
    topic: String,
    job: String,
    producer: Mutex<Option<BaseProducer<Deliveries>>>,
}

/// Counts records the broker did not accept.
#[derive(Default)]
struct Deliveries {
    failed: std::sync::atomic::AtomicU64,
}

impl weir_kafka::rdkafka::ClientContext for Deliveries {}

impl weir_kafka::rdkafka::producer::ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &weir_kafka::rdkafka::message::DeliveryResult<'_>, _: ()) {
        if result.is_err() {
            self.failed
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

impl DeadLetters {
    fn send(&self, source_topic: &str, records: &[DeadRecord]) -> Result<(), String> {
        let mut guard = self.producer.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            let p: BaseProducer<Deliveries> = client_config(&self.brokers, [])
                .set("enable.idempotence", "true")
                .set("linger.ms", "5")
                .create_with_context(Deliveries::default())
                .map_err(|e| e.to_string())?;
            *guard = Some(p);
        }
        let producer = guard.as_ref().expect("set above");
        let result = (|| {
            for r in records {
                let source = format!("{source_topic}/{}/{}", r.partition, r.offset);
                let headers = OwnedHeaders::new()
                    .insert(Header {
                        key: "error",
                        value: Some(r.error.as_str()),
                    })
                    .insert(Header {
                        key: "weir.job",
                        value: Some(self.job.as_str()),
                    })
                    .insert(Header {
                        key: "weir.source",
                        value: Some(source.as_str()),
                    });
                let mut record = BaseRecord::<[u8], [u8]>::to(&self.topic).headers(headers);
                if let Some(k) = &r.key {
                    record = record.key(k.as_slice());
                }
                if let Some(v) = &r.value {
                    record = record.payload(v.as_slice());
                }
                let mut record = record;
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((e, back))
                            if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) =>
                        {
                            producer.poll(Duration::from_millis(50));
                            record = back;
                        }
                        Err((e, _)) => return Err(e.to_string()),
                    }
                }
            }
            producer
                .flush(Duration::from_secs(30))
                .map_err(|e| e.to_string())?;
            let failed = producer
                .context()
                .failed
                .swap(0, std::sync::atomic::Ordering::SeqCst);
            if failed > 0 {
                return Err(format!("{failed} records were not accepted by the broker"));
            }
            Ok(())
        })();
        if result.is_err() {
            // Start over with a fresh producer on the retry.
            *guard = None;
        }
        result
    }
}
