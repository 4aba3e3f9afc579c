//! The Kafka source: reads exactly the offsets `[start, end)` of one
//! partition with an assigned consumer (no consumer group, no committed
//! offsets: the plan in the metadata checkpoint is the only position) and
//! `isolation.level=read_committed`, so records of aborted transactions are
//! never read and the planned end (a last stable offset) is always reached.
//! Consumers are kept per partition across batches ([`consumers`]).
//!
//! Formats (see docs/kafka.md): `json` (the fields of `schema`, typed),
//! `text` (one `value` string column) and `raw` (`key`, `value`,
//! `timestamp`, `partition`, `offset`; headers are not exposed).
//!
//! A record that fails to decode is handled per the job's `on_error`:
//! `fail` fails the task (a user error naming the record), `skip` drops and
//! counts it, `dead_letter` also writes its original key and bytes, with an
//! `error` header, to the dead-letter topic, exactly once
//! ([`dead_letters`]), before the task reports success.

mod consumers;
mod dead_letters;
mod decode;

use super::SourceReader;
use crate::error::ExecError;
use arrow_array::RecordBatch;
use arrow_schema::{Field, Schema, SchemaRef};
use consumers::{ConsumerPool, Positioned};
use dead_letters::{DeadLetters, DeadRecord};
use decode::Decoder;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, warn};
use weir_kafka::rdkafka::consumer::Consumer as _;
use weir_kafka::rdkafka::error::{KafkaError as RdError, RDKafkaErrorCode};
use weir_kafka::rdkafka::message::Message;
use weir_kafka::rdkafka::{Offset, TopicPartitionList};
use weir_kafka::{consumer_config, resolve_properties, KafkaError};
use weir_kafka::{Consumer, LogContext};
use weir_proto::pb;

/// Rows per batch handed to the pipeline.
const CHUNK_ROWS: usize = 65_536;
/// A read that makes no progress for this long fails (and is retried).
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

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
    consumers: ConsumerPool,
}

impl std::fmt::Debug for KafkaReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaReader")
            .field("topic", &self.source.topic)
            .finish()
    }
}

/// How a read of a range ended.
enum ReadEnd {
    /// Every record of the range was seen; the consumer delivers from
    /// `next` on and can read the next range if it starts there.
    Done { next: Option<u64> },
    /// A reused consumer reported the partition end before reaching the
    /// range's end (an end-of-partition event of an earlier range, or the
    /// rest of the range compacted away): read on from `from` with a fresh
    /// consumer, whose end-of-partition events are about this read only.
    Recheck { from: u64 },
}

impl KafkaReader {
    /// A reader producing the named columns (all when `None`) for `job`,
    /// created at `incarnation` (ms; it tells dead-letter commit markers of
    /// a recreated job apart).
    pub fn new(
        job: &str,
        incarnation: i64,
        source: &pb::KafkaSource,
        columns: Option<&[String]>,
        bad: BadRecords,
        dead_letter: Option<&pb::DeadLetter>,
    ) -> Result<Self, String> {
        let full = weir_plan::source::kafka_schema(source);
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
            (BadRecords::DeadLetter, Some(d)) => Some(DeadLetters::new(
                if d.brokers.is_empty() {
                    &source.brokers
                } else {
                    &d.brokers
                },
                &d.topic,
                job,
                incarnation,
                // The source's credentials (the dead-letter topic is on the
                // source's cluster unless dead_letter.brokers says otherwise).
                &source.properties,
            )),
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
            consumers: ConsumerPool::default(),
        })
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

    /// A new consumer assigned to `partition` at `from`.
    fn consumer(&self, partition: u32, from: u64) -> Result<Positioned, ExecError> {
        let rd = |action: &str, e: &RdError| {
            self.kafka_error(KafkaError::from_rd(&self.source.brokers, action, e))
        };
        // Resolved for each new consumer, so a rotated secret file is read
        // again.
        let props = resolve_properties(
            "source.kafka.properties",
            &self.source.properties,
            "executor",
        )
        .map_err(|e| self.kafka_error(e))?;
        let consumer: Consumer = consumer_config(&self.source.brokers, props.iter())
            .set("group.id", format!("weir-{}", self.job))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "error")
            .set("isolation.level", "read_committed")
            .create_with_context(LogContext::new())
            .map_err(|e| rd("create a consumer", &e))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(
            &self.source.topic,
            partition as i32,
            Offset::Offset(from as i64),
        )
        .and_then(|()| consumer.assign(&tpl))
        .map_err(|e| rd("assign", &e))?;
        Ok(Positioned::new(consumer, from))
    }

    fn decoder(&self) -> Decoder {
        Decoder::new(
            pb::KafkaFormat::try_from(self.source.format).unwrap_or(pb::KafkaFormat::Json),
            &self.schema,
            &self.json_fields,
            &self.json_output,
        )
    }

    /// Where retention left the partition: its low watermark.
    fn low_watermark(&self, consumer: &Consumer, partition: u32) -> Result<u64, ExecError> {
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

    /// Reads `[from, end)` of `partition` with `c`, decoding into `decoder`
    /// and collecting dead letters into `dead`.
    #[allow(clippy::too_many_arguments)]
    fn read_range(
        &self,
        c: &mut Positioned,
        reused: bool,
        partition: u32,
        mut from: u64,
        end: u64,
        decoder: &mut Decoder,
        dead: &mut Option<Vec<DeadRecord>>,
        skipped: &mut u64,
        sink: &mut dyn FnMut(RecordBatch) -> Result<(), ExecError>,
    ) -> Result<ReadEnd, ExecError> {
        let consumer = &c.consumer;
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
                Err(RdError::PartitionEOF(_)) => {
                    // Transaction markers (and aborted records) below the
                    // end advance the position without being delivered.
                    let position = self.position(consumer, partition).max(from);
                    if position >= end {
                        return Ok(ReadEnd::Done {
                            next: Some(position),
                        });
                    }
                    if reused {
                        return Ok(ReadEnd::Recheck { from: position });
                    }
                    // A fresh consumer assigned at `from` reached the
                    // partition's end, which is at or past the planned
                    // end: the rest of the range are markers, aborted or
                    // compacted records.
                    return Ok(ReadEnd::Done { next: None });
                }
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
                // A record of the next range was consumed: this consumer
                // is not positioned at `end`.
                return Ok(ReadEnd::Done { next: None });
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
                        if let Some(dead) = dead {
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
                *skipped += 1;
            }
            if decoder.rows() >= CHUNK_ROWS {
                sink(decoder.finish())?;
            }
            if from >= end {
                return Ok(ReadEnd::Done { next: Some(end) });
            }
        }
    }

    /// The consumer's position in `partition` (0 when unknown).
    fn position(&self, consumer: &Consumer, partition: u32) -> u64 {
        consumer
            .position()
            .ok()
            .and_then(|tpl| {
                tpl.find_partition(&self.source.topic, partition as i32)
                    .and_then(|e| match e.offset() {
                        Offset::Offset(o) if o >= 0 => Some(o as u64),
                        _ => None,
                    })
            })
            .unwrap_or(0)
    }
}

impl SourceReader for KafkaReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn read(
        &self,
        batch_id: u64,
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
        let (mut c, mut reused) = match self.consumers.take(partition, start) {
            Some(c) => (c, true),
            None => (self.consumer(partition, start)?, false),
        };
        let mut from = start;
        let mut skipped = 0;
        // Offsets below the low watermark were deleted after planning.
        let low = self.low_watermark(&c.consumer, partition)?;
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
            if reused {
                c = self.consumer(partition, from)?;
                reused = false;
            }
        }
        let mut decoder = self.decoder();
        // Replays only rebuild state: their dead letters were written.
        let mut dead = (self.dead_letters.is_some() && !replay).then(Vec::new);
        loop {
            match self.read_range(
                &mut c,
                reused,
                partition,
                from,
                end,
                &mut decoder,
                &mut dead,
                &mut skipped,
                sink,
            )? {
                ReadEnd::Done { next } => {
                    if let Some(next) = next {
                        c.next = next;
                        self.consumers.put(partition, c);
                    }
                    break;
                }
                ReadEnd::Recheck { from: at } => {
                    from = at;
                    c = self.consumer(partition, from)?;
                    reused = false;
                }
            }
        }
        if decoder.rows() > 0 {
            sink(decoder.finish())?;
        }
        if let (Some(d), Some(dead)) = (&self.dead_letters, dead) {
            if !dead.is_empty() {
                d.write(topic, batch_id, partition, &dead).map_err(|e| {
                    // A refusal (credentials, ACLs) fails the job; the
                    // rest is retried.
                    self.error(
                        format!("dead-letter topic {}: {}", d.topic(), e.message),
                        !e.refused,
                    )
                })?;
                weir_proto::failpoint::hit("after-dead-letters");
            }
        }
        Ok(skipped)
    }
}
