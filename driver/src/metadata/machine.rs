//! The pure part of the metadata state machine: what a job's progress is,
//! and whether a command may be applied to it.

use super::MetaError;
use weir_proto::pb::{self, meta_command::Kind};

/// A batch that was planned but has not committed.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingBatch {
    /// Its plan (ranges, watermark).
    pub plan: pb::BatchPlan,
    /// The commit decision, once taken: the batch must be finished, not re-run.
    pub committing: Option<pb::BatchCommit>,
}

/// Where a job stands in the metadata checkpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobProgress {
    /// The newest committed batch's plan.
    pub last_plan: Option<pb::BatchPlan>,
    /// The newest committed batch's results.
    pub last_commit: Option<pb::BatchCommit>,
    /// The batch in flight.
    pub pending: Option<PendingBatch>,
}

impl JobProgress {
    /// Id of the newest committed batch (0 when none).
    pub fn last_committed(&self) -> u64 {
        self.last_commit.as_ref().map_or(0, |c| c.batch_id)
    }

    /// Id of the newest batch whose commit was decided: the pending one
    /// once its decision is recorded (it will be finished, never re-run),
    /// else [`last_committed`](Self::last_committed).
    pub fn last_decided(&self) -> u64 {
        self.pending
            .as_ref()
            .and_then(|p| p.committing.as_ref())
            .map_or_else(|| self.last_committed(), |c| c.batch_id)
    }
}

/// Checks that `command` may be applied to a job at `progress`
/// (`job_exists` tells whether the job is stored).
pub fn check_command(
    command: &pb::MetaCommand,
    job_exists: bool,
    progress: &JobProgress,
) -> Result<(), MetaError> {
    let reject = |m: String| Err(MetaError::Rejected(m));
    match command.kind.as_ref() {
        None => reject("empty command".into()),
        Some(Kind::PutJob(r)) => match r.spec {
            Some(_) => Ok(()),
            None => reject("put_job without a spec".into()),
        },
        Some(Kind::JobState(c)) if !job_exists => {
            reject(format!("state change for unknown job {}", c.job))
        }
        Some(Kind::JobState(_)) => Ok(()),
        Some(Kind::PeerAddress(p)) if p.id == 0 || p.address.is_empty() => {
            reject("a peer address needs a positive id and an address".into())
        }
        Some(Kind::PeerAddress(_)) => Ok(()),
        Some(Kind::DeleteJob(r)) if !job_exists => {
            reject(format!("cannot delete unknown job {}", r.job))
        }
        Some(Kind::DeleteJob(_)) => Ok(()),
        Some(Kind::BatchPlanned(plan)) => {
            if !job_exists {
                return reject(format!(
                    "batch {} planned for unknown job {}",
                    plan.batch_id, plan.job
                ));
            }
            if let Some(p) = &progress.pending {
                return reject(format!(
                    "job {}: batch {} is still in flight, cannot plan batch {}",
                    plan.job, p.plan.batch_id, plan.batch_id
                ));
            }
            let expected = progress.last_committed() + 1;
            if plan.batch_id != expected {
                return reject(format!(
                    "job {}: next batch is {expected}, not {}",
                    plan.job, plan.batch_id
                ));
            }
            Ok(())
        }
        Some(Kind::BatchCommitting(c)) => match &progress.pending {
            Some(p) if p.plan.batch_id == c.batch_id && p.committing.is_none() => Ok(()),
            Some(p) if p.plan.batch_id == c.batch_id => reject(format!(
                "job {}: batch {} is already committing",
                c.job, c.batch_id
            )),
            _ => reject(format!(
                "job {}: batch {} is not in flight",
                c.job, c.batch_id
            )),
        },
        Some(Kind::BatchCommitted(r)) => match &progress.pending {
            Some(p) if p.plan.batch_id == r.batch_id && p.committing.is_some() => Ok(()),
            _ => reject(format!(
                "job {}: batch {} has no commit decision to complete",
                r.job, r.batch_id
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::command;

    fn plan(batch_id: u64) -> pb::BatchPlan {
        pb::BatchPlan {
            job: "j".into(),
            batch_id,
            ..Default::default()
        }
    }

    fn commit(batch_id: u64) -> pb::BatchCommit {
        pb::BatchCommit {
            job: "j".into(),
            batch_id,
            ..Default::default()
        }
    }

    #[test]
    fn batches_follow_plan_committing_committed() {
        let fresh = JobProgress::default();
        assert!(check_command(&command::planned(plan(1)), true, &fresh).is_ok());
        assert!(check_command(&command::planned(plan(1)), false, &fresh).is_err());
        assert!(check_command(&command::planned(plan(2)), true, &fresh).is_err());
        assert!(check_command(&command::committing(commit(1)), true, &fresh).is_err());

        let planned = JobProgress {
            pending: Some(PendingBatch {
                plan: plan(1),
                committing: None,
            }),
            ..Default::default()
        };
        assert!(check_command(&command::planned(plan(2)), true, &planned).is_err());
        assert!(check_command(&command::committed("j", 1), true, &planned).is_err());
        assert!(check_command(&command::committing(commit(2)), true, &planned).is_err());
        assert!(check_command(&command::committing(commit(1)), true, &planned).is_ok());

        let committing = JobProgress {
            pending: Some(PendingBatch {
                plan: plan(1),
                committing: Some(commit(1)),
            }),
            ..Default::default()
        };
        assert!(check_command(&command::committing(commit(1)), true, &committing).is_err());
        assert!(check_command(&command::committed("j", 1), true, &committing).is_ok());
        assert!(check_command(&command::committed("j", 2), true, &committing).is_err());
    }
}
