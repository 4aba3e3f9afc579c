//! The driver's Kafka offsets lister: one client per source, kept for the
//! job's life.

use crate::planner::OffsetsLister;
use std::sync::Mutex;
use weir_kafka::{resolve_properties, KafkaError, TopicOffsets, Watermarks};
use weir_proto::pb;

/// Lists a Kafka source's offsets through a cached client.
#[derive(Debug, Default)]
pub struct KafkaLister {
    client: Mutex<Option<TopicOffsets>>,
}

impl KafkaLister {
    fn with<T>(
        &self,
        source: &pb::KafkaSource,
        f: impl FnOnce(&TopicOffsets) -> Result<T, KafkaError>,
    ) -> Result<T, KafkaError> {
        let mut guard = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            // References are resolved for each new client, so a rotated
            // secret file is read again after a failure dropped the client.
            let props =
                resolve_properties("source.kafka.properties", &source.properties, "driver")?;
            *guard = Some(TopicOffsets::new(
                &source.brokers,
                &source.topic,
                props.iter(),
            )?);
        }
        let result = f(guard.as_ref().expect("set above"));
        if result.as_ref().is_err_and(KafkaError::is_refused) {
            // A refused client stays refused: the next attempt starts anew.
            *guard = None;
        }
        result
    }
}

impl OffsetsLister for KafkaLister {
    fn watermarks(&self, source: &pb::KafkaSource) -> Result<Vec<Watermarks>, KafkaError> {
        self.with(source, |c| c.watermarks())
    }

    fn offsets_for_timestamp(
        &self,
        source: &pb::KafkaSource,
        partitions: &[u32],
        timestamp_ms: i64,
    ) -> Result<Vec<(u32, Option<u64>)>, KafkaError> {
        self.with(source, |c| {
            c.offsets_for_timestamp(partitions, timestamp_ms)
        })
    }
}
