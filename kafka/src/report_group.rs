//! Reporting a job's progress to a Kafka consumer group that only
//! monitoring reads (`source.kafka.report_group`): after each committed
//! batch, the batch's end offsets are committed to the group, so Burrow,
//! Kafka UI or KEDA show Weir's lag like any consumer's. Weir never reads
//! the group back: its positions are the plans in its metadata.

use crate::{client_config, Consumer, KafkaError, LogContext, REQUEST_TIMEOUT};
use rdkafka::consumer::{CommitMode, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};

/// Commits offsets of one topic to one consumer group.
pub struct GroupReporter {
    consumer: Consumer,
    brokers: String,
    topic: String,
    group: String,
}

impl std::fmt::Debug for GroupReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupReporter")
            .field("topic", &self.topic)
            .field("group", &self.group)
            .finish()
    }
}

impl GroupReporter {
    /// A reporter to `group` for `topic`; does not connect yet.
    pub fn new<'a>(
        brokers: &str,
        topic: &str,
        group: &str,
        properties: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<GroupReporter, KafkaError> {
        let consumer: Consumer = client_config(brokers, properties)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create_with_context(LogContext::new())
            .map_err(|e| KafkaError::from_rd(brokers, "create a client", &e))?;
        Ok(GroupReporter {
            consumer,
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            group: group.to_string(),
        })
    }

    /// Commits `offsets` (partition, next offset to read) to the group. A
    /// group with active members (another application's) refuses it.
    pub fn report(&self, offsets: &[(u32, u64)]) -> Result<(), KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for &(partition, offset) in offsets {
            let offset = i64::try_from(offset).unwrap_or(i64::MAX);
            tpl.add_partition_offset(&self.topic, partition as i32, Offset::Offset(offset))
                .map_err(|e| {
                    KafkaError::from_rd(&self.brokers, "build the offsets to report", &e)
                })?;
        }
        self.consumer.commit(&tpl, CommitMode::Sync).map_err(|e| {
            KafkaError::from_rd(
                &self.brokers,
                &format!("commit offsets to report group {}", self.group),
                &e,
            )
        })
    }

    /// The offsets the group holds for `partitions` (`None`: none).
    pub fn committed(&self, partitions: &[u32]) -> Result<Vec<(u32, Option<u64>)>, KafkaError> {
        let mut tpl = TopicPartitionList::new();
        for &p in partitions {
            tpl.add_partition(&self.topic, p as i32);
        }
        let got = self
            .consumer
            .committed_offsets(tpl, REQUEST_TIMEOUT)
            .map_err(|e| KafkaError::from_rd(&self.brokers, "read committed offsets", &e))?;
        Ok(partitions
            .iter()
            .map(|&p| {
                let offset =
                    got.find_partition(&self.topic, p as i32)
                        .and_then(|e| match e.offset() {
                            Offset::Offset(o) if o >= 0 => Some(o as u64),
                            _ => None,
                        });
                (p, offset)
            })
            .collect())
    }
}
