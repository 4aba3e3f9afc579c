//! The executor's error type, classified so the scheduler can decide what to do.

use crate::lookup::LookupError;
use crate::state::StateError;
use weir_plan::expr::ExprError;
use weir_proto::FailureClass;

/// Errors from running a task.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The job's spec cannot run as written: its plan could not be
    /// compiled, or a Kafka client it configures was refused (a property
    /// librdkafka refuses, an unresolvable secret reference, failed
    /// authentication, a certificate that does not verify, a missing ACL).
    /// Retrying cannot help.
    #[error("job {job}: {message}")]
    Plan {
        /// Job name.
        job: String,
        /// What is wrong in the spec, with the step path, or the client
        /// and the broker's message.
        message: String,
    },
    /// An expression failed while evaluating a batch.
    #[error("job {job}, step {step}: {source}")]
    Expr {
        /// Job name.
        job: String,
        /// Step path, e.g. `pipeline[0].filter`.
        step: String,
        /// The expression error.
        #[source]
        source: ExprError,
    },
    /// Reading or writing state checkpoints failed.
    #[error("job {job}, state partition {partition}: {source}")]
    State {
        /// Job name.
        job: String,
        /// State partition.
        partition: u32,
        /// The state store error.
        #[source]
        source: StateError,
    },
    /// A task's output was not pre-committed: the epoch it was sent under
    /// lost its lease (see [`Tenure`](crate::state::Tenure)), so its batch
    /// may already be committed by the partition's new owner.
    #[error("job {job}: {source}")]
    OutputFenced {
        /// Job name.
        job: String,
        /// The refusal ([`StateError::Fenced`]).
        #[source]
        source: StateError,
    },
    /// The sink could not pre-commit or commit output.
    #[error("job {job}: sink {sink}: {message}")]
    Sink {
        /// Job name.
        job: String,
        /// Sink description (kind and target).
        sink: String,
        /// What went wrong and what to check.
        message: String,
    },
    /// A commit found no committed output of `(batch, partition)` and no
    /// open transaction holding it (its producer's process died).
    #[error("job {job}: sink {sink}: the output of batch {batch}, partition {partition} was pre-committed in a transaction that is gone (its process restarted) and it did not commit; the batch must be produced again")]
    OutputLost {
        /// Job name.
        job: String,
        /// Sink description.
        sink: String,
        /// Batch id.
        batch: u64,
        /// Sink partition.
        partition: u32,
    },
    /// One batch read more bytes from one source partition than the
    /// source's `max_bytes_per_partition` allows.
    #[error("job {job}: batch {batch} read more than {limit} bytes (source.{source_kind}.max_bytes_per_partition) from partition {partition}, offsets [{start}, {end}); raise max_bytes_per_partition (the executor must have the memory) and submit the job again: the batch is read again from the same offsets. Lower max_records_per_partition to keep later batches smaller")]
    BatchTooLarge {
        /// Job name.
        job: String,
        /// `kafka` or `generator`.
        source_kind: &'static str,
        /// Batch id.
        batch: u64,
        /// Source partition.
        partition: u32,
        /// First offset of the range.
        start: u64,
        /// End of the range (exclusive).
        end: u64,
        /// The cap.
        limit: u64,
    },
    /// Reading the source failed.
    #[error("job {job}: source {source_name}: {message}")]
    Source {
        /// Job name.
        job: String,
        /// Source description.
        source_name: String,
        /// What failed and what to check.
        message: String,
        /// Whether a retry may succeed (an unreachable broker).
        transient: bool,
    },
    /// A lookup step failed: Redis unavailable (external), or refused,
    /// or its data does not fit the step (user).
    #[error("job {job}: {source}")]
    Lookup {
        /// Job name.
        job: String,
        /// The lookup's error, naming the step (boxed: it is large, and
        /// rare).
        #[source]
        source: Box<LookupError>,
    },
    /// The task refers to a job this executor does not run.
    #[error("job {0} is not deployed on this executor")]
    UnknownJob(String),
    /// A stage-B task found a gap between its state and the batch.
    #[error("job {job}, state partition {partition}: state is at version {have}, batch {batch} needs version {need}; restore the partition first")]
    StateGap {
        /// Job name.
        job: String,
        /// State partition.
        partition: u32,
        /// Version the partition holds.
        have: u64,
        /// Version the batch builds on.
        need: u64,
        /// Batch id.
        batch: u64,
    },
    /// Shuffle output that a stage-B task needs is missing.
    #[error("job {job}, batch {batch}: shuffle output of source partition {source_partition} is missing; re-run its stage-A task")]
    MissingShuffle {
        /// Job name.
        job: String,
        /// Batch id.
        batch: u64,
        /// The stage-A task whose output is missing.
        source_partition: u32,
    },
}

impl ExecError {
    /// The error's failure class, on which the driver's batch policy acts.
    pub fn class(&self) -> FailureClass {
        match self {
            ExecError::Plan { .. } | ExecError::Expr { .. } | ExecError::BatchTooLarge { .. } => {
                FailureClass::User
            }
            ExecError::State { .. } | ExecError::OutputFenced { .. } | ExecError::Sink { .. } => {
                FailureClass::External
            }
            ExecError::OutputLost { .. } => FailureClass::OutputLost,
            ExecError::Lookup { source, .. } => source.class(),
            ExecError::Source { transient, .. } => {
                if *transient {
                    FailureClass::External
                } else {
                    FailureClass::User
                }
            }
            ExecError::UnknownJob(_)
            | ExecError::StateGap { .. }
            | ExecError::MissingShuffle { .. } => FailureClass::Internal,
        }
    }
}
