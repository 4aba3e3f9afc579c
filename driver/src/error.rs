//! The driver's error type: why a job's loop or a submit stopped.

use crate::metadata::MetaError;
use crate::planner::PlanError;
use crate::runner::TaskFailure;

/// Errors that stop a job's loop.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The metadata checkpoint failed.
    #[error(transparent)]
    Meta(#[from] MetaError),
    /// A task failed in a way retrying cannot fix.
    #[error("job {job} failed at batch {batch_id}: {failure}; fix the cause and restart: the batch is replayed from its planned offsets")]
    JobFailed {
        /// Job name.
        job: String,
        /// The batch that failed.
        batch_id: u64,
        /// The task failure.
        failure: TaskFailure,
    },
    /// The driver was told to stop (shutdown, or this replica stopped
    /// leading) while it waited to retry a failure: the job is not failed,
    /// the next driver replays the batch.
    #[error("job {job}: stopped while retrying batch {batch_id} after: {failure}")]
    Interrupted {
        /// Job name.
        job: String,
        /// The batch being retried.
        batch_id: u64,
        /// The failure being retried.
        failure: TaskFailure,
    },
    /// The job is not in the metadata checkpoint.
    #[error("job {0} does not exist")]
    UnknownJob(String),
    /// A plan needed to rebuild state is gone.
    #[error("job {job}: the plan of batch {batch_id} is needed to rebuild state but is not in the metadata checkpoint")]
    MissingPlan {
        /// Job name.
        job: String,
        /// The batch.
        batch_id: u64,
    },
    /// The source cannot be read as planned (offsets deleted before the job
    /// read them, or a recreated topic).
    #[error("job {job} failed: {error}")]
    Source {
        /// Job name.
        job: String,
        /// What is wrong.
        error: PlanError,
    },
    /// A submitted spec does not type-check (a step reads a column that
    /// is not there, an expression of the wrong type, ...); nothing was
    /// stored.
    #[error("invalid job spec {job}: {error}")]
    InvalidSpec {
        /// Job name.
        job: String,
        /// The step path and the problem (boxed: it may hold an
        /// expression error, larger than every other variant).
        error: Box<weir_plan::PlanError>,
    },
    /// A resubmitted spec changes the state or offsets' meaning and the
    /// options do not allow it.
    #[error("{0}")]
    UpgradeRefused(String),
    /// A spec (submitted or stored) has a format this build does not know.
    #[error("job {job}: {what} spec has format_version {found}, this build reads up to {supported}; upgrade weir before running it (the stored spec is kept as it is)")]
    UnsupportedFormat {
        /// Job name.
        job: String,
        /// "the stored" or "the submitted".
        what: &'static str,
        /// The spec's format version.
        found: u32,
        /// The newest format this build reads.
        supported: u32,
    },
    /// The job record changed under a running driver (internal: the
    /// driver restarts with the new record at a batch boundary).
    #[error("the job record changed; restarting with it")]
    Restart,
    /// A `--from` value that does not parse or fit the source.
    #[error("--from {value}: {message}")]
    BadFrom {
        /// The value given.
        value: String,
        /// What is wrong.
        message: String,
    },
}
