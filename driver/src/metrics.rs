//! The driver's Prometheus metrics (docs/metrics.md): histograms observed
//! on the batch path, and a collector that reads the rest at scrape time
//! from the replica's metadata, the jobs' live health, the lag board and
//! the executor registry, so that totals equal what `weir status` shows
//! and survive a change of leader.

use crate::cluster::ReplicaHandle;
use crate::executors::ExecutorRegistry;
use crate::job_health::JobHealthBoard;
use crate::lag::LagBoard;
use crate::metadata::MetadataStore;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_proto::pb;
use weir_web::metrics::{counters, gauges, seconds, Labels};

type Histograms = Family<Labels, Histogram, fn() -> Histogram>;

/// Metrics the driver observes as it works. Cloning shares them.
#[derive(Debug, Clone)]
pub struct DriverMetrics {
    /// `weir_batch_duration_seconds{job}`: planning to commit.
    pub batch_duration: Histograms,
    /// `weir_batch_phase_seconds{job,phase}`.
    pub batch_phase: Histograms,
    /// `weir_task_failures_total{job,phase,class}`.
    pub task_failures: Family<Labels, Counter>,
    /// `weir_state_restore_seconds{job}`: restoring every state partition
    /// and replaying the committed batches after the checkpoints.
    pub state_restore: Histograms,
    /// `weir_raft_proposal_seconds`: a metadata command from proposal to
    /// applied on this replica.
    pub proposal: Histogram,
}

impl Default for DriverMetrics {
    fn default() -> Self {
        DriverMetrics {
            batch_duration: Family::new_with_constructor(seconds),
            batch_phase: Family::new_with_constructor(seconds),
            task_failures: Family::default(),
            state_restore: Family::new_with_constructor(seconds),
            proposal: seconds(),
        }
    }
}

fn job(name: &str) -> Labels {
    vec![("job", name.to_string())]
}

impl DriverMetrics {
    /// Registers every metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "weir_batch_duration_seconds",
            "Wall time of committed batches, from planning to commit",
            self.batch_duration.clone(),
        );
        registry.register(
            "weir_batch_phase_seconds",
            "Time committed batches spent in each phase",
            self.batch_phase.clone(),
        );
        registry.register(
            "weir_task_failures",
            "Failed task operations, by batch phase and failure class",
            self.task_failures.clone(),
        );
        registry.register(
            "weir_state_restore_seconds",
            "Time to restore a job's state partitions to the last committed batch",
            self.state_restore.clone(),
        );
        registry.register(
            "weir_raft_proposal_seconds",
            "Metadata commands from proposal to applied on this replica",
            self.proposal.clone(),
        );
    }

    /// Records a committed batch's wall time and phases.
    pub fn committed(&self, name: &str, wall: Duration, times: &pb::BatchTimes) {
        self.batch_duration
            .get_or_create(&job(name))
            .observe(wall.as_secs_f64());
        for (phase, us) in [
            ("plan", times.plan_us),
            ("stage_a", times.stage_a_us),
            ("shuffle", times.shuffle_us),
            ("stage_b", times.stage_b_us),
            ("checkpoint", times.checkpoint_us),
            ("commit", times.commit_us),
        ] {
            let labels = vec![("job", name.to_string()), ("phase", phase.to_string())];
            self.batch_phase
                .get_or_create(&labels)
                .observe(us as f64 / 1e6);
        }
    }

    /// Counts a failed task operation.
    pub fn task_failed(&self, name: &str, phase: &str, class: &str) {
        let labels = vec![
            ("job", name.to_string()),
            ("phase", phase.to_string()),
            ("class", class.to_string()),
        ];
        self.task_failures.get_or_create(&labels).inc();
    }

    /// Records a restore of `name`'s state that started at `started`.
    pub fn restored(&self, name: &str, started: Instant) {
        self.state_restore
            .get_or_create(&job(name))
            .observe(started.elapsed().as_secs_f64());
    }
}

/// What the scrape-time collector reads.
#[derive(Clone)]
pub struct DriverSources {
    /// This replica.
    pub replica: ReplicaHandle,
    /// The jobs' live health (filled while this replica drives them).
    pub health: JobHealthBoard,
    /// The sources' lag.
    pub lag: LagBoard,
    /// Registered executors (`None` in `weir local`).
    pub executors: Option<Arc<ExecutorRegistry>>,
}

impl fmt::Debug for DriverSources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverSources").finish_non_exhaustive()
    }
}

/// Reads the driver's gauges and totals at scrape time.
#[derive(Debug)]
pub struct DriverCollector(pub DriverSources);

const STATES: [(pb::JobState, &str); 4] = [
    (pb::JobState::Running, "running"),
    (pb::JobState::Stopped, "stopped"),
    (pb::JobState::Failed, "failed"),
    (pb::JobState::Finished, "finished"),
];

fn state_name(state: i32) -> &'static str {
    STATES
        .iter()
        .find(|(s, _)| *s as i32 == state)
        .map_or("running", |(_, n)| n)
}

impl Collector for DriverCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let s = &self.0;
        let status = s.replica.status();
        let leader = status.leads();
        gauges(
            &mut e,
            "weir_raft_term",
            "Raft term of this replica",
            [(vec![], status.term as f64)],
        )?;
        gauges(
            &mut e,
            "weir_raft_is_leader",
            "1 on the replica that leads",
            [(vec![], f64::from(u8::from(leader)))],
        )?;
        gauges(
            &mut e,
            "weir_raft_leader_id",
            "The leader this replica knows of (0: none)",
            [(vec![], status.leader_id.unwrap_or(0) as f64)],
        )?;
        gauges(
            &mut e,
            "weir_raft_commit_index",
            "Highest committed Raft log index",
            [(vec![], status.commit as f64)],
        )?;
        gauges(
            &mut e,
            "weir_raft_applied_index",
            "Highest Raft log index applied to the metadata",
            [(vec![], status.applied as f64)],
        )?;
        gauges(
            &mut e,
            "weir_raft_voters",
            "Voting members of the Raft group",
            [(vec![], status.voters.len() as f64)],
        )?;
        // Job figures come from the leader only, so that sums over
        // replicas count each job once.
        if !leader {
            return Ok(());
        }
        if let Some(registry) = &s.executors {
            let all = registry.all();
            let alive = all.iter().filter(|x| x.alive).count();
            gauges(
                &mut e,
                "weir_executors",
                "Executors the leader knows, by state",
                [
                    (vec![("state", "alive".into())], alive as f64),
                    (vec![("state", "dead".into())], (all.len() - alive) as f64),
                ],
            )?;
        }
        let meta = s.replica.metadata();
        let records = meta.jobs().unwrap_or_default();
        let mut rows = Vec::new();
        for r in &records {
            let Some(spec) = &r.spec else { continue };
            let progress = meta.progress(&spec.name).unwrap_or_default();
            rows.push((spec.name.clone(), r.state, progress));
        }
        let totals = |f: fn(&pb::JobTotals) -> u64| {
            rows.iter()
                .map(move |(n, _, p)| {
                    let t = p
                        .last_commit
                        .as_ref()
                        .and_then(|c| c.totals)
                        .unwrap_or_default();
                    (job(n), f(&t))
                })
                .collect::<Vec<_>>()
        };
        counters(
            &mut e,
            "weir_batches_committed",
            "Batches committed over the job's life",
            totals(|t| t.batches),
        )?;
        counters(
            &mut e,
            "weir_records_in",
            "Records read from the source",
            totals(|t| t.records_in),
        )?;
        counters(
            &mut e,
            "weir_records_out",
            "Records written to the sink",
            totals(|t| t.records_out),
        )?;
        counters(
            &mut e,
            "weir_records_skipped",
            "Records skipped as bad (on_error: skip or dead_letter)",
            totals(|t| t.records_skipped),
        )?;
        counters(
            &mut e,
            "weir_records_late",
            "Records behind the watermark, dropped",
            totals(|t| t.records_late),
        )?;
        counters(
            &mut e,
            "weir_records_lost",
            "Records deleted by source retention before they were read",
            totals(|t| t.records_lost),
        )?;
        gauges(
            &mut e,
            "weir_last_committed_batch",
            "Id of the job's newest committed batch",
            rows.iter()
                .map(|(n, _, p)| (job(n), p.last_committed() as f64)),
        )?;
        gauges(
            &mut e,
            "weir_job_state",
            "1 for the job's current state",
            rows.iter().flat_map(|(n, state, _)| {
                STATES.iter().map(move |(_, name)| {
                    (
                        vec![("job", n.clone()), ("state", name.to_string())],
                        f64::from(u8::from(state_name(*state) == *name)),
                    )
                })
            }),
        )?;
        gauges(
            &mut e,
            "weir_watermark_seconds",
            "Event-time watermark of the newest committed batch",
            rows.iter().filter_map(|(n, _, p)| {
                let w = p.last_plan.as_ref()?.watermark_ms;
                (w != i64::MIN && w != i64::MAX).then(|| (job(n), w as f64 / 1000.0))
            }),
        )?;
        let live = s.health.all();
        let running: Vec<_> = live
            .iter()
            .filter(|(n, _)| {
                rows.iter()
                    .any(|(m, st, _)| m == n && *st == pb::JobState::Running as i32)
            })
            .collect();
        gauges(
            &mut e,
            "weir_job_degraded",
            "1 while the job's source, state store or sink is unreachable and its batches are retried",
            running
                .iter()
                .map(|(n, h)| (job(n), f64::from(u8::from(h.degraded.is_some())))),
        )?;
        gauges(
            &mut e,
            "weir_scheduling_delay_seconds",
            "How late the last committed batch started after its interval tick",
            running
                .iter()
                .map(|(n, h)| (job(n), h.scheduling_delay_ms as f64 / 1000.0)),
        )?;
        let partition =
            |n: &str, p: u32| vec![("job", n.to_string()), ("partition", p.to_string())];
        gauges(
            &mut e,
            "weir_state_keys",
            "Entries in each state partition after the last batch",
            running.iter().flat_map(|(n, h)| {
                h.state_sizes
                    .iter()
                    .map(|s| (partition(n, s.partition), s.keys as f64))
            }),
        )?;
        gauges(
            &mut e,
            "weir_state_bytes",
            "Memory each state partition holds after the last batch",
            running.iter().flat_map(|(n, h)| {
                h.state_sizes
                    .iter()
                    .map(|s| (partition(n, s.partition), s.bytes as f64))
            }),
        )?;
        let lags: Vec<_> = rows
            .iter()
            .filter_map(|(n, _, _)| s.lag.get(n).map(|l| (n.clone(), l)))
            .collect();
        gauges(
            &mut e,
            "weir_source_lag_records",
            "Records in each source partition that no committed batch has read",
            lags.iter().flat_map(|(n, l)| {
                l.partitions
                    .iter()
                    .map(|p| (partition(n, p.partition), p.lag as f64))
            }),
        )
    }
}
