//! The batch loop of one job on the leader: recover, plan, run stage A and
//! stage B, decide the commit, finalize the sinks, repeat. What it does
//! after a failure is decided by [`policy`], in one place.
//!
//! Exactly-once rests on three rules: a batch's plan is durable before any
//! task runs (so a replay reads the same ranges); the commit decision is
//! durable before any sink output is published (so a batch is either
//! re-run from scratch or finished, never half of each); and state is
//! restored to the last committed batch before a new batch runs.

pub mod policy;
#[cfg(test)]
mod tests;

use crate::error::DriverError;
use crate::job_health::{BatchTiming, JobHealthBoard};
use crate::kafka::KafkaLister;
use crate::metadata::{command, MetadataStore};
use crate::metrics::DriverMetrics;
use crate::planner::{active_ranges, plan_next, NextBatch, OffsetsLister, PlanError};
use crate::report_group::GroupReport;
use crate::runner::{TaskFailure, TaskRunner};
use crate::submit::check_format;
use policy::{Phase, Step};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};
use weir_proto::failpoint;
use weir_proto::pb::{self, step::Kind};
use weir_proto::FailureClass;

/// What one committed batch did, for status lines and logs.
#[derive(Debug, Clone)]
pub struct BatchReport {
    /// The commit record (with job totals).
    pub commit: pb::BatchCommit,
    /// Time from the batch's planned start to its commit.
    pub duration: Duration,
    /// How late the batch started after its interval tick.
    pub scheduling_delay: Duration,
}

/// How the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A finite source was fully processed and committed.
    Finished,
    /// Shutdown was requested; the job resumes from its checkpoint.
    Stopped,
}

/// Longest wait between retries of a batch whose source, state store or
/// sink is unreachable: an outage is noticed and ended within this.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Settings of the batch loop.
#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// Return [`Outcome::Finished`] once a finite source is done, or once a
    /// plan finds nothing new on a Kafka source (`weir local
    /// --exit-when-idle`).
    pub exit_when_idle: bool,
    /// Return [`Outcome::Finished`] once a finite source (the generator's
    /// `total`) is done; a Kafka source never ends. What the cluster does.
    pub finish_finite_sources: bool,
    /// First backoff after a failed batch (doubles up to [`MAX_BACKOFF`]).
    pub retry_backoff: Duration,
    /// Recoveries from lost state tried for one batch before failing the job.
    pub max_state_recoveries: u32,
    /// Where the job's live health (degraded, scheduling delay) is shown.
    pub health: JobHealthBoard,
    /// The driver's metrics.
    pub metrics: DriverMetrics,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            exit_when_idle: false,
            finish_finite_sources: false,
            retry_backoff: Duration::from_millis(200),
            max_state_recoveries: 3,
            health: JobHealthBoard::default(),
            metrics: DriverMetrics::default(),
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Drives one job.
pub struct JobDriver {
    meta: Arc<dyn MetadataStore>,
    runner: Arc<dyn TaskRunner>,
    record: pb::JobRecord,
    options: DriverOptions,
}

/// When a batch's `planned` record is durable, as [`JobDriver::execute`]
/// starts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durable {
    /// It is.
    Already,
    /// It was submitted: stage A runs meanwhile, the rest after it.
    AfterStageA,
}

impl JobDriver {
    /// A driver for the stored job `name`.
    pub fn new(
        meta: Arc<dyn MetadataStore>,
        runner: Arc<dyn TaskRunner>,
        name: &str,
        options: DriverOptions,
    ) -> Result<Self, DriverError> {
        let record = meta
            .job(name)?
            .ok_or_else(|| DriverError::UnknownJob(name.to_string()))?;
        // Never run a spec this build cannot read (a newer build stored it).
        if let Some(spec) = &record.spec {
            check_format(name, "the stored", spec)?;
        }
        Ok(JobDriver {
            meta,
            runner,
            record,
            options,
        })
    }

    fn spec(&self) -> &pb::JobSpec {
        self.record.spec.as_ref().expect("stored jobs have a spec")
    }

    fn name(&self) -> &str {
        &self.spec().name
    }

    /// Whether a stored record differs from the one this driver runs in a
    /// way the batch loop must pick up.
    fn changed(&self, stored: &pb::JobRecord) -> bool {
        stored.fingerprint != self.record.fingerprint
            || stored.state_generation != self.record.state_generation
            || stored.version != self.record.version
    }

    /// The plan to continue from when `--from` chose offsets and no batch
    /// was committed since: ranges ending at the chosen offsets.
    fn offsets_from(&self, progress: &crate::metadata::JobProgress) -> Option<pb::BatchPlan> {
        let r = &self.record;
        if r.offsets_from.is_empty() || progress.last_committed() != r.offsets_from_batch {
            return None;
        }
        Some(pb::BatchPlan {
            job: self.name().to_string(),
            batch_id: r.offsets_from_batch,
            ranges: r.offsets_from.clone(),
            watermark_ms: i64::MIN,
            ..Default::default()
        })
    }

    fn stateful(&self) -> bool {
        self.spec()
            .pipeline
            .iter()
            .any(|s| matches!(s.kind, Some(Kind::Aggregate(_))))
    }

    /// Whether stage A has no effect beyond its shuffle output, which is
    /// keyed by the plan's ranges (a stage B never merges another plan's):
    /// then it can run while the plan's record becomes durable. Not so
    /// without state (stage A pre-commits the sink's output) nor with a
    /// dead-letter topic (stage A commits the range's dead letters).
    fn stage_a_only_feeds_the_shuffle(&self) -> bool {
        self.stateful() && self.spec().on_error() != pb::ErrorPolicy::DeadLetter
    }

    /// Runs the job until `shutdown` is set or (with `exit_when_idle`) its
    /// finite source is done, reporting every committed batch.
    pub fn run(
        &self,
        shutdown: &AtomicBool,
        report: &mut dyn FnMut(&BatchReport),
    ) -> Result<Outcome, DriverError> {
        let mut upgraded: Option<JobDriver> = None;
        let outcome = loop {
            let driver = upgraded.as_ref().unwrap_or(self);
            match driver.run_batches(shutdown, report) {
                Err(DriverError::Restart) => {
                    info!(job = %self.name(), "the job's spec changed: continuing with the new version at this batch boundary");
                    match JobDriver::new(
                        self.meta.clone(),
                        self.runner.clone(),
                        self.name(),
                        self.options.clone(),
                    ) {
                        Ok(d) => upgraded = Some(d),
                        Err(e) => break Err(e),
                    }
                }
                // Told to stop while waiting to retry: the job is not
                // failed, the next driver replays the batch.
                Err(e @ DriverError::Interrupted { .. }) => {
                    info!(job = %self.name(), reason = %e, "stopped while retrying");
                    break Ok(Outcome::Stopped);
                }
                other => break other,
            }
        };
        // A finished job's last commit is durable before its end is recorded.
        let outcome = match (outcome, self.meta.settled()) {
            (Ok(Outcome::Finished), Err(e)) => Err(e.into()),
            (outcome, _) => outcome,
        };
        // Record how the job ended, so that no driver restarts it by itself;
        // failing to record is only logged (the outcome matters more).
        let change = match &outcome {
            Ok(Outcome::Finished) => Some((pb::JobState::Finished, String::new())),
            Err(e @ (DriverError::JobFailed { .. } | DriverError::Source { .. })) => {
                Some((pb::JobState::Failed, e.to_string()))
            }
            _ => None,
        };
        if let Some((state, error)) = change {
            if let Err(e) = self
                .meta
                .apply(command::job_state(self.name(), state, &error))
            {
                warn!(job = %self.name(), error = %e, "could not record the job's end state");
            }
        }
        outcome
    }

    fn run_batches(
        &self,
        shutdown: &AtomicBool,
        report: &mut dyn FnMut(&BatchReport),
    ) -> Result<Outcome, DriverError> {
        self.recover(shutdown, report)?;
        let interval = Duration::from_millis(self.spec().batch_interval_ms.max(1));
        let started = Instant::now();
        let mut next_tick = started;
        let kafka = matches!(
            self.spec().source.as_ref().and_then(|s| s.kind.as_ref()),
            Some(pb::source::Kind::Kafka(_))
        );
        let lister = KafkaLister::default();
        let lister: Option<&dyn OffsetsLister> = kafka.then_some(&lister);
        let reporter = match self.spec().source.as_ref().and_then(|s| s.kind.as_ref()) {
            Some(pb::source::Kind::Kafka(k)) => GroupReport::start(self.name(), k),
            _ => None,
        };
        let mut backoff = self.options.retry_backoff;
        loop {
            if shutdown.load(Ordering::SeqCst) {
                return Ok(Outcome::Stopped);
            }
            let planned_at = Instant::now();
            // An upgrade stored a new record: continue with it between batches.
            match self.meta.job(self.name())? {
                Some(r) if self.changed(&r) => return Err(DriverError::Restart),
                _ => {}
            }
            // An executor joined: move state partitions to it between
            // batches (only the moved ones are read back from the store).
            if self.stateful() && self.runner.rebalance_wanted(self.name()) {
                info!(job = %self.name(), "executors changed: rebalancing state partitions");
                self.attempt(Phase::RestoreState, 0, shutdown, &mut || {
                    self.rebuild_state()
                })?;
            }
            let progress = self.meta.progress(self.name())?;
            let now = now_ms();
            let elapsed = u64::try_from(now - self.record.created_at_ms).unwrap_or(0);
            let from = self.offsets_from(&progress);
            let next = match plan_next(
                self.spec(),
                from.as_ref().or(progress.last_plan.as_ref()),
                progress.last_commit.as_ref(),
                elapsed,
                now,
                lister,
            ) {
                Ok(next) => {
                    backoff = self.options.retry_backoff;
                    next
                }
                Err(PlanError::Unavailable(e)) => {
                    // Nothing is planned, so nothing advances: the next
                    // batch starts where the last committed one ended.
                    warn!(job = %self.name(), error = %e, retry_in_ms = backoff.as_millis() as u64, "source unavailable; job degraded, retrying");
                    self.degraded(&format!("source unavailable: {e}"));
                    if !sleep_until(Instant::now() + backoff, shutdown) {
                        return Ok(Outcome::Stopped);
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
                Err(error) => {
                    return Err(DriverError::Source {
                        job: self.name().to_string(),
                        error,
                    })
                }
            };
            if let NextBatch::Run(plan) = &next {
                for gap in &plan.lost {
                    warn!(job = %self.name(), batch_id = plan.batch_id, partition = gap.partition, from = gap.start, to = gap.end, records = gap.end - gap.start, "source offsets were deleted before the job read them; skipped (on_missing: skip_to_earliest)");
                }
            }
            match next {
                // A Kafka source never ends; idle means caught up.
                NextBatch::Wait if kafka && self.options.exit_when_idle => {
                    return Ok(Outcome::Finished)
                }
                NextBatch::Run(plan) => {
                    let delay = Instant::now().saturating_duration_since(next_tick);
                    let durable = if self.stage_a_only_feeds_the_shuffle() {
                        self.meta.submit(command::planned(plan.clone()))?;
                        Durable::AfterStageA
                    } else {
                        self.meta.apply(command::planned(plan.clone()))?;
                        failpoint::hit("batch-planned");
                        Durable::Already
                    };
                    self.execute(&plan, durable, planned_at, delay, shutdown, report)?;
                    if let Some(r) = &reporter {
                        r.offer(plan.ranges.iter().map(|r| (r.partition, r.end)).collect());
                    }
                    // The next batch starts at the next tick, or now if behind.
                    next_tick += interval;
                    if next_tick < Instant::now() {
                        next_tick = Instant::now();
                    }
                }
                NextBatch::Finished
                    if self.options.exit_when_idle || self.options.finish_finite_sources =>
                {
                    return Ok(Outcome::Finished)
                }
                NextBatch::Finished | NextBatch::Wait => next_tick = Instant::now() + interval,
            }
            sleep_until(next_tick, shutdown);
        }
    }

    /// Brings the job to a clean state after a (re)start: finishes a batch
    /// whose commit was decided, rebuilds state up to the last committed
    /// batch, then re-runs a batch that was planned but not committed.
    fn recover(
        &self,
        shutdown: &AtomicBool,
        report: &mut dyn FnMut(&BatchReport),
    ) -> Result<(), DriverError> {
        self.attempt(Phase::Deploy, 0, shutdown, &mut || {
            self.runner.deploy(&self.record)
        })?;
        let progress = self.meta.progress(self.name())?;
        if let Some(pending) = &progress.pending {
            if let Some(commit) = &pending.committing {
                info!(job = %self.name(), batch_id = commit.batch_id, "finishing the commit of a batch decided before the restart");
                self.finish_commit(commit, shutdown, None)?;
            }
        }
        self.attempt(Phase::RestoreState, 0, shutdown, &mut || {
            self.rebuild_state()
        })?;
        let progress = self.meta.progress(self.name())?;
        if let Some(pending) = progress.pending {
            info!(job = %self.name(), batch_id = pending.plan.batch_id, "re-running a planned batch with its recorded ranges");
            self.execute(
                &pending.plan,
                Durable::Already,
                Instant::now(),
                Duration::ZERO,
                shutdown,
                report,
            )?;
        }
        Ok(())
    }

    /// Restores every state partition to the last committed batch: the
    /// newest durable checkpoint, then the committed batches after it
    /// replayed without output.
    fn rebuild_state(&self) -> Result<(), TaskFailure> {
        if !self.stateful() {
            return Ok(());
        }
        let internal = |e: DriverError| TaskFailure {
            class: FailureClass::Internal,
            message: e.to_string(),
        };
        let progress = self
            .meta
            .progress(self.name())
            .map_err(|e| internal(e.into()))?;
        let target = progress.last_committed();
        let tasks = (0..self.spec().state_partitions)
            .map(|partition| pb::RestoreTask {
                job: self.name().to_string(),
                partition,
                target_version: target,
            })
            .collect();
        let started = Instant::now();
        let restored = self.runner.restore(tasks)?;
        // A state generation holds only the batches after its base.
        let from = restored
            .iter()
            .map(|r| r.restored_version)
            .min()
            .unwrap_or(target)
            .max(self.record.state_base_batch);
        if from < target {
            info!(job = %self.name(), from, target, "replaying committed batches to rebuild state");
        }
        for batch_id in from + 1..=target {
            let plan = self
                .meta
                .plan(self.name(), batch_id)
                .map_err(|e| internal(e.into()))?
                .ok_or_else(|| {
                    internal(DriverError::MissingPlan {
                        job: self.name().to_string(),
                        batch_id,
                    })
                })?;
            self.run_stages(&plan, true)?;
        }
        self.options.metrics.restored(self.name(), started);
        Ok(())
    }

    /// Stage A then stage B of a batch; returns the commit record to decide
    /// and the batch's task work on its critical path (the slowest task of
    /// each stage), in microseconds.
    fn run_stages(
        &self,
        plan: &pb::BatchPlan,
        replay: bool,
    ) -> Result<(pb::BatchCommit, u64), TaskFailure> {
        let a = self.stage_a(plan, replay)?;
        self.stage_b(plan, replay, a)
    }

    /// Stage A of a batch: its results, in source-range order, and how
    /// long it took.
    fn stage_a(&self, plan: &pb::BatchPlan, replay: bool) -> Result<StageA, TaskFailure> {
        let started = Instant::now();
        let a_tasks = active_ranges(plan)
            .map(|r| pb::StageATask {
                job: self.name().to_string(),
                batch_id: plan.batch_id,
                range: Some(*r),
                watermark_ms: plan.watermark_ms,
                replay,
            })
            .collect();
        let results = self.runner.stage_a(a_tasks)?;
        Ok(StageA {
            results,
            took: started.elapsed(),
        })
    }

    /// The commit record of a batch from its stage-A results `a`, after
    /// running its stage B (jobs with state).
    fn stage_b(
        &self,
        plan: &pb::BatchPlan,
        replay: bool,
        a: StageA,
    ) -> Result<(pb::BatchCommit, u64), TaskFailure> {
        let job = self.name().to_string();
        let started = Instant::now();
        let StageA { results: a, took } = a;
        let mut work_us = a.iter().map(|r| r.work_us).max().unwrap_or(0);
        let mut commit = pb::BatchCommit {
            job: job.clone(),
            batch_id: plan.batch_id,
            max_event_time_ms: i64::MIN,
            records_lost: plan.lost.iter().map(|r| r.end - r.start).sum(),
            times: Some(pb::BatchTimes {
                stage_a_us: took.as_micros() as u64,
                ranges: a.len() as u32,
                ..Default::default()
            }),
            ..Default::default()
        };
        for r in &a {
            commit.records_in += r.records_in;
            commit.records_skipped += r.records_skipped;
            commit.records_late += r.records_late;
            commit.records_out += r.records_out;
            commit.max_event_time_ms = commit.max_event_time_ms.max(r.max_event_time_ms);
        }
        self.options
            .health
            .lookups(self.name(), a.iter().flat_map(|r| &r.lookups));
        if self.stateful() {
            let sources: Vec<pb::OffsetRange> = active_ranges(plan).copied().collect();
            let b_tasks = (0..self.spec().state_partitions)
                .map(|partition| pb::StageBTask {
                    job: job.clone(),
                    batch_id: plan.batch_id,
                    partition,
                    sources: sources.clone(),
                    watermark_ms: plan.watermark_ms,
                    checkpoint: plan.checkpoint,
                    replay,
                })
                .collect();
            let mut b = self.runner.stage_b(b_tasks)?;
            work_us += b.iter().map(|r| r.work_us).max().unwrap_or(0);
            b.sort_by_key(|r| r.partition);
            self.options
                .health
                .lookups(self.name(), b.iter().flat_map(|r| &r.lookups));
            commit.records_out += b.iter().map(|r| r.records_out).sum::<u64>();
            commit.durable_versions = b.iter().map(|r| r.durable_version).collect();
            if let Some(t) = commit.times.as_mut() {
                t.stage_b_us = started.elapsed().as_micros() as u64;
                t.shuffle_us = b.iter().map(|r| r.fetch_us).max().unwrap_or(0);
                t.checkpoint_us = b.iter().map(|r| r.checkpoint_us).max().unwrap_or(0);
            }
            if !replay {
                self.options.health.state_sizes(
                    self.name(),
                    b.iter()
                        .map(|r| pb::PartitionSize {
                            partition: r.partition,
                            keys: r.state_keys,
                            bytes: r.state_bytes,
                            durable_version: r.durable_version,
                        })
                        .collect(),
                );
            }
        }
        Ok((commit, work_us))
    }

    /// Runs a planned batch to its commit, acting on failures as the batch
    /// policy says.
    /// `planned_at` is when its planning started.
    fn execute(
        &self,
        plan: &pb::BatchPlan,
        durable: Durable,
        planned_at: Instant,
        scheduling_delay: Duration,
        shutdown: &AtomicBool,
        report: &mut dyn FnMut(&BatchReport),
    ) -> Result<(), DriverError> {
        let started = Instant::now();
        // Stage A while the `planned` record is on its way to the quorum;
        // nothing after it runs unless the record is durable.
        let mut ran_a = match durable {
            Durable::AfterStageA => {
                let a = self.stage_a(plan, false);
                failpoint::hit("before-planned-durable");
                self.meta.settled()?;
                failpoint::hit("batch-planned");
                Some(a)
            }
            Durable::Already => None,
        };
        let (mut commit, work_us) = self.attempt(
            Phase::Stages,
            plan.batch_id,
            shutdown,
            &mut || match ran_a.take() {
                Some(a) => a.and_then(|a| self.stage_b(plan, false, a)),
                None => self.run_stages(plan, false),
            },
        )?;
        let previous = self.meta.progress(self.name())?.last_commit;
        let before = previous.as_ref().and_then(|c| c.totals).unwrap_or_default();
        commit.max_event_time_ms = commit
            .max_event_time_ms
            .max(previous.map_or(i64::MIN, |c| c.max_event_time_ms));
        commit.totals = Some(pb::JobTotals {
            batches: before.batches + 1,
            records_in: before.records_in + commit.records_in,
            records_out: before.records_out + commit.records_out,
            records_skipped: before.records_skipped + commit.records_skipped,
            records_late: before.records_late + commit.records_late,
            records_lost: before.records_lost + commit.records_lost,
        });
        commit.committed_at_ms = now_ms();
        commit.duration_ms = started.elapsed().as_millis() as u64;
        let plan_us = started.duration_since(planned_at).as_micros() as u64;
        if let Some(t) = commit.times.as_mut() {
            t.plan_us = plan_us;
            t.scheduling_delay_us = scheduling_delay.as_micros() as u64;
            t.planned_at_ms = now_ms() - planned_at.elapsed().as_millis() as i64;
        }
        let stages_done = started.elapsed();
        let deciding = Instant::now();
        failpoint::hit("before-committing");
        self.meta.apply(command::committing(commit.clone()))?;
        failpoint::hit("after-committing");
        let decided = started.elapsed();
        let commit_us = self.finish_commit(&commit, shutdown, Some(deciding))?;
        let wall = planned_at.elapsed();
        if let Some(times) = commit.times.as_mut() {
            times.commit_us = commit_us;
            self.options.metrics.committed(self.name(), wall, times);
        }
        debug!(
            job = %self.name(),
            batch_id = plan.batch_id,
            plan_us,
            stages_us = stages_done.as_micros() as u64,
            work_us,
            decide_us = (decided - stages_done).as_micros() as u64,
            publish_us = (started.elapsed() - decided).as_micros() as u64,
            "batch timing"
        );
        self.options.health.committed(
            self.name(),
            BatchTiming {
                scheduling_delay_ms: scheduling_delay.as_millis() as u64,
                batch_ms: wall.as_millis() as u64,
                overhead_us: (wall.as_micros() as u64).saturating_sub(work_us),
            },
        );
        report(&BatchReport {
            commit,
            duration: started.elapsed(),
            scheduling_delay,
        });
        Ok(())
    }

    /// Publishes a decided batch's output and records it as committed.
    /// Retries until it succeeds: the decision cannot be taken back.
    /// `deciding` is when deciding the commit started (the commit phase is
    /// measured from there); `None` when it was decided before a restart.
    fn finish_commit(
        &self,
        commit: &pb::BatchCommit,
        shutdown: &AtomicBool,
        deciding: Option<Instant>,
    ) -> Result<u64, DriverError> {
        let partitions: Vec<u32> = if self.stateful() {
            (0..self.spec().state_partitions).collect()
        } else {
            let plan = self
                .meta
                .plan(self.name(), commit.batch_id)?
                .ok_or_else(|| DriverError::MissingPlan {
                    job: self.name().to_string(),
                    batch_id: commit.batch_id,
                })?;
            active_ranges(&plan).map(|r| r.partition).collect()
        };
        let tasks: Vec<pb::CommitTask> = partitions
            .into_iter()
            .map(|partition| pb::CommitTask {
                job: self.name().to_string(),
                batch_id: commit.batch_id,
                partition,
            })
            .collect();
        self.attempt(Phase::Commit, commit.batch_id, shutdown, &mut || {
            self.runner.commit(tasks.clone())
        })?;
        // Nothing waits for this record: the sinks hold the output, and a
        // restart that does not find it finishes the commit again (sink
        // commits are idempotent). The next metadata call waits for it, and
        // the next plan enters the log after it.
        let commit_us = deciding.map_or(0, |d| d.elapsed().as_micros() as u64);
        self.meta.submit(command::committed_after(
            self.name(),
            commit.batch_id,
            commit_us,
        ))?;
        // The record may still be on its way to the log's quorum (also in
        // `weir local`, a single-replica group).
        failpoint::hit("after-committed");
        Ok(commit_us)
    }

    /// Re-runs a decided batch whose pre-committed output was lost, up to
    /// its pre-commit: state restored to the batch before it, then stage A
    /// and stage B with the recorded ranges.
    fn reproduce(&self, batch_id: u64, shutdown: &AtomicBool) -> Result<(), DriverError> {
        let plan =
            self.meta
                .plan(self.name(), batch_id)?
                .ok_or_else(|| DriverError::MissingPlan {
                    job: self.name().to_string(),
                    batch_id,
                })?;
        self.attempt(Phase::RestoreState, batch_id, shutdown, &mut || {
            self.rebuild_state()
        })?;
        self.attempt(Phase::Reproduce, batch_id, shutdown, &mut || {
            self.run_stages(&plan, false).map(|_| ())
        })
    }

    /// Shows the job as degraded (see [`JobHealthBoard`]) until its next
    /// committed batch.
    fn degraded(&self, reason: &str) {
        self.options.health.degraded(self.name(), reason, now_ms());
    }

    /// Runs `op` until it succeeds, acting on each failure as the batch
    /// policy ([`policy::next_step`]) says for `phase`. An outside system's
    /// failure shows the job as degraded until its next committed batch.
    fn attempt<T>(
        &self,
        phase: Phase,
        batch_id: u64,
        shutdown: &AtomicBool,
        // `dyn`: the policy's recoveries call `attempt` again, with closures
        // of their own.
        op: &mut dyn FnMut() -> Result<T, TaskFailure>,
    ) -> Result<T, DriverError> {
        let mut recoveries = 0;
        let mut backoff = self.options.retry_backoff;
        loop {
            let failure = match op() {
                Ok(v) => return Ok(v),
                Err(f) => f,
            };
            let step = policy::next_step(
                phase,
                failure.class,
                recoveries,
                self.options.max_state_recoveries,
            );
            warn!(job = %self.name(), batch_id, phase = phase.as_str(), class = %failure.class, next = ?step, error = %failure.message, "task failed");
            self.options.metrics.task_failed(
                self.name(),
                phase.as_str(),
                &failure.class.to_string(),
            );
            if failure.class == FailureClass::External {
                self.degraded(&failure.message);
            }
            if policy::is_recovery(failure.class) {
                recoveries += 1;
            }
            match step {
                Step::FailJob => return Err(self.failed(batch_id, failure)),
                Step::RerunDecided => {
                    warn!(job = %self.name(), batch_id, "pre-committed output was lost before its commit; re-running the batch to produce it again");
                    self.reproduce(batch_id, shutdown)?
                }
                Step::Retry | Step::RebuildAndRetry => {
                    if !sleep_until(Instant::now() + backoff, shutdown) {
                        return Err(DriverError::Interrupted {
                            job: self.name().to_string(),
                            batch_id,
                            failure,
                        });
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    if step == Step::RebuildAndRetry {
                        self.attempt(Phase::RestoreState, batch_id, shutdown, &mut || {
                            self.rebuild_state()
                        })?;
                    }
                }
            }
        }
    }

    fn failed(&self, batch_id: u64, failure: TaskFailure) -> DriverError {
        DriverError::JobFailed {
            job: self.name().to_string(),
            batch_id,
            failure,
        }
    }
}

/// Stage A's results, in source-range order, and its wall time.
struct StageA {
    results: Vec<pb::StageAResult>,
    took: Duration,
}

/// Sleeps until `deadline` in short steps; false if shutdown was requested.
fn sleep_until(deadline: Instant, shutdown: &AtomicBool) -> bool {
    loop {
        if shutdown.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}
