//! The Kafka sink: exactly-once output through Kafka transactions.
//!
//! One transactional producer per `(job, partition)` with the stable
//! `transactional.id` `weir-<job>-<partition>`: a producer created for the
//! same partition anywhere (a restarted or moved partition) fences the old
//! one and aborts its open transaction.
//!
//! - `pre_commit(batch, p)`: begin a transaction, write the output (key =
//!   the `key` column, value = the row as JSON) and a commit marker for
//!   `(job, batch, p)` to [`COMMITS_TOPIC`], flush, and leave the
//!   transaction open. If the marker says the batch already committed (a
//!   batch re-run after its commit was decided), write nothing.
//! - `commit(batch, p)`: commit the open transaction of that batch. Without
//!   one (the process restarted, or the partition moved), a fresh producer
//!   aborts whatever was left open and the markers, read with
//!   `read_committed`, answer "did this batch commit?": yes → done; no →
//!   [`ExecError::OutputLost`]: the driver re-runs the batch (its decision
//!   stands; stage B recomputes the same output) and commits again.
//!
//! See docs/kafka.md for the whole protocol.

use super::{lock, Sink};
use crate::error::ExecError;
use crate::json::{json_field_names, write_json_row, write_key_text};
use arrow_array::RecordBatch;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tracing::{debug, info, warn};
use weir_kafka::markers::{self, Marker, COMMITS_TOPIC};
use weir_kafka::rdkafka::producer::{BaseRecord, Producer as _};
use weir_kafka::{client_config, resolve_properties, KafkaError, ResolvedProperties};
use weir_kafka::{LogContext, Producer};
use weir_proto::pb;

/// Timeout of transaction calls (init, commit, abort, flush).
const TXN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a marker lookup may wait for other transactions to settle.
const MARKER_TIMEOUT: Duration = Duration::from_secs(30);

/// One partition's transactional producer and what it knows.
struct PartitionProducer {
    producer: Producer,
    /// The newest batch known committed for this partition.
    committed: Option<u64>,
    /// The batch whose transaction is open.
    open: Option<u64>,
}

/// Writes batch output to a Kafka topic, exactly once.
pub struct KafkaSink {
    job: String,
    incarnation: i64,
    sink: pb::KafkaSink,
    control_partitions: OnceLock<i32>,
    producers: Mutex<HashMap<u32, Arc<Mutex<Option<PartitionProducer>>>>>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("job", &self.job)
            .field("topic", &self.sink.topic)
            .finish()
    }
}

impl KafkaSink {
    /// A sink for `job` (created at `incarnation`, ms) writing to `sink.topic`.
    pub fn new(job: &str, incarnation: i64, sink: &pb::KafkaSink) -> Self {
        KafkaSink {
            job: job.to_string(),
            incarnation,
            sink: sink.clone(),
            control_partitions: OnceLock::new(),
            producers: Mutex::new(HashMap::new()),
        }
    }

    /// The `transactional.id` of a partition's producer.
    pub fn transactional_id(job: &str, partition: u32) -> String {
        format!("weir-{job}-{partition}")
    }

    /// The sink's properties with their secret references resolved (for
    /// each new client, so a rotated secret file is read again).
    fn properties(&self) -> Result<ResolvedProperties, ExecError> {
        resolve_properties("sink.kafka.properties", &self.sink.properties, "executor")
            .map_err(|e| self.kafka("", e))
    }

    fn error(&self, message: String) -> ExecError {
        ExecError::Sink {
            job: self.job.clone(),
            sink: format!("kafka topic {}", self.sink.topic),
            message,
        }
    }

    /// A Kafka error, after `context`: a refusal (credentials, TLS,
    /// properties, ACLs) is the user's to fix and fails the job; anything
    /// else is retried.
    fn kafka(&self, context: &str, e: KafkaError) -> ExecError {
        if e.is_refused() {
            ExecError::Plan {
                job: self.job.clone(),
                message: format!("sink kafka topic {}: {context}{e}", self.sink.topic),
            }
        } else {
            self.error(format!("{context}{e}"))
        }
    }

    fn kafka_error(
        &self,
        action: &str,
        e: &weir_kafka::rdkafka::error::KafkaError,
        producer: &Producer,
    ) -> ExecError {
        self.kafka(
            "",
            KafkaError::from_client(&self.sink.brokers, action, e, producer.context()),
        )
    }

    fn control_partitions(&self) -> Result<i32, ExecError> {
        if let Some(n) = self.control_partitions.get() {
            return Ok(*n);
        }
        let props = self.properties()?;
        let n = markers::ensure_commits_topic(&self.sink.brokers, props.iter())
            .map_err(|e| self.kafka(&format!("control topic {COMMITS_TOPIC}: "), e))?;
        Ok(*self.control_partitions.get_or_init(|| n))
    }

    fn slot(&self, partition: u32) -> Arc<Mutex<Option<PartitionProducer>>> {
        lock(&self.producers).entry(partition).or_default().clone()
    }

    /// A new producer for `partition`: fences every older one (aborting
    /// its open transaction), then reads the newest committed batch.
    fn open_producer(&self, partition: u32) -> Result<PartitionProducer, ExecError> {
        let control = self.control_partitions()?;
        let props = self.properties()?;
        let producer: Producer = client_config(&self.sink.brokers, props.iter())
            .set(
                "transactional.id",
                Self::transactional_id(&self.job, partition),
            )
            .create_with_context(LogContext::new())
            .map_err(|e| {
                self.kafka(
                    "",
                    KafkaError::from_rd(&self.sink.brokers, "create a transactional producer", &e),
                )
            })?;
        weir_kafka::connect_producer(&producer, &self.sink.brokers, &self.sink.topic)
            .map_err(|e| self.kafka("", e))?;
        producer
            .init_transactions(TXN_TIMEOUT)
            .map_err(|e| self.kafka_error("init transactions", &e, &producer))?;
        // Connected: an earlier refusal no longer explains later failures.
        producer.context().clear_refusal();
        let committed = markers::last_committed(
            &self.sink.brokers,
            props.iter(),
            &self.job,
            self.incarnation,
            partition,
            control,
            MARKER_TIMEOUT,
        )
        .map_err(|e| self.kafka("reading commit markers: ", e))?;
        debug!(job = %self.job, partition, ?committed, "transactional producer ready");
        Ok(PartitionProducer {
            producer,
            committed,
            open: None,
        })
    }

    fn write(
        &self,
        p: &PartitionProducer,
        batch_id: u64,
        partition: u32,
        output: &[RecordBatch],
        rows: u64,
    ) -> Result<(), ExecError> {
        let txn = |action: &str, e: weir_kafka::rdkafka::error::KafkaError| {
            self.kafka_error(action, &e, &p.producer)
        };
        p.producer
            .begin_transaction()
            .map_err(|e| txn("begin a transaction", e))?;
        let mut key = String::new();
        let mut value = String::new();
        for batch in output {
            let names = json_field_names(batch);
            let key_col = batch.schema().index_of("key").ok();
            for row in 0..batch.num_rows() {
                key.clear();
                value.clear();
                if let Some(k) = key_col {
                    write_key_text(batch.column(k).as_ref(), row, &mut key);
                }
                write_json_row(batch, &names, row, &mut value);
                let mut record = BaseRecord::<str, str>::to(&self.sink.topic).payload(&value);
                if key_col.is_some() {
                    record = record.key(&key);
                }
                weir_kafka::send_waiting(&p.producer, record).map_err(|e| txn("produce", e))?;
            }
        }
        let marker = Marker {
            job: self.job.clone(),
            incarnation: self.incarnation,
            partition,
            batch_id,
            records: rows,
        };
        let marker_key = Marker::key(&self.job, partition);
        let marker_value = marker.encode();
        let control = self.control_partitions()?;
        weir_kafka::send_waiting(
            &p.producer,
            BaseRecord::<str, str>::to(COMMITS_TOPIC)
                .key(marker_key.as_str())
                .payload(marker_value.as_str())
                .partition(markers::control_partition(&self.job, partition, control)),
        )
        .map_err(|e| txn("produce the commit marker", e))?;
        weir_kafka::flush(&p.producer, TXN_TIMEOUT).map_err(|e| txn("flush the transaction", e))
    }
}

impl Sink for KafkaSink {
    fn pre_commit(
        &self,
        batch_id: u64,
        partition: u32,
        output: &[RecordBatch],
    ) -> Result<u64, ExecError> {
        let rows: u64 = output.iter().map(|b| b.num_rows() as u64).sum();
        let slot = self.slot(partition);
        let mut guard = lock(&slot);
        // A fresh producer per pre-commit attempt after any failure.
        if guard.is_none() {
            *guard = Some(self.open_producer(partition)?);
        }
        let p = guard.as_mut().expect("set above");
        if p.committed.is_some_and(|c| c >= batch_id) {
            info!(job = %self.job, batch_id, partition, "output already committed; not written again");
            return Ok(rows);
        }
        if let Some(open) = p.open.take() {
            // An earlier attempt of this (or an abandoned) batch.
            if let Err(e) = p.producer.abort_transaction(TXN_TIMEOUT) {
                warn!(job = %self.job, batch_id = open, partition, error = %e, "could not abort a transaction; starting a new producer");
                let error = self.kafka_error("abort a transaction", &e, &p.producer);
                *guard = None;
                return Err(error);
            }
        }
        match self.write(p, batch_id, partition, output, rows) {
            Ok(()) => {
                p.open = Some(batch_id);
                Ok(rows)
            }
            Err(e) => {
                // Fenced, fatal or abortable: a new producer (same
                // transactional.id) aborts it on the next attempt.
                *guard = None;
                Err(e)
            }
        }
    }

    /// Opens the partition's producer ahead of its first pre-commit: the
    /// fencing, `init_transactions` and the marker lookup take a few round
    /// trips, which then overlap with stage A instead of delaying stage B.
    /// Opening here is what the first pre-commit or commit would do anyway.
    fn prepare(&self, partition: u32) {
        let slot = self.slot(partition);
        let mut guard = lock(&slot);
        if guard.is_none() {
            match self.open_producer(partition) {
                Ok(p) => *guard = Some(p),
                Err(e) => {
                    debug!(job = %self.job, partition, error = %e, "could not open the producer ahead of time; the pre-commit will")
                }
            }
        }
    }

    fn commit(&self, batch_id: u64, partition: u32) -> Result<(), ExecError> {
        let slot = self.slot(partition);
        let mut guard = lock(&slot);
        if let Some(p) = guard.as_mut() {
            if p.open == Some(batch_id) {
                match p.producer.commit_transaction(TXN_TIMEOUT) {
                    Ok(()) => {
                        p.open = None;
                        p.committed = Some(batch_id);
                        return Ok(());
                    }
                    Err(e) => {
                        // The outcome is unknown: ask the markers below
                        // with a new producer.
                        warn!(job = %self.job, batch_id, partition, error = %e, "transaction commit failed; checking its commit marker");
                        *guard = None;
                    }
                }
            } else if p.open.is_none() && p.committed.is_some_and(|c| c >= batch_id) {
                return Ok(());
            } else {
                *guard = None;
            }
        }
        // No transaction of this batch here: fence whatever is open
        // elsewhere, then read the markers.
        let p = self.open_producer(partition)?;
        let committed = p.committed;
        *guard = Some(p);
        if committed.is_some_and(|c| c >= batch_id) {
            info!(job = %self.job, batch_id, partition, "output found committed (commit marker)");
            return Ok(());
        }
        Err(ExecError::OutputLost {
            job: self.job.clone(),
            sink: format!("kafka topic {}", self.sink.topic),
            batch: batch_id,
            partition,
        })
    }
}
