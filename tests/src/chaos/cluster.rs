//! The processes of a chaos run: driver replicas and executors started
//! from a directory of Weir binaries, each with its own log file, and the
//! signals that break them.
//!
//! Unlike the test-only [`crate::cluster::LocalCluster`], this one works
//! from the `weir-chaos` binary as well as from tests (the binaries are
//! found next to the running executable or in `--bin-dir`), knows which
//! processes are paused, and never leaves a stopped process behind.

use crate::pki::Pki;
use crate::{log_tail, Proc};
use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The directory holding `weir`, `weir-driver` and `weir-executor`: the
/// running executable's directory, or its parent for a test executable
/// under `target/<profile>/deps`.
pub fn default_bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("path of the running executable")?;
    let dir = exe.parent().context("executable directory")?;
    for candidate in [dir, dir.parent().unwrap_or(dir)] {
        if candidate.join("weir-driver").exists() {
            return Ok(candidate.to_path_buf());
        }
    }
    bail!(
        "weir-driver is not next to {} nor in its parent: build the binaries (cargo build --workspace --bins) or pass --bin-dir",
        exe.display()
    )
}

/// One process of the cluster.
pub struct Node {
    /// Driver replica id (`1`..) or executor id (`exec-1`..).
    pub id: String,
    /// host:port it listens on (kept across restarts).
    pub address: String,
    /// Log file (appended to across restarts).
    pub log: PathBuf,
    /// The running process, if any.
    pub proc: Option<Proc>,
    /// Whether it is stopped with SIGSTOP.
    pub paused: bool,
    /// Starts, the first included.
    pub starts: u32,
}

impl Node {
    /// Running and not paused: it can answer.
    pub fn up(&self) -> bool {
        self.proc.is_some() && !self.paused
    }
}

/// Driver replicas and executors of a chaos run.
pub struct ChaosCluster {
    /// Root of every directory of the run.
    pub root: PathBuf,
    bin_dir: PathBuf,
    /// Driver replicas, index `i` is replica `i + 1`.
    pub drivers: Vec<Node>,
    /// Executors.
    pub executors: Vec<Node>,
    /// The executors' state root: a local directory or `hdfs://...`.
    pub state_root: String,
    /// Certificates and tokens when TLS is on.
    pub pki: Option<Pki>,
}

impl ChaosCluster {
    /// Lays out `drivers` replicas and `executors` executors under `root`.
    pub fn new(
        root: &Path,
        bin_dir: &Path,
        drivers: usize,
        executors: usize,
        state_root: Option<String>,
        tls: bool,
    ) -> anyhow::Result<ChaosCluster> {
        let node = |id: String, log: PathBuf| Node {
            id,
            address: format!("127.0.0.1:{}", crate::cluster::free_port()),
            log,
            proc: None,
            paused: false,
            starts: 0,
        };
        let executors: Vec<Node> = (1..=executors)
            .map(|i| node(format!("exec-{i}"), root.join(format!("exec-{i}.log"))))
            .collect();
        let pki = if tls {
            let ids: Vec<String> = executors.iter().map(|e| e.id.clone()).collect();
            Some(Pki::new(&root.join("pki"), drivers as u64, &ids)?)
        } else {
            None
        };
        Ok(ChaosCluster {
            root: root.to_path_buf(),
            bin_dir: bin_dir.to_path_buf(),
            drivers: (1..=drivers)
                .map(|i| node(i.to_string(), root.join(format!("driver-{i}.log"))))
                .collect(),
            executors,
            state_root: state_root
                .unwrap_or_else(|| root.join("state").to_string_lossy().into_owned()),
            pki,
        })
    }

    /// How the CLI and the probe reach the drivers: the admin token over
    /// TLS, or plaintext.
    pub fn access(&self) -> anyhow::Result<weir::remote::Access> {
        Ok(match &self.pki {
            Some(pki) => weir::remote::Access {
                transport: weir_security::Transport::ca_only(std::path::Path::new(&pki.ca()))?,
                token: Some(crate::pki::ADMIN_TOKEN.into()),
            },
            None => weir::remote::Access::insecure(),
        })
    }

    /// The CLI's connection flags.
    fn client_security(&self) -> Vec<String> {
        self.pki
            .as_ref()
            .map(|pki| pki.client_args(crate::pki::ADMIN_TOKEN))
            .unwrap_or_default()
    }

    /// Path of one of the Weir binaries.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }

    /// `host:port,...` of every replica.
    pub fn driver_list(&self) -> String {
        self.drivers
            .iter()
            .map(|d| d.address.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Starts replica `i` (0-based) on its data directory.
    pub fn start_driver(&mut self, i: usize) -> anyhow::Result<()> {
        let peers = self
            .drivers
            .iter()
            .enumerate()
            .map(|(j, d)| format!("{}={}", j + 1, d.address))
            .collect::<Vec<_>>()
            .join(",");
        let data = self
            .root
            .join(format!("driver-{}", i + 1))
            .to_string_lossy()
            .into_owned();
        let bin = self.bin("weir-driver");
        let security = match &self.pki {
            Some(pki) => pki.driver_args(i as u64 + 1),
            None => vec!["--insecure".into()],
        };
        let d = &mut self.drivers[i];
        let id = (i + 1).to_string();
        let mut args = vec![
            "--id",
            &id,
            "--listen",
            &d.address,
            "--peers",
            &peers,
            "--data-dir",
            &data,
            "--cluster-id",
            "chaos",
        ];
        args.extend(security.iter().map(String::as_str));
        d.proc = Some(Proc::start(
            &format!("driver {id}"),
            &bin,
            &args,
            &[],
            &d.log,
        )?);
        d.paused = false;
        d.starts += 1;
        Ok(())
    }

    /// Starts executor `i` (0-based).
    pub fn start_executor(&mut self, i: usize) -> anyhow::Result<()> {
        let drivers = self.driver_list();
        let state = self.state_root.clone();
        let bin = self.bin("weir-executor");
        let security = match &self.pki {
            Some(pki) => pki.executor_args(&self.executors[i].id),
            None => vec!["--insecure".into()],
        };
        let e = &mut self.executors[i];
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
        ];
        args.extend(security.iter().map(String::as_str));
        e.proc = Some(Proc::start(&e.id.clone(), &bin, &args, &[], &e.log)?);
        e.paused = false;
        e.starts += 1;
        Ok(())
    }

    /// Starts every replica and executor.
    pub fn start_all(&mut self) -> anyhow::Result<()> {
        for name in ["weir", "weir-driver", "weir-executor"] {
            if !self.bin(name).exists() {
                bail!(
                    "{} is missing: build the binaries (cargo build --workspace --bins)",
                    self.bin(name).display()
                );
            }
        }
        for i in 0..self.drivers.len() {
            self.start_driver(i)?;
        }
        for i in 0..self.executors.len() {
            self.start_executor(i)?;
        }
        Ok(())
    }

    /// SIGKILL (and reap) replica `i`.
    pub fn kill_driver(&mut self, i: usize) -> anyhow::Result<()> {
        kill(&mut self.drivers[i])
    }

    /// SIGKILL (and reap) executor `i`.
    pub fn kill_executor(&mut self, i: usize) -> anyhow::Result<()> {
        kill(&mut self.executors[i])
    }

    /// SIGSTOP or SIGCONT replica `i`.
    pub fn pause_driver(&mut self, i: usize, pause: bool) -> anyhow::Result<()> {
        signal(&mut self.drivers[i], pause)
    }

    /// SIGSTOP or SIGCONT executor `i`.
    pub fn pause_executor(&mut self, i: usize, pause: bool) -> anyhow::Result<()> {
        signal(&mut self.executors[i], pause)
    }

    /// Addresses of the replicas that can answer now (running, not paused).
    pub fn drivers_up(&self) -> Vec<(u64, String)> {
        self.drivers
            .iter()
            .enumerate()
            .filter(|(_, d)| d.up())
            .map(|(i, d)| (i as u64 + 1, d.address.clone()))
            .collect()
    }

    /// A process that exited on its own (not killed by the run): a crash.
    pub fn crashed(&mut self) -> Option<String> {
        for n in self.drivers.iter_mut().chain(self.executors.iter_mut()) {
            if let Some(p) = n.proc.as_mut() {
                if let Ok(Some(status)) = p.try_wait() {
                    return Some(format!(
                        "{} exited by itself ({status})\n{}",
                        p.name,
                        log_tail(&n.log, 40)
                    ));
                }
            }
        }
        None
    }

    /// Runs the `weir` CLI against the cluster with `--json`.
    pub fn weir_json(&self, args: &[&str]) -> anyhow::Result<serde_json::Value> {
        let out = Command::new(self.bin("weir"))
            .args(args)
            .args(["--json", "--drivers", &self.driver_list()])
            .args(self.client_security())
            .output()
            .context("running weir")?;
        if !out.status.success() {
            bail!(
                "weir {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        serde_json::from_slice(&out.stdout).with_context(|| {
            format!(
                "weir {}: not JSON: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The tail of every process log, for failure messages.
    pub fn logs(&self, lines: usize) -> String {
        self.drivers
            .iter()
            .chain(&self.executors)
            .map(|n| log_tail(&n.log, lines))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for ChaosCluster {
    fn drop(&mut self) {
        // a stopped process does not die of SIGKILL until it is continued
        for n in self.drivers.iter_mut().chain(self.executors.iter_mut()) {
            if n.paused {
                let _ = signal(n, false);
            }
        }
    }
}

fn kill(n: &mut Node) -> anyhow::Result<()> {
    if n.paused {
        signal(n, false)?;
    }
    if let Some(mut p) = n.proc.take() {
        p.kill()?;
    }
    Ok(())
}

fn signal(n: &mut Node, pause: bool) -> anyhow::Result<()> {
    let Some(p) = n.proc.as_ref() else {
        bail!("{} is not running", n.id);
    };
    let sig = if pause { "-STOP" } else { "-CONT" };
    let ok = Command::new("kill")
        .args([sig, &p.pid().to_string()])
        .status()
        .context("running kill")?
        .success();
    if !ok {
        bail!("kill {sig} {} ({}) failed", p.pid(), n.id);
    }
    n.paused = pause;
    Ok(())
}
