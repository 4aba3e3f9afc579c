//! The task runtime: runs a job's stage-A, stage-B, restore and commit tasks
//! against its compiled plan, its state partitions and its sink. The same
//! entry points serve in-process use (`weir local`) and remote calls.

use crate::custom::OperatorRegistry;
use crate::error::ExecError;
use crate::lookup::{LookupError, LookupTally, Lookups};
use crate::metrics::{CheckpointMetrics, LookupMetrics};
use crate::operators::aggregate::{PreAggregator, ShuffleBlock};
use crate::operators::partition_state::{PartitionState, StateRestorer};
use crate::operators::stateless::StatelessOp;
use crate::plan::JobPlan;
use crate::shuffle::{MemoryShuffle, Shuffle, ShuffleKey};
use crate::sinks::{
    lock, FileSink, HbaseSink, KafkaSink, NoopSink, PostgresSink, Sink, StdoutSink,
};
use crate::sources::budget::ReadBudget;
use crate::state::{
    default_writer_threads, CheckpointFileName, PartitionCheckpoints, PartitionOptions,
    StateBackend, Tenure, WriterPool,
};
use arrow_array::RecordBatch;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use tracing::{debug, info, warn};
use weir_plan::PlanError;
use weir_proto::{failpoint, pb};

/// Settings of an executor.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// Snapshot and retention policy of state checkpoints.
    pub checkpoints: PartitionOptions,
    /// Threads writing the checkpoint files of all its state partitions
    /// (at least 1; see [`WriterPool`]).
    pub writer_threads: usize,
    /// The custom operators jobs may use (none in the stock executor).
    pub operators: OperatorRegistry,
    /// Where checkpoint writes are counted.
    pub checkpoint_metrics: CheckpointMetrics,
    /// Where lookup steps are counted.
    pub lookup_metrics: LookupMetrics,
}

impl Default for ExecutorConfig {
    /// Default checkpoint policy, [`default_writer_threads`], no custom
    /// operators.
    fn default() -> Self {
        ExecutorConfig {
            checkpoints: PartitionOptions::default(),
            writer_threads: default_writer_threads(),
            operators: OperatorRegistry::default(),
            checkpoint_metrics: CheckpointMetrics::default(),
            lookup_metrics: LookupMetrics::default(),
        }
    }
}

/// Runs tasks for the jobs deployed on it.
#[derive(Debug)]
pub struct Executor {
    config: ExecutorConfig,
    backend: Arc<dyn StateBackend>,
    jobs: RwLock<HashMap<String, Arc<JobRuntime>>>,
    /// Writes the checkpoint files of every partition held here; dropped
    /// after the partitions (see `Drop`), so their queued files are
    /// written first.
    writers: WriterPool,
}

/// A state partition held by this executor.
#[derive(Debug)]
struct Partition {
    state: PartitionState,
    checkpoints: PartitionCheckpoints,
    /// Version of the newest checkpoint written or restored.
    last_checkpoint: u64,
}

struct JobRuntime {
    plan: JobPlan,
    sink: Box<dyn Sink>,
    shuffle: MemoryShuffle,
    /// `None` until restored (and after a failure left it unusable).
    partitions: Vec<Mutex<Option<Partition>>>,
    skip_errors: bool,
    /// The clients and caches of its lookup steps.
    lookups: Lookups,
}

impl std::fmt::Debug for JobRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRuntime")
            .field("plan", &self.plan)
            .finish()
    }
}

/// Records out of the stateless steps, with the count of skipped ones.
struct Processed {
    batches: Vec<RecordBatch>,
    skipped: u64,
}

impl Drop for Executor {
    /// Drops the state partitions held, which waits for their checkpoint
    /// files still being written (other holders of a job, such as a sink
    /// being prepared, must not keep the writes going past the executor).
    fn drop(&mut self) {
        let jobs = self.jobs.get_mut().unwrap_or_else(|p| p.into_inner());
        for job in jobs.values() {
            for slot in &job.partitions {
                lock(slot).take();
            }
        }
    }
}

impl Executor {
    /// An executor persisting state to `backend`.
    pub fn new(config: ExecutorConfig, backend: Arc<dyn StateBackend>) -> Self {
        Executor {
            writers: WriterPool::with_metrics(
                config.writer_threads,
                config.checkpoint_metrics.clone(),
            ),
            config,
            backend,
            jobs: RwLock::new(HashMap::new()),
        }
    }

    /// Compiles a job and makes it runnable here; redeploying the same
    /// fingerprint keeps the running state.
    pub fn deploy(&self, record: &pb::JobRecord) -> Result<(), ExecError> {
        let name = record
            .spec
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default();
        if let Some(existing) = self
            .jobs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name)
        {
            if existing.plan.record.fingerprint == record.fingerprint
                && existing.plan.record.state_generation == record.state_generation
                && existing.plan.record.created_at_ms == record.created_at_ms
            {
                return Ok(());
            }
        }
        // A deployed spec comes from the wire: validated again here, with
        // every limit, before anything is built from it.
        let spec = record.spec.as_ref().ok_or_else(|| ExecError::Plan {
            job: name.clone(),
            message: "the job record has no spec".into(),
        })?;
        weir_proto::spec::validate(spec).map_err(|e| ExecError::Plan {
            job: name.clone(),
            message: format!("invalid job spec:\n{e}"),
        })?;
        let plan = JobPlan::compile(record, &self.config.operators).map_err(|message| {
            ExecError::Plan {
                job: name.clone(),
                message,
            }
        })?;
        let lookup_plans = plan.pre.iter().chain(&plan.post).filter_map(|s| s.lookup());
        let lookups =
            Lookups::new(&name, lookup_plans, &self.config.lookup_metrics).map_err(|message| {
                ExecError::Plan {
                    job: name.clone(),
                    message,
                }
            })?;
        let spec = plan.spec();
        let sink: Box<dyn Sink> = match spec.sink.as_ref().and_then(|s| s.kind.as_ref()) {
            Some(pb::sink::Kind::File(f)) => Box::new(FileSink::new(&name, &f.path)?),
            Some(pb::sink::Kind::Stdout(_)) => Box::new(StdoutSink::default()),
            Some(pb::sink::Kind::Kafka(k)) => {
                Box::new(KafkaSink::new(&name, record.created_at_ms, k))
            }
            Some(pb::sink::Kind::Postgres(p)) => {
                Box::new(PostgresSink::new(&name, record.created_at_ms, p))
            }
            Some(pb::sink::Kind::Hbase(h)) => Box::new(HbaseSink::new(&name, h)),
            Some(pb::sink::Kind::Noop(_)) | None => Box::new(NoopSink),
        };
        let partitions = (0..spec.state_partitions)
            .map(|_| Mutex::new(None))
            .collect();
        // Expression errors have no original bytes to dead-letter: they are
        // skipped and counted under dead_letter too.
        let skip_errors = spec.on_error != pb::ErrorPolicy::Fail as i32;
        info!(job = %name, fingerprint = %record.fingerprint, "job deployed");
        let runtime = JobRuntime {
            plan,
            sink,
            shuffle: MemoryShuffle::default(),
            partitions,
            skip_errors,
            lookups,
        };
        self.jobs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name, Arc::new(runtime));
        Ok(())
    }

    /// Drops job `name` (its state partitions, shuffle blocks and sink);
    /// queued checkpoint files are still written. Returns whether it was
    /// deployed.
    pub fn undeploy(&self, name: &str) -> bool {
        let removed = self
            .jobs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
        if removed.is_some() {
            info!(job = %name, "job undeployed");
        }
        removed.is_some()
    }

    fn job(&self, name: &str) -> Result<Arc<JobRuntime>, ExecError> {
        self.jobs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
            .ok_or_else(|| ExecError::UnknownJob(name.to_string()))
    }

    /// Runs a stage-A task.
    pub fn stage_a(&self, task: &pb::StageATask) -> Result<pb::StageAResult, ExecError> {
        self.stage_a_under(task, &Tenure::unfenced())
    }

    /// Like [`stage_a`](Self::stage_a) for a task given under `tenure`: a
    /// stateless job's output is pre-committed only while it holds.
    pub fn stage_a_under(
        &self,
        task: &pb::StageATask,
        tenure: &Tenure,
    ) -> Result<pb::StageAResult, ExecError> {
        failpoint::hit("stage-a");
        let job = self.job(&task.job)?;
        let range = task.range.unwrap_or_default();
        job.shuffle.release_before(task.batch_id);
        let plan = &job.plan;
        let mut budget = ReadBudget::new(plan.spec(), task);
        let mut tally = LookupTally::default();
        let mut result = pb::StageAResult {
            partition: range.partition,
            max_event_time_ms: i64::MIN,
            ..Default::default()
        };
        match &plan.aggregate {
            Some(agg) => {
                let mut pre = PreAggregator::new(agg, task.watermark_ms);
                let mut counted = 0;
                let skipped = plan.source.read(
                    task.batch_id,
                    range.partition,
                    range.start,
                    range.end,
                    task.replay,
                    &mut |chunk| {
                        budget.charge(&chunk)?;
                        counted += chunk.num_rows() as u64;
                        let processed = job.process(chunk, &mut tally)?;
                        result.records_skipped += processed.skipped;
                        for b in processed.batches {
                            result.records_skipped += job.pre_aggregate(&mut pre, &b)?;
                        }
                        Ok(())
                    },
                )?;
                result.records_in += counted + skipped;
                result.records_skipped += skipped;
                let (blocks, stats) = pre.finish(plan.spec().state_partitions);
                result.records_late = stats.late;
                result.max_event_time_ms = stats.max_event_time;
                job.shuffle.put(
                    ShuffleKey::new(task.batch_id, &range, task.watermark_ms),
                    blocks,
                );
            }
            None => {
                if !task.replay {
                    // The source partition is the sink partition.
                    prepare_sink(&job, range.partition);
                }
                let mut out = Vec::new();
                let mut counted = 0;
                let skipped = plan.source.read(
                    task.batch_id,
                    range.partition,
                    range.start,
                    range.end,
                    task.replay,
                    &mut |chunk| {
                        budget.charge(&chunk)?;
                        counted += chunk.num_rows() as u64;
                        let processed = job.process(chunk, &mut tally)?;
                        result.records_skipped += processed.skipped;
                        out.extend(processed.batches);
                        Ok(())
                    },
                )?;
                result.records_in += counted + skipped;
                result.records_skipped += skipped;
                if !task.replay {
                    check_output(tenure, &task.job, task.batch_id, range.partition)?;
                    result.records_out =
                        job.sink.pre_commit(task.batch_id, range.partition, &out)?;
                }
            }
        }
        result.lookups = tally.into_counts();
        debug!(job = %task.job, batch_id = task.batch_id, partition = range.partition, records = result.records_in, bytes = budget.read(), "stage a done");
        Ok(result)
    }

    /// Brings a state partition to the newest durable version ≤ the target.
    /// Batches between the restored version and the target must then be
    /// replayed (`replay: true`). For the only executor of a store (see
    /// [`restore_under`](Self::restore_under)).
    pub fn restore(&self, task: &pb::RestoreTask) -> Result<pb::RestoreResult, ExecError> {
        self.restore_under(task, Tenure::unfenced())
    }

    /// Like [`restore`](Self::restore) for a task given under `tenure`: the
    /// partition's files are changed only while it holds, from now on
    /// until a later task of the partition brings another.
    pub fn restore_under(
        &self,
        task: &pb::RestoreTask,
        tenure: Tenure,
    ) -> Result<pb::RestoreResult, ExecError> {
        let job = self.job(&task.job)?;
        let Some(agg) = &job.plan.aggregate else {
            return Ok(pb::RestoreResult {
                partition: task.partition,
                restored_version: task.target_version,
            });
        };
        let state_err = |source| ExecError::State {
            job: task.job.clone(),
            partition: task.partition,
            source,
        };
        let slot = job.slot(task.partition)?;
        let record = &job.plan.record;
        // State in memory at exactly the target version is the committed
        // state: every batch up to it committed, and batches are
        // deterministic. Only partitions that moved here, or that applied
        // a batch that did not commit, are read back from the store.
        if let Some(part) = lock(slot).as_mut() {
            if part.state.version == task.target_version
                && task.target_version >= record.state_base_batch
            {
                // Files of an uncommitted batch another owner may have
                // written are not part of this state.
                part.checkpoints.set_tenure(tenure.clone());
                part.checkpoints
                    .discard_after(task.target_version)
                    .map_err(state_err)?;
                // A checkpoint write that failed (e.g. refused while the
                // lease lapsed during a leader change) left the store
                // behind this state: the files must chain on again.
                match part.checkpoints.take_failure() {
                    None => {
                        debug!(job = %task.job, partition = task.partition, version = task.target_version, "state partition already at the target version in memory");
                        return Ok(pb::RestoreResult {
                            partition: task.partition,
                            restored_version: task.target_version,
                        });
                    }
                    Some(e) => {
                        warn!(job = %task.job, partition = task.partition, error = %e, "a checkpoint write of this partition failed; restoring it from the store");
                    }
                }
            }
        }
        // The partition held here, if any, is of no further use; dropping
        // it waits for its queued checkpoint writes, which must not land
        // after the files the restore discards.
        let held = lock(slot).take();
        drop(held);
        // Each state generation lives in its own directory: a reset never
        // reads the state of an earlier generation.
        let operator = match record.state_generation {
            0 => agg.operator_name().to_string(),
            g => format!("{}-g{g}", agg.operator_name()),
        };
        let mut checkpoints = PartitionCheckpoints::new(
            self.backend.clone(),
            &self.writers,
            &task.job,
            &operator,
            task.partition,
            self.config.checkpoints,
        )
        .map_err(state_err)?;
        checkpoints.set_tenure(tenure);
        let mut restorer = StateRestorer::new(agg.stride);
        let restored = checkpoints
            .restore_into(task.target_version, &mut restorer)
            .map_err(state_err)?;
        for (path, reason) in &restored.skipped {
            warn!(job = %task.job, partition = task.partition, path = %path, reason = %reason, "state restore fell back past an unusable checkpoint");
        }
        failpoint::hit("restore-discard");
        checkpoints
            .discard_after(restored.version)
            .map_err(state_err)?;
        // A generation starts empty after its base batch: nothing restored
        // means the (empty) state as of that batch.
        let version = restored.version.max(record.state_base_batch);
        let state = restorer.finish(version).map_err(|m| ExecError::Plan {
            job: task.job.clone(),
            message: format!("state partition {}: {m}", task.partition),
        })?;
        info!(job = %task.job, partition = task.partition, version, generation = record.state_generation, keys = state.len(), "state partition restored");
        *lock(slot) = Some(Partition {
            state,
            checkpoints,
            last_checkpoint: restored.version,
        });
        prepare_sink(&job, task.partition);
        Ok(pb::RestoreResult {
            partition: task.partition,
            restored_version: version,
        })
    }

    /// Runs a stage-B task. On failure the partition is dropped from memory
    /// and must be restored before its next batch. For the only executor of
    /// a store (see [`stage_b_with_blocks`](Self::stage_b_with_blocks)).
    pub fn stage_b(&self, task: &pb::StageBTask) -> Result<pb::StageBResult, ExecError> {
        self.stage_b_with_blocks(task, &HashMap::new(), Tenure::unfenced())
    }

    /// Runs a stage-B task given under `tenure` with shuffle blocks fetched
    /// from other executors (by source partition); the other sources'
    /// blocks come from this executor's own stage-A output. The partition's
    /// checkpoints are written under `tenure`. Same failure semantics as
    /// [`Executor::stage_b`].
    pub fn stage_b_with_blocks(
        &self,
        task: &pb::StageBTask,
        fetched: &HashMap<u32, Arc<ShuffleBlock>>,
        tenure: Tenure,
    ) -> Result<pb::StageBResult, ExecError> {
        let job = self.job(&task.job)?;
        let slot = job.slot(task.partition)?;
        let mut guard = lock(slot);
        if let Some(part) = guard.as_mut() {
            part.checkpoints.set_tenure(tenure);
        }
        let outcome = job.stage_b(task, fetched, &mut guard);
        if outcome.is_err() {
            *guard = None;
        }
        outcome
    }

    /// The block of state partition `partition` of the stage-A output
    /// `key`, if this executor produced it and still holds it.
    pub fn shuffle_block(
        &self,
        job: &str,
        key: &ShuffleKey,
        partition: u32,
    ) -> Result<Option<Arc<ShuffleBlock>>, ExecError> {
        Ok(self.job(job)?.shuffle.fetch(key, partition))
    }

    /// Slots per key in the shuffle blocks of a job (0 without state).
    pub fn shuffle_stride(&self, job: &str) -> Result<usize, ExecError> {
        Ok(self
            .job(job)?
            .plan
            .aggregate
            .as_ref()
            .map_or(0, |a| a.stride))
    }

    /// Publishes a batch's pre-committed output of one partition.
    pub fn commit(&self, task: &pb::CommitTask) -> Result<(), ExecError> {
        let job = self.job(&task.job)?;
        let started = std::time::Instant::now();
        job.sink.commit(task.batch_id, task.partition)?;
        debug!(job = %task.job, batch_id = task.batch_id, partition = task.partition, ms = started.elapsed().as_millis() as u64, "output committed");
        failpoint::hit("sink-commit");
        Ok(())
    }
}

/// Lets the sink get ready for `partition` in the background.
fn prepare_sink(job: &Arc<JobRuntime>, partition: u32) {
    let job = job.clone();
    let spawned = std::thread::Builder::new()
        .name(format!("sink-prepare-{partition}"))
        .spawn(move || job.sink.prepare(partition));
    if let Err(e) = spawned {
        debug!(partition, error = %e, "no thread to prepare the sink; the pre-commit will");
    }
}

impl JobRuntime {
    fn slot(&self, partition: u32) -> Result<&Mutex<Option<Partition>>, ExecError> {
        self.partitions
            .get(partition as usize)
            .ok_or_else(|| ExecError::Plan {
                job: self.plan.spec().name.clone(),
                message: format!(
                    "state partition {partition} does not exist (the job has {})",
                    self.partitions.len()
                ),
            })
    }

    fn expr_error(&self, e: PlanError) -> ExecError {
        match e.expr {
            Some(source) => ExecError::Expr {
                job: self.plan.spec().name.clone(),
                step: e.path,
                source,
            },
            None => ExecError::Plan {
                job: self.plan.spec().name.clone(),
                message: format!("{}: {}", e.path, e.message),
            },
        }
    }

    /// Runs the stateless steps over one chunk. Under `on_error: skip` a
    /// chunk whose expressions fail is retried record by record and the
    /// failing records are dropped and counted; a lookup's failure is never
    /// retried so (its own rules decide: `on_missing`, outages).
    fn process(&self, chunk: RecordBatch, tally: &mut LookupTally) -> Result<Processed, ExecError> {
        match self.run_steps(&self.plan.pre, chunk.clone(), tally) {
            Ok((b, skipped)) => Ok(Processed {
                batches: vec![b],
                skipped,
            }),
            Err(StepFailure::Lookup(e)) => Err(self.lookup_error(e)),
            Err(StepFailure::Plan(e)) if !self.skip_errors => Err(self.expr_error(e)),
            Err(StepFailure::Plan(_)) => {
                let mut batches = Vec::new();
                let mut skipped = 0;
                for row in 0..chunk.num_rows() {
                    match self.run_steps(&self.plan.pre, chunk.slice(row, 1), tally) {
                        Ok((b, s)) => {
                            batches.push(b);
                            skipped += s;
                        }
                        Err(StepFailure::Lookup(e)) => return Err(self.lookup_error(e)),
                        Err(StepFailure::Plan(_)) => skipped += 1,
                    }
                }
                Ok(Processed { batches, skipped })
            }
        }
    }

    fn lookup_error(&self, source: LookupError) -> ExecError {
        ExecError::Lookup {
            job: self.plan.spec().name.clone(),
            source: Box::new(source),
        }
    }

    /// Runs `steps` over `batch`; returns the batch and the records
    /// lookups dropped.
    fn run_steps(
        &self,
        steps: &[StatelessOp],
        mut batch: RecordBatch,
        tally: &mut LookupTally,
    ) -> Result<(RecordBatch, u64), StepFailure> {
        let mut skipped = 0;
        for op in steps {
            if batch.num_rows() == 0 {
                return Ok((RecordBatch::new_empty(op.output_schema().clone()), skipped));
            }
            batch = match op.lookup() {
                Some(plan) => {
                    let step = self.lookups.get(plan.path()).ok_or_else(|| {
                        StepFailure::Plan(PlanError::new(
                            plan.path(),
                            "the lookup was not set up when the job was deployed",
                        ))
                    })?;
                    let looked = step.run(&batch, self.skip_errors).map_err(|e| match e {
                        // A key expression's failure is an expression's.
                        LookupError::Key { step, source } => {
                            StepFailure::Plan(PlanError::expr(format!("{step}.redis.key"), source))
                        }
                        other => StepFailure::Lookup(other),
                    })?;
                    skipped += looked.skipped;
                    tally.add(plan.path(), &looked.counts);
                    looked.batch
                }
                None => op.apply(&batch).map_err(StepFailure::Plan)?,
            };
        }
        Ok((batch, skipped))
    }

    /// Feeds a batch to the pre-aggregator; returns the records skipped.
    fn pre_aggregate(
        &self,
        pre: &mut PreAggregator<'_>,
        batch: &RecordBatch,
    ) -> Result<u64, ExecError> {
        let to_err = |e| ExecError::Expr {
            job: self.plan.spec().name.clone(),
            step: "key_by/aggregate".into(),
            source: e,
        };
        match pre.add(batch) {
            Ok(()) => Ok(0),
            // No record is to blame for an overflowing sum, and the slots
            // already hold the batch: never skipped.
            Err(e @ weir_plan::expr::ExprError::Overflow { .. }) => Err(to_err(e)),
            Err(e) if !self.skip_errors => Err(to_err(e)),
            Err(_) => {
                let mut skipped = 0;
                for row in 0..batch.num_rows() {
                    if pre.add(&batch.slice(row, 1)).is_err() {
                        skipped += 1;
                    }
                }
                Ok(skipped)
            }
        }
    }

    fn stage_b(
        &self,
        task: &pb::StageBTask,
        fetched: &HashMap<u32, Arc<ShuffleBlock>>,
        slot: &mut Option<Partition>,
    ) -> Result<pb::StageBResult, ExecError> {
        let name = &task.job;
        let agg = self
            .plan
            .aggregate
            .as_ref()
            .ok_or_else(|| ExecError::Plan {
                job: name.clone(),
                message: "stage B runs only for jobs with state".into(),
            })?;
        let part = slot.as_mut().ok_or(ExecError::StateGap {
            job: name.clone(),
            partition: task.partition,
            have: 0,
            need: task.batch_id.saturating_sub(1),
            batch: task.batch_id,
        })?;
        let state_err = |source| ExecError::State {
            job: name.clone(),
            partition: task.partition,
            source,
        };
        // A checkpoint written in the background failed: the state is
        // fine, but what the store holds no longer chains on to it. The
        // task fails, the partition is restored from the store and the
        // batches after it are replayed.
        if let Some(e) = part.checkpoints.take_failure() {
            return Err(state_err(e));
        }
        let mut result = pb::StageBResult {
            partition: task.partition,
            durable_version: part.checkpoints.durable_version(),
            state_keys: part.state.len() as u64,
            state_bytes: part.state.memory_bytes(),
            ..Default::default()
        };
        if task.replay && part.state.version >= task.batch_id {
            return Ok(result);
        }
        if part.state.version + 1 != task.batch_id {
            return Err(ExecError::StateGap {
                job: name.clone(),
                partition: task.partition,
                have: part.state.version,
                need: task.batch_id - 1,
                batch: task.batch_id,
            });
        }
        failpoint::hit("stage-b");
        let mut blocks = Vec::with_capacity(task.sources.len());
        for source in &task.sources {
            let key = ShuffleKey::new(task.batch_id, source, task.watermark_ms);
            let block = fetched
                .get(&source.partition)
                .cloned()
                .or_else(|| self.shuffle.fetch(&key, task.partition))
                .ok_or(ExecError::MissingShuffle {
                    job: name.clone(),
                    batch: task.batch_id,
                    source_partition: source.partition,
                })?;
            blocks.push(block);
        }
        let started = std::time::Instant::now();
        part.state
            .apply(agg, &blocks)
            .map_err(|source| ExecError::Expr {
                job: name.clone(),
                step: "aggregate".into(),
                source,
            })?;
        let emitted = part.state.emit(agg, task.watermark_ms);
        let applied = started.elapsed();
        if !task.replay {
            // Rows a lookup drops here are not counted: a stage-B result
            // has no skipped count (a filter's drops are not either).
            let mut tally = LookupTally::default();
            let (output, _dropped) = self
                .run_steps(&self.plan.post, emitted, &mut tally)
                .map_err(|e| match e {
                    StepFailure::Plan(e) => self.expr_error(e),
                    StepFailure::Lookup(e) => self.lookup_error(e),
                })?;
            check_output(
                part.checkpoints.tenure(),
                name,
                task.batch_id,
                task.partition,
            )?;
            result.records_out = self
                .sink
                .pre_commit(task.batch_id, task.partition, &[output])?;
            result.lookups = tally.into_counts();
            failpoint::hit("after-precommit");
        }
        let precommitted = started.elapsed();
        if task.checkpoint {
            let checkpoints = &mut part.checkpoints;
            let delta = checkpoints
                .encoder(
                    CheckpointFileName::delta(task.batch_id),
                    part.last_checkpoint,
                    part.state.delta_size_hint(),
                )
                .map_err(state_err)?;
            let snapshot = if checkpoints.should_snapshot(task.batch_id, part.state.len()) {
                let name = CheckpointFileName::snapshot(task.batch_id);
                let size = part.state.snapshot_size_hint();
                Some(checkpoints.encoder(name, 0, size).map_err(state_err)?)
            } else {
                None
            };
            // Written off the batch's path, as Flink's asynchronous
            // snapshots are: the batch's output does not wait for its state
            // to be durable, since a restore from an older version replays
            // the committed batches after it. The durable version the
            // driver learns (and keeps the plans of) is what was written.
            // The batch pays a copy of what the writer encodes: the changed
            // groups' slots for a delta, all slots for a snapshot (both
            // share the keys).
            let changes = part.state.take_changes();
            let entries = changes.len() as u64;
            checkpoints
                .fill_in_background(
                    delta,
                    entries,
                    Box::new(move |file| changes.encode_into(file)),
                )
                .map_err(state_err)?;
            failpoint::hit("checkpoint-write");
            if let Some(snapshot) = snapshot {
                let frozen = part.state.frozen();
                let entries = frozen.len() as u64;
                checkpoints
                    .fill_in_background(
                        snapshot,
                        entries,
                        Box::new(move |file| frozen.encode_into(file)),
                    )
                    .map_err(state_err)?;
            }
            part.last_checkpoint = task.batch_id;
            result.durable_version = checkpoints.durable_version();
            // Everything up to the previous batch is committed.
            let prunable = result.durable_version.min(task.batch_id - 1);
            checkpoints.prune(prunable).map_err(state_err)?;
        }
        part.state.version = task.batch_id;
        result.checkpoint_us = (started.elapsed() - precommitted).as_micros() as u64;
        result.state_keys = part.state.len() as u64;
        result.state_bytes = part.state.memory_bytes();
        debug!(job = %name, batch_id = task.batch_id, partition = task.partition, apply_ms = applied.as_millis() as u64, pre_commit_ms = (precommitted - applied).as_millis() as u64, checkpoint_ms = (started.elapsed() - precommitted).as_millis() as u64, "stage b done");
        Ok(result)
    }
}

/// `Ok` if the output of `(batch, partition)` may be pre-committed under
/// `tenure`. Output is fenced like state: a task whose epoch lost its lease
/// may be running a batch the partition's new owner already committed, and
/// a hidden file it wrote now would never be made visible nor swept.
fn check_output(tenure: &Tenure, job: &str, batch: u64, partition: u32) -> Result<(), ExecError> {
    let output = format!("the output of batch {batch}, partition {partition}");
    tenure
        .check("pre-commit", &output)
        .map_err(|source| ExecError::OutputFenced {
            job: job.to_owned(),
            source,
        })
}

/// Why the stateless steps failed on a chunk.
enum StepFailure {
    /// An expression (or a step that cannot run), which `on_error: skip`
    /// may skip record by record.
    Plan(PlanError),
    /// A lookup, classified by its own rules.
    Lookup(LookupError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::LocalBackend;
    use std::collections::BTreeMap;

    fn executor(dir: &std::path::Path) -> Executor {
        Executor::new(
            ExecutorConfig::default(),
            Arc::new(LocalBackend::new(dir.to_path_buf())),
        )
    }

    fn record(yaml: &str) -> pb::JobRecord {
        let spec = weir_proto::spec::parse_spec(yaml).unwrap();
        pb::JobRecord {
            fingerprint: weir_proto::spec::fingerprint(&spec),
            spec: Some(spec),
            created_at_ms: 0,
            ..Default::default()
        }
    }

    fn job(on_error: &str) -> String {
        // value * 2^62 overflows BIGINT for every value >= 2
        format!(
            "name: j\non_error: {on_error}\nstate_partitions: 2\nsource:\n  generator: {{ partitions: 1, keys: 3, rate: 0, total: 10 }}\n\
             pipeline:\n  - filter: \"value * 4611686018427387904 >= 0\"\n  - key_by: key\n  - aggregate: {{ n: {{}} }}\nsink:\n  noop: {{}}\n"
        )
    }

    /// The source range every test batch reads.
    const SOURCE: pb::OffsetRange = pb::OffsetRange {
        partition: 0,
        start: 0,
        end: 10,
    };

    fn stage_a(batch_id: u64) -> pb::StageATask {
        pb::StageATask {
            job: "j".into(),
            batch_id,
            range: Some(SOURCE),
            watermark_ms: i64::MIN,
            replay: false,
        }
    }

    /// The checkpointing stage-B task of state partition 0 of a batch.
    fn stage_b_task(batch_id: u64) -> pb::StageBTask {
        pb::StageBTask {
            job: "j".into(),
            batch_id,
            partition: 0,
            sources: vec![SOURCE],
            watermark_ms: i64::MIN,
            checkpoint: true,
            replay: false,
        }
    }

    /// Restores both state partitions of the test job to version 0.
    fn restore_all(ex: &Executor) {
        for partition in 0..2 {
            ex.restore(&pb::RestoreTask {
                job: "j".into(),
                partition,
                target_version: 0,
            })
            .unwrap();
        }
    }

    /// A spec from the wire is validated again at deploy: one over a limit
    /// (here a window with 10^8 windows per record, which would allocate
    /// gigabytes for one record) or naming a path is refused, and nothing
    /// is deployed.
    #[test]
    fn a_deployed_spec_is_validated_again() {
        let dir = tempfile::tempdir().unwrap();
        let ex = executor(dir.path());
        let mut r = record(&job("skip"));
        let spec = r.spec.as_mut().unwrap();
        spec.pipeline.insert(
            1,
            pb::Step {
                kind: Some(pb::step::Kind::Window(pb::WindowStep {
                    size_ms: 100_000_000_000,
                    slide_ms: 1_000,
                    time: "ts".into(),
                    watermark_ms: 0,
                })),
            },
        );
        let e = ex.deploy(&r).unwrap_err();
        assert_eq!(e.class(), crate::FailureClass::User);
        assert!(e.to_string().contains("max_windows_per_record"), "{e}");
        let mut r = record(&job("skip"));
        r.spec.as_mut().unwrap().name = "../x".into();
        let e = ex.deploy(&r).unwrap_err();
        assert!(e.to_string().contains("name: must be"), "{e}");
        assert!(matches!(
            ex.stage_a(&stage_a(1)),
            Err(ExecError::UnknownJob(_))
        ));
    }

    /// Steps between key_by and aggregate apply to each record before it
    /// is keyed: here half the records are filtered out and the sum is of
    /// a column a map adds there.
    #[test]
    fn steps_between_key_by_and_aggregate_apply_to_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let ex = executor(&dir.path().join("state"));
        ex.deploy(&record(&format!(
            "name: j\nstate_partitions: 2\nsource:\n  generator: {{ partitions: 1, keys: 3, rate: 0, total: 10 }}\n\
             pipeline:\n  - key_by: key\n  - filter: \"value % 2 = 0\"\n  - map: {{ w: \"value * 10\" }}\n  \
             - aggregate: {{ n: {{}}, total: {{ sum: w }} }}\n\
             sink:\n  file: {{ path: \"{}\", format: jsonl }}\n",
            out.display()
        )))
        .unwrap();
        let a = ex.stage_a(&stage_a(1)).unwrap();
        assert_eq!(a.records_in, 10);
        restore_all(&ex);
        let mut rows = BTreeMap::new();
        for partition in 0..2 {
            ex.stage_b(&pb::StageBTask {
                partition,
                ..stage_b_task(1)
            })
            .unwrap();
            ex.commit(&pb::CommitTask {
                job: "j".into(),
                batch_id: 1,
                partition,
            })
            .unwrap();
            let text = std::fs::read_to_string(out.join(format!("batch-1-part-{partition}.jsonl")))
                .unwrap();
            for line in text.lines() {
                let v: serde_json::Value = serde_json::from_str(line).unwrap();
                rows.insert(
                    v["key"].as_str().unwrap().to_string(),
                    (v["n"].as_i64().unwrap(), v["total"].as_i64().unwrap()),
                );
            }
        }
        // Values 0, 2, 4, 6, 8 of keys k0, k2, k1, k0, k2.
        let want: BTreeMap<String, (i64, i64)> = [
            ("k0".to_string(), (2, 60)),
            ("k1".to_string(), (1, 40)),
            ("k2".to_string(), (2, 100)),
        ]
        .into();
        assert_eq!(rows, want);
    }

    #[test]
    fn failing_records_are_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let ex = executor(dir.path());
        ex.deploy(&record(&job("skip"))).unwrap();
        let r = ex.stage_a(&stage_a(1)).unwrap();
        assert_eq!((r.records_in, r.records_skipped), (10, 8));
        let mut out = 0;
        restore_all(&ex);
        for partition in 0..2 {
            let b = ex
                .stage_b(&pb::StageBTask {
                    job: "j".into(),
                    batch_id: 1,
                    partition,
                    sources: vec![SOURCE],
                    watermark_ms: i64::MIN,
                    checkpoint: true,
                    replay: false,
                })
                .unwrap();
            // Written in the background: durable at 1 once written.
            assert!(b.durable_version <= 1);
            out += b.records_out;
        }
        // values 0 and 1 survive: keys k0 and k1
        assert_eq!(out, 2);
        // Dropping the executor waits for its checkpoints; a new one
        // restores batch 1.
        drop(ex);
        let ex = executor(dir.path());
        ex.deploy(&record(&job("skip"))).unwrap();
        for partition in 0..2 {
            let r = ex
                .restore(&pb::RestoreTask {
                    job: "j".into(),
                    partition,
                    target_version: 1,
                })
                .unwrap();
            assert_eq!(r.restored_version, 1);
        }
    }

    #[test]
    fn a_partition_whose_checkpoint_was_refused_is_read_back_from_the_store() {
        use crate::state::tenure::tests::TestLease;
        let dir = tempfile::tempdir().unwrap();
        let ex = executor(dir.path());
        ex.deploy(&record(&job("skip"))).unwrap();
        let lease = Arc::new(TestLease::default());
        lease.set(1);
        let under = |epoch| Tenure::new(lease.clone(), epoch);
        let restore = |target_version, epoch| {
            ex.restore_under(
                &pb::RestoreTask {
                    job: "j".into(),
                    partition: 0,
                    target_version,
                },
                under(epoch),
            )
            .unwrap()
            .restored_version
        };
        assert_eq!(restore(0, 1), 0);
        ex.stage_a(&stage_a(1)).unwrap();
        ex.stage_b_with_blocks(&stage_b_task(1), &HashMap::new(), under(1))
            .unwrap();
        // (in memory; also waits for batch 1's checkpoint to be written)
        assert_eq!(restore(1, 1), 1);
        // Batch 2's checkpoint is refused: its epoch lost the lease (the
        // leader changed, and this executor registered again as epoch 2).
        // A replay, which pre-commits no output, so only the checkpoint is
        // refused (and in the background, so the task succeeds).
        ex.stage_a(&stage_a(2)).unwrap();
        lease.set(2);
        let replay = pb::StageBTask {
            replay: true,
            ..stage_b_task(2)
        };
        ex.stage_b_with_blocks(&replay, &HashMap::new(), under(1))
            .unwrap();
        // State in memory is at batch 2, but the store only restores 1:
        // the partition is read back, and batch 2 must be replayed.
        assert_eq!(restore(2, 2), 1);
        // Once the replay checkpointed again, memory is used as it is.
        ex.stage_a(&stage_a(2)).unwrap();
        ex.stage_b_with_blocks(&stage_b_task(2), &HashMap::new(), under(2))
            .unwrap();
        assert_eq!(restore(2, 2), 2);
    }

    #[test]
    fn output_is_not_pre_committed_under_a_lost_lease() {
        use crate::state::tenure::tests::TestLease;
        let dir = tempfile::tempdir().unwrap();
        let ex = executor(dir.path());
        let sink =
            |out: &std::path::Path| format!("sink:\n  file: {{ path: {} }}\n", out.display());
        let (out_b, out_a) = (dir.path().join("stateful"), dir.path().join("stateless"));
        let stateful = job("skip").replace("sink:\n  noop: {}\n", &sink(&out_b));
        let stateless = format!(
            "name: s\nsource:\n  generator: {{ partitions: 1, keys: 3, rate: 0, total: 10 }}\n{}",
            sink(&out_a)
        );
        ex.deploy(&record(&stateful)).unwrap();
        ex.deploy(&record(&stateless)).unwrap();
        let files = |out: &std::path::Path| std::fs::read_dir(out).unwrap().count();
        let lease = Arc::new(TestLease::default());
        lease.set(2);
        let stale = Tenure::new(lease.clone(), 1);
        let fenced = |e: ExecError| {
            assert!(matches!(e, ExecError::OutputFenced { .. }), "{e:?}");
            assert_eq!(e.class(), crate::FailureClass::External);
            let msg = e.to_string();
            assert!(msg.contains("not allowed to pre-commit"), "{msg}");
        };
        restore_all(&ex);
        ex.stage_a(&stage_a(1)).unwrap();
        fenced(
            ex.stage_b_with_blocks(&stage_b_task(1), &HashMap::new(), stale.clone())
                .unwrap_err(),
        );
        let stateless_task = pb::StageATask {
            job: "s".into(),
            ..stage_a(1)
        };
        fenced(ex.stage_a_under(&stateless_task, &stale).unwrap_err());
        assert_eq!((files(&out_a), files(&out_b)), (0, 0));
        // The current epoch pre-commits both.
        let current = Tenure::new(lease, 2);
        let a = ex.stage_a_under(&stateless_task, &current).unwrap();
        assert_eq!((a.records_out, files(&out_a)), (10, 1));
        restore_all(&ex);
        ex.stage_a(&stage_a(1)).unwrap();
        let mut with_output = 0;
        for partition in 0..2 {
            let task = pb::StageBTask {
                partition,
                ..stage_b_task(1)
            };
            let b = ex
                .stage_b_with_blocks(&task, &HashMap::new(), current.clone())
                .unwrap();
            with_output += usize::from(b.records_out > 0);
        }
        assert!(with_output > 0);
        assert_eq!(files(&out_b), with_output);
    }

    /// A batch that reads more than `max_bytes_per_partition` from one
    /// source partition fails as a user error naming the cap, the batch,
    /// the range and what to do, before its output is pre-committed; a
    /// replay of it (state rebuilt from a batch that committed under a
    /// larger cap) is not refused, and a larger cap lets it through.
    #[test]
    fn a_batch_over_its_byte_cap_fails_before_any_output() {
        let dir = tempfile::tempdir().unwrap();
        let ex = executor(dir.path());
        let out = dir.path().join("out");
        let spec = |cap: &str| {
            record(&format!(
                "name: s\nsource:\n  generator: {{ partitions: 1, keys: 3, rate: 0, total: 100000, max_bytes_per_partition: {cap} }}\nsink:\n  file: {{ path: {} }}\n",
                out.display()
            ))
        };
        let task = |replay| pb::StageATask {
            job: "s".into(),
            batch_id: 1,
            range: Some(pb::OffsetRange {
                partition: 0,
                start: 0,
                end: 100_000,
            }),
            watermark_ms: i64::MIN,
            replay,
        };
        ex.deploy(&spec("64KiB")).unwrap();
        let e = ex.stage_a(&task(false)).unwrap_err();
        assert!(matches!(e, ExecError::BatchTooLarge { .. }), "{e:?}");
        assert_eq!(e.class(), crate::FailureClass::User);
        let msg = e.to_string();
        for part in [
            "batch 1",
            "more than 65536 bytes",
            "source.generator.max_bytes_per_partition",
            "partition 0, offsets [0, 100000)",
            "submit the job again",
        ] {
            assert!(msg.contains(part), "{part:?} in {msg}");
        }
        let files = || std::fs::read_dir(&out).map_or(0, |d| d.count());
        assert_eq!(files(), 0, "nothing pre-committed");
        let replayed = ex.stage_a(&task(true)).unwrap();
        assert_eq!(replayed.records_in, 100_000);
        ex.deploy(&spec("64MiB")).unwrap();
        let r = ex.stage_a(&task(false)).unwrap();
        assert_eq!(
            (r.records_in, r.records_out, files()),
            (100_000, 100_000, 1)
        );
    }

    #[test]
    fn failing_records_fail_the_task_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let ex = executor(dir.path());
        ex.deploy(&record(&job("fail"))).unwrap();
        let e = ex.stage_a(&stage_a(1)).unwrap_err();
        assert_eq!(e.class(), crate::FailureClass::User);
        let msg = e.to_string();
        assert!(
            msg.contains("pipeline[0].filter") && msg.contains("overflow"),
            "{msg}"
        );
    }

    #[test]
    fn stage_b_needs_restored_state_and_its_shuffle_input() {
        let dir = tempfile::tempdir().unwrap();
        let ex = executor(dir.path());
        ex.deploy(&record(&job("skip"))).unwrap();
        let task = pb::StageBTask {
            job: "j".into(),
            batch_id: 1,
            partition: 0,
            sources: vec![SOURCE],
            watermark_ms: i64::MIN,
            checkpoint: false,
            replay: false,
        };
        assert!(matches!(ex.stage_b(&task), Err(ExecError::StateGap { .. })));
        ex.restore(&pb::RestoreTask {
            job: "j".into(),
            partition: 0,
            target_version: 0,
        })
        .unwrap();
        assert!(matches!(
            ex.stage_b(&task),
            Err(ExecError::MissingShuffle {
                source_partition: 0,
                ..
            })
        ));
        // the failed task dropped the partition: it must be restored again
        ex.stage_a(&stage_a(1)).unwrap();
        assert!(matches!(ex.stage_b(&task), Err(ExecError::StateGap { .. })));
    }

    #[test]
    fn stage_b_merges_only_the_output_of_the_plan_it_was_given() {
        let dir = tempfile::tempdir().unwrap();
        let ex = executor(dir.path());
        ex.deploy(&record(&job("skip"))).unwrap();
        let task = |partition, source, watermark_ms| pb::StageBTask {
            job: "j".into(),
            batch_id: 1,
            partition,
            sources: vec![source],
            watermark_ms,
            checkpoint: false,
            replay: false,
        };
        // Records out of both partitions, or the first failure.
        let stage_b = |source, watermark_ms| -> Result<u64, ExecError> {
            restore_all(&ex);
            let mut out = 0;
            for partition in 0..2 {
                out += ex
                    .stage_b(&task(partition, source, watermark_ms))?
                    .records_out;
            }
            Ok(out)
        };
        // Stage A of another plan of batch 1 (a deposed leader's): the same
        // source partition from offset 1, where only value 1 survives the
        // filter (0 and 1 do in the whole range).
        let other = pb::OffsetRange { start: 1, ..SOURCE };
        ex.stage_a(&pb::StageATask {
            range: Some(other),
            ..stage_a(1)
        })
        .unwrap();
        let missing = |r: Result<u64, ExecError>| {
            matches!(
                r,
                Err(ExecError::MissingShuffle {
                    source_partition: 0,
                    ..
                })
            )
        };
        assert!(missing(stage_b(SOURCE, i64::MIN)));
        ex.stage_a(&stage_a(1)).unwrap();
        // Nor is the output of the same range at another watermark used.
        assert!(missing(stage_b(SOURCE, 0)));
        // Both outputs are held; each plan's stage B merges its own.
        assert_eq!(stage_b(SOURCE, i64::MIN).unwrap(), 2);
        assert_eq!(stage_b(other, i64::MIN).unwrap(), 1);
    }

    /// The local backend, with writes of the checkpoints of one version
    /// failing (a state store that went away then).
    #[derive(Debug)]
    struct Flaky {
        inner: LocalBackend,
        failing: String,
    }

    impl StateBackend for Flaky {
        fn put_atomic(&self, path: &str, bytes: &[u8]) -> Result<(), crate::state::StateError> {
            if path.contains(&self.failing) {
                return Err(crate::state::StateError::Unavailable {
                    url: "flaky".into(),
                    path: path.into(),
                    detail: "put: the store is away".into(),
                });
            }
            self.inner.put_atomic(path, bytes)
        }
        fn get(&self, path: &str) -> Result<Option<Vec<u8>>, crate::state::StateError> {
            self.inner.get(path)
        }
        fn sweep_temp(&self, dir: &str) -> Result<usize, crate::state::StateError> {
            self.inner.sweep_temp(dir)
        }
        fn list(&self, dir: &str) -> Result<Vec<String>, crate::state::StateError> {
            self.inner.list(dir)
        }
        fn delete(&self, path: &str) -> Result<(), crate::state::StateError> {
            self.inner.delete(path)
        }
        fn describe(&self) -> String {
            "flaky local".into()
        }
    }

    #[test]
    fn a_failed_background_checkpoint_fails_the_next_task_and_the_restore_replays() {
        let dir = tempfile::tempdir().unwrap();
        let backend = Arc::new(Flaky {
            inner: LocalBackend::new(dir.path().to_path_buf()),
            failing: "00000000000000000002.".into(),
        });
        let ex = Executor::new(ExecutorConfig::default(), backend);
        ex.deploy(&record(&job("skip"))).unwrap();
        let restore = |target_version| {
            ex.restore(&pb::RestoreTask {
                job: "j".into(),
                partition: 0,
                target_version,
            })
            .unwrap()
            .restored_version
        };
        let stage_b = |batch_id| {
            ex.stage_a(&stage_a(batch_id)).unwrap();
            ex.stage_b(&stage_b_task(batch_id))
        };
        assert_eq!(restore(0), 0);
        stage_b(1).unwrap();
        // The batch itself succeeds: its checkpoint is written afterwards.
        let b = stage_b(2).unwrap();
        assert!(b.durable_version <= 1, "{}", b.durable_version);
        // A task after it learns of the failed write and fails, naming it:
        // the next one, or a later one if the write was still going on.
        let mut next = 3;
        let err = loop {
            match stage_b(next) {
                Err(e) => break e,
                Ok(b) => assert!(b.durable_version <= 1, "{}", b.durable_version),
            }
            next += 1;
            assert!(next < 1000, "the failed write was never reported");
        };
        assert!(
            matches!(err, ExecError::State { .. }) && err.to_string().contains("store is away"),
            "{err}"
        );
        // Restored from the store: batch 1 only (2 was never written, and
        // what follows does not chain on to 1), so the driver replays from 2.
        assert_eq!(restore(next - 1), 1);
    }
}
