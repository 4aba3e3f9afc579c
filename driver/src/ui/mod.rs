//! The web UI a driver (and `weir local`) serves on its HTTP port: the
//! jobs with their health, per job a batch timeline with charts like
//! Spark's Streaming tab, the batch table and a batch's detail, state per
//! partition, lag, executors, driver replicas and the upgrade history.
//! Every asset is embedded; pages refresh themselves without reloading.
//! docs/ui.md is the users' guide.

use weir_proto::pb;
use weir_web::{Page, PageRequest};

/// Where the UI's figures come from: the replica's metadata and, on the
/// leader, the live health of the jobs it drives.
pub trait UiSource: Send + Sync {
    /// Every job, as `weir list` shows them.
    fn jobs(&self) -> Result<Vec<pb::JobStatus>, String>;
    /// One job, as `weir status` shows it; `None` if it does not exist.
    fn job(&self, name: &str) -> Result<Option<pb::JobStatus>, String>;
    /// The newest `limit` committed batches of `job`, newest first (as
    /// `weir batches`).
    fn batches(&self, job: &str, limit: usize) -> Result<Vec<pb::BatchCommit>, String>;
    /// The plan of a batch, while it is kept (the recent batches).
    fn plan(&self, job: &str, batch_id: u64) -> Result<Option<pb::BatchPlan>, String>;
    /// The versions of `job`'s spec, oldest first, the current one last.
    fn history(&self, job: &str) -> Result<Vec<pb::JobRecord>, String>;
    /// The driver replicas and executors (`weir cluster`); `None` in
    /// `weir local`.
    fn cluster(&self) -> Option<pb::ClusterInfo>;
}

/// The UI's response to `request`, `None` when nothing is at its path.
pub fn page(_source: &dyn UiSource, _request: &PageRequest) -> Option<Page> {
    None
}
