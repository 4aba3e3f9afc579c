//! A local Weir cluster of real processes for tests: driver replicas and
//! executors on loopback ports, each with its own log file.

use crate::pki::Pki;
use crate::{binary, Proc};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The ports test processes listen on: below Linux's default ephemeral
/// range (32768–60999), where `bind(…:0)` and outgoing connections take
/// theirs, so nothing else is handed a port between its choice and the
/// bind of the process it was chosen for.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// How many candidates this process has tried, shared by all its tests.
static TRIED_PORTS: AtomicU32 = AtomicU32::new(0);

/// A loopback port that is free now and that no other test of this process
/// was given, so tests running side by side never share one.
///
/// Each process starts at an offset taken from its pid, so two test
/// processes at once walk different parts of the range.
pub fn free_port() -> u16 {
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    let offset = std::process::id() % span;
    for _ in 0..span {
        let n = TRIED_PORTS.fetch_add(1, Ordering::SeqCst);
        let port = TEST_PORTS.start + ((offset + n % span) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {TEST_PORTS:?}");
}

/// One driver replica.
pub struct Driver {
    /// Replica id.
    pub id: u64,
    /// host:port.
    pub address: String,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// host:port of its HTTP port (metrics, probes, web UI).
    pub http: String,
    /// The running process, if any.
    pub proc: Option<Proc>,
    log: PathBuf,
}

/// One executor.
pub struct Executor {
    /// Executor id.
    pub id: String,
    /// host:port.
    pub address: String,
    /// host:port of its HTTP port (metrics, probes).
    pub http: String,
    /// The running process, if any.
    pub proc: Option<Proc>,
    /// The binary it runs: `weir-executor`, or a custom executor binary
    /// of this workspace (`weir-executor-redact`).
    pub binary: String,
    log: PathBuf,
}

/// Driver replicas and executors started from this workspace's binaries.
pub struct LocalCluster {
    /// Root of every directory of the cluster.
    pub root: PathBuf,
    /// The replicas.
    pub drivers: Vec<Driver>,
    /// The executors.
    pub executors: Vec<Executor>,
    /// Where executors keep state: a local directory or an HDFS URL.
    pub state_root: String,
    /// Certificates and tokens when TLS is on; `None` runs `--insecure`.
    pub pki: Option<Pki>,
}

impl LocalCluster {
    /// Lays out `drivers` replicas and `executors` executors under `root`
    /// (nothing is started yet).
    pub fn new(root: &Path, drivers: u64, executors: usize) -> LocalCluster {
        let drivers = (1..=drivers)
            .map(|id| Driver {
                id,
                address: format!("127.0.0.1:{}", free_port()),
                data_dir: root.join(format!("driver-{id}")),
                http: format!("127.0.0.1:{}", free_port()),
                proc: None,
                log: root.join(format!("driver-{id}.log")),
            })
            .collect();
        let executors = (1..=executors)
            .map(|i| Executor {
                id: format!("exec-{i}"),
                address: format!("127.0.0.1:{}", free_port()),
                http: format!("127.0.0.1:{}", free_port()),
                proc: None,
                binary: "weir-executor".into(),
                log: root.join(format!("exec-{i}.log")),
            })
            .collect();
        LocalCluster {
            root: root.to_path_buf(),
            drivers,
            executors,
            state_root: root.join("state").to_string_lossy().into_owned(),
            pki: None,
        }
    }

    /// Like [`new`](Self::new), with TLS on every port: certificates for
    /// every process under `root/pki`, a tokens file, and the CLI calling
    /// with the admin token.
    pub fn secure(root: &Path, drivers: u64, executors: usize) -> LocalCluster {
        let mut c = LocalCluster::new(root, drivers, executors);
        let ids: Vec<String> = c.executors.iter().map(|e| e.id.clone()).collect();
        c.pki = Some(Pki::new(&root.join("pki"), drivers, &ids).expect("test certificates"));
        c
    }

    /// The flags of driver `id`: its TLS files and tokens, or `--insecure`.
    fn driver_security(&self, id: u64) -> Vec<String> {
        match &self.pki {
            Some(pki) => pki.driver_args(id),
            None => vec!["--insecure".into()],
        }
    }

    /// The CLI's connection flags: the admin token with TLS.
    pub fn client_security(&self) -> Vec<String> {
        self.pki
            .as_ref()
            .map(|pki| pki.client_args(crate::pki::ADMIN_TOKEN))
            .unwrap_or_default()
    }

    /// `host:port,...` of every replica.
    pub fn driver_list(&self) -> String {
        self.drivers
            .iter()
            .map(|d| d.address.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    fn peers(&self) -> String {
        self.drivers
            .iter()
            .map(|d| format!("{}={}", d.id, d.address))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts replica `id` (1-based) with the bootstrap peers.
    pub fn start_driver(&mut self, id: u64) {
        self.start_driver_with(id, &[]);
    }

    /// Starts replica `id` with extra environment (e.g. a crash point).
    pub fn start_driver_with(&mut self, id: u64, env: &[(&str, &str)]) {
        let peers = self.peers();
        let security = self.driver_security(id);
        let d = &mut self.drivers[(id - 1) as usize];
        let data = d.data_dir.to_string_lossy().into_owned();
        let id_s = id.to_string();
        let mut args = vec![
            "--id",
            &id_s,
            "--listen",
            &d.address,
            "--peers",
            &peers,
            "--data-dir",
            &data,
            "--cluster-id",
            "test",
            "--http-listen",
            &d.http,
        ];
        args.extend(security.iter().map(String::as_str));
        d.proc = Some(
            Proc::start(
                &format!("driver {id}"),
                &binary("weir-driver"),
                &args,
                env,
                &d.log,
            )
            .unwrap(),
        );
    }

    /// Starts replica `id` to join an existing cluster (after
    /// `weir cluster add-driver`), with an empty data directory.
    pub fn start_driver_joining(&mut self, id: u64) {
        let security = self.driver_security(id);
        let d = &mut self.drivers[(id - 1) as usize];
        let data = d.data_dir.to_string_lossy().into_owned();
        let id_s = id.to_string();
        let mut args = vec![
            "--id",
            &id_s,
            "--listen",
            &d.address,
            "--data-dir",
            &data,
            "--cluster-id",
            "test",
            "--join",
            "--http-listen",
            &d.http,
        ];
        args.extend(security.iter().map(String::as_str));
        d.proc = Some(
            Proc::start(
                &format!("driver {id}"),
                &binary("weir-driver"),
                &args,
                &[],
                &d.log,
            )
            .unwrap(),
        );
    }

    /// Starts executor `i` (1-based).
    pub fn start_executor(&mut self, i: usize) {
        let drivers = self.driver_list();
        let state = self.state_root.clone();
        let security = match &self.pki {
            Some(pki) => pki.executor_args(&self.executors[i - 1].id),
            None => vec!["--insecure".into()],
        };
        let e = &mut self.executors[i - 1];
        let mut args = vec![
            "--id",
            &e.id,
            "--listen",
            &e.address,
            "--drivers",
            &drivers,
            "--state-root",
            &state,
            "--slots",
            "2",
            "--http-listen",
            &e.http,
        ];
        args.extend(security.iter().map(String::as_str));
        e.proc = Some(Proc::start(&e.id.clone(), &binary(&e.binary), &args, &[], &e.log).unwrap());
    }

    /// Starts every replica and executor.
    pub fn start_all(&mut self) {
        for id in 1..=self.drivers.len() as u64 {
            self.start_driver(id);
        }
        for i in 1..=self.executors.len() {
            self.start_executor(i);
        }
    }

    /// Replica `id`'s log file.
    pub fn driver_log(&self, id: u64) -> &Path {
        &self.drivers[(id - 1) as usize].log
    }

    /// Sends SIGKILL to replica `id` and waits for it to exit.
    pub fn kill_driver(&mut self, id: u64) {
        if let Some(mut p) = self.drivers[(id - 1) as usize].proc.take() {
            p.kill().unwrap();
        }
    }

    /// Sends SIGKILL to executor `i`.
    pub fn kill_executor(&mut self, i: usize) {
        if let Some(mut p) = self.executors[i - 1].proc.take() {
            p.kill().unwrap();
        }
    }

    /// Sends `signal` (e.g. "STOP", "CONT") to replica `id`.
    pub fn signal_driver(&self, id: u64, signal: &str) {
        let pid = self.drivers[(id - 1) as usize]
            .proc
            .as_ref()
            .expect("running")
            .pid();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} {pid}");
    }

    /// Runs the `weir` CLI against the cluster with `--json`, returning the
    /// parsed output, or the error text.
    pub fn weir_json(&self, args: &[&str]) -> Result<serde_json::Value, String> {
        let out = Command::new(binary("weir"))
            .args(args)
            .args(["--json", "--drivers", &self.driver_list()])
            .args(self.client_security())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
    }

    /// Waits until `job` shows `health: degraded`, at most 20 s after
    /// `since` (an outage began); returns its status. An outage must not
    /// fail the job.
    pub fn wait_degraded(&self, job: &str, since: Instant) -> serde_json::Value {
        loop {
            let s = self.weir_json(&["status", job]).unwrap_or_default();
            if s["health"] == "degraded" {
                return s;
            }
            assert_ne!(s["state"], "failed", "an outage must not fail {job}: {s}");
            assert!(
                since.elapsed() < Duration::from_secs(20),
                "{job} not degraded 20 s into the outage: {s}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs the `weir` CLI against the cluster, returning what it prints
    /// for people, or the error text.
    pub fn weir(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(binary("weir"))
            .args(args)
            .args(["--drivers", &self.driver_list()])
            .args(self.client_security())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The id of the replica that says it leads, waiting up to `timeout`.
    pub fn wait_leader(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(v) = self.weir_json(&["cluster"]) {
                let leaders: Vec<u64> = v["drivers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|d| d["role"] == "leader")
                    .filter_map(|d| d["id"].as_u64())
                    .collect();
                if leaders.len() == 1 {
                    return leaders[0];
                }
            }
            assert!(
                Instant::now() < deadline,
                "no leader within {timeout:?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Kills replica `id`, removes it from the group with `weir cluster
    /// remove-driver` and deletes its data directory, as when its disk is
    /// lost.
    pub fn remove_and_wipe_driver(&mut self, id: u64) {
        self.kill_driver(id);
        self.weir_json(&["cluster", "remove-driver", &id.to_string()])
            .unwrap();
        std::fs::remove_dir_all(&self.drivers[(id - 1) as usize].data_dir).unwrap();
    }

    /// Adds replica `id` back with `weir cluster add-driver` and starts it
    /// joining, with an empty data directory.
    pub fn rejoin_driver(&mut self, id: u64) {
        let address = self.drivers[(id - 1) as usize].address.clone();
        self.weir_json(&["cluster", "add-driver", &id.to_string(), &address])
            .unwrap();
        self.start_driver_joining(id);
    }

    /// Waits until replica `id` is a follower that applied as far as any
    /// replica; on timeout, the last `weir cluster` answer.
    pub fn wait_caught_up(&self, id: u64, timeout: Duration) -> Result<(), serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.weir_json(&["cluster"]).unwrap_or_default();
            let drivers = v["drivers"].as_array().cloned().unwrap_or_default();
            let applied = drivers
                .iter()
                .filter_map(|d| d["applied_index"].as_u64())
                .max();
            if drivers.iter().any(|d| {
                d["id"] == id && d["role"] == "follower" && d["applied_index"].as_u64() == applied
            }) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(v);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The tail of every process log, for failure messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for d in &self.drivers {
            out.push_str(&crate::log_tail(&d.log, 25));
            out.push('\n');
        }
        for e in &self.executors {
            out.push_str(&crate::log_tail(&e.log, 15));
            out.push('\n');
        }
        out
    }
}

impl LocalCluster {
    /// The job's last committed batch (0 while unknown).
    pub fn committed(&self, job: &str) -> u64 {
        self.weir_json(&["status", job])
            .map(|s| s["last_committed_batch"].as_u64().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Waits until the job committed more than `batch` batches, or
    /// finished (a fast recovery can commit every remaining batch before
    /// the caller looks again).
    pub fn wait_committed_beyond(&self, job: &str, batch: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.weir_json(&["status", job]).unwrap_or_default();
            if s["last_committed_batch"].as_u64().unwrap_or(0) > batch || s["state"] == "finished" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "job {job} stuck at batch {batch}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the job reports `finished`.
    pub fn wait_finished(&self, job: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.weir_json(&["status", job]).unwrap_or_default();
            if s["state"] == "finished" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "job {job} did not finish: {s}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Asserts that a running count's file-sink output holds, per key, the
/// number of generator records `0..total` with that key (`"k" + g % keys`).
pub fn assert_generator_counts(out: &Path, keys: u64, total: u64) {
    let rows = crate::read_file_sink(out).expect("readable sink output");
    assert_generator_rows(&rows, keys, total, &out.display().to_string());
}

/// [`assert_generator_counts`] on rows already read (e.g. from HDFS);
/// `what` names the output in failure messages.
pub fn assert_generator_rows(rows: &[crate::Row], keys: u64, total: u64, what: &str) {
    let latest = crate::latest_by_key(rows);
    let mut want: std::collections::BTreeMap<String, u64> = Default::default();
    for g in 0..total {
        *want.entry(format!("\"k{}\"", g % keys)).or_default() += 1;
    }
    assert_eq!(latest.len(), want.len(), "keys in {what}");
    for (k, n) in want {
        assert_eq!(
            latest[&k]["count"].as_u64(),
            Some(n),
            "count of {k} in {what}"
        );
    }
}
