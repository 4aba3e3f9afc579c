//! Executor epochs derived from the Raft term, so that they keep growing
//! across leader changes without a proposal per registration.
//!
//! An epoch is `term << 32 | n`, where `n` counts the epochs this leader
//! handed out for an executor id in its term. A new leader has a higher
//! term, so every epoch it issues is above every epoch of earlier leaders;
//! the term is replicated Raft state, so no two leaders share one. A
//! registration never waits for a quorum.

use super::replica::ReplicaHandle;
use crate::executors::EpochAllocator;
use std::collections::HashMap;
use std::sync::Mutex;

/// Epochs from the leader's term and a per-term counter.
pub struct TermEpochs {
    replica: ReplicaHandle,
    issued: Mutex<(u64, HashMap<String, u64>)>,
}

impl TermEpochs {
    /// Epochs of `replica`'s terms.
    pub fn new(replica: ReplicaHandle) -> Self {
        TermEpochs {
            replica,
            issued: Mutex::new((0, HashMap::new())),
        }
    }
}

/// The epoch of the `n`-th registration in `term`.
pub fn epoch_of(term: u64, n: u64) -> u64 {
    (term << 32) | (n & 0xffff_ffff)
}

impl EpochAllocator for TermEpochs {
    fn next_epoch(&self, executor_id: &str) -> u64 {
        let term = self.replica.status().term;
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        if issued.0 != term {
            *issued = (term, HashMap::new());
        }
        let n = issued.1.entry(executor_id.to_string()).or_insert(0);
        *n += 1;
        epoch_of(term, *n)
    }
}

#[cfg(test)]
mod tests {
    use super::epoch_of;

    #[test]
    fn later_terms_always_win() {
        assert!(epoch_of(3, 1) > epoch_of(2, 5_000));
        assert!(epoch_of(2, 2) > epoch_of(2, 1));
    }
}
