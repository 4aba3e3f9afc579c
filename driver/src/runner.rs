//! How the leader reaches executors. The scheduler only sees this trait:
//! `weir local` runs tasks in-process, a cluster sends them over gRPC.

use weir_proto::pb;
use weir_proto::FailureClass;

/// A failed task.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct TaskFailure {
    /// The failure's class, on which the batch policy acts.
    pub class: FailureClass,
    /// What failed, naming the job, batch and partition.
    pub message: String,
}

/// Runs tasks on executors. Each call runs a set of independent tasks
/// (in parallel where it can) and fails if any of them fails.
pub trait TaskRunner: Send + Sync {
    /// Makes a job runnable on the executors.
    fn deploy(&self, job: &pb::JobRecord) -> Result<(), TaskFailure>;
    /// Runs stage-A tasks.
    fn stage_a(&self, tasks: Vec<pb::StageATask>) -> Result<Vec<pb::StageAResult>, TaskFailure>;
    /// Restores state partitions.
    fn restore(&self, tasks: Vec<pb::RestoreTask>) -> Result<Vec<pb::RestoreResult>, TaskFailure>;
    /// Runs stage-B tasks.
    fn stage_b(&self, tasks: Vec<pb::StageBTask>) -> Result<Vec<pb::StageBResult>, TaskFailure>;
    /// Publishes pre-committed sink output.
    fn commit(&self, tasks: Vec<pb::CommitTask>) -> Result<(), TaskFailure>;
    /// Whether `job`'s state partitions should move now that the set of
    /// executors changed (one joined): the scheduler then restores them at
    /// the next batch boundary. Runners that place state in one process
    /// never want it.
    fn rebalance_wanted(&self, job: &str) -> bool {
        let _ = job;
        false
    }
    /// Forgets `job`, which this driver no longer drives (it stopped,
    /// finished or failed, or this replica stopped leading): what the
    /// runner keeps per job is dropped and executors drop the job. Runners
    /// with nothing kept per job do nothing.
    fn retire(&self, job: &str) {
        let _ = job;
    }
}
