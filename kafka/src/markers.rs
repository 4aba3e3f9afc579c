//! Commit markers of the Kafka sink.
//!
//! Each sink transaction of `(job, batch, partition)` carries, next to the
//! batch's output, one marker record in the Weir-owned, compacted control
//! topic [`COMMITS_TOPIC`]: key `<job>/<partition>`, value a small JSON
//! object with the batch id. A marker is visible to `read_committed`
//! readers exactly when the output is, so "did batch B of partition P
//! commit?" is "is the newest marker of `<job>/<P>` at batch B or later?"
//! (batches of a partition commit in order).
//!
//! A marker also carries the job's incarnation (its creation time), so that
//! a job deleted and recreated under the same name does not take the old
//! job's markers for its own.

use crate::{client_config, KafkaError, REQUEST_TIMEOUT};
use crate::{Consumer, LogContext};
use rdkafka::consumer::Consumer as _;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use std::time::{Duration, Instant};

pub use weir_proto::spec::COMMITS_TOPIC;

/// Partitions of the control topic when Weir creates it.
pub const COMMITS_PARTITIONS: i32 = 50;

/// Topic configs of the control topic: compacted, so a scan reads about one
/// marker per `(job, partition)` plus the recent tail.
pub const COMMITS_CONFIGS: &[(&str, &str)] = &[
    ("cleanup.policy", "compact"),
    ("segment.ms", "3600000"),
    ("min.cleanable.dirty.ratio", "0.1"),
];

/// One commit marker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Marker {
    /// Job name.
    pub job: String,
    /// The job's creation time (ms), telling incarnations of a name apart.
    pub incarnation: i64,
    /// State (or source) partition of the sink transaction.
    pub partition: u32,
    /// The committed batch.
    pub batch_id: u64,
    /// Records of output written with it.
    pub records: u64,
}

impl Marker {
    /// The record key: `<job>/<partition>`.
    pub fn key(job: &str, partition: u32) -> String {
        format!("{job}/{partition}")
    }

    /// The record value (JSON).
    pub fn encode(&self) -> String {
        serde_json::json!({
            "job": self.job,
            "incarnation": self.incarnation,
            "partition": self.partition,
            "batch_id": self.batch_id,
            "records": self.records,
        })
        .to_string()
    }

    /// Parses a record value; `None` if it is not a marker.
    pub fn decode(value: &[u8]) -> Option<Marker> {
        let v: serde_json::Value = serde_json::from_slice(value).ok()?;
        Some(Marker {
            job: v.get("job")?.as_str()?.to_string(),
            incarnation: v.get("incarnation")?.as_i64()?,
            partition: u32::try_from(v.get("partition")?.as_u64()?).ok()?,
            batch_id: v.get("batch_id")?.as_u64()?,
            records: v.get("records").and_then(|r| r.as_u64()).unwrap_or(0),
        })
    }
}

/// The control-topic partition holding the markers of `(job, partition)`:
/// consecutive partitions of one job land on distinct control partitions,
/// so scanning one never waits for another's open transaction.
pub fn control_partition(job: &str, partition: u32, partitions: i32) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in job.bytes() {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    (hash.wrapping_add(partition) % partitions.max(1) as u32) as i32
}

/// Creates the control topic unless it exists; returns its partition count.
pub fn ensure_commits_topic<'a>(
    brokers: &str,
    properties: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
) -> Result<i32, KafkaError> {
    let lister = crate::TopicOffsets::new(brokers, COMMITS_TOPIC, properties.clone())?;
    // Listing first: it reports a refused connection (credentials, TLS)
    // within a second, and an existing topic needs no admin request.
    match lister.partitions() {
        Ok(p) => return Ok(p.len() as i32),
        Err(KafkaError::UnknownTopic { .. }) => {}
        Err(e) => return Err(e),
    }
    crate::ensure_topic(
        brokers,
        properties,
        COMMITS_TOPIC,
        COMMITS_PARTITIONS,
        COMMITS_CONFIGS,
    )?;
    // A topic just created may take a moment to show in metadata.
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    loop {
        match lister.partitions() {
            Ok(p) => return Ok(p.len() as i32),
            Err(e) if Instant::now() < deadline && e.is_transient() => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The newest committed batch of `(job, incarnation, partition)` according
/// to the markers in the control topic, read with `read_committed`.
///
/// Reads the marker's control partition up to its last stable offset. An
/// open transaction of another job on the same control partition holds that
/// offset back until it ends; after `timeout` this gives up with an
/// `Unreachable` error (the caller retries).
pub fn last_committed<'a>(
    brokers: &str,
    properties: impl IntoIterator<Item = (&'a str, &'a str)> + Clone,
    job: &str,
    incarnation: i64,
    partition: u32,
    control_partitions: i32,
    timeout: Duration,
) -> Result<Option<u64>, KafkaError> {
    let consumer = |isolation: &str| -> Result<Consumer, KafkaError> {
        client_config(brokers, properties.clone())
            .set("group.id", format!("weir-markers-{job}"))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", isolation)
            .create_with_context(LogContext::new())
            .map_err(|e| KafkaError::from_rd(brokers, "create a client", &e))
    };
    let committed = consumer("read_committed")?;
    let uncommitted = consumer("read_uncommitted")?;
    let newest = scan(
        brokers,
        &committed,
        &uncommitted,
        (job, incarnation, partition),
        control_partitions,
        timeout,
    );
    // Closing a consumer takes at least rdkafka's 100 ms close poll: not on
    // the caller's time (without a thread they close here).
    let _ = std::thread::Builder::new()
        .name("close-marker-readers".into())
        .spawn(move || drop((committed, uncommitted)));
    newest
}

/// Reads the newest marker of `(job, incarnation, partition)` with the
/// two consumers of [`last_committed`].
fn scan(
    brokers: &str,
    committed: &Consumer,
    uncommitted: &Consumer,
    (job, incarnation, partition): (&str, i64, u32),
    control_partitions: i32,
    timeout: Duration,
) -> Result<Option<u64>, KafkaError> {
    let cp = control_partition(job, partition, control_partitions);
    let key = Marker::key(job, partition);
    let deadline = Instant::now() + timeout;
    let late = |what: &str| {
        KafkaError::Unreachable {
        brokers: brokers.to_string(),
        message: format!(
            "reading commit markers of {key} from {COMMITS_TOPIC}/{cp}: {what} within {timeout:?} (an open transaction may hold it back)"
        ),
    }
    };
    let watermarks = |c: &Consumer| loop {
        match c.fetch_watermarks(COMMITS_TOPIC, cp, REQUEST_TIMEOUT) {
            Ok(w) => return Ok(w),
            Err(e) => {
                let e = KafkaError::from_client(brokers, "list marker offsets", &e, c.context());
                if Instant::now() >= deadline || !e.is_transient() {
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    };
    // Every record written so far, decided or not...
    let (low, end) = watermarks(uncommitted)?;
    if end <= low {
        return Ok(None);
    }
    // ...must be decided (its transaction committed or aborted, the
    // coordinator's markers written) before the committed view is complete.
    loop {
        let (_, stable) = watermarks(committed)?;
        if stable >= end {
            break;
        }
        if Instant::now() >= deadline {
            return Err(late(&format!("the last stable offset did not reach {end}")));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(COMMITS_TOPIC, cp, Offset::Offset(low))
        .map_err(|e| KafkaError::from_rd(brokers, "assign", &e))?;
    committed
        .assign(&tpl)
        .map_err(|e| KafkaError::from_rd(brokers, "assign", &e))?;
    let mut newest: Option<u64> = None;
    loop {
        if Instant::now() >= deadline {
            return Err(late(&format!("reading did not reach offset {end}")));
        }
        match committed.poll(Duration::from_millis(200)) {
            None => {}
            Some(Ok(m)) => {
                if m.key() == Some(key.as_bytes()) {
                    if let Some(marker) = m.payload().and_then(Marker::decode) {
                        if marker.job == job
                            && marker.incarnation == incarnation
                            && marker.partition == partition
                        {
                            newest =
                                Some(newest.map_or(marker.batch_id, |n| n.max(marker.batch_id)));
                        }
                    }
                }
                if m.offset() + 1 >= end {
                    return Ok(newest);
                }
            }
            // The end of what was stable when reading started, which is
            // at or past `end`.
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return Ok(newest),
            Some(Err(e)) => {
                let e = KafkaError::from_rd(brokers, "read commit markers", &e);
                if !e.is_transient() {
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip() {
        let m = Marker {
            job: "clicks".into(),
            incarnation: 17,
            partition: 3,
            batch_id: 42,
            records: 9,
        };
        assert_eq!(Marker::decode(m.encode().as_bytes()), Some(m));
        assert_eq!(Marker::decode(b"{}"), None);
        assert_eq!(Marker::key("clicks", 3), "clicks/3");
    }

    #[test]
    fn a_jobs_partitions_use_distinct_control_partitions() {
        let cps: std::collections::HashSet<i32> = (0..50)
            .map(|p| control_partition("some-job", p, 50))
            .collect();
        assert_eq!(cps.len(), 50);
    }
}
