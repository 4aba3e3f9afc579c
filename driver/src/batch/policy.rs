//! The batch policy: what the driver does after a task fails, as one pure
//! function of where the job was ([`Phase`]), who is at fault
//! ([`FailureClass`]) and how many recoveries the operation has had.
//!
//! | phase \ class | user | external | internal | output-lost |
//! |---|---|---|---|---|
//! | deploy, restore state, commit | fail the job | retry | retry, bounded | fail the job (commit: re-run the decided batch, bounded) |
//! | stages, reproduce | fail the job | rebuild state and retry | rebuild state and retry, bounded | rebuild state and retry, bounded (reproduce: fail the job) |
//!
//! "Bounded": once an operation has had `max_recoveries` recoveries (failures
//! of class internal or output-lost), the next such failure fails the job.
//! External failures (an outage of the source, the state store or a sink)
//! never count: the job retries them with backoff for as long as the outage
//! lasts, shown as `degraded`, and loses nothing.

use weir_proto::FailureClass;

/// What the job was doing when a task failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Deploying the job's spec to the executors.
    Deploy,
    /// Restoring every state partition to the last committed batch.
    RestoreState,
    /// Stage A and stage B of a batch whose commit is not decided yet.
    Stages,
    /// Publishing the pre-committed output of a decided batch.
    Commit,
    /// Producing the output of a decided batch again after it was lost
    /// (state restored to the batch before it, then its stages).
    Reproduce,
}

impl Phase {
    /// Every phase, in the order a batch meets them.
    pub const ALL: [Phase; 5] = [
        Phase::Deploy,
        Phase::RestoreState,
        Phase::Stages,
        Phase::Commit,
        Phase::Reproduce,
    ];

    /// The phase's name in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Deploy => "deploy",
            Phase::RestoreState => "restore-state",
            Phase::Stages => "stages",
            Phase::Commit => "commit",
            Phase::Reproduce => "reproduce",
        }
    }
}

/// What the driver does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The job fails: retrying cannot fix the cause. A batch whose commit
    /// was not decided is replayed from its planned offsets when the job is
    /// submitted again; a decided one is finished.
    FailJob,
    /// Back off, then run the same operation again.
    Retry,
    /// Back off, restore state to the last committed batch (a failed stage
    /// B may have applied part of the batch), then run the batch's stages
    /// again with the same ranges.
    RebuildAndRetry,
    /// The decided batch's output is gone: produce it again
    /// ([`Phase::Reproduce`]), then commit again. The decision stands, and
    /// sinks skip the partitions whose output did commit.
    RerunDecided,
}

/// Whether a failure of this class counts against the recovery bound.
pub fn is_recovery(class: FailureClass) -> bool {
    matches!(class, FailureClass::Internal | FailureClass::OutputLost)
}

/// The next step after a task failed in `phase` with `class`, when the
/// operation already had `recoveries` recoveries (failures for which
/// [`is_recovery`] holds) and at most `max_recoveries` are allowed.
pub fn next_step(phase: Phase, class: FailureClass, recoveries: u32, max_recoveries: u32) -> Step {
    let exhausted = recoveries >= max_recoveries;
    let again = match phase {
        Phase::Deploy | Phase::RestoreState | Phase::Commit => Step::Retry,
        Phase::Stages | Phase::Reproduce => Step::RebuildAndRetry,
    };
    match class {
        FailureClass::User => Step::FailJob,
        FailureClass::External => again,
        FailureClass::Internal if exhausted => Step::FailJob,
        FailureClass::Internal => again,
        FailureClass::OutputLost => match phase {
            Phase::Commit if !exhausted => Step::RerunDecided,
            Phase::Stages if !exhausted => Step::RebuildAndRetry,
            // Only a commit can lose pre-committed output; elsewhere the
            // class means the executor broke its contract.
            _ => Step::FailJob,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureClass::{External, Internal, OutputLost, User};
    use Phase::{Commit, Deploy, Reproduce, RestoreState, Stages};
    use Step::{FailJob, RebuildAndRetry, RerunDecided, Retry};

    const MAX: u32 = 3;

    /// Every (phase, class) row, below the bound and at it.
    #[test]
    fn the_policy_table() {
        let rows: [(Phase, FailureClass, Step, Step); 20] = [
            // phase, class, below the bound, at the bound
            (Deploy, User, FailJob, FailJob),
            (Deploy, External, Retry, Retry),
            (Deploy, Internal, Retry, FailJob),
            (Deploy, OutputLost, FailJob, FailJob),
            (RestoreState, User, FailJob, FailJob),
            (RestoreState, External, Retry, Retry),
            (RestoreState, Internal, Retry, FailJob),
            (RestoreState, OutputLost, FailJob, FailJob),
            (Stages, User, FailJob, FailJob),
            (Stages, External, RebuildAndRetry, RebuildAndRetry),
            (Stages, Internal, RebuildAndRetry, FailJob),
            (Stages, OutputLost, RebuildAndRetry, FailJob),
            (Commit, User, FailJob, FailJob),
            (Commit, External, Retry, Retry),
            (Commit, Internal, Retry, FailJob),
            (Commit, OutputLost, RerunDecided, FailJob),
            (Reproduce, User, FailJob, FailJob),
            (Reproduce, External, RebuildAndRetry, RebuildAndRetry),
            (Reproduce, Internal, RebuildAndRetry, FailJob),
            (Reproduce, OutputLost, FailJob, FailJob),
        ];
        for (phase, class, below, at) in rows {
            for recoveries in 0..MAX {
                assert_eq!(
                    next_step(phase, class, recoveries, MAX),
                    below,
                    "{phase:?} {class:?} after {recoveries} recoveries"
                );
            }
            assert_eq!(
                next_step(phase, class, MAX, MAX),
                at,
                "{phase:?} {class:?} at the bound"
            );
            assert_eq!(
                next_step(phase, class, MAX + 1, MAX),
                at,
                "{phase:?} {class:?} past the bound"
            );
        }
        // The table names every pair once.
        for phase in Phase::ALL {
            for class in FailureClass::ALL {
                assert_eq!(
                    rows.iter().filter(|r| (r.0, r.1) == (phase, class)).count(),
                    1,
                    "{phase:?} {class:?}"
                );
            }
        }
    }

    #[test]
    fn outages_never_count_and_never_fail_the_job() {
        assert!(!is_recovery(External));
        assert!(!is_recovery(User));
        assert!(is_recovery(Internal) && is_recovery(OutputLost));
        for phase in Phase::ALL {
            assert_ne!(
                next_step(phase, External, u32::MAX, 0),
                FailJob,
                "{phase:?}"
            );
        }
    }

    #[test]
    fn no_recoveries_allowed_fails_at_the_first() {
        for phase in Phase::ALL {
            assert_eq!(next_step(phase, Internal, 0, 0), FailJob, "{phase:?}");
        }
    }
}
