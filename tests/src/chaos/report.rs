//! The report of a chaos run: one row per fault, recovery figures per
//! fault kind, the verification result; printed as a table and written as
//! JSON.

use super::schedule::{FaultKind, Timing};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write;

/// What happened to one fault.
#[derive(Debug, Clone, Serialize)]
pub struct FaultRecord {
    /// Position in the schedule.
    pub index: usize,
    /// Kind.
    pub kind: FaultKind,
    /// The timing asked for.
    pub timing: Timing,
    /// Whether the timing condition was seen before the fault fired (a
    /// batch may commit faster than the 10 ms status poll sees it).
    pub timing_hit: bool,
    /// The watched job and what `weir status` said when the fault fired.
    pub job_phase: String,
    /// The processes hit: `driver 2`, `exec-3`, with `(leader)` when it led.
    pub targets: Vec<String>,
    /// When it fired, ms since the cluster started.
    pub at_ms: u64,
    /// Restart delay or pause length.
    pub hold_ms: u64,
    /// Time from the fault to its detection: a new leader elected (a term
    /// above the one at the fault), or every hit executor no longer held
    /// alive by the leader (declared dead, or replaced by a new
    /// registration). `None` when there is nothing to detect (a follower).
    pub detection_ms: Option<u64>,
    /// Time from the fault to the next committed batch of every job that
    /// was running.
    pub recovery_ms: Option<u64>,
    /// Last committed batch per running job when the fault fired.
    pub committed_before: BTreeMap<String, u64>,
}

/// p50 / p99 / max of a list of ms.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Spread {
    /// Samples.
    pub n: usize,
    /// Median.
    pub p50: u64,
    /// 99th percentile (nearest rank).
    pub p99: u64,
    /// Largest.
    pub max: u64,
}

impl Spread {
    /// The spread of `values` (all zero when empty).
    pub fn of(values: &[u64]) -> Spread {
        let mut v = values.to_vec();
        v.sort_unstable();
        if v.is_empty() {
            return Spread::default();
        }
        let rank = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
        Spread {
            n: v.len(),
            p50: rank(0.50),
            p99: rank(0.99),
            max: *v.last().expect("non-empty"),
        }
    }
}

/// Recovery figures of one fault kind.
#[derive(Debug, Clone, Serialize)]
pub struct KindSummary {
    /// Kind.
    pub kind: FaultKind,
    /// Faults of this kind.
    pub faults: usize,
    /// Time to detection.
    pub detection: Spread,
    /// Time to the next committed batch.
    pub recovery: Spread,
}

/// A verified job.
#[derive(Debug, Clone, Serialize)]
pub struct JobResult {
    /// Job name.
    pub job: String,
    /// Input records.
    pub records: u64,
    /// Committed batches.
    pub batches: u64,
    /// Output units (files) read back.
    pub output_units: usize,
    /// Problems found (empty: exact).
    pub problems: Vec<String>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Schedule name.
    pub schedule: String,
    /// Seed.
    pub seed: u64,
    /// Wall time of the run.
    pub duration_ms: u64,
    /// Every fault.
    pub faults: Vec<FaultRecord>,
    /// Figures per kind.
    pub summary: Vec<KindSummary>,
    /// Verified jobs.
    pub jobs: Vec<JobResult>,
    /// Problems outside a single job (sink rewrites, stuck recovery, crashes).
    pub problems: Vec<String>,
    /// `true` when nothing was lost, duplicated or rewritten.
    pub passed: bool,
}

impl Report {
    /// Fills in the per-kind summary and the verdict.
    pub fn finish(&mut self) {
        self.summary = FaultKind::ALL
            .iter()
            .filter_map(|kind| {
                let rows: Vec<&FaultRecord> =
                    self.faults.iter().filter(|f| f.kind == *kind).collect();
                if rows.is_empty() {
                    return None;
                }
                let det: Vec<u64> = rows.iter().filter_map(|f| f.detection_ms).collect();
                let rec: Vec<u64> = rows.iter().filter_map(|f| f.recovery_ms).collect();
                Some(KindSummary {
                    kind: *kind,
                    faults: rows.len(),
                    detection: Spread::of(&det),
                    recovery: Spread::of(&rec),
                })
            })
            .collect();
        self.passed = self.problems.is_empty() && self.jobs.iter().all(|j| j.problems.is_empty());
    }

    /// The human report.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let ms = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |v| v.to_string());
        let _ = writeln!(
            out,
            "\n{:>4} {:>8}  {:<25} {:<7} {:<4} {:<24} {:>6} {:>8} {:>8}",
            "#", "AT s", "KIND", "TIMING", "HIT", "TARGETS", "HOLD", "DETECT", "RECOVER"
        );
        for f in &self.faults {
            let _ = writeln!(
                out,
                "{:>4} {:>8.1}  {:<25} {:<7} {:<4} {:<24} {:>6} {:>8} {:>8}",
                f.index,
                f.at_ms as f64 / 1_000.0,
                f.kind.name(),
                f.timing.name(),
                if f.timing_hit { "yes" } else { "no" },
                f.targets.join(","),
                f.hold_ms,
                ms(f.detection_ms),
                ms(f.recovery_ms)
            );
        }
        let _ = writeln!(
            out,
            "\n{:<25} {:>6}  {:>21}  {:>21}",
            "KIND (ms)", "FAULTS", "DETECT p50/p99/max", "RECOVER p50/p99/max"
        );
        for s in &self.summary {
            let fmt = |s: &Spread| {
                if s.n == 0 {
                    "-".to_string()
                } else {
                    format!("{}/{}/{}", s.p50, s.p99, s.max)
                }
            };
            let _ = writeln!(
                out,
                "{:<25} {:>6}  {:>21}  {:>21}",
                s.kind.name(),
                s.faults,
                fmt(&s.detection),
                fmt(&s.recovery)
            );
        }
        let _ = writeln!(out);
        for j in &self.jobs {
            let _ = writeln!(
                out,
                "job {:<12} {:>9} records {:>5} batches {:>6} output files: {}",
                j.job,
                j.records,
                j.batches,
                j.output_units,
                if j.problems.is_empty() {
                    "exact".to_string()
                } else {
                    format!("{} PROBLEMS", j.problems.len())
                }
            );
            for p in &j.problems {
                let _ = writeln!(out, "  {p}");
            }
        }
        for p in &self.problems {
            let _ = writeln!(out, "PROBLEM: {p}");
        }
        let _ = writeln!(
            out,
            "\n{} faults, seed {}, {:.0} s: {}",
            self.faults.len(),
            self.seed,
            self.duration_ms as f64 / 1_000.0,
            if self.passed {
                "PASSED (no record lost or duplicated, no output rewritten)"
            } else {
                "FAILED"
            }
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let s = Spread::of(&[5, 1, 3, 2, 4]);
        assert_eq!((s.n, s.p50, s.p99, s.max), (5, 3, 5, 5));
        let s = Spread::of(&(1..=200).collect::<Vec<_>>());
        assert_eq!((s.p50, s.p99, s.max), (100, 198, 200));
        assert_eq!(Spread::of(&[]).n, 0);
    }
}
