//! Fault schedules: what to break, when, and for how long.
//!
//! A schedule is a pure function of its seed and its shape (`short`,
//! `long`, a named scenario, or `N` random faults), so the same command
//! line always runs the same faults in the same order. What a fault hits
//! at run time (which replica leads, which executor) is resolved when it
//! fires, from `pick`, since roles move as faults happen.

use crate::Rng;
use serde::Serialize;
use std::fmt;

/// The kinds of fault, each a real signal to real processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// SIGKILL the leader driver; restart it after `hold_ms`.
    KillLeader,
    /// SIGKILL one follower driver; restart it after `hold_ms`.
    KillFollower,
    /// SIGKILL two of the three drivers (the leader and a follower, or both
    /// followers, by `pick`): no quorum until they restart after `hold_ms`.
    KillTwoDrivers,
    /// SIGKILL one executor; restart it after `hold_ms`.
    KillExecutor,
    /// SIGKILL every executor; restart them after `hold_ms`.
    KillAllExecutors,
    /// SIGKILL the leader driver and one executor at once; restart both
    /// after `hold_ms`.
    KillLeaderAndExecutor,
    /// SIGSTOP the leader driver for `hold_ms` (longer than an election),
    /// then SIGCONT: it wakes up as a stale leader and must step down.
    PauseLeader,
    /// SIGSTOP one executor for `hold_ms` (longer than the 3 s heartbeat
    /// timeout), then SIGCONT: its late work must be refused.
    PauseExecutor,
}

impl FaultKind {
    /// Every kind, in report order.
    pub const ALL: [FaultKind; 8] = [
        FaultKind::KillLeader,
        FaultKind::KillFollower,
        FaultKind::KillTwoDrivers,
        FaultKind::KillExecutor,
        FaultKind::KillAllExecutors,
        FaultKind::KillLeaderAndExecutor,
        FaultKind::PauseLeader,
        FaultKind::PauseExecutor,
    ];

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::KillLeader => "kill_leader",
            FaultKind::KillFollower => "kill_follower",
            FaultKind::KillTwoDrivers => "kill_two_drivers",
            FaultKind::KillExecutor => "kill_executor",
            FaultKind::KillAllExecutors => "kill_all_executors",
            FaultKind::KillLeaderAndExecutor => "kill_leader_and_executor",
            FaultKind::PauseLeader => "pause_leader",
            FaultKind::PauseExecutor => "pause_executor",
        }
    }

    /// Whether the fault takes the leader driver away (a new election is
    /// what detection waits for).
    pub fn hits_leader(self, pick: u64) -> bool {
        match self {
            FaultKind::KillLeader | FaultKind::KillLeaderAndExecutor | FaultKind::PauseLeader => {
                true
            }
            FaultKind::KillTwoDrivers => two_drivers_include_leader(pick),
            _ => false,
        }
    }

    /// Whether the fault takes executors away.
    pub fn hits_executors(self) -> bool {
        matches!(
            self,
            FaultKind::KillExecutor
                | FaultKind::KillAllExecutors
                | FaultKind::KillLeaderAndExecutor
                | FaultKind::PauseExecutor
        )
    }

    /// The range `hold_ms` is drawn from: the restart delay of a kill, the
    /// length of a pause. Pauses outlast the failure timeouts (1-2 s
    /// election, 3 s executor heartbeat) so that they are detected.
    fn hold_range(self) -> (u64, u64) {
        match self {
            FaultKind::KillLeader
            | FaultKind::KillFollower
            | FaultKind::KillExecutor
            | FaultKind::KillLeaderAndExecutor => (0, 3_000),
            FaultKind::KillTwoDrivers | FaultKind::KillAllExecutors => (500, 3_000),
            FaultKind::PauseLeader => (2_500, 4_500),
            FaultKind::PauseExecutor => (3_600, 6_000),
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a `KillTwoDrivers` fault with this `pick` takes the leader.
pub fn two_drivers_include_leader(pick: u64) -> bool {
    pick % 2 == 0
}

/// When, relative to the watched job's own progress, a fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Timing {
    /// After the gap, whatever the job is doing.
    Random,
    /// While a batch is planned and its stages run (`weir status`:
    /// `pending_batch` set, `pending_committing` false).
    Stage,
    /// While a batch commits (`pending_committing` true): the decision is
    /// in the Raft log and the sinks are being finalized.
    Commit,
}

impl Timing {
    /// Every timing.
    pub const ALL: [Timing; 3] = [Timing::Random, Timing::Stage, Timing::Commit];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Timing::Random => "random",
            Timing::Stage => "stage",
            Timing::Commit => "commit",
        }
    }
}

impl fmt::Display for Timing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One planned fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fault {
    /// 1-based position in the schedule.
    pub index: usize,
    /// What breaks.
    pub kind: FaultKind,
    /// When it fires.
    pub timing: Timing,
    /// Quiet time after the previous fault recovered, before waiting for
    /// the timing condition.
    pub gap_ms: u64,
    /// Restart delay (kills) or pause length (pauses).
    pub hold_ms: u64,
    /// Chooses the targets among the candidates at run time (which
    /// executor, which follower, whether two killed drivers include the
    /// leader).
    pub pick: u64,
    /// Index of the job whose status the timing watches.
    pub job: usize,
}

/// A seeded list of faults.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Schedule {
    /// How it was made (`short`, `long`, `scenario:NAME`, `random`).
    pub name: String,
    /// The seed.
    pub seed: u64,
    /// The faults, in order.
    pub faults: Vec<Fault>,
}

/// The shape of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// Every kind at every timing: 24 faults, a few minutes.
    Short,
    /// Every kind at every timing nine times: 216 faults.
    Long,
    /// A named list (see [`SCENARIOS`]).
    Scenario(String),
    /// `n` faults of random kinds and timings; the first eight cover every
    /// kind once when `n >= 8`.
    Random(usize),
}

/// A named scenario: `(name, description, faults)`.
pub type Scenario = (&'static str, &'static str, &'static [(FaultKind, Timing)]);

/// Named scenarios.
pub const SCENARIOS: &[Scenario] = &[
    (
        "smoke",
        "each fault kind once, at random times",
        &[
            (FaultKind::KillLeader, Timing::Random),
            (FaultKind::KillFollower, Timing::Random),
            (FaultKind::KillTwoDrivers, Timing::Random),
            (FaultKind::KillExecutor, Timing::Random),
            (FaultKind::KillAllExecutors, Timing::Random),
            (FaultKind::KillLeaderAndExecutor, Timing::Random),
            (FaultKind::PauseLeader, Timing::Random),
            (FaultKind::PauseExecutor, Timing::Random),
        ],
    ),
    (
        "leader",
        "leader failover at every point of a batch",
        &[
            (FaultKind::KillLeader, Timing::Stage),
            (FaultKind::KillLeader, Timing::Commit),
            (FaultKind::KillLeader, Timing::Random),
            (FaultKind::PauseLeader, Timing::Stage),
            (FaultKind::PauseLeader, Timing::Commit),
            (FaultKind::KillLeader, Timing::Commit),
        ],
    ),
    (
        "commit",
        "every kind while a batch commits (decision logged, sinks finalizing)",
        &[
            (FaultKind::KillLeader, Timing::Commit),
            (FaultKind::KillFollower, Timing::Commit),
            (FaultKind::KillTwoDrivers, Timing::Commit),
            (FaultKind::KillExecutor, Timing::Commit),
            (FaultKind::KillAllExecutors, Timing::Commit),
            (FaultKind::KillLeaderAndExecutor, Timing::Commit),
            (FaultKind::PauseLeader, Timing::Commit),
            (FaultKind::PauseExecutor, Timing::Commit),
        ],
    ),
    (
        "executors",
        "executor loss and fencing during stage work and commit",
        &[
            (FaultKind::KillExecutor, Timing::Stage),
            (FaultKind::KillExecutor, Timing::Commit),
            (FaultKind::PauseExecutor, Timing::Stage),
            (FaultKind::KillAllExecutors, Timing::Stage),
            (FaultKind::PauseExecutor, Timing::Commit),
            (FaultKind::KillAllExecutors, Timing::Commit),
        ],
    ),
    (
        "quorum",
        "loss of quorum and combined failures",
        &[
            (FaultKind::KillTwoDrivers, Timing::Stage),
            (FaultKind::KillTwoDrivers, Timing::Commit),
            (FaultKind::KillLeaderAndExecutor, Timing::Stage),
            (FaultKind::KillTwoDrivers, Timing::Random),
            (FaultKind::KillLeaderAndExecutor, Timing::Commit),
        ],
    ),
];

/// Estimated seconds one fault takes end to end (gap excluded): its hold,
/// the wait for the timing, detection and the next commit. Used to size
/// gaps for `--duration` and the jobs' input.
pub fn estimated_ms(f: &Fault) -> u64 {
    f.hold_ms + 2_500
}

impl Schedule {
    /// The schedule of `shape` for `seed`. With `duration_ms`, gaps are
    /// sized so that the faults spread over about that long.
    pub fn generate(
        shape: &Shape,
        seed: u64,
        duration_ms: Option<u64>,
    ) -> Result<Schedule, String> {
        let mut rng = Rng::new(seed ^ 0x5eed_c4a0_5eed_c4a0);
        let (name, mut plan): (String, Vec<(FaultKind, Timing)>) = match shape {
            Shape::Short => ("short".into(), every_kind_and_timing(1)),
            Shape::Long => ("long".into(), every_kind_and_timing(9)),
            Shape::Scenario(n) => {
                let (_, _, list) = SCENARIOS.iter().find(|(s, _, _)| s == n).ok_or_else(|| {
                    format!(
                        "unknown scenario {n:?}; known: {}",
                        SCENARIOS
                            .iter()
                            .map(|(s, _, _)| *s)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })?;
                (format!("scenario:{n}"), list.to_vec())
            }
            Shape::Random(n) => {
                let mut plan = Vec::with_capacity(*n);
                let mut kinds = FaultKind::ALL.to_vec();
                shuffle(&mut kinds, &mut rng);
                for i in 0..*n {
                    let kind = if i < kinds.len() {
                        kinds[i]
                    } else {
                        FaultKind::ALL[rng.range(0, 8) as usize]
                    };
                    plan.push((kind, Timing::ALL[rng.range(0, 3) as usize]));
                }
                ("random".into(), plan)
            }
        };
        if matches!(shape, Shape::Short | Shape::Long) {
            shuffle(&mut plan, &mut rng);
        }
        let mut faults: Vec<Fault> = plan
            .into_iter()
            .enumerate()
            .map(|(i, (kind, timing))| {
                let (lo, hi) = kind.hold_range();
                Fault {
                    index: i + 1,
                    kind,
                    timing,
                    gap_ms: rng.range(300, 2_000),
                    hold_ms: rng.range(lo, hi + 1) / 100 * 100,
                    pick: rng.range(0, 1 << 20),
                    job: rng.range(0, 2) as usize,
                }
            })
            .collect();
        if let Some(total) = duration_ms {
            let busy: u64 = faults.iter().map(estimated_ms).sum();
            let spare = total.saturating_sub(busy) / faults.len().max(1) as u64;
            for f in &mut faults {
                // keep the seeded jitter (gaps average 1150 ms), scaled
                // so that they average the spare time
                f.gap_ms = (spare * f.gap_ms / 1_150).max(300) / 10 * 10;
            }
        }
        Ok(Schedule { name, seed, faults })
    }

    /// Estimated run time of the fault phase.
    pub fn estimated_ms(&self) -> u64 {
        self.faults.iter().map(|f| f.gap_ms + estimated_ms(f)).sum()
    }

    /// The schedule as a table, printed before anything runs.
    pub fn table(&self) -> String {
        let mut out = format!(
            "schedule {} seed {}: {} faults, about {} s\n{:>4}  {:<26} {:<7} {:>7} {:>7} {:>8} {:>4}\n",
            self.name,
            self.seed,
            self.faults.len(),
            self.estimated_ms() / 1_000,
            "#",
            "KIND",
            "TIMING",
            "GAP ms",
            "HOLD ms",
            "PICK",
            "JOB"
        );
        for f in &self.faults {
            out.push_str(&format!(
                "{:>4}  {:<26} {:<7} {:>7} {:>7} {:>8} {:>4}\n",
                f.index,
                f.kind.name(),
                f.timing.name(),
                f.gap_ms,
                f.hold_ms,
                f.pick,
                f.job
            ));
        }
        out
    }
}

fn every_kind_and_timing(times: usize) -> Vec<(FaultKind, Timing)> {
    let mut plan = Vec::new();
    for _ in 0..times {
        for kind in FaultKind::ALL {
            for timing in Timing::ALL {
                plan.push((kind, timing));
            }
        }
    }
    plan
}

fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        let j = rng.range(0, i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        for shape in [Shape::Short, Shape::Long, Shape::Random(30)] {
            let a = Schedule::generate(&shape, 7, None).unwrap();
            let b = Schedule::generate(&shape, 7, None).unwrap();
            let c = Schedule::generate(&shape, 8, None).unwrap();
            assert_eq!(a, b);
            assert_ne!(a.faults, c.faults);
        }
    }

    #[test]
    fn short_and_long_cover_every_kind_at_every_timing() {
        let short = Schedule::generate(&Shape::Short, 1, None).unwrap();
        assert!(short.faults.len() >= 20);
        let long = Schedule::generate(&Shape::Long, 1, None).unwrap();
        assert!(long.faults.len() >= 200);
        for s in [short, long] {
            let pairs: BTreeSet<(FaultKind, Timing)> =
                s.faults.iter().map(|f| (f.kind, f.timing)).collect();
            assert_eq!(pairs.len(), 24, "{}", s.name);
        }
        let random = Schedule::generate(&Shape::Random(8), 3, None).unwrap();
        let kinds: BTreeSet<FaultKind> = random.faults.iter().map(|f| f.kind).collect();
        assert_eq!(kinds.len(), 8);
    }

    #[test]
    fn pauses_outlast_the_failure_timeouts() {
        let long = Schedule::generate(&Shape::Long, 11, None).unwrap();
        for f in &long.faults {
            match f.kind {
                FaultKind::PauseExecutor => assert!(f.hold_ms > 3_000, "{f:?}"),
                FaultKind::PauseLeader => assert!(f.hold_ms > 2_000, "{f:?}"),
                _ => assert!(f.hold_ms <= 3_000, "{f:?}"),
            }
        }
    }

    #[test]
    fn duration_stretches_the_gaps() {
        let s = Schedule::generate(&Shape::Random(10), 5, Some(300_000)).unwrap();
        let total = s.estimated_ms();
        assert!((200_000..400_000).contains(&total), "{total}");
        assert!(Schedule::generate(&Shape::Scenario("nope".into()), 1, None).is_err());
        assert_eq!(
            Schedule::generate(&Shape::Scenario("smoke".into()), 1, None)
                .unwrap()
                .faults
                .len(),
            8
        );
    }
}
