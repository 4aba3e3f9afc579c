//! The shuffle between stage A and stage B: stage-A tasks put one block per
//! state partition, stage-B tasks fetch their partition's blocks from every
//! stage-A task of the batch.

pub mod ipc;

use crate::operators::aggregate::ShuffleBlock;
use crate::sinks::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use weir_proto::pb;

/// Which stage-A output a block belongs to: the batch, the source range
/// the task read and the watermark it filtered late records with.
///
/// Two plans of the same batch can differ (a leader may run stage A while
/// its plan is still becoming durable, then lose leadership; the next
/// leader plans the batch again), and stage A of each is deterministic in
/// these inputs: keying by them means stage B only ever merges the output
/// of the plan it was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShuffleKey {
    /// The batch.
    pub batch_id: u64,
    /// The source partition read.
    pub source_partition: u32,
    /// First offset read.
    pub start: u64,
    /// Offset after the last one read.
    pub end: u64,
    /// The plan's watermark (ms).
    pub watermark_ms: i64,
}

impl ShuffleKey {
    /// The key of the output of reading `range` in `batch_id` at `watermark_ms`.
    pub fn new(batch_id: u64, range: &pb::OffsetRange, watermark_ms: i64) -> Self {
        ShuffleKey {
            batch_id,
            source_partition: range.partition,
            start: range.start,
            end: range.end,
            watermark_ms,
        }
    }
}

/// Where stage-A output waits for stage B.
pub trait Shuffle: Send + Sync {
    /// Stores the blocks (one per state partition) of a stage-A task,
    /// replacing an earlier attempt's.
    fn put(&self, key: ShuffleKey, blocks: Vec<ShuffleBlock>);

    /// The block of `partition` from the stage-A output `key`, or `None` if
    /// that output is missing.
    fn fetch(&self, key: &ShuffleKey, partition: u32) -> Option<Arc<ShuffleBlock>>;

    /// Drops every block of batches before `batch_id`.
    fn release_before(&self, batch_id: u64);
}

/// Shuffle blocks held in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryShuffle {
    /// Stage-A output → one block per state partition.
    blocks: Mutex<HashMap<ShuffleKey, TaskOutput>>,
}

type TaskOutput = Vec<Arc<ShuffleBlock>>;

impl Shuffle for MemoryShuffle {
    fn put(&self, key: ShuffleKey, blocks: Vec<ShuffleBlock>) {
        let blocks = blocks.into_iter().map(Arc::new).collect();
        // Another plan's output of the same batch stays until the batch is
        // released: a deposed leader's late stage A must not displace it.
        lock(&self.blocks).insert(key, blocks);
    }

    fn fetch(&self, key: &ShuffleKey, partition: u32) -> Option<Arc<ShuffleBlock>> {
        lock(&self.blocks)
            .get(key)
            .and_then(|b| b.get(partition as usize).cloned())
    }

    fn release_before(&self, batch_id: u64) {
        lock(&self.blocks).retain(|k, _| k.batch_id >= batch_id);
    }
}
