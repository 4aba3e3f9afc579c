//! [`RemoteRunner`]: the scheduler's tasks on `weir-executor` processes
//! over gRPC.
//!
//! Placement: only executors that have every custom operator of a job run
//! its tasks (see [`super::operators`]). Stage-A tasks go to the least
//! loaded of them (load per slot, at most `slots` at once on each); state partitions are assigned
//! to live executors by [`assign`] when the scheduler restores state, and
//! their stage-B tasks go to those owners with the locations of this
//! batch's stage-A outputs. An assignment changes only at a restore (which
//! the scheduler runs after any lost executor): moving a partition needs
//! its state restored where it lands.
//!
//! Failures: a transport error is retried with backoff while the executor
//! is alive in the registry; a task on an executor that is declared dead,
//! whose epoch changed, or that refuses the epoch, fails as `Internal` so
//! the scheduler restores state on the new owners and re-runs the batch,
//! except stage-A tasks, which simply move to another executor, and
//! commits, which are retried as `External` (a decided commit must finish;
//! sinks commit idempotently from any executor). A stage-B task that could
//! not fetch a block re-runs just that stage-A task and tries again.
//!
//! A call to an executor that is declared dead is abandoned but not
//! cancelled: if the executor was only paused it wakes up to a request of
//! its old epoch and refuses it, and a result it still returns is
//! discarded (logged as a late result).

use super::assignment::assign;
use super::operators::{can_run, describe};
use super::registry::ExecutorRegistry;
use crate::runner::{TaskFailure, TaskRunner};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::runtime::Handle;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tonic::transport::Channel;
use tonic::{Code, Status};
use tracing::{debug, info, warn};
use weir_proto::pb::executor_service_client::ExecutorServiceClient;
use weir_proto::pb::{self, step::Kind};
use weir_proto::wire;
use weir_proto::FailureClass;

/// Settings of a [`RemoteRunner`].
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Longest time one task call may take.
    pub task_timeout: Duration,
    /// First backoff after a transport error (doubles up to 1 s).
    pub retry_backoff: Duration,
    /// Attempts of one task on transport errors while its executor lives.
    pub max_attempts: u32,
    /// How long a call waits for a first live executor.
    pub wait_for_executors: Duration,
    /// How often an in-flight call checks that its executor still lives.
    pub liveness_poll: Duration,
    /// How executors are dialed (mutual TLS with the driver's certificate).
    pub transport: weir_security::Transport,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            task_timeout: Duration::from_secs(600),
            retry_backoff: Duration::from_millis(100),
            max_attempts: 8,
            wait_for_executors: Duration::from_secs(10),
            liveness_poll: Duration::from_millis(100),
            transport: weir_security::Transport::Insecure,
        }
    }
}

/// One incarnation of an executor, as a task destination.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    id: String,
    epoch: u64,
    address: String,
    slots: u32,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "executor {} (epoch {}, {})",
            self.id, self.epoch, self.address
        )
    }
}

#[derive(Debug, Clone)]
enum Call {
    Deploy(Box<pb::JobRecord>),
    StageA(pb::StageATask),
    StageB(pb::StageBTask, Vec<pb::ShuffleLocation>),
    Restore(pb::RestoreTask),
    Commit(pb::CommitTask),
}

impl Call {
    fn job(&self) -> &str {
        match self {
            Call::Deploy(r) => r.spec.as_ref().map_or("", |s| s.name.as_str()),
            Call::StageA(t) => &t.job,
            Call::StageB(t, _) => &t.job,
            Call::Restore(t) => &t.job,
            Call::Commit(t) => &t.job,
        }
    }

    fn describe(&self) -> String {
        match self {
            Call::Deploy(_) => format!("deploy of job {}", self.job()),
            Call::StageA(t) => format!(
                "stage A of job {}, batch {}, source partition {}",
                t.job,
                t.batch_id,
                t.range.map_or(0, |r| r.partition)
            ),
            Call::StageB(t, _) => format!(
                "stage B of job {}, batch {}, state partition {}",
                t.job, t.batch_id, t.partition
            ),
            Call::Restore(t) => format!(
                "restore of job {}, state partition {} to version {}",
                t.job, t.partition, t.target_version
            ),
            Call::Commit(t) => format!(
                "commit of job {}, batch {}, partition {}",
                t.job, t.batch_id, t.partition
            ),
        }
    }
}

#[derive(Debug)]
enum Reply {
    Done,
    StageA(pb::StageAResult),
    StageB(pb::StageBResult),
    Restored(pb::RestoreResult),
}

async fn send(
    mut client: ExecutorServiceClient<Channel>,
    epoch: u64,
    call: Call,
) -> Result<Reply, Status> {
    Ok(match call {
        Call::Deploy(job) => {
            client
                .deploy(pb::DeployRequest {
                    epoch,
                    job: Some(*job),
                })
                .await?;
            Reply::Done
        }
        Call::StageA(task) => Reply::StageA(
            client
                .stage_a(pb::StageARequest {
                    epoch,
                    task: Some(task),
                })
                .await?
                .into_inner(),
        ),
        Call::StageB(task, locations) => Reply::StageB(
            client
                .stage_b(pb::StageBRequest {
                    epoch,
                    task: Some(task),
                    locations,
                })
                .await?
                .into_inner(),
        ),
        Call::Restore(task) => Reply::Restored(
            client
                .restore(pb::RestoreRequest {
                    epoch,
                    task: Some(task),
                })
                .await?
                .into_inner(),
        ),
        Call::Commit(task) => {
            client
                .commit(pb::CommitRequest {
                    epoch,
                    task: Some(task),
                })
                .await?;
            Reply::Done
        }
    })
}

/// How one attempt of a call ended badly.
#[derive(Debug)]
enum AttemptError {
    /// The executor is gone or its epoch changed: the task's effects there
    /// are lost.
    Lost(String),
    /// The call did not get through (connection, timeout): may be retried.
    Transient(String),
    /// The executor's port refused the connection: its process is gone.
    Refused(String),
    /// The task itself failed on the executor.
    Task(TaskFailure, Option<u32>),
}

fn classify(status: Status, target: &Target, what: &str) -> AttemptError {
    if let Some(class) = wire::class(&status) {
        return AttemptError::Task(
            TaskFailure {
                class,
                message: status.message().to_string(),
            },
            wire::missing_shuffle(&status),
        );
    }
    match status.code() {
        Code::FailedPrecondition => {
            AttemptError::Lost(format!("{target} refused {what}: {}", status.message()))
        }
        Code::Unavailable if connection_refused(&status) => AttemptError::Refused(format!(
            "{what} on {target}: connection refused: {}",
            status.message()
        )),
        code => AttemptError::Transient(format!(
            "{what} on {target} did not get through ({code:?}): {}",
            status.message()
        )),
    }
}

/// Whether a failed call never reached a listening socket (the status's
/// error chain names an `ECONNREFUSED`).
fn connection_refused(status: &Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = e.source();
    }
    status.message().contains("Connection refused")
}

/// A failed task, with the source partition whose shuffle output was
/// missing when that was the cause.
#[derive(Debug)]
struct Failed {
    failure: TaskFailure,
    missing_source: Option<u32>,
}

impl From<TaskFailure> for Failed {
    fn from(failure: TaskFailure) -> Self {
        Failed {
            failure,
            missing_source: None,
        }
    }
}

fn internal(message: String) -> TaskFailure {
    TaskFailure {
        class: FailureClass::Internal,
        message,
    }
}

fn external(message: String) -> TaskFailure {
    TaskFailure {
        class: FailureClass::External,
        message,
    }
}

enum Placement {
    On(Target),
    Anywhere,
}

/// Stage-A outputs of one batch: source partition → (task, where it ran).
type Outputs = HashMap<u32, (pb::StageATask, Target)>;

/// Counts a task in flight on an executor while it lives.
struct LoadGuard<'a> {
    inner: &'a Inner,
    id: String,
}

impl<'a> LoadGuard<'a> {
    fn new(inner: &'a Inner, t: &Target) -> Self {
        *inner.lock().load.entry(t.id.clone()).or_insert(0) += 1;
        LoadGuard {
            inner,
            id: t.id.clone(),
        }
    }
}

impl Drop for LoadGuard<'_> {
    fn drop(&mut self) {
        if let Some(l) = self.inner.lock().load.get_mut(&self.id) {
            *l = l.saturating_sub(1);
        }
    }
}

#[derive(Default)]
struct State {
    /// Channels to executors, by executor id and address (pruned to the
    /// registered executors when a new one is made).
    channels: HashMap<(String, String), Channel>,
    jobs: HashMap<String, pb::JobRecord>,
    /// (executor id, epoch, job) that have the job deployed.
    deployed: HashSet<(String, u64, String)>,
    /// Per job: the owner of each state partition since the last restore.
    owners: HashMap<String, Vec<Target>>,
    /// Per job and batch: where the stage-A outputs are.
    outputs: HashMap<String, BTreeMap<u64, Outputs>>,
    /// Tasks in flight per executor id.
    load: HashMap<String, usize>,
    /// Slot limits per (executor id, epoch).
    slots: HashMap<(String, u64), Arc<Semaphore>>,
}

struct Inner {
    registry: Arc<ExecutorRegistry>,
    options: RemoteOptions,
    state: Mutex<State>,
}

/// Runs the scheduler's tasks on remote executors.
///
/// The [`TaskRunner`] methods block the calling thread on `handle`: call
/// them from a plain thread (as the scheduler's loop is), never from a
/// thread of that runtime.
pub struct RemoteRunner {
    inner: Arc<Inner>,
    handle: Handle,
}

impl RemoteRunner {
    /// A runner placing tasks on the live executors of `registry`, doing
    /// its network work on `handle`.
    pub fn new(registry: Arc<ExecutorRegistry>, handle: Handle, options: RemoteOptions) -> Self {
        RemoteRunner {
            inner: Arc::new(Inner {
                registry,
                options,
                state: Mutex::new(State::default()),
            }),
            handle,
        }
    }

    /// The executor owning each state partition of `job` since the last
    /// restore, in partition order (empty for a job without state or not
    /// yet restored).
    pub fn owners(&self, job: &str) -> Vec<pb::PartitionOwner> {
        self.inner
            .lock()
            .owners
            .get(job)
            .map(|o| {
                o.iter()
                    .zip(0..)
                    .map(|(t, partition)| pb::PartitionOwner {
                        partition,
                        executor_id: t.id.clone(),
                        address: t.address.clone(),
                        epoch: t.epoch,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Runs one future per item concurrently; results in item order, or the
    /// first failure.
    fn all<T, R, F>(
        &self,
        items: Vec<T>,
        f: impl Fn(Arc<Inner>, T) -> F,
    ) -> Result<Vec<R>, TaskFailure>
    where
        F: std::future::Future<Output = Result<R, TaskFailure>> + Send + 'static,
        R: Send + 'static,
    {
        let futures: Vec<F> = items
            .into_iter()
            .map(|item| f(self.inner.clone(), item))
            .collect();
        self.handle.block_on(async move {
            let n = futures.len();
            let mut set = JoinSet::new();
            for (i, fut) in futures.into_iter().enumerate() {
                set.spawn(async move { (i, fut.await) });
            }
            let mut out: Vec<Option<R>> = (0..n).map(|_| None).collect();
            while let Some(joined) = set.join_next().await {
                let (i, r) = joined.map_err(|e| internal(format!("task call panicked: {e}")))?;
                out[i] = Some(r?);
            }
            Ok(out
                .into_iter()
                .map(|r| r.expect("every task joined"))
                .collect())
        })
    }
}

/// How long a retiring job driver waits for executors to undeploy the job.
const UNDEPLOY_TIMEOUT: Duration = Duration::from_secs(3);

/// A client of an executor's tasks, with the task message limits.
fn task_client(channel: Channel) -> ExecutorServiceClient<Channel> {
    ExecutorServiceClient::new(channel)
        .max_decoding_message_size(weir_proto::wire::MAX_TASK_MESSAGE_BYTES)
        .max_encoding_message_size(weir_proto::wire::MAX_TASK_MESSAGE_BYTES)
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A client of executor `t`, whose certificate must name it (with
    /// TLS): its address came from its own registration.
    fn client(&self, t: &Target) -> Result<ExecutorServiceClient<Channel>, String> {
        let mut state = self.lock();
        let key = (t.id.clone(), t.address.clone());
        if let Some(c) = state.channels.get(&key) {
            return Ok(task_client(c.clone()));
        }
        let channel = self
            .options
            .transport
            .channel_to(
                &t.address,
                Some(weir_security::Identity::Executor(t.id.clone())),
                |e| {
                    e.connect_timeout(Duration::from_secs(1))
                        .timeout(self.options.task_timeout)
                },
            )
            .map_err(|e| format!("bad executor address {}: {e}", t.address))?;
        let known: HashSet<(String, String)> = self
            .registry
            .all()
            .into_iter()
            .map(|e| (e.id, e.address))
            .collect();
        state.channels.retain(|k, _| known.contains(k));
        state.channels.insert(key, channel.clone());
        Ok(task_client(channel))
    }

    fn is_current(&self, t: &Target) -> bool {
        self.registry.is_current(&t.id, t.epoch, Instant::now())
    }

    /// The custom operators `job` needs (none for an unknown job).
    fn needs(&self, job: &str) -> Vec<String> {
        self.lock()
            .jobs
            .get(job)
            .and_then(|r| r.spec.as_ref())
            .map(weir_proto::spec::custom_operators)
            .unwrap_or_default()
    }

    /// The live executors that can run `job`'s tasks.
    fn live(&self, job: &str) -> Vec<Target> {
        let needs = self.needs(job);
        self.registry
            .live(Instant::now())
            .into_iter()
            .filter(|e| can_run(&e.operators, &needs))
            .map(|e| Target {
                id: e.id,
                epoch: e.epoch,
                address: e.address,
                slots: e.slots,
            })
            .collect()
    }

    /// The live executors that can run `job`, waiting a while for a first one.
    async fn wait_live(&self, job: &str) -> Result<Vec<Target>, TaskFailure> {
        let deadline = Instant::now() + self.options.wait_for_executors;
        loop {
            let live = self.live(job);
            if !live.is_empty() {
                return Ok(live);
            }
            if Instant::now() >= deadline {
                let needs = self.needs(job);
                if needs.is_empty() {
                    return Err(external(format!(
                        "no live executor has registered within {:?}",
                        self.options.wait_for_executors
                    )));
                }
                return Err(external(format!(
                    "job {job} needs custom operators {}; no live executor has them within {:?} (live executors: {}); start executors built with them",
                    needs.join(", "),
                    self.options.wait_for_executors,
                    describe(&self.registry.live(Instant::now()))
                )));
            }
            tokio::time::sleep(self.options.liveness_poll).await;
        }
    }

    /// The live executor that can run `job` with the least load per slot
    /// (lowest id on ties).
    async fn pick(&self, job: &str) -> Result<Target, TaskFailure> {
        let live = self.wait_live(job).await?;
        let state = self.lock();
        let load = |t: &Target| {
            state.load.get(&t.id).copied().unwrap_or(0) as f64 / f64::from(t.slots.max(1))
        };
        Ok(live
            .into_iter()
            .min_by(|a, b| load(a).total_cmp(&load(b)).then_with(|| a.id.cmp(&b.id)))
            .expect("wait_live returns at least one"))
    }

    fn slot_limit(&self, t: &Target) -> Arc<Semaphore> {
        self.lock()
            .slots
            .entry((t.id.clone(), t.epoch))
            .or_insert_with(|| Arc::new(Semaphore::new(t.slots.max(1) as usize)))
            .clone()
    }

    /// Records that `t` has `job` deployed, forgetting the deployments of
    /// executor incarnations that are gone.
    fn mark_deployed(&self, t: &Target, job: String) {
        let current: HashSet<(String, u64)> = self
            .registry
            .all()
            .into_iter()
            .filter(|e| e.alive)
            .map(|e| (e.id, e.epoch))
            .collect();
        let mut state = self.lock();
        state
            .deployed
            .retain(|(id, epoch, _)| current.contains(&(id.clone(), *epoch)));
        state.deployed.insert((t.id.clone(), t.epoch, job));
    }

    /// Drops what is kept for `job` and asks the executors that have it
    /// deployed, in the epoch they have it, to drop it (an executor that
    /// restarted since has it no more, and refuses the old epoch). Waits
    /// for the answers (at most [`UNDEPLOY_TIMEOUT`]), so that an undeploy
    /// never overtakes the deploy of the job's next driver.
    async fn retire(self: &Arc<Self>, job: &str) {
        let deployed: Vec<(String, u64)> = {
            let mut state = self.lock();
            state.jobs.remove(job);
            state.owners.remove(job);
            state.outputs.remove(job);
            let mine = state
                .deployed
                .iter()
                .filter(|(_, _, j)| j == job)
                .map(|(id, epoch, _)| (id.clone(), *epoch))
                .collect();
            state.deployed.retain(|(_, _, j)| j != job);
            mine
        };
        let executors = self.registry.all();
        let mut calls = JoinSet::new();
        for (id, epoch) in deployed {
            let Some(e) = executors.iter().find(|e| e.id == id && e.epoch == epoch) else {
                continue;
            };
            let target = Target {
                id,
                epoch,
                address: e.address.clone(),
                slots: e.slots,
            };
            let (inner, job) = (self.clone(), job.to_string());
            calls.spawn(async move {
                let undeployed = match inner.client(&target) {
                    Ok(mut client) => client
                        .undeploy(pb::UndeployRequest {
                            epoch,
                            job: job.clone(),
                        })
                        .await
                        .map(|_| ())
                        .map_err(|s| s.message().to_string()),
                    Err(e) => Err(e),
                };
                match undeployed {
                    Ok(()) => debug!(executor_id = %target.id, job = %job, "job undeployed"),
                    Err(e) => debug!(executor_id = %target.id, job = %job, error = %e, "undeploy not delivered; the executor drops the job when it restarts"),
                }
            });
        }
        let _ = tokio::time::timeout(UNDEPLOY_TIMEOUT, calls.join_all()).await;
    }

    /// Completes when `t` is no longer alive in its epoch.
    async fn gone(&self, t: &Target) {
        while self.is_current(t) {
            tokio::time::sleep(self.options.liveness_poll).await;
        }
    }

    /// One call on one executor, after deploying the job there if needed.
    async fn attempt(&self, t: &Target, call: Call) -> Result<Reply, AttemptError> {
        if !matches!(call, Call::Deploy(_)) {
            let job = call.job().to_string();
            let record = {
                let state = self.lock();
                match state.jobs.get(&job) {
                    Some(r)
                        if !state
                            .deployed
                            .contains(&(t.id.clone(), t.epoch, job.clone())) =>
                    {
                        Some(r.clone())
                    }
                    _ => None,
                }
            };
            if let Some(record) = record {
                self.attempt_once(t, Call::Deploy(Box::new(record))).await?;
                self.mark_deployed(t, job);
            }
        }
        self.attempt_once(t, call).await
    }

    async fn attempt_once(&self, t: &Target, call: Call) -> Result<Reply, AttemptError> {
        let what = call.describe();
        let client = self.client(t).map_err(AttemptError::Lost)?;
        let mut rpc = tokio::spawn(send(client, t.epoch, call));
        tokio::select! {
            joined = &mut rpc => {
                let answer = joined.map_err(|e| AttemptError::Transient(e.to_string()))?;
                match answer {
                    Ok(reply) if self.is_current(t) => Ok(reply),
                    Ok(_) => {
                        warn!(executor_id = %t.id, epoch = t.epoch, task = %what, "discarded a result from an executor that lost its epoch");
                        Err(AttemptError::Lost(format!("{t} lost its epoch while running {what}")))
                    }
                    Err(status) => Err(classify(status, t, &what)),
                }
            }
            () = self.gone(t) => {
                // Not cancelled: a paused executor wakes up to a request of
                // its old epoch, refuses it, and that is logged here.
                let (id, epoch, late_what) = (t.id.clone(), t.epoch, what.clone());
                tokio::spawn(async move {
                    match rpc.await {
                        Ok(Ok(_)) => warn!(executor_id = %id, epoch, task = %late_what, "discarded a late result of a lost executor"),
                        Ok(Err(s)) => info!(executor_id = %id, epoch, task = %late_what, answer = s.message(), "late answer of a lost executor"),
                        Err(_) => {}
                    }
                });
                Err(AttemptError::Lost(format!("{t} was declared dead while running {what}")))
            }
        }
    }

    /// Runs a call to completion: retries transport errors while the
    /// executor lives, moves a call placed anywhere to another executor
    /// when its executor is lost.
    async fn run(&self, call: Call, placement: Placement) -> Result<(Reply, Target), Failed> {
        let what = call.describe();
        let mut backoff = self.options.retry_backoff;
        let mut attempts = 0;
        loop {
            let t = match &placement {
                Placement::On(t) => t.clone(),
                Placement::Anywhere => self.pick(call.job()).await?,
            };
            if !self.is_current(&t) {
                return Err(
                    internal(format!("{t} is no longer live: {what} must run elsewhere")).into(),
                );
            }
            let permits = self.slot_limit(&t);
            let result = {
                let _permit = permits.acquire_owned().await;
                // Undone on drop: the future may be dropped mid-call when a
                // sibling task fails.
                let _load = LoadGuard::new(self, &t);
                self.attempt(&t, call.clone()).await
            };
            attempts += 1;
            match result {
                Ok(reply) => return Ok((reply, t)),
                Err(AttemptError::Task(failure, missing_source)) => {
                    return Err(Failed {
                        failure,
                        missing_source,
                    })
                }
                Err(AttemptError::Refused(message)) => {
                    // A stream to a live process is never refused: declare
                    // it dead now rather than after its heartbeat timeout.
                    self.registry.declare_dead(&t.id, t.epoch, &message);
                    warn!(executor_id = %t.id, epoch = t.epoch, task = %what, error = %message, "executor lost");
                    if matches!(placement, Placement::On(_))
                        || attempts >= self.options.max_attempts
                    {
                        return Err(internal(message).into());
                    }
                }
                Err(AttemptError::Lost(message)) => {
                    warn!(executor_id = %t.id, epoch = t.epoch, task = %what, error = %message, "executor lost");
                    if matches!(placement, Placement::On(_))
                        || attempts >= self.options.max_attempts
                    {
                        return Err(internal(message).into());
                    }
                }
                Err(AttemptError::Transient(message)) => {
                    debug!(executor_id = %t.id, task = %what, error = %message, "call failed; retrying");
                    if attempts >= self.options.max_attempts {
                        let failure = if self.is_current(&t) {
                            external(message)
                        } else {
                            internal(message)
                        };
                        return Err(failure.into());
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    fn record_output(&self, task: &pb::StageATask, t: Target) {
        let partition = task.range.map_or(0, |r| r.partition);
        let mut state = self.lock();
        let batches = state.outputs.entry(task.job.clone()).or_default();
        // Stage B of a batch follows its stage A; older outputs are only
        // kept for a late re-run of the previous batch.
        let keep_from = task.batch_id.saturating_sub(1);
        batches.retain(|b, _| *b >= keep_from);
        batches
            .entry(task.batch_id)
            .or_default()
            .insert(partition, (task.clone(), t));
    }

    async fn stage_a(&self, task: pb::StageATask) -> Result<pb::StageAResult, TaskFailure> {
        match self
            .run(Call::StageA(task.clone()), Placement::Anywhere)
            .await
        {
            Ok((Reply::StageA(r), t)) => {
                self.record_output(&task, t);
                Ok(r)
            }
            Ok((other, _)) => Err(internal(format!("unexpected reply {other:?} to stage A"))),
            Err(f) => Err(f.failure),
        }
    }

    fn locations(&self, task: &pb::StageBTask) -> Result<Vec<pb::ShuffleLocation>, TaskFailure> {
        let state = self.lock();
        let outputs = state
            .outputs
            .get(&task.job)
            .and_then(|b| b.get(&task.batch_id));
        task.sources
            .iter()
            .map(|r| r.partition)
            .map(|s| {
                outputs
                    .and_then(|o| o.get(&s))
                    .map(|(_, t)| pb::ShuffleLocation {
                        source_partition: s,
                        executor_address: t.address.clone(),
                        executor_id: t.id.clone(),
                        epoch: t.epoch,
                    })
                    .ok_or_else(|| {
                        internal(format!(
                            "job {}, batch {}: no stage-A output of source partition {s} is known; re-run the batch",
                            task.job, task.batch_id
                        ))
                    })
            })
            .collect()
    }

    async fn stage_b(&self, task: pb::StageBTask) -> Result<pb::StageBResult, TaskFailure> {
        let owner = self
            .lock()
            .owners
            .get(&task.job)
            .and_then(|o| o.get(task.partition as usize).cloned());
        let Some(owner) = owner.filter(|o| self.is_current(o)) else {
            return Err(internal(format!(
                "job {}, state partition {}: its owner is not live; restore it on a live executor",
                task.job, task.partition
            )));
        };
        let mut reruns = 0;
        loop {
            let locations = self.locations(&task)?;
            let used = |source: u32| {
                locations
                    .iter()
                    .find(|l| l.source_partition == source)
                    .map(|l| l.executor_address.clone())
                    .unwrap_or_default()
            };
            let used: HashMap<u32, String> = task
                .sources
                .iter()
                .map(|r| (r.partition, used(r.partition)))
                .collect();
            match self
                .run(
                    Call::StageB(task.clone(), locations),
                    Placement::On(owner.clone()),
                )
                .await
            {
                Ok((Reply::StageB(r), _)) => return Ok(r),
                Ok((other, _)) => {
                    return Err(internal(format!("unexpected reply {other:?} to stage B")))
                }
                Err(Failed {
                    missing_source: Some(source),
                    failure,
                }) if reruns < 2 => {
                    reruns += 1;
                    info!(job = %task.job, batch_id = task.batch_id, partition = task.partition, source, error = %failure.message, "re-running the stage-A task whose output is missing");
                    let address = used.get(&source).cloned().unwrap_or_default();
                    self.rerun_stage_a(&task, source, &address).await?;
                }
                Err(f) => return Err(f.failure),
            }
        }
    }

    /// Re-runs the stage-A task of `source` unless another stage-B task
    /// already moved it to a live executor.
    async fn rerun_stage_a(
        &self,
        task: &pb::StageBTask,
        source: u32,
        used_address: &str,
    ) -> Result<(), TaskFailure> {
        let Some(range) = task.sources.iter().find(|r| r.partition == source).copied() else {
            return Err(internal(format!(
                "job {}, batch {}: source partition {source} is not among the stage-B task's sources",
                task.job, task.batch_id
            )));
        };
        // The stage-A task of the stage-B task's plan (the recorded one can
        // be of an earlier plan of the batch).
        let a_task = pb::StageATask {
            job: task.job.clone(),
            batch_id: task.batch_id,
            range: Some(range),
            watermark_ms: task.watermark_ms,
            replay: task.replay,
        };
        let ran_on = self
            .lock()
            .outputs
            .get(&task.job)
            .and_then(|b| b.get(&task.batch_id))
            .and_then(|o| o.get(&source))
            .filter(|(recorded, _)| *recorded == a_task)
            .map(|(_, t)| t.clone());
        if let Some(ran_on) = ran_on {
            if ran_on.address != used_address && self.is_current(&ran_on) {
                // Another stage-B task of this batch already re-ran it.
                return Ok(());
            }
        }
        self.stage_a(a_task).await.map(|_| ())
    }

    async fn restore(
        &self,
        task: pb::RestoreTask,
        owner: Target,
    ) -> Result<pb::RestoreResult, TaskFailure> {
        match self.run(Call::Restore(task), Placement::On(owner)).await {
            Ok((Reply::Restored(r), _)) => Ok(r),
            Ok((other, _)) => Err(internal(format!("unexpected reply {other:?} to restore"))),
            Err(f) => Err(f.failure),
        }
    }

    async fn commit(&self, task: pb::CommitTask) -> Result<(), TaskFailure> {
        let placement = {
            let state = self.lock();
            let owner = state
                .owners
                .get(&task.job)
                .and_then(|o| o.get(task.partition as usize))
                .or_else(|| {
                    state
                        .outputs
                        .get(&task.job)
                        .and_then(|b| b.get(&task.batch_id))
                        .and_then(|o| o.get(&task.partition))
                        .map(|(_, t)| t)
                })
                .cloned();
            drop(state);
            match owner.filter(|t| self.is_current(t)) {
                Some(t) => Placement::On(t),
                // Sinks commit idempotently per (job, batch, partition)
                // from any executor: the pre-committed output is in the
                // sink's target, not in the executor that wrote it.
                None => Placement::Anywhere,
            }
        };
        match self.run(Call::Commit(task), placement).await {
            Ok(_) => Ok(()),
            // A decided commit must finish: anything but the job's own
            // fault is retried by the scheduler.
            Err(f)
                if matches!(
                    f.failure.class,
                    FailureClass::User | FailureClass::OutputLost
                ) =>
            {
                Err(f.failure)
            }
            Err(f) => Err(external(f.failure.message)),
        }
    }
}

fn state_partitions(record: &pb::JobRecord) -> Option<u32> {
    let spec = record.spec.as_ref()?;
    spec.pipeline
        .iter()
        .any(|s| matches!(s.kind, Some(Kind::Aggregate(_))))
        .then_some(spec.state_partitions)
}

impl TaskRunner for RemoteRunner {
    fn retire(&self, job: &str) {
        self.handle.block_on(self.inner.retire(job));
    }

    fn deploy(&self, job: &pb::JobRecord) -> Result<(), TaskFailure> {
        let name = job
            .spec
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or_default();
        self.inner.lock().jobs.insert(name.clone(), job.clone());
        let live = self.handle.block_on(self.inner.wait_live(&name))?;
        let record = job.clone();
        let results = self.all(live, move |inner, t| {
            let record = record.clone();
            async move {
                match inner.run(Call::Deploy(Box::new(record.clone())), Placement::On(t.clone())).await {
                    Ok(_) => {
                        let name = record.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default();
                        inner.mark_deployed(&t, name);
                        Ok(true)
                    }
                    Err(f) if f.failure.class == FailureClass::User => Err(f.failure),
                    // Deployed again before its first task there.
                    Err(f) => {
                        warn!(executor_id = %t.id, error = %f.failure.message, "deploy failed; retried before the executor's first task");
                        Ok(false)
                    }
                }
            }
        })?;
        if results.iter().any(|ok| *ok) {
            info!(job = %name, executors = results.iter().filter(|ok| **ok).count(), "job deployed");
            Ok(())
        } else {
            Err(external(format!(
                "job {name} could not be deployed on any executor"
            )))
        }
    }

    fn stage_a(&self, tasks: Vec<pb::StageATask>) -> Result<Vec<pb::StageAResult>, TaskFailure> {
        self.all(
            tasks,
            |inner, task| async move { inner.stage_a(task).await },
        )
    }

    fn restore(&self, tasks: Vec<pb::RestoreTask>) -> Result<Vec<pb::RestoreResult>, TaskFailure> {
        let Some(job) = tasks.first().map(|t| t.job.clone()) else {
            return Ok(Vec::new());
        };
        let live = self.handle.block_on(self.inner.wait_live(&job))?;
        let owners = {
            let mut state = self.inner.lock();
            let partitions = state
                .jobs
                .get(&job)
                .and_then(state_partitions)
                .unwrap_or(0)
                .max(tasks.iter().map(|t| t.partition + 1).max().unwrap_or(0));
            let previous: Vec<Option<String>> = state
                .owners
                .get(&job)
                .map(|o| o.iter().map(|t| Some(t.id.clone())).collect())
                .unwrap_or_default();
            let ids: Vec<String> = live.iter().map(|t| t.id.clone()).collect();
            let assigned = assign(&previous, partitions, &ids).expect("live is not empty");
            let owners: Vec<Target> = assigned
                .iter()
                .map(|id| {
                    live.iter()
                        .find(|t| t.id == *id)
                        .cloned()
                        .expect("assigned to a live executor")
                })
                .collect();
            info!(job = %job, owners = ?assigned, "state partitions assigned");
            state.owners.insert(job.clone(), owners.clone());
            owners
        };
        self.all(tasks, move |inner, task| {
            let owner = owners[task.partition as usize].clone();
            async move { inner.restore(task, owner).await }
        })
    }

    fn stage_b(&self, tasks: Vec<pb::StageBTask>) -> Result<Vec<pb::StageBResult>, TaskFailure> {
        self.all(
            tasks,
            |inner, task| async move { inner.stage_b(task).await },
        )
    }

    fn commit(&self, tasks: Vec<pb::CommitTask>) -> Result<(), TaskFailure> {
        self.all(tasks, |inner, task| async move { inner.commit(task).await })
            .map(|_| ())
    }

    fn rebalance_wanted(&self, job: &str) -> bool {
        let live = self.inner.live(job);
        let state = self.inner.lock();
        let Some(owners) = state.owners.get(job) else {
            return false;
        };
        let current: Vec<Option<String>> = owners.iter().map(|t| Some(t.id.clone())).collect();
        let ids: Vec<String> = live.iter().map(|t| t.id.clone()).collect();
        // A dead owner is the failure path's business (its task fails and
        // the batch recovers); here only a join moves partitions.
        owners
            .iter()
            .all(|o| live.iter().any(|t| t.id == o.id && t.epoch == o.epoch))
            && assign(&current, owners.len() as u32, &ids)
                .is_some_and(|wanted| wanted.iter().zip(owners).any(|(w, o)| *w != o.id))
    }
}
