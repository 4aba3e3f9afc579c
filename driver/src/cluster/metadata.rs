//! The metadata checkpoint as a job driver sees it on the leader: writes
//! are replicated through Raft, reads come from the local copy (which
//! already holds every write made through this store: a proposal returns
//! only once it is applied here, and a submitted one is waited for before
//! the next read or write).

use super::replica::{Proposal, ReplicaHandle};
use crate::metadata::{JobProgress, MetaError, MetadataStore};
use std::sync::Mutex;
use weir_proto::pb;

/// [`MetadataStore`] over a Raft replica, for one user (a job driver or a
/// request): commands it submits are waited for by its next call.
pub struct RaftMetadata {
    replica: ReplicaHandle,
    submitted: Mutex<Option<Proposal>>,
}

impl RaftMetadata {
    /// The store of `replica`.
    pub fn new(replica: ReplicaHandle) -> Self {
        RaftMetadata {
            replica,
            submitted: Mutex::new(None),
        }
    }

    /// Waits for the submitted command, if any; its failure is this call's.
    fn settle(&self) -> Result<(), MetaError> {
        let proposal = self
            .submitted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        proposal.map_or(Ok(()), Proposal::wait)
    }
}

impl MetadataStore for RaftMetadata {
    fn apply(&self, command: pb::MetaCommand) -> Result<(), MetaError> {
        self.settle()?;
        self.replica.propose_blocking(command)
    }

    fn submit(&self, command: pb::MetaCommand) -> Result<(), MetaError> {
        self.settle()?;
        let proposal = self.replica.propose_detached(command)?;
        *self.submitted.lock().unwrap_or_else(|p| p.into_inner()) = Some(proposal);
        Ok(())
    }

    fn settled(&self) -> Result<(), MetaError> {
        self.settle()
    }

    fn job(&self, name: &str) -> Result<Option<pb::JobRecord>, MetaError> {
        self.settle()?;
        self.replica.metadata().job(name)
    }

    fn jobs(&self) -> Result<Vec<pb::JobRecord>, MetaError> {
        self.settle()?;
        self.replica.metadata().jobs()
    }

    fn progress(&self, name: &str) -> Result<JobProgress, MetaError> {
        self.settle()?;
        self.replica.metadata().progress(name)
    }

    fn plan(&self, name: &str, batch_id: u64) -> Result<Option<pb::BatchPlan>, MetaError> {
        self.settle()?;
        self.replica.metadata().plan(name, batch_id)
    }

    fn batches(&self, name: &str, limit: usize) -> Result<Vec<pb::BatchCommit>, MetaError> {
        self.settle()?;
        self.replica.metadata().batches(name, limit)
    }

    fn history(&self, name: &str) -> Result<Vec<pb::JobRecord>, MetaError> {
        self.settle()?;
        self.replica.metadata().history(name)
    }
}
