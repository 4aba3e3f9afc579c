//! The byte budget of one batch's read of one source partition
//! (`max_bytes_per_partition`): a read that goes over it stops with
//! [`ExecError::BatchTooLarge`] before it holds more.

use crate::error::ExecError;
use arrow_array::RecordBatch;
use weir_proto::pb;

/// Counts the decoded bytes a stage-A read produced.
#[derive(Debug)]
pub struct ReadBudget {
    job: String,
    source_kind: &'static str,
    batch: u64,
    range: pb::OffsetRange,
    /// `None` when the read is not capped (a replay).
    limit: Option<u64>,
    read: u64,
}

impl ReadBudget {
    /// The budget of `task`'s read under `spec`. A replay rebuilds state
    /// from a batch that already committed, maybe under a larger cap: it
    /// is never refused.
    pub fn new(spec: &pb::JobSpec, task: &pb::StageATask) -> Self {
        let source = spec.source.clone().unwrap_or_default();
        let source_kind = match source.kind {
            Some(pb::source::Kind::Kafka(_)) => "kafka",
            _ => "generator",
        };
        ReadBudget {
            job: task.job.clone(),
            source_kind,
            batch: task.batch_id,
            range: task.range.unwrap_or_default(),
            limit: (!task.replay).then(|| weir_proto::spec::bytes_per_partition(&source)),
            read: 0,
        }
    }

    /// Adds `chunk`'s bytes; fails once the read is over the cap.
    pub fn charge(&mut self, chunk: &RecordBatch) -> Result<(), ExecError> {
        self.read = self
            .read
            .saturating_add(chunk.get_array_memory_size() as u64);
        match self.limit {
            Some(limit) if self.read > limit => Err(ExecError::BatchTooLarge {
                job: self.job.clone(),
                source_kind: self.source_kind,
                batch: self.batch,
                partition: self.range.partition,
                start: self.range.start,
                end: self.range.end,
                limit,
            }),
            _ => Ok(()),
        }
    }

    /// Decoded bytes read so far.
    pub fn read(&self) -> u64 {
        self.read
    }
}
