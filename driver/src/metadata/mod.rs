//! The metadata checkpoint: job specs, batch plans with their offset
//! ranges, commit decisions and commit records.
//!
//! It is a state machine over [`MetaCommand`](pb::MetaCommand)s. Every
//! command is validated against the current state before it is applied, so
//! a stale driver cannot plan a batch twice or commit a batch it does not
//! hold. In local mode the commands are applied to a single-node store
//! ([`SledMetadata`]); with driver high availability the same commands are
//! the entries of the replicated log.

mod machine;
mod sled_store;

pub use machine::{check_command, JobProgress, PendingBatch};
pub use sled_store::SledMetadata;

use weir_proto::pb;

/// Errors of the metadata store.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// The command does not fit the current state (a stale or confused proposer).
    #[error("metadata command rejected: {0}")]
    Rejected(String),
    /// This replica is not the leader; writes go to the leader.
    #[error("this driver is not the leader{}", leader_hint(.leader))]
    NotLeader {
        /// The leader's address, when known.
        leader: Option<String>,
    },
    /// A proposal was not committed in time.
    #[error("no quorum: {0}")]
    NoQuorum(String),
    /// The store could not be read or written.
    #[error("metadata store at {path}: {message}")]
    Storage {
        /// Where the store lives.
        path: String,
        /// What went wrong and what to do.
        message: String,
    },
    /// Stored bytes do not decode.
    #[error("metadata store at {path}: corrupt entry {key}: {message}")]
    Corrupt {
        /// Where the store lives.
        path: String,
        /// The entry's key.
        key: String,
        /// The decode error.
        message: String,
    },
}

fn leader_hint(leader: &Option<String>) -> String {
    match leader {
        Some(a) => format!("; the leader is at {a}"),
        None => "; no leader is known (an election may be in progress)".to_string(),
    }
}

/// Read and write access to the metadata checkpoint.
pub trait MetadataStore: Send + Sync {
    /// Validates and applies a command; durable when it returns `Ok`.
    fn apply(&self, command: pb::MetaCommand) -> Result<(), MetaError>;

    /// Starts applying a command without waiting until it is durable: the
    /// next call on this store waits for it first (so it reads it, and
    /// commands enter the log in the order they were given) and fails if
    /// it failed; [`settled`](Self::settled) waits for it alone. A store
    /// that cannot pipeline applies it at once.
    fn submit(&self, command: pb::MetaCommand) -> Result<(), MetaError> {
        self.apply(command)
    }

    /// Waits until a [`submit`](Self::submit)ted command is durable.
    fn settled(&self) -> Result<(), MetaError> {
        Ok(())
    }

    /// A job's record.
    fn job(&self, name: &str) -> Result<Option<pb::JobRecord>, MetaError>;

    /// Every job's record.
    fn jobs(&self) -> Result<Vec<pb::JobRecord>, MetaError>;

    /// Where a job stands.
    fn progress(&self, name: &str) -> Result<JobProgress, MetaError>;

    /// The plan of a batch, kept while a state recovery could replay it.
    fn plan(&self, name: &str, batch_id: u64) -> Result<Option<pb::BatchPlan>, MetaError>;

    /// The most recent committed batches, newest first, at most `limit`.
    fn batches(&self, name: &str, limit: usize) -> Result<Vec<pb::BatchCommit>, MetaError>;

    /// The replaced versions of a job's record, oldest first (the current
    /// one is [`job`](Self::job)).
    fn history(&self, name: &str) -> Result<Vec<pb::JobRecord>, MetaError>;
}

/// Shorthand constructors for commands.
pub mod command {
    use weir_proto::pb::{self, meta_command::Kind};

    fn wrap(kind: Kind) -> pb::MetaCommand {
        pb::MetaCommand { kind: Some(kind) }
    }

    /// Store (or replace) a job.
    pub fn put_job(record: pb::JobRecord) -> pb::MetaCommand {
        wrap(Kind::PutJob(record))
    }

    /// A batch was planned.
    pub fn planned(plan: pb::BatchPlan) -> pb::MetaCommand {
        wrap(Kind::BatchPlanned(plan))
    }

    /// The decision to commit a batch.
    pub fn committing(commit: pb::BatchCommit) -> pb::MetaCommand {
        wrap(Kind::BatchCommitting(commit))
    }

    /// A job's lifecycle state changed.
    pub fn job_state(job: &str, state: pb::JobState, error: &str) -> pb::MetaCommand {
        wrap(Kind::JobState(pb::JobStateChange {
            job: job.to_string(),
            state: state as i32,
            error: error.to_string(),
        }))
    }

    /// Where a driver replica is reached.
    pub fn peer_address(id: u64, address: &str) -> pb::MetaCommand {
        wrap(Kind::PeerAddress(pb::PeerAddress {
            id,
            address: address.to_string(),
        }))
    }

    /// Delete a job's metadata.
    pub fn delete_job(job: &str) -> pb::MetaCommand {
        wrap(Kind::DeleteJob(pb::JobRef {
            job: job.to_string(),
        }))
    }

    /// A batch's sinks are committed.
    pub fn committed(job: &str, batch_id: u64) -> pb::MetaCommand {
        committed_after(job, batch_id, 0)
    }

    /// `committed`, with how long publishing the output took.
    pub fn committed_after(job: &str, batch_id: u64, commit_us: u64) -> pb::MetaCommand {
        wrap(Kind::BatchCommitted(pb::BatchRef {
            job: job.to_string(),
            batch_id,
            commit_us,
        }))
    }
}
