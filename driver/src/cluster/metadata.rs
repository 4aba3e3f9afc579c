//! The metadata checkpoint as a job driver sees it on the leader: writes
//! are replicated through Raft, reads come from the local copy (which
//! already holds every write this replica made, since a proposal returns
//! only once it is applied here).

use super::replica::ReplicaHandle;
use crate::metadata::{JobProgress, MetaError, MetadataStore};
use weir_proto::pb;

/// [`MetadataStore`] over a Raft replica.
#[derive(Clone)]
pub struct RaftMetadata {
    replica: ReplicaHandle,
}

impl RaftMetadata {
    /// The store of `replica`.
    pub fn new(replica: ReplicaHandle) -> Self {
        RaftMetadata { replica }
    }
}

impl MetadataStore for RaftMetadata {
    fn apply(&self, command: pb::MetaCommand) -> Result<(), MetaError> {
        self.replica.propose_blocking(command)
    }

    fn job(&self, name: &str) -> Result<Option<pb::JobRecord>, MetaError> {
        self.replica.metadata().job(name)
    }

    fn jobs(&self) -> Result<Vec<pb::JobRecord>, MetaError> {
        self.replica.metadata().jobs()
    }

    fn progress(&self, name: &str) -> Result<JobProgress, MetaError> {
        self.replica.metadata().progress(name)
    }

    fn plan(&self, name: &str, batch_id: u64) -> Result<Option<pb::BatchPlan>, MetaError> {
        self.replica.metadata().plan(name, batch_id)
    }

    fn batches(&self, name: &str, limit: usize) -> Result<Vec<pb::BatchCommit>, MetaError> {
        self.replica.metadata().batches(name, limit)
    }

    fn history(&self, name: &str) -> Result<Vec<pb::JobRecord>, MetaError> {
        self.replica.metadata().history(name)
    }
}
