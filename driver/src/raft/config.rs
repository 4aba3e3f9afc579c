//! [`RaftConfig`]: the knobs of a [`RaftNode`](super::RaftNode), with
//! defaults chosen for about one second of failover at a 100 ms tick.

use super::error::RaftNodeError;

/// Settings of one Raft node. Times are in ticks; the caller decides how
/// long a tick is (the driver ticks every 100 ms).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RaftConfig {
    /// A follower that hears nothing from a leader for a randomized
    /// `[election_tick, 2 * election_tick)` ticks starts a (pre-)vote; a
    /// leader that hears from no quorum for `election_tick` ticks steps down
    /// (check_quorum). Default 10: 1–2 s at a 100 ms tick.
    pub election_tick: usize,
    /// A leader sends heartbeats every `heartbeat_tick` ticks. Default 2
    /// (200 ms), well below the election timeout so one lost heartbeat does
    /// not cause an election.
    pub heartbeat_tick: usize,
    /// When the applied part of the log holds more than this many entries,
    /// the node asks the state machine for a snapshot and compacts the log
    /// up to the applied index. Default 10 000.
    pub snapshot_threshold: u64,
    /// Upper bound in bytes of the entries in one append message. Default 1 MiB.
    pub max_size_per_msg: u64,
    /// Maximum number of append messages in flight to one follower. Default 256.
    pub max_inflight_msgs: usize,
}

impl Default for RaftConfig {
    fn default() -> Self {
        Self {
            election_tick: 10,
            heartbeat_tick: 2,
            snapshot_threshold: 10_000,
            max_size_per_msg: 1024 * 1024,
            max_inflight_msgs: 256,
        }
    }
}

impl RaftConfig {
    /// The raft-rs configuration for node `id` that has applied up to
    /// `applied`, with `check_quorum` and `pre_vote` always on: a leader cut
    /// off from a quorum steps down, and a partitioned node that comes back
    /// cannot force an election by bumping the term.
    pub fn to_raft(&self, id: u64, applied: u64) -> raft::Config {
        raft::Config {
            id,
            election_tick: self.election_tick,
            heartbeat_tick: self.heartbeat_tick,
            applied,
            max_size_per_msg: self.max_size_per_msg,
            max_inflight_msgs: self.max_inflight_msgs,
            check_quorum: true,
            pre_vote: true,
            ..Default::default()
        }
    }

    /// Checks the settings for node `id` as raft-rs would, plus
    /// `snapshot_threshold > 0`.
    pub fn validate(&self, id: u64) -> Result<(), RaftNodeError> {
        if self.snapshot_threshold == 0 {
            return Err(raft::Error::ConfigInvalid("snapshot_threshold must be > 0".into()).into());
        }
        self.to_raft(id, 0).validate()?;
        Ok(())
    }
}
