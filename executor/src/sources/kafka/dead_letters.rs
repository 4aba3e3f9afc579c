//! Dead letters, exactly once for `read_committed` readers.
//!
//! The records of one batch's range of one source partition that do not
//! decode are a function of the range, and the range is fixed in the batch's
//! plan before any task runs. So the dead letters of `(job, batch, source
//! partition)` are written once, by the stage-A task that found them, in a
//! Kafka transaction of the partition's own transactional producer
//! (`transactional.id` `weir-dead-letters/<job>/<partition>`) together with a
//! commit marker `<job>/dead-letters/<partition>` in the control topic, and
//! committed before the task reports success.
//!
//! A re-run of the task (a failure after the commit, an executor killed,
//! the batch re-run after `OutputLost`) creates the producer again, which
//! fences and aborts any transaction a previous attempt left open, and
//! reads the markers: if the newest is at this batch or later, the dead
//! letters were committed and are not written again. Batches of a source
//! partition run stage A in order (the next batch is planned only after
//! this one commits), so "newest marker ≥ batch" is exactly "written".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::{debug, info};
use weir_kafka::markers::{self, Marker, COMMITS_TOPIC};
use weir_kafka::rdkafka::error::KafkaError as RdError;
use weir_kafka::rdkafka::message::{Header, OwnedHeaders};
use weir_kafka::rdkafka::producer::{BaseRecord, Producer as _};
use weir_kafka::{client_config, resolve_properties, KafkaError};
use weir_kafka::{LogContext, Producer};
use weir_proto::pb;

/// Timeout of transaction calls (init, commit, flush).
const TXN_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a marker lookup may wait for other transactions to settle.
const MARKER_TIMEOUT: Duration = Duration::from_secs(30);

/// A record that did not decode, with why.
pub(super) struct DeadRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub partition: u32,
    pub offset: u64,
    pub error: String,
}

/// One source partition's transactional producer and what it committed.
struct PartitionProducer {
    producer: Producer,
    /// The newest batch whose dead letters are known committed.
    committed: Option<u64>,
}

/// Why dead letters could not be written.
pub(super) struct WriteError {
    /// What failed.
    pub message: String,
    /// The cluster refused the client or its properties (a user error).
    pub refused: bool,
}

impl WriteError {
    fn kafka(context: &str, e: KafkaError) -> WriteError {
        WriteError {
            refused: e.is_refused(),
            message: format!("{context}{e}"),
        }
    }
}

/// Writes dead letters to their topic in per-partition transactions.
pub(super) struct DeadLetters {
    brokers: String,
    topic: String,
    job: String,
    incarnation: i64,
    /// The client properties, secret references unresolved.
    properties: Vec<pb::Property>,
    control_partitions: Mutex<Option<i32>>,
    producers: Mutex<HashMap<u32, Arc<Mutex<Option<PartitionProducer>>>>>,
}

impl DeadLetters {
    /// Dead letters of `job` (created at `incarnation`) to `topic` at
    /// `brokers`, with the client `properties` of the source.
    pub fn new(
        brokers: &str,
        topic: &str,
        job: &str,
        incarnation: i64,
        properties: &[pb::Property],
    ) -> Self {
        DeadLetters {
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            job: job.to_string(),
            incarnation,
            properties: properties.to_vec(),
            control_partitions: Mutex::new(None),
            producers: Mutex::new(HashMap::new()),
        }
    }

    /// The dead-letter topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The `transactional.id` of a source partition's dead-letter producer
    /// (job names contain no `/`, so it cannot be a sink's id).
    pub fn transactional_id(job: &str, partition: u32) -> String {
        format!("weir-dead-letters/{job}/{partition}")
    }

    /// The name under which the markers are kept: `<job>/dead-letters`.
    fn marker_job(&self) -> String {
        format!("{}/dead-letters", self.job)
    }

    fn properties(&self) -> Result<weir_kafka::ResolvedProperties, WriteError> {
        resolve_properties("source.kafka.properties", &self.properties, "executor")
            .map_err(|e| WriteError::kafka("", e))
    }

    fn control_partitions(&self) -> Result<i32, WriteError> {
        let mut guard = self
            .control_partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = *guard {
            return Ok(n);
        }
        let props = self.properties()?;
        let n = markers::ensure_commits_topic(&self.brokers, props.iter())
            .map_err(|e| WriteError::kafka(&format!("control topic {COMMITS_TOPIC}: "), e))?;
        *guard = Some(n);
        Ok(n)
    }

    /// A new producer for `partition`: fences every older one (aborting its
    /// open transaction), then reads the newest committed batch.
    fn open(&self, partition: u32) -> Result<PartitionProducer, WriteError> {
        let control = self.control_partitions()?;
        let props = self.properties()?;
        let producer: Producer = client_config(&self.brokers, props.iter())
            .set(
                "transactional.id",
                Self::transactional_id(&self.job, partition),
            )
            .create_with_context(LogContext::new())
            .map_err(|e| {
                WriteError::kafka(
                    "",
                    KafkaError::from_rd(&self.brokers, "create a transactional producer", &e),
                )
            })?;
        weir_kafka::connect_producer(&producer, &self.brokers, &self.topic)
            .map_err(|e| WriteError::kafka("", e))?;
        producer.init_transactions(TXN_TIMEOUT).map_err(|e| {
            WriteError::kafka(
                "",
                KafkaError::from_client(&self.brokers, "init transactions", &e, producer.context()),
            )
        })?;
        // Connected: an earlier refusal no longer explains later failures.
        producer.context().clear_refusal();
        let committed = markers::last_committed(
            &self.brokers,
            props.iter(),
            &self.marker_job(),
            self.incarnation,
            partition,
            control,
            MARKER_TIMEOUT,
        )
        .map_err(|e| WriteError::kafka("reading commit markers: ", e))?;
        debug!(job = %self.job, partition, ?committed, "dead-letter producer ready");
        Ok(PartitionProducer {
            producer,
            committed,
        })
    }

    /// Writes the dead letters of `batch_id`'s range of `partition` of
    /// `source_topic`, unless they were already committed.
    pub fn write(
        &self,
        source_topic: &str,
        batch_id: u64,
        partition: u32,
        records: &[DeadRecord],
    ) -> Result<(), WriteError> {
        let slot = self
            .producers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(partition)
            .or_default()
            .clone();
        let mut guard = slot.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(self.open(partition)?);
        }
        let p = guard.as_mut().expect("set above");
        if p.committed.is_some_and(|c| c >= batch_id) {
            info!(job = %self.job, batch_id, partition, "dead letters of this range already committed; not written again");
            return Ok(());
        }
        match self.transaction(p, source_topic, batch_id, partition, records) {
            Ok(()) => {
                p.committed = Some(batch_id);
                Ok(())
            }
            Err(e) => {
                // The next attempt starts with a new producer, which aborts
                // whatever this one left open.
                *guard = None;
                Err(e)
            }
        }
    }

    fn transaction(
        &self,
        p: &PartitionProducer,
        source_topic: &str,
        batch_id: u64,
        partition: u32,
        records: &[DeadRecord],
    ) -> Result<(), WriteError> {
        let rd = |action: &str, e: RdError| {
            WriteError::kafka(
                "",
                KafkaError::from_client(&self.brokers, action, &e, p.producer.context()),
            )
        };
        p.producer
            .begin_transaction()
            .map_err(|e| rd("begin a transaction", e))?;
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
            weir_kafka::send_waiting(&p.producer, record).map_err(|e| rd("produce", e))?;
        }
        let marker_job = self.marker_job();
        let marker = Marker {
            job: marker_job.clone(),
            incarnation: self.incarnation,
            partition,
            batch_id,
            records: records.len() as u64,
        };
        let key = Marker::key(&marker_job, partition);
        let value = marker.encode();
        let control =
            markers::control_partition(&marker_job, partition, self.control_partitions()?);
        weir_kafka::send_waiting(
            &p.producer,
            BaseRecord::<[u8], [u8]>::to(COMMITS_TOPIC)
                .key(key.as_bytes())
                .payload(value.as_bytes())
                .partition(control),
        )
        .map_err(|e| rd("produce the commit marker", e))?;
        p.producer
            .commit_transaction(TXN_TIMEOUT)
            .map_err(|e| rd("commit the transaction", e))
    }
}
