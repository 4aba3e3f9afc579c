//! What the leader knows about its running jobs beyond the committed
//! progress: whether a job is degraded (its source, state store or sink is
//! unreachable and its batches are being retried) and how late its batches
//! start. `weir status` shows it; it lives only on the leader, because only
//! the leader drives jobs.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use weir_proto::pb::LookupCounts;

/// The live health of one job.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobHealth {
    /// Set while the job cannot make progress for a reason outside it.
    pub degraded: Option<Degraded>,
    /// How late the last batch started after its tick, in milliseconds.
    pub scheduling_delay_ms: u64,
    /// Wall time of the last committed batch, in milliseconds.
    pub last_batch_ms: u64,
    /// Scheduling overhead of the most recent batches (planning, task
    /// launch and commit: the batch's wall time minus its task work), in
    /// microseconds, oldest first.
    pub overheads_us: VecDeque<u64>,
    /// Each state partition's size after the last batch run here.
    pub state_sizes: Vec<weir_proto::pb::PartitionSize>,
    /// Each lookup step's counts over the batches run here, by step path
    /// (bounded by the spec's steps).
    pub lookups: BTreeMap<String, LookupCounts>,
}

/// Batches whose overhead [`JobHealth::overheads_us`] keeps.
pub const OVERHEAD_WINDOW: usize = 1000;

impl JobHealth {
    /// The `q` quantile (0..=1) of the recent batches' overhead, in
    /// microseconds (0 before the first batch).
    pub fn overhead_quantile_us(&self, q: f64) -> u64 {
        let mut sorted: Vec<u64> = self.overheads_us.iter().copied().collect();
        sorted.sort_unstable();
        if sorted.is_empty() {
            return 0;
        }
        let i = ((sorted.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
        sorted[i]
    }
}

/// What one committed batch took, for [`JobHealthBoard::committed`].
#[derive(Clone, Copy, Debug, Default)]
pub struct BatchTiming {
    /// How late it started after its tick.
    pub scheduling_delay_ms: u64,
    /// Its wall time, from planning to commit.
    pub batch_ms: u64,
    /// Its wall time minus the executors' task work.
    pub overhead_us: u64,
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
    pub fn committed(&self, job: &str, timing: BatchTiming) {
        self.update(job, |h| {
            h.degraded = None;
            h.scheduling_delay_ms = timing.scheduling_delay_ms;
            h.last_batch_ms = timing.batch_ms;
            if h.overheads_us.len() == OVERHEAD_WINDOW {
                h.overheads_us.pop_front();
            }
            h.overheads_us.push_back(timing.overhead_us);
        });
    }

    /// Records the size of `job`'s state partitions after a batch.
    pub fn state_sizes(&self, job: &str, sizes: Vec<weir_proto::pb::PartitionSize>) {
        self.update(job, |h| h.state_sizes = sizes);
    }

    /// Adds what `job`'s lookup steps did in some tasks.
    pub fn lookups<'a>(&self, job: &str, counts: impl IntoIterator<Item = &'a LookupCounts>) {
        let mut counts = counts.into_iter().peekable();
        if counts.peek().is_none() {
            return;
        }
        self.update(job, |h| {
            for c in counts {
                let t = h
                    .lookups
                    .entry(c.step.clone())
                    .or_insert_with(|| LookupCounts {
                        step: c.step.clone(),
                        ..Default::default()
                    });
                t.hits = t.hits.saturating_add(c.hits);
                t.misses = t.misses.saturating_add(c.misses);
                t.requests = t.requests.saturating_add(c.requests);
                t.request_us = t.request_us.saturating_add(c.request_us);
            }
        });
    }

    /// Every job driven here, with its health.
    pub fn all(&self) -> Vec<(String, JobHealth)> {
        let jobs = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        let mut all: Vec<_> = jobs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
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
        for overhead_us in (1..=100).rev() {
            board.committed(
                "j",
                BatchTiming {
                    scheduling_delay_ms: 7,
                    batch_ms: 120,
                    overhead_us,
                },
            );
        }
        let h = board.get("j").unwrap();
        assert_eq!(h.degraded, None);
        assert_eq!((h.scheduling_delay_ms, h.last_batch_ms), (7, 120));
        assert_eq!(h.overhead_quantile_us(0.5), 51);
        assert_eq!(h.overhead_quantile_us(0.99), 99);
        assert_eq!(h.overhead_quantile_us(1.0), 100);
        board.remove("j");
        assert_eq!(board.get("j"), None);
    }

    #[test]
    fn lookup_counts_add_up_by_step() {
        let board = JobHealthBoard::default();
        let counts = |step: &str, hits, misses, requests| LookupCounts {
            step: step.into(),
            hits,
            misses,
            requests,
            request_us: requests * 1000,
        };
        board.lookups("j", &[]);
        assert_eq!(board.get("j"), None, "no lookups, no entry");
        board.lookups("j", &[counts("a", 1, 2, 1), counts("b", 5, 0, 0)]);
        board.lookups("j", &[counts("a", 10, 20, 2)]);
        let h = board.get("j").unwrap();
        assert_eq!(
            h.lookups.into_values().collect::<Vec<_>>(),
            [counts("a", 11, 22, 3), counts("b", 5, 0, 0)]
        );
    }
}
