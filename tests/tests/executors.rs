//! Executors as processes: the driver's pieces run in this test process
//! (an `ExecutorControl` server that always leads, the metadata checkpoint
//! on sled, `RemoteRunner`, `JobDriver`), with three real `weir-executor`
//! processes on loopback sharing a local state root. A running count must
//! be exact per key after a clean run, after an executor is SIGKILLed
//! mid-job (and restarted as a new incarnation), and after one is paused
//! long enough to be replaced (SIGSTOP/SIGCONT): its late work is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir_driver::executors::{
    always_leader, control, ControlService, ExecutorRegistry, RegistryOptions, RemoteOptions,
    RemoteRunner,
};
use weir_driver::{submit, DriverOptions, JobDriver, Outcome, SledMetadata};
use weir_tests::{binary, latest_by_key, log_tail, read_file_sink, Proc};

const KEYS: u64 = 41;
const PARTITIONS: u64 = 3;

struct Cluster {
    rt: tokio::runtime::Runtime,
    registry: Arc<ExecutorRegistry>,
    control: String,
    dir: tempfile::TempDir,
    executors: BTreeMap<String, Proc>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Cluster {
    fn start() -> Cluster {
        // The driver's logs, shown for failing tests (or with --nocapture).
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                    .unwrap_or_else(|_| "info,sled=warn,h2=warn,tower=warn".into()),
            )
            .with_test_writer()
            .try_init();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let registry = Arc::new(ExecutorRegistry::new(RegistryOptions::default()));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let control = listener.local_addr().unwrap().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let service = ControlService::new(registry.clone(), always_leader());
        rt.spawn(control::serve(service, listener, async move {
            let _ = stopped.await;
        }));
        Cluster {
            rt,
            registry,
            control,
            dir: tempfile::tempdir().unwrap(),
            executors: BTreeMap::new(),
            stop: Some(stop),
        }
    }

    fn log(&self, id: &str) -> PathBuf {
        self.dir.path().join(format!("{id}.log"))
    }

    fn start_executor(&mut self, id: &str) {
        self.start_executor_with(id, &[]);
    }

    /// Starts executor `id` with extra environment (e.g. a crash point).
    fn start_executor_with(&mut self, id: &str, env: &[(&str, &str)]) {
        let state = self.dir.path().join("state");
        let state = state.to_string_lossy().into_owned();
        let p = Proc::start(
            &format!("executor {id}"),
            &binary("weir-executor"),
            &[
                "--id",
                id,
                "--listen",
                "127.0.0.1:0",
                "--drivers",
                &self.control,
                "--state-root",
                &state,
                "--slots",
                "2",
                "--insecure",
            ],
            &[
                &[(
                    "WEIR_LOG",
                    "info,weir_executor::service=debug,h2=warn,tower=warn",
                )],
                env,
            ]
            .concat(),
            &self.log(id),
        )
        .unwrap();
        self.executors.insert(id.to_string(), p);
    }

    fn logs(&self) -> String {
        self.executors
            .keys()
            .map(|id| log_tail(&self.log(id), 30))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits until exactly the executors `ids` are live.
    fn wait_live(&self, ids: &[&str]) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let live: Vec<String> = self
                .registry
                .live(Instant::now())
                .into_iter()
                .map(|e| e.id)
                .collect();
            if live == ids {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "live executors {live:?}, want {ids:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn epoch(&self, id: &str) -> u64 {
        self.registry
            .all()
            .into_iter()
            .find(|e| e.id == id)
            .map(|e| e.epoch)
            .unwrap()
    }

    fn signal(&self, id: &str, signal: &str) {
        let pid = self.executors[id].pid().to_string();
        let status = std::process::Command::new("kill")
            .args([signal, &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} {pid}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for id in self.executors.keys() {
            // a stopped process cannot die of SIGKILL's cleanup otherwise
            let pid = self.executors[id].pid().to_string();
            let _ = std::process::Command::new("kill")
                .args(["-CONT", &pid])
                .stderr(std::process::Stdio::null())
                .status();
        }
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A running job: its driver loop on a thread, the committed batch count.
struct RunningJob {
    name: String,
    out: PathBuf,
    total: u64,
    batches: Arc<AtomicU64>,
    runner: Arc<RemoteRunner>,
    thread: std::thread::JoinHandle<Result<Outcome, String>>,
}

fn run_job(cluster: &Cluster, name: &str, total: u64, per_batch: u64) -> RunningJob {
    let out = cluster.dir.path().join("out");
    let yaml = format!(
        "name: {name}\nbatch_interval: 50ms\ncheckpoint_every: 2\nstate_partitions: 4\n\
         source:\n  generator: {{ partitions: {PARTITIONS}, keys: {KEYS}, rate: 0, total: {total}, \
         max_records_per_partition: {per_batch} }}\n\
         pipeline:\n  - key_by: key\n  - aggregate: {{ count: {{}}, total: {{ sum: value }} }}\n\
         sink:\n  file: {{ path: {} }}\n",
        out.display()
    );
    let spec = weir_proto::spec::parse_spec(&yaml).unwrap();
    let meta = Arc::new(SledMetadata::open(&cluster.dir.path().join("meta")).unwrap());
    submit(meta.as_ref(), spec).unwrap();
    let runner = Arc::new(RemoteRunner::new(
        cluster.registry.clone(),
        cluster.rt.handle().clone(),
        RemoteOptions::default(),
    ));
    let options = DriverOptions {
        exit_when_idle: true,
        retry_backoff: Duration::from_millis(100),
        max_state_recoveries: 20,
        ..Default::default()
    };
    let driver = JobDriver::new(meta, runner.clone(), name, options).unwrap();
    let batches = Arc::new(AtomicU64::new(0));
    let counted = batches.clone();
    let thread = std::thread::spawn(move || {
        let shutdown = AtomicBool::new(false);
        driver
            .run(&shutdown, &mut |r| {
                counted.store(r.commit.batch_id, Ordering::SeqCst);
            })
            .map_err(|e| e.to_string())
    });
    RunningJob {
        name: name.to_string(),
        out,
        total,
        batches,
        runner,
        thread,
    }
}

impl RunningJob {
    fn wait_batch(&self, cluster: &Cluster, batch: u64) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.batches.load(Ordering::SeqCst) < batch {
            assert!(
                !self.thread.is_finished(),
                "job {} ended before batch {batch}",
                self.name
            );
            assert!(
                Instant::now() < deadline,
                "batch {batch} not committed\n{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits until executor `id` stopped itself at pause point `point`
    /// (`name@n`), while the job runs.
    fn wait_paused(&self, cluster: &Cluster, id: &str, point: &str) {
        let reached = format!("pause point {point} reached");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(cluster.log(id))
            .unwrap_or_default()
            .contains(&reached)
        {
            assert!(
                Instant::now() < deadline && !self.thread.is_finished(),
                "{id} never paused at {point}\n{}",
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn finish(self, cluster: &Cluster) -> Arc<RemoteRunner> {
        let deadline = Instant::now() + Duration::from_secs(300);
        while !self.thread.is_finished() {
            assert!(
                Instant::now() < deadline,
                "job {} did not finish\n{}",
                self.name,
                cluster.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let outcome = self.thread.join().unwrap();
        assert_eq!(
            outcome,
            Ok(Outcome::Finished),
            "job {}\n{}",
            self.name,
            cluster.logs()
        );
        check_running_counts(&self.out, self.total, cluster);
        self.runner
    }
}

/// count and sum of `value` per key, from the generator's definition.
fn expected(total: u64) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for g in 0..total {
        let e = out.entry(format!("\"k{}\"", g % KEYS)).or_insert((0, 0));
        e.0 += 1;
        e.1 += g;
    }
    out
}

fn check_running_counts(out: &Path, total: u64, cluster: &Cluster) {
    let rows = read_file_sink(out).unwrap();
    assert!(!rows.is_empty(), "no output\n{}", cluster.logs());
    // Counts only grow from batch to batch within a key: a batch counted
    // twice or state that went backwards shows up here.
    let mut seen: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in &rows {
        let key = r.value["key"].to_string();
        let count = r.value["count"].as_u64().unwrap();
        if let Some((batch, last)) = seen.get(&key) {
            assert!(
                count > *last && r.batch > *batch,
                "key {key}: count {count} in batch {} after {last} in batch {batch}",
                r.batch
            );
        }
        seen.insert(key, (r.batch, count));
    }
    let latest = latest_by_key(&rows);
    let want = expected(total);
    assert_eq!(latest.len(), want.len(), "keys in output");
    for (key, (count, sum)) in &want {
        let got = &latest[key];
        assert_eq!(got["count"].as_u64(), Some(*count), "count of {key}");
        assert_eq!(got["total"].as_u64(), Some(*sum), "sum of {key}");
    }
}

fn three_executors() -> Cluster {
    let mut cluster = Cluster::start();
    for id in ["e1", "e2", "e3"] {
        cluster.start_executor(id);
    }
    cluster.wait_live(&["e1", "e2", "e3"]);
    cluster
}

#[test]
fn three_executors_count_exactly() {
    let cluster = three_executors();
    let job = run_job(&cluster, "clean", 90_000, 5_000);
    let runner = job.finish(&cluster);
    let mut owners: Vec<String> = runner
        .owners("clean")
        .into_iter()
        .map(|o| o.executor_id)
        .collect();
    assert_eq!(owners.len(), 4);
    owners.sort();
    owners.dedup();
    assert_eq!(
        owners.len(),
        3,
        "state partitions spread over all executors"
    );
    // shuffle blocks crossed the network
    let fetched = (1..=3)
        .map(|i| std::fs::read_to_string(cluster.log(&format!("e{i}"))).unwrap())
        .filter(|log| {
            log.lines()
                .any(|l| l.contains("shuffle blocks fetched") && !l.contains("fetched=0"))
        })
        .count();
    assert!(fetched > 0, "no remote shuffle fetch\n{}", cluster.logs());
}

#[test]
fn a_killed_executor_is_replaced_and_counts_stay_exact() {
    let mut cluster = three_executors();
    let job = run_job(&cluster, "killed", 180_000, 5_000);
    job.wait_batch(&cluster, 3);
    let old_epoch = cluster.epoch("e2");
    cluster.executors.get_mut("e2").unwrap().kill().unwrap();
    // It is declared dead after the heartbeat timeout; the job goes on
    // with two executors.
    cluster.wait_live(&["e1", "e3"]);
    let at = job.batches.load(Ordering::SeqCst);
    job.wait_batch(&cluster, at + 2);
    // A restart with the same id is a new incarnation with a higher epoch.
    cluster.start_executor("e2");
    cluster.wait_live(&["e1", "e2", "e3"]);
    assert!(cluster.epoch("e2") > old_epoch + 1);
    job.finish(&cluster);
    if std::env::var("WEIR_TEST_SHOW_LOGS").is_ok() {
        eprintln!("{}", cluster.logs());
    }
}

#[test]
fn a_paused_executor_is_fenced_and_counts_stay_exact() {
    let cluster = three_executors();
    let job = run_job(&cluster, "paused", 180_000, 5_000);
    job.wait_batch(&cluster, 3);
    let old_epoch = cluster.epoch("e3");
    cluster.signal("e3", "-STOP");
    cluster.wait_live(&["e1", "e2"]);
    // Let the job go on without it, then wake it up: it finds its epoch
    // replaced, refuses the requests queued while it slept and registers
    // again.
    let at = job.batches.load(Ordering::SeqCst);
    job.wait_batch(&cluster, at + 2);
    cluster.signal("e3", "-CONT");
    cluster.wait_live(&["e1", "e2", "e3"]);
    assert!(cluster.epoch("e3") > old_epoch + 1);
    // Whether a request was queued while it slept depends on timing; a
    // request of the old epoch sent now must be refused either way.
    let address = cluster
        .registry
        .all()
        .into_iter()
        .find(|e| e.id == "e3")
        .map(|e| e.address)
        .unwrap();
    let refused = cluster.rt.block_on(async {
        let mut client = weir_proto::pb::executor_service_client::ExecutorServiceClient::connect(
            format!("http://{address}"),
        )
        .await
        .unwrap();
        client
            .commit(weir_proto::pb::CommitRequest {
                epoch: old_epoch,
                task: Some(weir_proto::pb::CommitTask {
                    job: "paused".into(),
                    batch_id: 1,
                    partition: 0,
                }),
            })
            .await
            .unwrap_err()
    });
    assert_eq!(
        refused.code(),
        tonic::Code::FailedPrecondition,
        "{refused:?}"
    );
    assert!(
        refused
            .message()
            .starts_with(&format!("stale epoch {old_epoch}")),
        "{}\n{}",
        refused.message(),
        log_tail(&cluster.log("e3"), 60)
    );
    job.finish(&cluster);
    if std::env::var("WEIR_TEST_SHOW_LOGS").is_ok() {
        eprintln!("{}", cluster.logs());
    }
}

#[test]
fn an_executor_paused_while_restoring_changes_no_files_once_replaced() {
    // e3 joins, is given a partition and stops itself in the middle of
    // restoring it: restored from the files, about to discard those above
    // the restored version. The partition moves on without it; its new
    // owner writes newer checkpoints (and prunes the older ones).
    let mut cluster = Cluster::start();
    cluster.start_executor("e1");
    cluster.start_executor("e2");
    cluster.wait_live(&["e1", "e2"]);
    let job = run_job(&cluster, "stale_restore", 600_000, 3_000);
    job.wait_batch(&cluster, 3);
    cluster.start_executor_with("e3", &[("WEIR_PAUSE_AT", "restore-discard")]);
    job.wait_paused(&cluster, "e3", "restore-discard@1");
    cluster.wait_live(&["e1", "e2"]);
    // Long enough for the driver to forget the plans of the batches before
    // the restored version: a restore that finds less must fail the job.
    let at = job.batches.load(Ordering::SeqCst);
    job.wait_batch(&cluster, at + 25);
    // The owners that wrote those checkpoints die; e3 wakes up late and
    // is the only executor left. Its stale restore must not delete the
    // newer files: restored from the store, the job resumes where it was.
    for id in ["e1", "e2"] {
        cluster.executors.get_mut(id).unwrap().kill().unwrap();
    }
    cluster.signal("e3", "-CONT");
    let refused = |cluster: &Cluster| {
        let log = std::fs::read_to_string(cluster.log("e3")).unwrap_or_default();
        log.contains("pause point restore-discard@1: continued") && log.contains("lost its lease")
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !refused(&cluster) {
        assert!(
            Instant::now() < deadline,
            "the late restore was not refused\n{}",
            log_tail(&cluster.log("e3"), 40)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    cluster.wait_live(&["e3"]);
    job.finish(&cluster);
}

#[test]
fn an_executor_paused_before_pre_commit_leaves_no_output_file_once_replaced() {
    // e3 stops itself in a stage-B task, before the partition's output is
    // pre-committed. The batch is re-run and committed elsewhere; woken up
    // late, e3 must not write that output again: a hidden file of a
    // committed batch is never made visible nor swept.
    let mut cluster = Cluster::start();
    cluster.start_executor("e1");
    cluster.start_executor("e2");
    cluster.start_executor_with("e3", &[("WEIR_PAUSE_AT", "stage-b@3")]);
    cluster.wait_live(&["e1", "e2", "e3"]);
    let job = run_job(&cluster, "stale_output", 300_000, 3_000);
    job.wait_paused(&cluster, "e3", "stage-b@3");
    cluster.wait_live(&["e1", "e2"]);
    let at = job.batches.load(Ordering::SeqCst);
    job.wait_batch(&cluster, at + 3);
    cluster.signal("e3", "-CONT");
    cluster.wait_live(&["e1", "e2", "e3"]);
    let out = job.out.clone();
    job.finish(&cluster);
    // Every batch committed: no output file is left hidden.
    let hidden: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(
        hidden.is_empty(),
        "hidden output files {hidden:?}\n{}",
        log_tail(&cluster.log("e3"), 40)
    );
    let log = std::fs::read_to_string(cluster.log("e3")).unwrap();
    assert!(
        log.contains("not allowed to pre-commit"),
        "the late pre-commit was not refused\n{}",
        log_tail(&cluster.log("e3"), 40)
    );
}

/// Three executors, `e2` set to abort at crash point `point`: the job runs
/// until `e2` dies there, goes on without it, takes it back as a new
/// incarnation, and its counts stay exact.
fn crash_executor_at(point: &str) {
    let mut cluster = Cluster::start();
    cluster.start_executor("e1");
    cluster.start_executor_with("e2", &[("WEIR_CRASH_AT", point)]);
    cluster.start_executor("e3");
    cluster.wait_live(&["e1", "e2", "e3"]);
    let name = point.replace(['@', '-'], "_");
    let job = run_job(&cluster, &name, 150_000, 5_000);
    let deadline = Instant::now() + Duration::from_secs(120);
    let e2 = cluster.executors.get_mut("e2").unwrap();
    while e2.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline && !job.thread.is_finished(),
            "e2 never reached crash point {point}\n{}",
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        std::fs::read_to_string(cluster.log("e2"))
            .unwrap()
            .contains(&format!("crash point {point} reached")),
        "e2 ended, but not at {point}\n{}",
        cluster.logs()
    );
    let at = job.batches.load(Ordering::SeqCst);
    job.wait_batch(&cluster, at + 1);
    cluster.start_executor("e2");
    job.finish(&cluster);
}

#[test]
fn an_executor_killed_in_stage_a_is_recovered_exactly() {
    crash_executor_at("stage-a@4");
}

#[test]
fn an_executor_killed_serving_shuffle_blocks_is_recovered_exactly() {
    crash_executor_at("shuffle-serve@3");
}

#[test]
fn an_executor_killed_fetching_shuffle_blocks_is_recovered_exactly() {
    crash_executor_at("shuffle-fetch@4");
}

#[test]
fn an_executor_killed_in_stage_b_is_recovered_exactly() {
    crash_executor_at("stage-b@4");
}

#[test]
fn an_executor_killed_writing_a_checkpoint_is_recovered_exactly() {
    crash_executor_at("checkpoint-write@3");
}

#[test]
fn an_executor_killed_committing_sink_output_is_recovered_exactly() {
    crash_executor_at("sink-commit@4");
}

#[test]
fn all_executors_killed_and_replaced_resume_from_the_state_store() {
    let mut cluster = three_executors();
    let job = run_job(&cluster, "replaced", 150_000, 5_000);
    job.wait_batch(&cluster, 5);
    for id in ["e1", "e2", "e3"] {
        cluster.executors.get_mut(id).unwrap().kill().unwrap();
    }
    // New executors, new ids: nothing of the old ones is in memory.
    for id in ["e4", "e5", "e6"] {
        cluster.start_executor(id);
    }
    let runner = job.finish(&cluster);
    let owners: Vec<String> = runner
        .owners("replaced")
        .into_iter()
        .map(|o| o.executor_id)
        .collect();
    assert!(
        owners
            .iter()
            .all(|o| ["e4", "e5", "e6"].contains(&o.as_str())),
        "state partitions owned by {owners:?}"
    );
}

/// The versions of each state partition's `kind` files (`delta` or
/// `snapshot`) of `job` under the cluster's state root, by partition dir.
fn checkpoint_versions(cluster: &Cluster, job: &str, kind: &str) -> BTreeMap<PathBuf, Vec<u64>> {
    let mut out = BTreeMap::new();
    let job_dir = cluster.dir.path().join("state").join(job);
    for operator in std::fs::read_dir(&job_dir).unwrap() {
        for part in std::fs::read_dir(operator.unwrap().path()).unwrap() {
            let part = part.unwrap().path();
            let mut versions: Vec<u64> = std::fs::read_dir(&part)
                .unwrap()
                .filter_map(|f| {
                    let name = f.unwrap().file_name().to_string_lossy().into_owned();
                    name.strip_suffix(&format!(".{kind}"))?.parse().ok()
                })
                .collect();
            versions.sort();
            out.insert(part, versions);
        }
    }
    out
}

#[test]
fn executors_snapshot_and_retain_as_their_settings_say() {
    // Every checkpoint a snapshot, nothing pruned: the state root shows the
    // settings were applied (by default the first checkpoint is a delta
    // only, and old snapshots are pruned).
    let settings = [
        ("WEIR_STATE_SNAPSHOT_EVERY", "0"),
        ("WEIR_STATE_RETAIN_SNAPSHOTS", "100"),
    ];
    let mut cluster = Cluster::start();
    for id in ["e1", "e2"] {
        cluster.start_executor_with(id, &settings);
    }
    cluster.wait_live(&["e1", "e2"]);
    // 8 batches of 15 000 records, checkpoints at the even ones; every
    // executor is killed mid-run, so the end state is restored from the
    // snapshots they wrote.
    let job = run_job(&cluster, "settings", 120_000, 5_000);
    job.wait_batch(&cluster, 4);
    // Checkpoint files are written after their batch commits: killed
    // between the delta and the snapshot of batch 4, an executor would
    // leave a store that restores batch 4 without its snapshot, which
    // nothing then writes again.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let snapshots = checkpoint_versions(&cluster, "settings", "snapshot");
        if snapshots.len() == 4 && snapshots.values().all(|v| v.contains(&4)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no snapshot of batch 4: {snapshots:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    for id in ["e1", "e2"] {
        cluster.executors.get_mut(id).unwrap().kill().unwrap();
    }
    for id in ["e3", "e4"] {
        cluster.start_executor_with(id, &settings);
    }
    job.finish(&cluster);
    let snapshots = checkpoint_versions(&cluster, "settings", "snapshot");
    let deltas = checkpoint_versions(&cluster, "settings", "delta");
    assert_eq!(snapshots.len(), 4, "state partitions: {snapshots:?}");
    for (part, versions) in &snapshots {
        assert_eq!(versions, &[2, 4, 6, 8], "snapshots of {}", part.display());
        // Retention keeps the deltas after the oldest snapshot kept.
        assert_eq!(deltas[part], [4, 6, 8], "deltas of {}", part.display());
    }
}

#[test]
fn a_joining_executor_takes_over_partitions_between_batches() {
    let mut cluster = Cluster::start();
    cluster.start_executor("e1");
    cluster.start_executor("e2");
    cluster.wait_live(&["e1", "e2"]);
    let job = run_job(&cluster, "joined", 150_000, 3_000);
    job.wait_batch(&cluster, 3);
    let owners = |job: &RunningJob| -> Vec<String> {
        job.runner
            .owners("joined")
            .into_iter()
            .map(|o| o.executor_id)
            .collect()
    };
    assert!(
        !owners(&job).contains(&"e3".to_string()),
        "{:?}",
        owners(&job)
    );
    cluster.start_executor("e3");
    cluster.wait_live(&["e1", "e2", "e3"]);
    // Four partitions over three executors: the newcomer gets one, at a
    // batch boundary, without any failure.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !owners(&job).contains(&"e3".to_string()) {
        assert!(
            Instant::now() < deadline && !job.thread.is_finished(),
            "no partition moved to e3: {:?}\n{}",
            owners(&job),
            cluster.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut spread = owners(&job);
    spread.sort();
    spread.dedup();
    assert_eq!(spread, ["e1", "e2", "e3"]);
    job.finish(&cluster);
}
