//! The shuffle between stage A and stage B: stage-A tasks put one block per
//! state partition, stage-B tasks fetch their partition's blocks from every
//! stage-A task of the batch.

pub mod ipc;

use crate::operators::aggregate::ShuffleBlock;
use crate::sinks::lock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Where stage-A output waits for stage B.
pub trait Shuffle: Send + Sync {
    /// Stores the blocks (one per state partition) of a stage-A task,
    /// replacing an earlier attempt's.
    fn put(&self, batch_id: u64, source_partition: u32, blocks: Vec<ShuffleBlock>);

    /// The block of `partition` from the stage-A task of `source_partition`,
    /// or `None` if that task's output is missing.
    fn fetch(
        &self,
        batch_id: u64,
        source_partition: u32,
        partition: u32,
    ) -> Option<Arc<ShuffleBlock>>;

    /// Drops every block of batches before `batch_id`.
    fn release_before(&self, batch_id: u64);
}

/// Shuffle blocks held in this process's memory.
#[derive(Debug, Default)]
pub struct MemoryShuffle {
    /// `(batch, source partition)` → one block per state partition.
    blocks: Mutex<HashMap<(u64, u32), TaskOutput>>,
}

type TaskOutput = Vec<Arc<ShuffleBlock>>;

impl Shuffle for MemoryShuffle {
    fn put(&self, batch_id: u64, source_partition: u32, blocks: Vec<ShuffleBlock>) {
        let blocks = blocks.into_iter().map(Arc::new).collect();
        lock(&self.blocks).insert((batch_id, source_partition), blocks);
    }

    fn fetch(
        &self,
        batch_id: u64,
        source_partition: u32,
        partition: u32,
    ) -> Option<Arc<ShuffleBlock>> {
        lock(&self.blocks)
            .get(&(batch_id, source_partition))
            .and_then(|b| b.get(partition as usize).cloned())
    }

    fn release_before(&self, batch_id: u64) {
        lock(&self.blocks).retain(|(b, _), _| *b >= batch_id);
    }
}
