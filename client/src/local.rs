//! `weir local`: a driver and an executor in one process, talking through
//! the same task interface a cluster uses, with the metadata checkpoint and
//! the state store in a local directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;
use weir_driver::cluster::{check_data_dir, RaftMetadata, Replica, ReplicaHandle};
use weir_driver::config::DriverConfig;
use weir_driver::http::DriverSite;
use weir_driver::lag::{run_poller, LagBoard};
use weir_driver::metrics::DriverSources;
use weir_driver::{
    submit_with, BatchReport, DriverOptions, JobDriver, Outcome, SubmitOptions, TaskFailure,
    TaskRunner,
};
use weir_executor::state::{LocalBackend, PartitionOptions};
use weir_executor::{ExecError, Executor, ExecutorConfig};
use weir_proto::pb;

/// Runs (or resumes) a job with its metadata and state under `root` until
/// `shutdown` is set or, with `exit_when_idle`, its finite source is done.
///
/// The metadata checkpoint is a single-replica Raft group: the same
/// replicated state machine a cluster runs, with a quorum of one.
pub fn run_job(
    spec: pb::JobSpec,
    root: &Path,
    options: DriverOptions,
    shutdown: &AtomicBool,
    report: &mut dyn FnMut(&BatchReport),
) -> anyhow::Result<Outcome> {
    run_job_with(
        spec,
        root,
        &LocalOptions::default(),
        options,
        shutdown,
        report,
    )
}

/// What `weir local` takes beside the spec and the driver's options.
#[derive(Debug, Clone, Default)]
pub struct LocalOptions {
    /// Upgrade options (`--reset-state`, `--from`) for an existing job
    /// whose spec changed.
    pub submit: SubmitOptions,
    /// The snapshot and retention policy of the job's state checkpoints.
    pub checkpoints: PartitionOptions,
    /// The web UI and metrics port.
    pub http: HttpPort,
}

/// Where `weir local` serves its web UI and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HttpPort {
    /// Nowhere.
    #[default]
    Off,
    /// On 127.0.0.1:4040, or the next free port (up to 4071; none, with
    /// a warning, when all are taken).
    Default,
    /// At this address, which must be free.
    At(String),
}

/// The first port `weir local` tries, like Spark's UI.
pub const DEFAULT_HTTP_PORT: u16 = 4040;
/// Ports tried after it.
const HTTP_PORT_TRIES: u16 = 32;

/// Binds the HTTP port `http` asks for.
async fn bind_http(http: &HttpPort) -> anyhow::Result<Option<tokio::net::TcpListener>> {
    match http {
        HttpPort::Off => Ok(None),
        HttpPort::At(address) => Ok(Some(weir_web::bind(address).await?)),
        HttpPort::Default => {
            for port in DEFAULT_HTTP_PORT..DEFAULT_HTTP_PORT + HTTP_PORT_TRIES {
                if let Ok(l) = tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                    return Ok(Some(l));
                }
            }
            // The job matters more than its UI.
            tracing::warn!(
                "ports {DEFAULT_HTTP_PORT}-{} on 127.0.0.1 are all taken: running without the web UI and metrics (pass --http-listen ADDR)",
                DEFAULT_HTTP_PORT + HTTP_PORT_TRIES - 1
            );
            Ok(None)
        }
    }
}

/// [`run_job`] with upgrade options and a checkpoint policy.
pub fn run_job_with(
    spec: pb::JobSpec,
    root: &Path,
    local: &LocalOptions,
    options: DriverOptions,
    shutdown: &AtomicBool,
    report: &mut dyn FnMut(&BatchReport),
) -> anyhow::Result<Outcome> {
    let dirs = LocalDirs::under(root);
    std::fs::create_dir_all(&dirs.state).map_err(|e| {
        anyhow::anyhow!(
            "cannot create state directory {}: {e}",
            dirs.state.display()
        )
    })?;
    with_local_replica(root, |replica, runtime| {
        let mut options = options;
        options.metrics.proposal = replica.proposals();
        let meta = Arc::new(RaftMetadata::new(replica.clone()));
        let _http = serve_http(&local.http, &replica, runtime, &options)?;
        let name = spec.name.clone();
        let submitted = submit_with(meta.as_ref(), spec, &local.submit)?;
        let record = &submitted.record;
        if !submitted.resumed {
            tracing::info!(job = %name, state_dir = %root.display(), fingerprint = %record.fingerprint, "starting a new job");
        } else if submitted.diff.changes.is_empty() && record.state_generation == 0 {
            tracing::info!(job = %name, state_dir = %root.display(), "resuming from the checkpoint");
        } else {
            tracing::info!(job = %name, state_dir = %root.display(), version = record.version, state_generation = record.state_generation, verdict = submitted.verdict(), "resuming with an upgraded spec");
        }
        let backend = Arc::new(LocalBackend::new(dirs.state.clone()));
        let config = ExecutorConfig {
            checkpoints: local.checkpoints,
            ..ExecutorConfig::default()
        };
        let executor = Executor::new(config, backend);
        let runner = Arc::new(LocalRunner::new(executor));
        let driver = JobDriver::new(meta, runner, &name, options)?;
        Ok(driver.run(shutdown, report)?)
    })
}

/// Opens the metadata checkpoint of a `weir local` directory and runs `f`
/// on it (for `weir diff` / `weir history` / `weir stop --purge` there).
pub fn with_local_meta<T>(
    root: &Path,
    f: impl FnOnce(Arc<RaftMetadata>) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    with_local_replica(root, |replica, _| f(Arc::new(RaftMetadata::new(replica))))
}

/// The HTTP port of a running `weir local` and its lag poller; both stop
/// when it is dropped.
struct LocalHttp {
    server: tokio::task::JoinHandle<()>,
    stop: Arc<AtomicBool>,
}

impl Drop for LocalHttp {
    fn drop(&mut self) {
        self.server.abort();
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Serves the web UI and metrics of the job `options` drives, as `http`
/// asks, and prints where.
fn serve_http(
    http: &HttpPort,
    replica: &ReplicaHandle,
    runtime: &tokio::runtime::Runtime,
    options: &DriverOptions,
) -> anyhow::Result<Option<LocalHttp>> {
    let Some(listener) = runtime.block_on(bind_http(http))? else {
        return Ok(None);
    };
    let url = format!("http://{}", listener.local_addr()?);
    let lag = LagBoard::default();
    let stop = Arc::new(AtomicBool::new(false));
    {
        let (replica, lag, stop) = (replica.clone(), lag.clone(), stop.clone());
        std::thread::Builder::new()
            .name("lag".into())
            .spawn(move || run_poller(replica, lag, stop))?;
    }
    let site = DriverSite::new(
        DriverSources {
            replica: replica.clone(),
            health: options.health.clone(),
            lag,
            executors: None,
        },
        &options.metrics,
        None,
    );
    // Plaintext on the loopback, like the rest of `weir local`.
    let policy = Arc::new(weir_security::Policy {
        tls: false,
        tokens: None,
    });
    let server = runtime.spawn(weir_web::serve(
        listener,
        None,
        policy,
        Arc::new(site),
        std::future::pending(),
    ));
    tracing::info!(%url, "web UI and metrics at {url} (/metrics)");
    Ok(Some(LocalHttp { server, stop }))
}

/// Opens the metadata replica of a `weir local` directory and runs `f` on
/// it and the runtime it uses.
fn with_local_replica<T>(
    root: &Path,
    f: impl FnOnce(ReplicaHandle, &tokio::runtime::Runtime) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let dirs = LocalDirs::under(root);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let config = DriverConfig::local(dirs.meta.clone());
    let is_new = check_data_dir(&config.data_dir, &config.cluster_id, config.id)
        .map_err(anyhow::Error::msg)?;
    let replica = Replica::start(
        &config,
        is_new,
        runtime.handle().clone(),
        weir_security::Transport::Insecure,
    )
    .map_err(anyhow::Error::msg)?;
    anyhow::ensure!(
        replica.wait_for_leadership(Duration::from_secs(10)),
        "the local metadata replica did not become leader; is another weir process using {}?",
        dirs.meta.display()
    );
    f(replica, &runtime)
}

/// Runs tasks on an in-process executor, spreading independent tasks over
/// the machine's cores.
pub struct LocalRunner {
    executor: Executor,
    threads: usize,
}

impl LocalRunner {
    /// A runner around `executor`.
    pub fn new(executor: Executor) -> Self {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        LocalRunner { executor, threads }
    }
}

/// Runs `f` over every task on up to `threads` threads, the calling thread
/// among them; results keep the task order, and the first task's failure
/// in that order is the one returned.
fn parallel<T: Sync, R: Send>(
    threads: usize,
    tasks: &[T],
    f: impl Fn(&T) -> Result<R, ExecError> + Sync,
) -> Result<Vec<R>, TaskFailure> {
    let chunk = tasks.len().div_ceil(threads.max(1)).max(1);
    let run = |part: &[T]| part.iter().map(&f).collect::<Result<Vec<R>, ExecError>>();
    // The last chunk runs here, so a stage whose tasks fit in one chunk
    // starts no thread: a thread of its own would add a spawn and two
    // wake-ups to the batch's path, each a wait for a core when the machine
    // is busy.
    let mut chunks = tasks.chunks(chunk);
    let last = chunks.next_back().unwrap_or_default();
    let results: Vec<Result<Vec<R>, ExecError>> = std::thread::scope(|s| {
        let handles: Vec<_> = chunks.map(|part| s.spawn(move || run(part))).collect();
        let last = run(last);
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .chain(std::iter::once(last))
            .collect()
    });
    let mut out = Vec::with_capacity(tasks.len());
    for r in results {
        out.extend(r.map_err(failure)?);
    }
    Ok(out)
}

fn failure(e: ExecError) -> TaskFailure {
    TaskFailure {
        class: e.class(),
        message: e.to_string(),
    }
}

impl TaskRunner for LocalRunner {
    fn deploy(&self, job: &pb::JobRecord) -> Result<(), TaskFailure> {
        self.executor.deploy(job).map_err(failure)
    }

    fn stage_a(&self, tasks: Vec<pb::StageATask>) -> Result<Vec<pb::StageAResult>, TaskFailure> {
        parallel(self.threads, &tasks, |t| self.executor.stage_a(t))
    }

    fn restore(&self, tasks: Vec<pb::RestoreTask>) -> Result<Vec<pb::RestoreResult>, TaskFailure> {
        parallel(self.threads, &tasks, |t| self.executor.restore(t))
    }

    fn stage_b(&self, tasks: Vec<pb::StageBTask>) -> Result<Vec<pb::StageBResult>, TaskFailure> {
        parallel(self.threads, &tasks, |t| self.executor.stage_b(t))
    }

    fn commit(&self, tasks: Vec<pb::CommitTask>) -> Result<(), TaskFailure> {
        parallel(self.threads, &tasks, |t| self.executor.commit(t)).map(|_| ())
    }
}

/// Where `weir local` keeps a job's metadata and state.
pub struct LocalDirs {
    /// The metadata checkpoint (a single-replica Raft group on sled).
    pub meta: PathBuf,
    /// State checkpoints.
    pub state: PathBuf,
}

impl LocalDirs {
    /// The layout under `root`.
    pub fn under(root: &Path) -> Self {
        LocalDirs {
            meta: root.join("meta"),
            state: root.join("state"),
        }
    }
}

/// A flag set by SIGINT or SIGTERM.
pub fn shutdown_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            rt.block_on(async move {
                weir_proto::process::shutdown_signal().await;
                tracing::info!("shutdown requested: stopping after the current batch");
                set.store(true, std::sync::atomic::Ordering::SeqCst);
            })
        })?;
    Ok(flag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread::{self, ThreadId};

    /// Runs `tasks` tasks on `threads` threads; each task reports its
    /// number and the thread it ran on.
    fn run(threads: usize, tasks: usize) -> Vec<(usize, ThreadId)> {
        let tasks: Vec<usize> = (0..tasks).collect();
        parallel(threads, &tasks, |&t| Ok((t, thread::current().id()))).unwrap()
    }

    #[test]
    fn results_keep_the_task_order() {
        for threads in 1..=4 {
            for tasks in 0..=9 {
                let order: Vec<usize> = run(threads, tasks).into_iter().map(|(t, _)| t).collect();
                assert_eq!(order, (0..tasks).collect::<Vec<_>>(), "{threads} threads");
            }
        }
    }

    #[test]
    fn tasks_that_fit_one_chunk_run_on_the_calling_thread() {
        let here = thread::current().id();
        assert!(run(2, 1).iter().all(|&(_, id)| id == here));
        assert!(run(1, 5).iter().all(|&(_, id)| id == here));
    }

    #[test]
    fn the_last_chunk_runs_on_the_calling_thread_and_the_others_on_their_own() {
        let here = thread::current().id();
        let ran = run(3, 6);
        let threads: Vec<ThreadId> = ran.chunks(2).map(|c| c[0].1).collect();
        for chunk in ran.chunks(2) {
            assert_eq!(chunk[0].1, chunk[1].1, "a chunk runs on one thread");
        }
        assert_eq!(threads[2], here);
        assert!(threads[0] != here && threads[1] != here && threads[0] != threads[1]);
    }

    #[test]
    fn the_first_failure_in_task_order_is_returned() {
        let tasks: Vec<usize> = (0..6).collect();
        let fail = |t: usize| ExecError::UnknownJob(format!("job{t}"));
        let result = parallel(2, &tasks, |&t| {
            if t == 1 || t == 4 {
                Err(fail(t))
            } else {
                Ok(t)
            }
        });
        let failure = result.unwrap_err();
        assert_eq!(failure.class, weir_driver::FailureClass::Internal);
        assert!(failure.message.contains("job1"), "{}", failure.message);
    }
}
