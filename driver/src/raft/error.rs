//! Errors of the Raft core: storage failures and node failures, kept apart
//! from raft-rs's own [`raft::Error`] so callers can tell disk trouble from
//! protocol rejections (for example a proposal dropped because there is no
//! leader).

use raft::StorageError;

/// A failure of [`SledRaftStorage`](super::SledRaftStorage) outside the
/// `raft::Storage` contract: disk errors, undecodable records, and writes that
/// would break the log's invariants.
#[derive(Debug, thiserror::Error)]
pub enum RaftStoreError {
    /// sled reported an I/O or internal error.
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record could not be decoded; the storage must not be trusted.
    #[error("corrupt raft storage record {key}: {reason}")]
    Corrupt {
        /// Which record (a log index or a metadata key).
        key: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A write refers to entries that were already compacted away.
    #[error("index {index} is compacted (first available index {first_index})")]
    Compacted {
        /// The requested index.
        index: u64,
        /// The first index still in the log.
        first_index: u64,
    },
    /// A write would leave a hole in the log, or refers to entries not yet in it.
    #[error("index {index} is beyond the end of the log (last index {last_index})")]
    Unavailable {
        /// The requested index.
        index: u64,
        /// The last index in the log.
        last_index: u64,
    },
    /// A snapshot older than the log's compaction point was offered.
    #[error("snapshot at index {index} is older than the compaction point {truncated_index}")]
    SnapshotOutOfDate {
        /// The snapshot's index.
        index: u64,
        /// The index of the last compacted entry.
        truncated_index: u64,
    },
    /// An entry could not be encoded.
    #[error("encoding {what}: {reason}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The codec's message.
        reason: String,
    },
}

impl From<RaftStoreError> for raft::Error {
    fn from(e: RaftStoreError) -> Self {
        let store = match e {
            RaftStoreError::Compacted { .. } => StorageError::Compacted,
            RaftStoreError::Unavailable { .. } => StorageError::Unavailable,
            RaftStoreError::SnapshotOutOfDate { .. } => StorageError::SnapshotOutOfDate,
            other => StorageError::Other(Box::new(other)),
        };
        raft::Error::Store(store)
    }
}

/// A failure of [`RaftNode`](super::RaftNode).
#[derive(Debug, thiserror::Error)]
pub enum RaftNodeError {
    /// raft-rs refused the operation (for example `ProposalDropped` when
    /// there is no known leader, or an invalid configuration).
    #[error("raft: {0}")]
    Raft(#[from] raft::Error),
    /// The Raft storage failed; the node must not continue.
    #[error("raft storage: {0}")]
    Store(#[from] RaftStoreError),
    /// The state machine could not restore a snapshot.
    #[error("state machine restore from snapshot at index {index}: {reason}")]
    Restore {
        /// The snapshot's index.
        index: u64,
        /// The state machine's message.
        reason: String,
    },
    /// `RaftNode::new` was given a storage that already holds Raft state.
    #[error("raft storage is already initialized; use RaftNode::restart")]
    AlreadyInitialized,
    /// A committed conf-change entry could not be decoded.
    #[error("undecodable conf change at index {index}: {reason}")]
    BadConfChange {
        /// The entry's index.
        index: u64,
        /// The codec's message.
        reason: String,
    },
}
