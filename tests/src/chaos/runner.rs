//! One chaos run: start the cluster, run the rounds of jobs, fire the
//! faults one by one, measure, verify, report.

use super::cluster::{default_bin_dir, ChaosCluster};
use super::observe::Probe;
use super::report::{FaultRecord, JobResult, Report};
use super::schedule::{two_drivers_include_leader, Fault, FaultKind, Schedule, Timing};
use super::verify::{self, SinkHistory};
use super::workload::{ChaosJob, Workload, WINDOW_SIZE_MS, WINDOW_SLIDE_MS};
use anyhow::{bail, Context};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use weir_proto::pb;

/// How a run is set up.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// The faults.
    pub schedule: Schedule,
    /// Where the cluster's directories and logs go; a temporary directory
    /// when `None` (kept when the run fails or `keep` is set).
    pub work_dir: Option<PathBuf>,
    /// Keep the work directory after a clean run.
    pub keep: bool,
    /// Directory of the Weir binaries; default: next to this executable.
    pub bin_dir: Option<PathBuf>,
    /// The executors' state root (`hdfs://...` or a directory); default: a
    /// directory under the work directory.
    pub state_root: Option<String>,
    /// Write the JSON report here.
    pub report: Option<PathBuf>,
    /// Input records per second of each job.
    pub rate: u64,
    /// Longest input of one round of jobs, in seconds.
    pub max_round_secs: u64,
    /// Driver replicas and executors.
    pub drivers: usize,
    /// Executors.
    pub executors: usize,
    /// Kafka bootstrap servers: each round also runs a running count from
    /// one Kafka topic to another (`kafka-count-rN`).
    pub kafka: Option<String>,
    /// TLS on every port, with tokens for the CLI (the default); `false`
    /// runs the cluster `--insecure`.
    pub tls: bool,
}

impl ChaosOptions {
    /// Defaults for `schedule`: 1500 records/s per job, rounds of at most
    /// 3 minutes, 3 drivers and 3 executors.
    pub fn new(schedule: Schedule) -> ChaosOptions {
        ChaosOptions {
            schedule,
            work_dir: None,
            keep: false,
            bin_dir: None,
            state_root: None,
            report: None,
            rate: 1_500,
            max_round_secs: 180,
            drivers: 3,
            executors: 3,
            kafka: None,
            tls: true,
        }
    }
}

/// Longest wait for a fault's detection and next commit.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for the cluster to be whole again after a fault.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(60);
/// How long after its processes are back a fault may stay undetected
/// before the run moves on (reported as not detected).
const DETECTION_GRACE: Duration = Duration::from_secs(10);
/// Status poll period while a fault is being recovered from.
const POLL: Duration = Duration::from_millis(50);

/// Runs the schedule and returns the report (also printed, and written as
/// JSON when asked). `Err` only when the run could not be set up; lost or
/// duplicated records are in the report with `passed: false`.
pub fn run(options: ChaosOptions) -> anyhow::Result<Report> {
    println!("{}", options.schedule.table());
    let mut temp = None;
    let root = match &options.work_dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            let t = tempfile::Builder::new().prefix("weir-chaos-").tempdir()?;
            let path = t.path().to_path_buf();
            temp = Some(t);
            path
        }
    };
    let bin_dir = match &options.bin_dir {
        Some(d) => d.clone(),
        None => default_bin_dir()?,
    };
    println!("work directory {}", root.display());
    let cluster = ChaosCluster::new(
        &root,
        &bin_dir,
        options.drivers,
        options.executors,
        options.state_root.clone(),
        options.tls,
    )?;
    let probe = Probe::new(cluster.access()?)?;
    let mut run = Run {
        cluster,
        probe,
        started: Instant::now(),
        root: root.clone(),
        jobs: Vec::new(),
        round: 0,
        history: SinkHistory::default(),
        batch_log: BTreeMap::new(),
        stop_sent: BTreeSet::new(),
        last_refresh: Instant::now(),
        report: Report {
            schedule: options.schedule.name.clone(),
            seed: options.schedule.seed,
            duration_ms: 0,
            faults: Vec::new(),
            summary: Vec::new(),
            jobs: Vec::new(),
            problems: Vec::new(),
            passed: false,
        },
        options: options.clone(),
    };
    if let Err(e) = run.run_all() {
        run.report.problems.push(format!("{e:#}"));
    }
    run.report.duration_ms = run.started.elapsed().as_millis() as u64;
    run.report.finish();
    if !run.report.passed {
        eprintln!("{}", run.cluster.logs(30));
    }
    println!("{}", run.report.table());
    if let Some(path) = &options.report {
        std::fs::write(path, serde_json::to_string_pretty(&run.report)?)
            .with_context(|| format!("writing the report to {}", path.display()))?;
        println!("report written to {}", path.display());
    }
    let report = run.report.clone();
    drop(run);
    if let Some(t) = temp {
        if !report.passed || options.keep {
            // keep the logs and the output for a look
            println!("work directory kept: {}", t.keep().display());
        }
    }
    Ok(report)
}

struct Run {
    options: ChaosOptions,
    cluster: ChaosCluster,
    probe: Probe,
    started: Instant,
    root: PathBuf,
    /// The current round's jobs.
    jobs: Vec<ChaosJob>,
    round: usize,
    history: SinkHistory,
    /// Every committed batch seen per job: `(records_in, records_out,
    /// records_late)`. The driver keeps only its last 100 commits, so the
    /// history is read every couple of seconds and accumulated.
    batch_log: BTreeMap<String, BTreeMap<u64, (u64, u64, u64)>>,
    /// Jobs over Kafka that read all their input and were asked to stop.
    stop_sent: BTreeSet<String>,
    last_refresh: Instant,
    report: Report,
}

/// How often the commit history is read while jobs run (the driver keeps
/// 100 commits: 20 s of 200 ms batches).
const REFRESH: Duration = Duration::from_secs(2);

/// The targets of a fault, resolved when it fires.
struct Targets {
    drivers: Vec<usize>,
    executors: Vec<usize>,
    labels: Vec<String>,
}

impl Run {
    fn ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Adds `batches` of `job` to the accumulated commit history; a batch
    /// seen twice must have the same counts.
    fn merge_batches(
        &mut self,
        job: &str,
        batches: impl IntoIterator<Item = (u64, (u64, u64, u64))>,
    ) {
        let log = self.batch_log.entry(job.to_string()).or_default();
        for (id, counts) in batches {
            match log.insert(id, counts) {
                Some(old) if old != counts => self.report.problems.push(format!(
                    "{job}: batch {id} reported as (in, out, late) {old:?} and later {counts:?}: committed twice with different content"
                )),
                _ => {}
            }
        }
    }

    /// Reads the recent commit history of the current jobs, at most every
    /// [`REFRESH`] unless `force`.
    fn refresh_batches(&mut self, force: bool) {
        if !force && self.last_refresh.elapsed() < REFRESH {
            return;
        }
        self.last_refresh = Instant::now();
        let up = self.cluster.drivers_up();
        for name in self.job_names() {
            if let Some(batches) = self.probe.batches(&up, &name) {
                let rows: Vec<(u64, (u64, u64, u64))> = batches
                    .iter()
                    .map(|b| (b.batch_id, (b.records_in, b.records_out, b.records_late)))
                    .collect();
                self.merge_batches(&name, rows);
            }
        }
    }

    fn run_all(&mut self) -> anyhow::Result<()> {
        self.cluster.start_all()?;
        self.wait_healthy().context("the cluster did not come up")?;
        println!("cluster up after {} ms", self.ms());
        let faults = self.options.schedule.faults.clone();
        self.start_round(&faults)?;
        for (i, fault) in faults.iter().enumerate() {
            if self.round_finished()? {
                self.verify_round()?;
                self.start_round(&faults[i..])?;
            }
            self.sleep(Duration::from_millis(fault.gap_ms))?;
            let record = self.fire(fault)?;
            println!(
                "fault {:>3}/{} {:<25} {:<6} {:<3} {:<22} hold {:>5} ms: detected {:>6} recovered {:>6} ms",
                fault.index,
                faults.len(),
                fault.kind.name(),
                fault.timing.name(),
                if record.timing_hit { "hit" } else { "-" },
                record.targets.join(","),
                fault.hold_ms,
                record.detection_ms.map_or("-".into(), |v| v.to_string()),
                record.recovery_ms.map_or("-".into(), |v| v.to_string()),
            );
            let recovered = record.recovery_ms.is_some();
            self.report.faults.push(record);
            if !recovered {
                bail!(
                    "fault {} ({}): no committed batch within {RECOVERY_TIMEOUT:?}",
                    fault.index,
                    fault.kind
                );
            }
            self.snapshot(fault.index)?;
            self.wait_healthy()
                .with_context(|| format!("after fault {}", fault.index))?;
        }
        println!(
            "faults done after {} s; waiting for the jobs to finish",
            self.ms() / 1_000
        );
        self.verify_round()
    }

    /// Sleeps, watching for crashed processes.
    fn sleep(&mut self, d: Duration) -> anyhow::Result<()> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if let Some(c) = self.cluster.crashed() {
                bail!("{c}");
            }
            self.refresh_batches(false);
            std::thread::sleep(
                end.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100)),
            );
        }
        Ok(())
    }

    /// Submits a new round of jobs sized to outlast `remaining` faults.
    fn start_round(&mut self, remaining: &[Fault]) -> anyhow::Result<()> {
        self.round += 1;
        let estimate: u64 = remaining
            .iter()
            .map(|f| f.gap_ms + super::schedule::estimated_ms(f))
            .sum();
        let secs = (estimate / 1_000).clamp(20, self.options.max_round_secs.max(20));
        self.jobs = Workload::ALL
            .iter()
            .map(|w| ChaosJob::generator(*w, self.round, self.options.rate, secs, &self.root))
            .collect();
        if let Some(brokers) = &self.options.kafka {
            self.jobs.push(ChaosJob::kafka(
                self.round,
                self.options.rate,
                secs,
                brokers,
                self.options.schedule.seed,
            ));
        }
        for job in &self.jobs {
            job.output.prepare()?;
            job.input.produce()?;
            let spec = self.root.join(format!("{}.yaml", job.name));
            std::fs::write(&spec, job.spec_yaml())?;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                match self.cluster.weir_json(&["submit", &spec.to_string_lossy()]) {
                    Ok(_) => break,
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("submit {}: {e:#}; retrying", job.name);
                        std::thread::sleep(Duration::from_millis(500));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        println!(
            "round {}: jobs {} submitted, {} s of input at {} records/s each",
            self.round,
            self.jobs
                .iter()
                .map(|j| j.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            secs,
            self.options.rate
        );
        // wait for a first commit of each, so faults hit running jobs
        let deadline = Instant::now() + Duration::from_secs(60);
        for name in self.job_names() {
            loop {
                let up = self.cluster.drivers_up();
                if let Some(s) = self.probe.status(&up, &name) {
                    if s.last_committed_batch >= 1 {
                        break;
                    }
                    if s.state == "failed" {
                        bail!("job {name} failed: {}", s.error);
                    }
                }
                if Instant::now() > deadline {
                    bail!("job {name} committed nothing within 60 s");
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    fn job_names(&self) -> Vec<String> {
        self.jobs.iter().map(|j| j.name.clone()).collect()
    }

    /// Whether `s` shows a job whose source never ends (Kafka) having
    /// read and committed all of its input.
    fn input_read(&self, name: &str, s: &pb::JobStatus) -> bool {
        self.jobs.iter().any(|j| {
            j.name == name
                && !j.input.ends_by_itself()
                && s.totals
                    .as_ref()
                    .is_some_and(|t| t.records_in >= j.input.total())
        })
    }

    /// Whether every job of the round is done: finished, or (a Kafka job)
    /// stopped after reading all of its input. A Kafka job that has read
    /// everything is asked to stop here.
    fn round_finished(&mut self) -> anyhow::Result<bool> {
        let up = self.cluster.drivers_up();
        let mut done = true;
        for i in 0..self.jobs.len() {
            let name = self.jobs[i].name.clone();
            let ends = self.jobs[i].input.ends_by_itself();
            let produced = self.jobs[i]
                .input
                .produced()
                .with_context(|| format!("the input of job {name}"))?;
            match self.probe.status(&up, &name) {
                Some(s) if s.state == "finished" && ends => {}
                // a Kafka job never ends by itself: `weir stop` below
                // stops it once it has read its whole input
                Some(s) if !ends && (s.state == "stopped" || s.state == "finished") => {
                    let read = s.totals.as_ref().map_or(0, |t| t.records_in);
                    if read < self.jobs[i].input.total() {
                        bail!(
                            "job {name} is {} after reading {read} of its {} records",
                            s.state,
                            self.jobs[i].input.total()
                        );
                    }
                }
                Some(s) if s.state == "failed" => bail!("job {name} failed: {}", s.error),
                Some(s)
                    if !ends
                        && produced
                        && s.state == "running"
                        && self.input_read(&name, &s)
                        && !self.stop_sent.contains(&name) =>
                {
                    match self.cluster.weir_json(&["stop", &name]) {
                        Ok(_) => {
                            self.stop_sent.insert(name);
                        }
                        // e.g. no leader right now: asked again next time
                        Err(e) => eprintln!("stop {name}: {e:#}; retrying"),
                    }
                    done = false;
                }
                _ => done = false,
            }
        }
        Ok(done)
    }

    /// Waits until the current round finishes, then checks its output.
    fn verify_round(&mut self) -> anyhow::Result<()> {
        let input_secs = self
            .jobs
            .iter()
            .map(|j| j.input.total() / self.options.rate.max(1))
            .max()
            .unwrap_or(0);
        let deadline = Instant::now() + Duration::from_secs(input_secs + 180);
        while !self.round_finished()? {
            if Instant::now() > deadline {
                bail!("round {} did not finish", self.round);
            }
            self.sleep(Duration::from_millis(250))?;
        }
        let last_fault = self.report.faults.len();
        self.refresh_batches(true);
        for job in std::mem::take(&mut self.jobs) {
            let status = self.cluster.weir_json(&["status", &job.name])?;
            let last = status["last_committed_batch"].as_u64().unwrap_or(0);
            // the last commits through the CLI, added to what was seen
            let recent = self
                .cluster
                .weir_json(&["batches", &job.name, "--limit", "100"])?;
            let rows: Vec<(u64, (u64, u64, u64))> = recent
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|b| {
                    let n = |f: &str| b[f].as_u64().unwrap_or(0);
                    Some((
                        b["batch_id"].as_u64()?,
                        (n("records_in"), n("records_out"), n("records_late")),
                    ))
                })
                .collect();
            self.merge_batches(&job.name, rows);
            let batches = serde_json::Value::Array(
                self.batch_log
                    .get(&job.name)
                    .into_iter()
                    .flatten()
                    .map(|(id, (i, o, l))| {
                        serde_json::json!({"batch_id": id, "records_in": i, "records_out": o, "records_late": l})
                    })
                    .collect(),
            );
            let units = job.output.read()?;
            let mut problems = self.history.observe(&job.name, last_fault, &units);
            problems.extend(verify_job(&job, &status, &batches, &units, true));
            println!(
                "job {}: {} records, {} batches, {} output files: {}",
                job.name,
                job.input.total(),
                last,
                units.len(),
                if problems.is_empty() {
                    "exact".to_string()
                } else {
                    format!("{} problems", problems.len())
                }
            );
            self.report.jobs.push(JobResult {
                job: job.name.clone(),
                records: job.input.total(),
                batches: last,
                output_units: units.len(),
                problems,
            });
        }
        Ok(())
    }

    /// Reads every current job's output and compares it with what was
    /// seen before: committed output never changes.
    fn snapshot(&mut self, fault: usize) -> anyhow::Result<()> {
        for job in &self.jobs {
            let units = job.output.read()?;
            let problems = self.history.observe(&job.name, fault, &units);
            self.report.problems.extend(problems);
        }
        Ok(())
    }

    /// Every process up, one leader that every replica answers under, and
    /// every executor alive with a recent heartbeat in the leader's view.
    fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + HEALTH_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some(c) = self.cluster.crashed() {
                bail!("{c}");
            }
            self.refresh_batches(false);
            let up = self.cluster.drivers_up();
            let views = self.probe.drivers(&up);
            let leaders: Vec<_> = views.iter().filter(|v| v.role == "leader").collect();
            if views.len() == self.cluster.drivers.len() && leaders.len() == 1 {
                let execs = &leaders[0].info.executors;
                let ready = self.cluster.executors.iter().all(|e| {
                    execs
                        .iter()
                        .any(|x| x.id == e.id && x.health == "alive" && x.last_heartbeat_ms < 2_500)
                });
                if ready {
                    return Ok(());
                }
                last = format!(
                    "executors in the leader's view: {:?}",
                    execs
                        .iter()
                        .map(|x| format!(
                            "{} {} epoch {} hb {} ms",
                            x.id, x.health, x.epoch, x.last_heartbeat_ms
                        ))
                        .collect::<Vec<_>>()
                );
            } else {
                last = format!(
                    "drivers answering: {:?}",
                    views
                        .iter()
                        .map(|v| format!("{} {} term {}", v.id, v.role, v.term))
                        .collect::<Vec<_>>()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the cluster is not whole within {HEALTH_TIMEOUT:?}: {last}")
    }

    /// Waits for the fault's timing on its job; returns whether it was
    /// seen and the job's phase when the fault fires.
    fn wait_timing(&mut self, fault: &Fault) -> (bool, String) {
        let names = self.job_names();
        let job = names[fault.job % names.len()].clone();
        let job = job.as_str();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            self.refresh_batches(false);
            let up = self.cluster.drivers_up();
            let s = self.probe.status(&up, job);
            let phase = match &s {
                None => "no status".to_string(),
                Some(s) if s.state != "running" => s.state.clone(),
                Some(s) => phase(s),
            };
            let phase = format!("{job}: {phase}");
            let hit = match (fault.timing, &s) {
                (Timing::Random, _) => true,
                (Timing::Stage, Some(s)) => s.pending_batch.is_some() && !s.pending_committing,
                (Timing::Commit, Some(s)) => s.pending_batch.is_some() && s.pending_committing,
                _ => false,
            };
            let finished = s
                .as_ref()
                .is_some_and(|s| s.state != "running" || self.input_read(job, s));
            if hit || finished || Instant::now() > deadline {
                return (hit, phase);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn resolve(&mut self, fault: &Fault, leader: Option<u64>) -> Targets {
        let n_exec = self.cluster.executors.len();
        let leader_i = leader.map(|id| id as usize - 1);
        let followers: Vec<usize> = (0..self.cluster.drivers.len())
            .filter(|i| Some(*i) != leader_i)
            .collect();
        let follower = |k: u64| followers[(k % followers.len() as u64) as usize];
        let exec = (fault.pick % n_exec as u64) as usize;
        let (drivers, executors) = match fault.kind {
            FaultKind::KillLeader | FaultKind::PauseLeader => {
                (leader_i.into_iter().collect(), vec![])
            }
            FaultKind::KillFollower => (vec![follower(fault.pick)], vec![]),
            FaultKind::KillTwoDrivers if two_drivers_include_leader(fault.pick) => (
                leader_i
                    .into_iter()
                    .chain([follower(fault.pick / 2)])
                    .collect(),
                vec![],
            ),
            FaultKind::KillTwoDrivers => (followers.clone(), vec![]),
            FaultKind::KillExecutor | FaultKind::PauseExecutor => (vec![], vec![exec]),
            FaultKind::KillAllExecutors => (vec![], (0..n_exec).collect()),
            FaultKind::KillLeaderAndExecutor => (leader_i.into_iter().collect(), vec![exec]),
        };
        let mut labels: Vec<String> = drivers
            .iter()
            .map(|i| {
                if Some(*i) == leader_i {
                    format!("driver {}(L)", i + 1)
                } else {
                    format!("driver {}", i + 1)
                }
            })
            .collect();
        if executors.len() == n_exec && n_exec > 1 {
            labels.push("all executors".into());
        } else {
            labels.extend(
                executors
                    .iter()
                    .map(|i| self.cluster.executors[*i].id.clone()),
            );
        }
        Targets {
            drivers,
            executors,
            labels,
        }
    }

    /// Fires one fault and follows it until it is detected, its processes
    /// are back and every running job committed a new batch.
    fn fire(&mut self, fault: &Fault) -> anyhow::Result<FaultRecord> {
        let (timing_hit, job_phase) = self.wait_timing(fault);
        let up = self.cluster.drivers_up();
        let leader = self.probe.leader(&up);
        let term0 = leader.as_ref().map_or(0, |l| l.term);
        let epochs0: BTreeMap<String, u64> = leader
            .as_ref()
            .map(|l| {
                l.info
                    .executors
                    .iter()
                    .filter(|e| e.health == "alive")
                    .map(|e| (e.id.clone(), e.epoch))
                    .collect()
            })
            .unwrap_or_default();
        let targets = self.resolve(fault, leader.as_ref().map(|l| l.id));
        let pause = matches!(
            fault.kind,
            FaultKind::PauseLeader | FaultKind::PauseExecutor
        );

        // What each running job has committed: read just before the
        // fault and again just after from the replicas still up (a batch
        // may commit in between), keeping the higher.
        let mut before: BTreeMap<String, u64> = BTreeMap::new();
        for name in self.job_names() {
            if let Some(s) = self.probe.status(&up, &name) {
                if s.state == "running" {
                    before.insert(name, s.last_committed_batch);
                }
            }
        }

        // Fire.
        let at_ms = self.ms();
        let t0 = Instant::now();
        for &d in &targets.drivers {
            if pause {
                self.cluster.pause_driver(d, true)?;
            } else {
                self.cluster.kill_driver(d)?;
            }
        }
        for &e in &targets.executors {
            if pause {
                self.cluster.pause_executor(e, true)?;
            } else {
                self.cluster.kill_executor(e)?;
            }
        }
        if targets.drivers.is_empty() {
            let up = self.cluster.drivers_up();
            for (name, b) in before.iter_mut() {
                if let Some(s) = self.probe.status(&up, name) {
                    *b = (*b).max(s.last_committed_batch);
                }
            }
        }

        let watch_leader = fault.kind.hits_leader(fault.pick);
        let watch_execs: Vec<String> = targets
            .executors
            .iter()
            .map(|i| self.cluster.executors[*i].id.clone())
            .collect();
        let mut restored = false;
        let mut leader_seen: Option<u64> = None;
        let mut execs_seen: Option<u64> = None;
        let mut recovered: BTreeMap<String, u64> = BTreeMap::new();
        loop {
            let now = t0.elapsed();
            let ms = now.as_millis() as u64;
            if !restored && ms >= fault.hold_ms {
                for &d in &targets.drivers {
                    if pause {
                        self.cluster.pause_driver(d, false)?;
                    } else {
                        self.cluster.start_driver(d)?;
                    }
                }
                for &e in &targets.executors {
                    if pause {
                        self.cluster.pause_executor(e, false)?;
                    } else {
                        self.cluster.start_executor(e)?;
                    }
                }
                restored = true;
            }
            let up = self.cluster.drivers_up();
            let detecting = (watch_leader && leader_seen.is_none())
                || (!watch_execs.is_empty() && execs_seen.is_none());
            if detecting {
                if let Some(l) = self.probe.leader(&up) {
                    if watch_leader && leader_seen.is_none() && l.term > term0 {
                        leader_seen = Some(ms);
                    }
                    if !watch_execs.is_empty() && execs_seen.is_none() {
                        let gone = watch_execs.iter().all(|id| {
                            !l.info.executors.iter().any(|x| {
                                &x.id == id
                                    && x.health == "alive"
                                    && epochs0.get(id).is_none_or(|e0| x.epoch == *e0)
                            })
                        });
                        if gone {
                            execs_seen = Some(ms);
                        }
                    }
                }
            }
            for (name, b) in &before {
                if recovered.contains_key(name) {
                    continue;
                }
                if let Some(s) = self.probe.status(&up, name) {
                    if s.state == "failed" {
                        bail!("job {name} failed after fault {}: {}", fault.index, s.error);
                    }
                    // a job over Kafka commits nothing once it has read
                    // all of its input
                    if s.last_committed_batch > *b
                        || s.state != "running"
                        || self.input_read(name, &s)
                    {
                        recovered.insert(name.clone(), ms);
                    }
                }
            }
            let detected = (!watch_leader || leader_seen.is_some())
                && (watch_execs.is_empty() || execs_seen.is_some());
            let all_recovered = recovered.len() == before.len();
            if restored && all_recovered && detected {
                break;
            }
            // A fault that is never detected (an executor paused and woken
            // up again before anyone declared it dead) is reported with no
            // detection time once the jobs have moved on for a while.
            if restored && all_recovered && ms > fault.hold_ms + DETECTION_GRACE.as_millis() as u64
            {
                break;
            }
            if now > RECOVERY_TIMEOUT {
                break;
            }
            if let Some(c) = self.cluster.crashed() {
                bail!("{c}");
            }
            self.refresh_batches(false);
            let next = POLL.saturating_sub(t0.elapsed() - now);
            std::thread::sleep(next);
        }
        let detection_ms = match (watch_leader, watch_execs.is_empty()) {
            (false, true) => None,
            _ => match (
                watch_leader.then_some(leader_seen),
                (!watch_execs.is_empty()).then_some(execs_seen),
            ) {
                (Some(None), _) | (_, Some(None)) => None,
                (l, e) => l.flatten().max(e.flatten()),
            },
        };
        let recovery_ms = (recovered.len() == before.len())
            .then(|| recovered.values().copied().max().unwrap_or(0));
        Ok(FaultRecord {
            index: fault.index,
            kind: fault.kind,
            timing: fault.timing,
            timing_hit,
            job_phase,
            targets: targets.labels,
            at_ms,
            hold_ms: fault.hold_ms,
            detection_ms,
            recovery_ms,
            committed_before: before,
        })
    }
}

/// The phase of a job in `weir status` terms, for messages.
fn phase(s: &pb::JobStatus) -> String {
    match s.pending_batch {
        Some(b) if s.pending_committing => format!("batch {b} committing"),
        Some(b) => format!("batch {b} in stages"),
        None => format!("idle after batch {}", s.last_committed_batch),
    }
}

/// Every check of one finished job: its commit history (`status` and
/// `batches` as `weir status --json` / `weir batches --json` print them;
/// `complete_history` when `batches` holds every batch, not only the
/// driver's last 100) and its output per key against its input.
pub fn verify_job(
    job: &ChaosJob,
    status: &serde_json::Value,
    batches: &serde_json::Value,
    units: &[super::io::OutputUnit],
    complete_history: bool,
) -> Vec<String> {
    let mut problems = verify::check_batches(
        &job.name,
        status,
        batches,
        units,
        job.input.total(),
        complete_history,
        if job.input.ends_by_itself() {
            &["finished"]
        } else {
            &["stopped", "finished"]
        },
    );
    problems.extend(match job.workload {
        Workload::RunningCount => verify::check_running_count(&job.name, job.input.as_ref(), units),
        Workload::WindowedCount => verify::check_windows(
            &job.name,
            job.input.as_ref(),
            units,
            WINDOW_SIZE_MS,
            WINDOW_SLIDE_MS,
        ),
    });
    problems
}
