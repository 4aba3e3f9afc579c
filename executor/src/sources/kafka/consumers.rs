//! Consumers kept across a job's batches, one per source partition.
//!
//! Creating a consumer costs a connection, a metadata round trip and a
//! cold fetch pipeline; a batch's range of a partition starts where the
//! previous batch's ended, so the consumer that read the previous range is
//! already positioned there, with the next records prefetched. Ranges stay
//! explicit: a pooled consumer is only used as it is when its next offset is
//! exactly the range's start; any other start gets a fresh consumer assigned
//! at that offset.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use weir_kafka::Consumer;

/// A pooled consumer unused for this long is closed (its partition moved
/// to another executor, or the job stopped reading it).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// A consumer assigned to one partition.
pub(super) struct Positioned {
    /// The consumer, assigned to exactly one partition.
    pub consumer: Consumer,
    /// The offset the consumer delivers from next: every record below it
    /// was consumed (or skipped as a transaction marker).
    pub next: u64,
    parked_at: Instant,
}

impl Positioned {
    /// A consumer whose next record is at or after `next`.
    pub fn new(consumer: Consumer, next: u64) -> Self {
        Positioned {
            consumer,
            next,
            parked_at: Instant::now(),
        }
    }
}

/// Idle consumers by source partition.
#[derive(Default)]
pub(super) struct ConsumerPool {
    idle: Mutex<HashMap<u32, Positioned>>,
}

impl ConsumerPool {
    /// The idle consumer of `partition` if it is positioned at `start`;
    /// a consumer positioned elsewhere is closed.
    pub fn take(&self, partition: u32, start: u64) -> Option<Positioned> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|_, c| c.parked_at.elapsed() < IDLE_TIMEOUT);
        let found = idle.remove(&partition);
        drop(idle);
        found.filter(|c| c.next == start)
    }

    /// Keeps a consumer for the next range of `partition`.
    pub fn put(&self, partition: u32, mut consumer: Positioned) {
        consumer.parked_at = Instant::now();
        self.idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(partition, consumer);
    }
}

impl Drop for ConsumerPool {
    /// Closes the idle consumers side by side: closing one takes at least
    /// rdkafka's 100 ms close poll.
    fn drop(&mut self) {
        let idle = std::mem::take(self.idle.get_mut().unwrap_or_else(|p| p.into_inner()));
        std::thread::scope(|s| {
            for (_, c) in idle {
                s.spawn(move || drop(c));
            }
        });
    }
}
