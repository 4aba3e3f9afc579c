//! What the leader knows about its running jobs beyond the committed
//! progress: whether a job is degraded (its source, state store or sink is
//! unreachable and its batches are being retried) and how late its batches
//! start. `weir status` shows it; it lives only on the leader, because only
//! the leader drives jobs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The live health of one job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobHealth {
    /// Set while the job cannot make progress for a reason outside it.
    pub degraded: Option<Degraded>,
    /// How late the last batch started after its tick, in milliseconds.
    pub scheduling_delay_ms: u64,
    /// Wall time of the last committed batch, in milliseconds.
    pub last_batch_ms: u64,
}

/// Why and since when a job is degraded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Degraded {
    /// The error that keeps the job from progressing.
    pub reason: String,
    /// When it started (milliseconds since the Unix epoch).
    pub since_ms: i64,
}

/// The health of every job driven here, shared by the job drivers (which
/// write it) and the client service (which reads it).
#[derive(Clone, Debug, Default)]
pub struct JobHealthBoard {
    jobs: Arc<Mutex<HashMap<String, JobHealth>>>,
}

impl JobHealthBoard {
    fn update(&self, job: &str, f: impl FnOnce(&mut JobHealth)) {
        let mut jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        f(jobs.entry(job.to_string()).or_default());
    }

    /// Marks `job` degraded because of `reason`; keeps the first time it
    /// was marked while it stays degraded.
    pub fn degraded(&self, job: &str, reason: &str, now_ms: i64) {
        self.update(job, |h| {
            let since_ms = h.degraded.as_ref().map_or(now_ms, |d| d.since_ms);
            h.degraded = Some(Degraded {
                reason: reason.to_string(),
                since_ms,
            });
        });
    }

    /// Records a committed batch: the job is healthy again.
    pub fn committed(&self, job: &str, scheduling_delay_ms: u64, batch_ms: u64) {
        self.update(job, |h| {
            h.degraded = None;
            h.scheduling_delay_ms = scheduling_delay_ms;
            h.last_batch_ms = batch_ms;
        });
    }

    /// The health of `job`, if it is driven here.
    pub fn get(&self, job: &str) -> Option<JobHealth> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(job)
            .cloned()
    }

    /// Forgets `job` (its driver stopped here).
    pub fn remove(&self, job: &str) {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(job);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degraded_keeps_its_start_until_a_commit() {
        let board = JobHealthBoard::default();
        assert_eq!(board.get("j"), None);
        board.degraded("j", "broker down", 1_000);
        board.degraded("j", "broker still down", 2_000);
        let h = board.get("j").unwrap();
        assert_eq!(
            h.degraded,
            Some(Degraded {
                reason: "broker still down".into(),
                since_ms: 1_000
            })
        );
        board.committed("j", 7, 120);
        let h = board.get("j").unwrap();
        assert_eq!(h.degraded, None);
        assert_eq!((h.scheduling_delay_ms, h.last_batch_ms), (7, 120));
        board.remove("j");
        assert_eq!(board.get("j"), None);
    }
}
