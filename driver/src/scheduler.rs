//! The batch loop of one job on the leader: recover, plan, run stage A and
//! stage B, decide the commit, finalize the sinks, repeat.
//!
//! Exactly-once rests on three rules: a batch's plan is durable before any
//! task runs (so a replay reads the same ranges); the commit decision is
//! durable before any sink output is published (so a batch is either
//! re-run from scratch or finished, never half of each); and state is
//! restored to the last committed batch before a new batch runs.

use crate::kafka::KafkaLister;
use crate::metadata::{command, MetaError, MetadataStore};
use crate::planner::{active_ranges, plan_next, NextBatch, OffsetsLister, PlanError};
use crate::runner::{FailureKind, TaskFailure, TaskRunner};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{info, warn};
use weir_proto::failpoint;
use weir_proto::pb::{self, step::Kind};
use weir_proto::spec::fingerprint;

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
    /// A resubmitted spec differs from the stored one.
    #[error("job {job} exists with a different spec (fingerprint {stored}, submitted {submitted}); stop it or use a new name")]
    SpecChanged {
        /// Job name.
        job: String,
        /// Stored fingerprint.
        stored: String,
        /// Submitted fingerprint.
        submitted: String,
    },
}

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

/// Settings of the batch loop.
#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// Return [`Outcome::Finished`] once a finite source is done.
    pub exit_when_idle: bool,
    /// First backoff after a failed batch (doubles up to 30 s).
    pub retry_backoff: Duration,
    /// Recoveries from lost state tried for one batch before failing the job.
    pub max_state_recoveries: u32,
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            exit_when_idle: false,
            retry_backoff: Duration::from_millis(200),
            max_state_recoveries: 3,
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Stores a job, or resumes the stored job of the same name and spec
/// (Spark's `getOrCreate`). Returns the record and whether it was resumed.
pub fn submit(
    meta: &dyn MetadataStore,
    spec: pb::JobSpec,
) -> Result<(pb::JobRecord, bool), DriverError> {
    let fp = fingerprint(&spec);
    if let Some(mut existing) = meta.job(&spec.name)? {
        if existing.fingerprint == fp {
            if existing.state != pb::JobState::Running as i32 {
                // Submitting a stopped, failed or finished job runs it again
                // from its checkpoint.
                meta.apply(command::job_state(&spec.name, pb::JobState::Running, ""))?;
                existing.state = pb::JobState::Running as i32;
                existing.error.clear();
            }
            return Ok((existing, true));
        }
        return Err(DriverError::SpecChanged {
            job: spec.name.clone(),
            stored: existing.fingerprint,
            submitted: fp,
        });
    }
    let record = pb::JobRecord {
        spec: Some(spec),
        fingerprint: fp,
        created_at_ms: now_ms(),
        state: pb::JobState::Running as i32,
        error: String::new(),
    };
    meta.apply(command::put_job(record.clone()))?;
    Ok((record, false))
}

/// Drives one job.
pub struct JobDriver {
    meta: Arc<dyn MetadataStore>,
    runner: Arc<dyn TaskRunner>,
    record: pb::JobRecord,
    options: DriverOptions,
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

    fn stateful(&self) -> bool {
        self.spec()
            .pipeline
            .iter()
            .any(|s| matches!(s.kind, Some(Kind::Aggregate(_))))
    }

    /// Runs the job until `shutdown` is set or (with `exit_when_idle`) its
    /// finite source is done, reporting every committed batch.
    pub fn run(
        &self,
        shutdown: &AtomicBool,
        report: &mut dyn FnMut(&BatchReport),
    ) -> Result<Outcome, DriverError> {
        let outcome = self.run_batches(shutdown, report);
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
        let mut backoff = self.options.retry_backoff;
        loop {
            if shutdown.load(Ordering::SeqCst) {
                return Ok(Outcome::Stopped);
            }
            let progress = self.meta.progress(self.name())?;
            let now = now_ms();
            let elapsed = u64::try_from(now - self.record.created_at_ms).unwrap_or(0);
            let next = match plan_next(
                self.spec(),
                progress.last_plan.as_ref(),
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
                    if !sleep_until(Instant::now() + backoff, shutdown) {
                        return Ok(Outcome::Stopped);
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
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
                    self.meta.apply(command::planned(plan.clone()))?;
                    failpoint::hit("batch-planned");
                    self.execute(&plan, delay, shutdown, report)?;
                    // The next batch starts at the next tick, or now if behind.
                    next_tick += interval;
                    if next_tick < Instant::now() {
                        next_tick = Instant::now();
                    }
                }
                NextBatch::Finished if self.options.exit_when_idle => return Ok(Outcome::Finished),
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
        self.retry(0, shutdown, || self.runner.deploy(&self.record))?;
        let progress = self.meta.progress(self.name())?;
        if let Some(pending) = &progress.pending {
            if let Some(commit) = &pending.committing {
                info!(job = %self.name(), batch_id = commit.batch_id, "finishing the commit of a batch decided before the restart");
                self.finish_commit(commit, shutdown)?;
            }
        }
        self.retry(0, shutdown, || self.rebuild_state())?;
        let progress = self.meta.progress(self.name())?;
        if let Some(pending) = progress.pending {
            info!(job = %self.name(), batch_id = pending.plan.batch_id, "re-running a planned batch with its recorded ranges");
            self.execute(&pending.plan, Duration::ZERO, shutdown, report)?;
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
            kind: FailureKind::Internal,
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
        let restored = self.runner.restore(tasks)?;
        let from = restored
            .iter()
            .map(|r| r.restored_version)
            .min()
            .unwrap_or(target);
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
        Ok(())
    }

    /// Stage A then stage B of a batch; returns the commit record to decide.
    fn run_stages(
        &self,
        plan: &pb::BatchPlan,
        replay: bool,
    ) -> Result<pb::BatchCommit, TaskFailure> {
        let job = self.name().to_string();
        let a_tasks = active_ranges(plan)
            .map(|r| pb::StageATask {
                job: job.clone(),
                batch_id: plan.batch_id,
                range: Some(*r),
                watermark_ms: plan.watermark_ms,
                replay,
            })
            .collect();
        let a = self.runner.stage_a(a_tasks)?;
        let mut commit = pb::BatchCommit {
            job: job.clone(),
            batch_id: plan.batch_id,
            max_event_time_ms: i64::MIN,
            records_lost: plan.lost.iter().map(|r| r.end - r.start).sum(),
            ..Default::default()
        };
        for r in &a {
            commit.records_in += r.records_in;
            commit.records_skipped += r.records_skipped;
            commit.records_late += r.records_late;
            commit.records_out += r.records_out;
            commit.max_event_time_ms = commit.max_event_time_ms.max(r.max_event_time_ms);
        }
        if self.stateful() {
            let sources: Vec<u32> = active_ranges(plan).map(|r| r.partition).collect();
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
            b.sort_by_key(|r| r.partition);
            commit.records_out += b.iter().map(|r| r.records_out).sum::<u64>();
            commit.durable_versions = b.iter().map(|r| r.durable_version).collect();
        }
        Ok(commit)
    }

    /// Runs a planned batch to its commit, retrying failures by their kind.
    fn execute(
        &self,
        plan: &pb::BatchPlan,
        scheduling_delay: Duration,
        shutdown: &AtomicBool,
        report: &mut dyn FnMut(&BatchReport),
    ) -> Result<(), DriverError> {
        let started = Instant::now();
        let mut recoveries = 0;
        let mut backoff = self.options.retry_backoff;
        let mut commit = loop {
            match self.run_stages(plan, false) {
                Ok(c) => break c,
                Err(f) => {
                    warn!(job = %self.name(), batch_id = plan.batch_id, kind = ?f.kind, error = %f.message, "batch failed");
                    match f.kind {
                        FailureKind::User => return Err(self.failed(plan.batch_id, f)),
                        FailureKind::Internal
                            if recoveries >= self.options.max_state_recoveries =>
                        {
                            return Err(self.failed(plan.batch_id, f))
                        }
                        FailureKind::Internal | FailureKind::OutputLost => recoveries += 1,
                        FailureKind::External => {}
                    }
                    if !sleep_until(Instant::now() + backoff, shutdown) {
                        return Ok(());
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    self.retry(plan.batch_id, shutdown, || self.rebuild_state())?;
                }
            }
        };
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
        failpoint::hit("before-committing");
        self.meta.apply(command::committing(commit.clone()))?;
        failpoint::hit("after-committing");
        self.finish_commit(&commit, shutdown)?;
        report(&BatchReport {
            commit,
            duration: started.elapsed(),
            scheduling_delay,
        });
        Ok(())
    }

    /// Publishes a decided batch's output and records it as committed.
    /// Retries until it succeeds: the decision cannot be taken back.
    fn finish_commit(
        &self,
        commit: &pb::BatchCommit,
        shutdown: &AtomicBool,
    ) -> Result<(), DriverError> {
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
        let mut rerun = 0;
        loop {
            match self.retry(commit.batch_id, shutdown, || {
                self.runner.commit(tasks.clone())
            }) {
                Ok(()) => break,
                Err(DriverError::JobFailed { failure, .. })
                    if failure.kind == FailureKind::OutputLost
                        && rerun < self.options.max_state_recoveries =>
                {
                    // The decision stands; its output must be produced
                    // again. The batch is deterministic (same ranges, state
                    // restored to the batch before) and sinks skip the
                    // partitions whose output already committed.
                    rerun += 1;
                    warn!(job = %self.name(), batch_id = commit.batch_id, error = %failure.message, "pre-committed output was lost before its commit; re-running the batch to produce it again");
                    self.reproduce(commit.batch_id, shutdown)?;
                }
                Err(e) => return Err(e),
            }
        }
        self.meta
            .apply(command::committed(self.name(), commit.batch_id))?;
        failpoint::hit("after-committed");
        Ok(())
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
        self.retry(batch_id, shutdown, || {
            self.rebuild_state()?;
            self.run_stages(&plan, false).map(|_| ())
        })
    }

    /// Retries an operation with backoff while its failures are not the
    /// job's fault.
    fn retry<T>(
        &self,
        batch_id: u64,
        shutdown: &AtomicBool,
        mut op: impl FnMut() -> Result<T, TaskFailure>,
    ) -> Result<T, DriverError> {
        let mut backoff = self.options.retry_backoff;
        let mut attempts = 0;
        loop {
            match op() {
                Ok(v) => return Ok(v),
                Err(f) if matches!(f.kind, FailureKind::User | FailureKind::OutputLost) => {
                    return Err(self.failed(batch_id, f))
                }
                Err(f)
                    if attempts >= self.options.max_state_recoveries
                        && f.kind == FailureKind::Internal =>
                {
                    return Err(self.failed(batch_id, f))
                }
                Err(f) => {
                    attempts += 1;
                    warn!(job = %self.name(), batch_id, error = %f.message, "retrying after failure");
                    if !sleep_until(Instant::now() + backoff, shutdown) {
                        return Err(self.failed(batch_id, f));
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
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
