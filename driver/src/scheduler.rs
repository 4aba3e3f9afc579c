//! The batch loop of one job on the leader: recover, plan, run stage A and
//! stage B, decide the commit, finalize the sinks, repeat.
//!
//! Exactly-once rests on three rules: a batch's plan is durable before any
//! task runs (so a replay reads the same ranges); the commit decision is
//! durable before any sink output is published (so a batch is either
//! re-run from scratch or finished, never half of each); and state is
//! restored to the last committed batch before a new batch runs.

use crate::job_health::{BatchTiming, JobHealthBoard};
use crate::kafka::KafkaLister;
use crate::metadata::{command, MetaError, MetadataStore};
use crate::planner::{active_ranges, plan_next, NextBatch, OffsetsLister, PlanError};
use crate::runner::{FailureKind, TaskFailure, TaskRunner};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};
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
    /// The driver was told to stop (shutdown, or this replica stopped
    /// leading) while it waited to retry a failure: the job is not failed,
    /// the next driver replays the batch.
    #[error("job {job}: stopped while retrying batch {batch_id} after: {failure}")]
    Interrupted {
        /// Job name.
        job: String,
        /// The batch being retried.
        batch_id: u64,
        /// The failure being retried.
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
    /// A resubmitted spec changes the state or offsets' meaning and the
    /// options do not allow it.
    #[error("{0}")]
    UpgradeRefused(String),
    /// A spec (submitted or stored) has a format this build does not know.
    #[error("job {job}: {what} spec has format_version {found}, this build reads up to {supported}; upgrade weir before running it (the stored spec is kept as it is)")]
    UnsupportedFormat {
        /// Job name.
        job: String,
        /// "the stored" or "the submitted".
        what: &'static str,
        /// The spec's format version.
        found: u32,
        /// The newest format this build reads.
        supported: u32,
    },
    /// The job record changed under a running driver (internal: the
    /// driver restarts with the new record at a batch boundary).
    #[error("the job record changed; restarting with it")]
    Restart,
    /// A `--from` value that does not parse or fit the source.
    #[error("--from {value}: {message}")]
    BadFrom {
        /// The value given.
        value: String,
        /// What is wrong.
        message: String,
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
}

impl Default for DriverOptions {
    fn default() -> Self {
        DriverOptions {
            exit_when_idle: false,
            finish_finite_sources: false,
            retry_backoff: Duration::from_millis(200),
            max_state_recoveries: 3,
            health: JobHealthBoard::default(),
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
/// A changed spec is applied when every change is compatible (see
/// [`submit_with`] for the options that allow the others).
pub fn submit(
    meta: &dyn MetadataStore,
    spec: pb::JobSpec,
) -> Result<(pb::JobRecord, bool), DriverError> {
    let s = submit_with(meta, spec, &SubmitOptions::default())?;
    Ok((s.record, s.resumed))
}

/// Where a job's offsets restart with `--from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromOffsets {
    /// Every partition from offset 0.
    Earliest,
    /// Keep the offsets reached (only the state is reset).
    Latest,
    /// `partition:offset` pairs; partitions not named start at 0.
    Offsets(Vec<(u32, u64)>),
}

impl FromOffsets {
    /// Parses `earliest`, `latest` or `p:o,p:o,...`.
    pub fn parse(value: &str) -> Result<Self, DriverError> {
        let bad = |message: String| DriverError::BadFrom {
            value: value.to_string(),
            message,
        };
        match value.trim() {
            "earliest" => Ok(FromOffsets::Earliest),
            "latest" => Ok(FromOffsets::Latest),
            "" => Err(bad("give earliest, latest or partition:offset,...".into())),
            list => list
                .split(',')
                .map(|pair| {
                    let (p, o) = pair.trim().split_once(':').ok_or_else(|| {
                        bad(format!(
                            "{pair:?} is not partition:offset (or earliest/latest)"
                        ))
                    })?;
                    let p = p
                        .trim()
                        .parse()
                        .map_err(|_| bad(format!("{p:?} is not a partition number")))?;
                    let o = o
                        .trim()
                        .parse()
                        .map_err(|_| bad(format!("{o:?} is not an offset")))?;
                    Ok((p, o))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(FromOffsets::Offsets),
        }
    }
}

/// Options of a submit that changes a stored job.
#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    /// Start a new state generation while the offsets continue.
    pub reset_state: bool,
    /// Restart from these offsets (with a new state generation).
    pub from: Option<FromOffsets>,
    /// Compute the diff only.
    pub dry_run: bool,
}

/// What a submit did (or, dry, would do).
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The job record now stored (or that would be).
    pub record: pb::JobRecord,
    /// An existing job of that name was resumed or upgraded.
    pub resumed: bool,
    /// The changes against the stored spec.
    pub diff: crate::upgrade::PlanDiff,
}

impl Submitted {
    /// The verdict: "new" for a new job, else the diff's.
    pub fn verdict(&self) -> &'static str {
        if self.resumed {
            self.diff.verdict().as_str()
        } else {
            "new"
        }
    }
}

fn check_format(job: &str, what: &'static str, spec: &pb::JobSpec) -> Result<(), DriverError> {
    if spec.format_version > weir_proto::spec::SPEC_FORMAT_VERSION {
        return Err(DriverError::UnsupportedFormat {
            job: job.to_string(),
            what,
            found: spec.format_version,
            supported: weir_proto::spec::SPEC_FORMAT_VERSION,
        });
    }
    Ok(())
}

/// Stores a job, resumes it, or upgrades it to a changed spec.
///
/// Compatible changes are stored at once; the running driver picks the new
/// record up at its next batch boundary. Changes that need a state decision
/// are allowed with `reset_state` (new state generation based at the last
/// committed batch, offsets continue) or `from`; changes that need an offset
/// decision only with `from` (new state generation, next batch starts at the
/// chosen offsets). Anything else is refused with every change listed.
pub fn submit_with(
    meta: &dyn MetadataStore,
    spec: pb::JobSpec,
    options: &SubmitOptions,
) -> Result<Submitted, DriverError> {
    let fp = fingerprint(&spec);
    check_format(&spec.name, "the submitted", &spec)?;
    let Some(existing) = meta.job(&spec.name)? else {
        let now = now_ms();
        let record = pb::JobRecord {
            spec: Some(spec),
            fingerprint: fp,
            created_at_ms: now,
            state: pb::JobState::Running as i32,
            version: 1,
            updated_at_ms: now,
            ..Default::default()
        };
        if !options.dry_run {
            meta.apply(command::put_job(record.clone()))?;
        }
        return Ok(Submitted {
            record,
            resumed: false,
            diff: Default::default(),
        });
    };
    let stored = existing.spec.clone().unwrap_or_default();
    check_format(&spec.name, "the stored", &stored)?;
    let diff = crate::upgrade::diff(&stored, &spec);
    let refused = diff.refused(options.reset_state, options.from.is_some());
    if options.dry_run {
        return Ok(Submitted {
            record: existing,
            resumed: true,
            diff,
        });
    }
    if !refused.is_empty() {
        return Err(DriverError::UpgradeRefused(
            crate::upgrade::refusal_message(&spec.name, &refused),
        ));
    }
    let reset = options.reset_state || options.from.is_some();
    let mut record = existing.clone();
    if !diff.changes.is_empty() || reset {
        // A decided batch is finished before the new record runs: the new
        // state generation and `--from` offsets start after it.
        let last = meta.progress(&spec.name)?.last_decided();
        record.spec = Some(spec);
        record.fingerprint = fp;
        record.version = existing.version.max(1) + 1;
        record.updated_at_ms = now_ms();
        if reset {
            record.state_generation += 1;
            record.state_base_batch = last;
        }
        if let Some(from) = &options.from {
            record.offsets_from_batch = last;
            record.offsets_from =
                offsets_for(record.spec.as_ref().expect("set"), from, last, meta)?;
        }
    }
    record.state = pb::JobState::Running as i32;
    record.error.clear();
    if !options.dry_run {
        if record != existing {
            meta.apply(command::put_job(record.clone()))?;
        } else if existing.state != pb::JobState::Running as i32 {
            // Submitting a stopped, failed or finished job runs it again
            // from its checkpoint.
            meta.apply(command::job_state(
                &record_name(&record),
                pb::JobState::Running,
                "",
            ))?;
        }
    }
    Ok(Submitted {
        record,
        resumed: true,
        diff,
    })
}

fn record_name(record: &pb::JobRecord) -> String {
    record
        .spec
        .as_ref()
        .map(|s| s.name.clone())
        .unwrap_or_default()
}

/// The offsets a `--from` choice names, as empty ranges per partition.
fn offsets_for(
    spec: &pb::JobSpec,
    from: &FromOffsets,
    last_committed: u64,
    meta: &dyn MetadataStore,
) -> Result<Vec<pb::OffsetRange>, DriverError> {
    let partitions = match spec.source.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(pb::source::Kind::Generator(g)) => g.partitions,
        Some(pb::source::Kind::Kafka(_)) => {
            return Err(DriverError::BadFrom {
                value: format!("{from:?}"),
                message: "--from is not supported for Kafka sources yet; set source.kafka.start and use a new job name".into(),
            })
        }
        None => 0,
    };
    let at = |partition: u32, offset: u64| pb::OffsetRange {
        partition,
        start: offset,
        end: offset,
    };
    Ok(match from {
        FromOffsets::Earliest => (0..partitions).map(|p| at(p, 0)).collect(),
        FromOffsets::Latest => {
            // Where the job is: the last committed plan's ends (a partition
            // the new source does not have is dropped, a new one starts at 0).
            let plan = match last_committed {
                0 => None,
                b => meta.plan(&spec.name, b)?,
            };
            (0..partitions)
                .map(|p| {
                    let end = plan
                        .as_ref()
                        .and_then(|pl| pl.ranges.iter().find(|r| r.partition == p))
                        .map_or(0, |r| r.end);
                    at(p, end)
                })
                .collect()
        }
        FromOffsets::Offsets(pairs) => {
            if let Some((p, _)) = pairs.iter().find(|(p, _)| *p >= partitions) {
                return Err(DriverError::BadFrom {
                    value: format!("{p}:..."),
                    message: format!("the source has {partitions} partitions (0..{partitions})"),
                });
            }
            (0..partitions)
                .map(|p| {
                    let o = pairs.iter().find(|(q, _)| *q == p).map_or(0, |(_, o)| *o);
                    at(p, o)
                })
                .collect()
        }
    })
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
                self.retry(0, shutdown, || self.rebuild_state())?;
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

    /// Stage A of a batch: its results, in source-range order.
    fn stage_a(
        &self,
        plan: &pb::BatchPlan,
        replay: bool,
    ) -> Result<Vec<pb::StageAResult>, TaskFailure> {
        let a_tasks = active_ranges(plan)
            .map(|r| pb::StageATask {
                job: self.name().to_string(),
                batch_id: plan.batch_id,
                range: Some(*r),
                watermark_ms: plan.watermark_ms,
                replay,
            })
            .collect();
        self.runner.stage_a(a_tasks)
    }

    /// The commit record of a batch from its stage-A results `a`, after
    /// running its stage B (jobs with state).
    fn stage_b(
        &self,
        plan: &pb::BatchPlan,
        replay: bool,
        a: Vec<pb::StageAResult>,
    ) -> Result<(pb::BatchCommit, u64), TaskFailure> {
        let job = self.name().to_string();
        let mut work_us = a.iter().map(|r| r.work_us).max().unwrap_or(0);
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
            commit.records_out += b.iter().map(|r| r.records_out).sum::<u64>();
            commit.durable_versions = b.iter().map(|r| r.durable_version).collect();
        }
        Ok((commit, work_us))
    }

    /// Runs a planned batch to its commit, retrying failures by their kind.
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
        let mut recoveries = 0;
        let mut backoff = self.options.retry_backoff;
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
        let (mut commit, work_us) = loop {
            let ran = match ran_a.take() {
                Some(a) => a.and_then(|a| self.stage_b(plan, false, a)),
                None => self.run_stages(plan, false),
            };
            match ran {
                Ok(done) => break done,
                Err(f) => {
                    warn!(job = %self.name(), batch_id = plan.batch_id, kind = ?f.kind, error = %f.message, "batch failed");
                    if f.kind == FailureKind::External {
                        self.degraded(&f.message);
                    }
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
                    backoff = (backoff * 2).min(MAX_BACKOFF);
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
        let stages_done = started.elapsed();
        failpoint::hit("before-committing");
        self.meta.apply(command::committing(commit.clone()))?;
        failpoint::hit("after-committing");
        let decided = started.elapsed();
        self.finish_commit(&commit, shutdown)?;
        let wall = planned_at.elapsed();
        debug!(
            job = %self.name(),
            batch_id = plan.batch_id,
            plan_us = started.duration_since(planned_at).as_micros() as u64,
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
        // Nothing waits for this record: the sinks hold the output, and a
        // restart that does not find it finishes the commit again (sink
        // commits are idempotent). The next metadata call waits for it, and
        // the next plan enters the log after it.
        self.meta
            .submit(command::committed(self.name(), commit.batch_id))?;
        // The record may still be on its way to the log's quorum (also in
        // `weir local`, a single-replica group).
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

    /// Shows the job as degraded (see [`JobHealthBoard`]) until its next
    /// committed batch.
    fn degraded(&self, reason: &str) {
        self.options.health.degraded(self.name(), reason, now_ms());
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
                    if f.kind == FailureKind::External {
                        self.degraded(&f.message);
                    }
                    if !sleep_until(Instant::now() + backoff, shutdown) {
                        return Err(DriverError::Interrupted {
                            job: self.name().to_string(),
                            batch_id,
                            failure: f,
                        });
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::SledMetadata;
    use weir_proto::spec::parse_spec;

    const SPEC: &str = "name: j
batch_interval: 100ms
state_partitions: 2
source:
  generator: { partitions: 2, keys: 5, rate: 0, total: 100, max_records_per_partition: 10, event_time_rate: 10 }
pipeline:
  - key_by: key
  - aggregate: { count: {} }
sink:
  noop: {}
";

    fn spec(from: &str, to: &str) -> pb::JobSpec {
        parse_spec(&SPEC.replace(from, to)).unwrap()
    }

    fn store() -> (tempfile::TempDir, SledMetadata) {
        let dir = tempfile::tempdir().unwrap();
        let meta = SledMetadata::open(dir.path()).unwrap();
        (dir, meta)
    }

    /// Commits one batch reading `ends` on each partition.
    fn commit_batch(meta: &SledMetadata, batch_id: u64, ends: &[u64]) {
        let ranges = ends
            .iter()
            .enumerate()
            .map(|(p, e)| pb::OffsetRange {
                partition: p as u32,
                start: 0,
                end: *e,
            })
            .collect();
        meta.apply(command::planned(pb::BatchPlan {
            job: "j".into(),
            batch_id,
            ranges,
            ..Default::default()
        }))
        .unwrap();
        meta.apply(command::committing(pb::BatchCommit {
            job: "j".into(),
            batch_id,
            ..Default::default()
        }))
        .unwrap();
        meta.apply(command::committed("j", batch_id)).unwrap();
    }

    fn opts(reset_state: bool, from: Option<&str>) -> SubmitOptions {
        SubmitOptions {
            reset_state,
            from: from.map(|f| FromOffsets::parse(f).unwrap()),
            dry_run: false,
        }
    }

    /// Executors that never come: every call fails as an outside error.
    struct NoExecutors;

    impl TaskRunner for NoExecutors {
        fn deploy(&self, _: &pb::JobRecord) -> Result<(), TaskFailure> {
            Err(TaskFailure {
                kind: FailureKind::External,
                message: "no live executor has registered within 10s".into(),
            })
        }
        fn stage_a(&self, _: Vec<pb::StageATask>) -> Result<Vec<pb::StageAResult>, TaskFailure> {
            unreachable!("nothing is deployed")
        }
        fn restore(&self, _: Vec<pb::RestoreTask>) -> Result<Vec<pb::RestoreResult>, TaskFailure> {
            unreachable!("nothing is deployed")
        }
        fn stage_b(&self, _: Vec<pb::StageBTask>) -> Result<Vec<pb::StageBResult>, TaskFailure> {
            unreachable!("nothing is deployed")
        }
        fn commit(&self, _: Vec<pb::CommitTask>) -> Result<(), TaskFailure> {
            unreachable!("nothing is deployed")
        }
    }

    /// A driver told to stop (its replica stopped leading) while it waits
    /// out an outage leaves the job running for the next driver: it is not
    /// recorded as failed, and it shows as degraded meanwhile.
    #[test]
    fn stopping_while_retrying_an_outage_does_not_fail_the_job() {
        let (_d, meta) = store();
        submit(&meta, spec("", "")).unwrap();
        let meta: Arc<dyn MetadataStore> = Arc::new(meta);
        let health = JobHealthBoard::default();
        let options = DriverOptions {
            retry_backoff: Duration::from_millis(20),
            health: health.clone(),
            ..Default::default()
        };
        let driver = JobDriver::new(meta.clone(), Arc::new(NoExecutors), "j", options).unwrap();
        let shutdown = Arc::new(AtomicBool::new(false));
        let stop = shutdown.clone();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            stop.store(true, Ordering::SeqCst);
        });
        let outcome = driver.run(&shutdown, &mut |_| {});
        stopper.join().unwrap();
        assert!(
            matches!(outcome, Err(DriverError::Interrupted { .. })),
            "{outcome:?}"
        );
        let record = meta.job("j").unwrap().unwrap();
        assert_eq!(record.state, pb::JobState::Running as i32, "{record:?}");
        let degraded = health.get("j").and_then(|h| h.degraded).unwrap();
        assert!(degraded.reason.contains("no live executor"), "{degraded:?}");
    }

    #[test]
    fn new_same_and_compatible() {
        let (_d, meta) = store();
        let s = submit_with(&meta, spec("", ""), &opts(false, None)).unwrap();
        assert!(!s.resumed);
        assert_eq!(s.verdict(), "new");
        assert_eq!(s.record.version, 1);
        let created = s.record.created_at_ms;
        let s = submit_with(&meta, spec("", ""), &opts(false, None)).unwrap();
        assert!(s.resumed);
        assert_eq!(s.verdict(), "unchanged");
        assert_eq!(s.record.version, 1);

        // Dry run: nothing stored.
        let dry = SubmitOptions {
            dry_run: true,
            ..Default::default()
        };
        let s = submit_with(&meta, spec("100ms", "200ms"), &dry).unwrap();
        assert_eq!(s.verdict(), "compatible");
        assert_eq!(meta.job("j").unwrap().unwrap().version, 1);

        let s = submit_with(&meta, spec("100ms", "200ms"), &opts(false, None)).unwrap();
        assert_eq!(s.verdict(), "compatible");
        let stored = meta.job("j").unwrap().unwrap();
        assert_eq!(stored.version, 2);
        assert_eq!(stored.created_at_ms, created);
        assert_eq!(stored.state_generation, 0);
        assert_eq!(stored.spec.unwrap().batch_interval_ms, 200);
        let history = meta.history("j").unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].version, 1);
        assert_eq!(history[0].spec.as_ref().unwrap().batch_interval_ms, 100);
    }

    #[test]
    fn a_reset_starts_after_a_batch_whose_commit_was_decided() {
        let (_d, meta) = store();
        submit_with(&meta, spec("", ""), &opts(false, None)).unwrap();
        commit_batch(&meta, 1, &[10, 10]);
        // Batch 2 is decided, its `committed` record never made it (the
        // driver died after publishing its output).
        let range = |p, end| pb::OffsetRange {
            partition: p,
            start: 10,
            end,
        };
        meta.apply(command::planned(pb::BatchPlan {
            job: "j".into(),
            batch_id: 2,
            ranges: vec![range(0, 20), range(1, 20)],
            ..Default::default()
        }))
        .unwrap();
        meta.apply(command::committing(pb::BatchCommit {
            job: "j".into(),
            batch_id: 2,
            ..Default::default()
        }))
        .unwrap();
        let changed = spec("key_by: key", "key_by: value");
        let s = submit_with(&meta, changed.clone(), &opts(true, None)).unwrap();
        assert_eq!(s.record.state_base_batch, 2);
        let s = submit_with(&meta, changed, &opts(false, Some("latest"))).unwrap();
        assert_eq!(
            (s.record.state_base_batch, s.record.offsets_from_batch),
            (2, 2)
        );
        let ends: Vec<u64> = s.record.offsets_from.iter().map(|r| r.start).collect();
        assert_eq!(
            ends,
            [20, 20],
            "--from latest starts where the decided batch ended"
        );
    }

    #[test]
    fn state_change_needs_reset_and_starts_a_generation() {
        let (_d, meta) = store();
        submit_with(&meta, spec("", ""), &opts(false, None)).unwrap();
        commit_batch(&meta, 1, &[10, 10]);
        let changed = spec("key_by: key", "key_by: value");
        let e = submit_with(&meta, changed.clone(), &opts(false, None)).unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, DriverError::UpgradeRefused(_)));
        assert!(m.contains("pipeline[0].key_by: key -> value (needs-state-decision; allowed with --reset-state"), "{m}");
        assert_eq!(meta.job("j").unwrap().unwrap().version, 1);

        let s = submit_with(&meta, changed, &opts(true, None)).unwrap();
        assert_eq!(s.record.state_generation, 1);
        assert_eq!(s.record.state_base_batch, 1);
        assert!(s.record.offsets_from.is_empty());
        // Resubmitting with --reset-state again starts yet another generation.
        let s = submit_with(
            &meta,
            spec("key_by: key", "key_by: value"),
            &opts(true, None),
        )
        .unwrap();
        assert_eq!(s.record.state_generation, 2);
    }

    #[test]
    fn source_change_needs_from() {
        let (_d, meta) = store();
        submit_with(&meta, spec("", ""), &opts(false, None)).unwrap();
        commit_batch(&meta, 1, &[10, 7]);
        let changed = spec("keys: 5", "keys: 6");
        let e = submit_with(&meta, changed.clone(), &opts(true, None)).unwrap_err();
        assert!(
            e.to_string().contains(
                "source.generator.keys: 5 -> 6 (needs-offset-decision; allowed with --from"
            ),
            "{e}"
        );

        let s = submit_with(&meta, changed.clone(), &opts(false, Some("latest"))).unwrap();
        assert_eq!(s.record.offsets_from_batch, 1);
        let ends: Vec<u64> = s.record.offsets_from.iter().map(|r| r.end).collect();
        assert_eq!(ends, vec![10, 7]);
        assert_eq!(s.record.state_generation, 1);

        let s = submit_with(&meta, changed.clone(), &opts(false, Some("earliest"))).unwrap();
        let ends: Vec<u64> = s.record.offsets_from.iter().map(|r| r.end).collect();
        assert_eq!(ends, vec![0, 0]);
        let s = submit_with(&meta, changed.clone(), &opts(false, Some("1:4"))).unwrap();
        let ends: Vec<u64> = s.record.offsets_from.iter().map(|r| r.end).collect();
        assert_eq!(ends, vec![0, 4]);
        assert!(submit_with(&meta, changed, &opts(false, Some("2:4"))).is_err());
        assert!(FromOffsets::parse("x").is_err());
        assert!(FromOffsets::parse("0:a").is_err());
    }

    #[test]
    fn newer_format_is_refused() {
        let (_d, meta) = store();
        let mut s = spec("", "");
        s.format_version = weir_proto::spec::SPEC_FORMAT_VERSION + 1;
        let e = submit_with(&meta, s.clone(), &opts(false, None)).unwrap_err();
        assert!(e.to_string().contains("format_version"), "{e}");
        // A stored spec of a newer format (written by a newer build) is not resumed.
        meta.apply(command::put_job(pb::JobRecord {
            spec: Some(s),
            version: 1,
            ..Default::default()
        }))
        .unwrap();
        let e = submit_with(&meta, spec("", ""), &opts(false, None)).unwrap_err();
        assert!(
            e.to_string().contains("the stored spec has format_version"),
            "{e}"
        );
    }
}
