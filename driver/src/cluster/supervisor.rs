//! On the leader, one job driver thread per running job; none elsewhere.
//! Leadership changes, stops and failures are reconciled every 200 ms.

use super::metadata::RaftMetadata;
use super::replica::ReplicaHandle;
use crate::batch::{BatchReport, DriverOptions, JobDriver, Outcome};
use crate::error::DriverError;
use crate::metadata::MetadataStore;
use crate::runner::TaskRunner;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use tracing::{info, warn};
use weir_proto::pb;

struct Running {
    shutdown: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// Runs the jobs of the metadata checkpoint while this replica leads.
pub struct Supervisor {
    replica: ReplicaHandle,
    runner: Arc<dyn TaskRunner>,
    running: Mutex<HashMap<String, Running>>,
    stopped: AtomicBool,
    /// What every job driver starts with (health board and metrics).
    options: DriverOptions,
    /// The reconcile loop's thread, joined by `shutdown`.
    reconciler: Mutex<Option<JoinHandle<()>>>,
}

impl Supervisor {
    /// A supervisor running tasks through `runner`, showing its jobs'
    /// live health and metrics where `options` says (with finite sources
    /// finished).
    pub fn new(
        replica: ReplicaHandle,
        runner: Arc<dyn TaskRunner>,
        options: DriverOptions,
    ) -> Arc<Self> {
        Arc::new(Supervisor {
            replica,
            runner,
            running: Mutex::new(HashMap::new()),
            stopped: AtomicBool::new(false),
            options: DriverOptions {
                // A finite source ends its job; a Kafka job runs until
                // `weir stop`.
                finish_finite_sources: true,
                ..options
            },
            reconciler: Mutex::new(None),
        })
    }

    /// Starts the reconcile loop.
    pub fn start(self: &Arc<Self>) -> std::io::Result<()> {
        let this = self.clone();
        let thread = std::thread::Builder::new()
            .name("supervisor".into())
            .spawn(move || {
                while !this.stopped.load(Ordering::SeqCst) {
                    this.reconcile();
                    std::thread::sleep(Duration::from_millis(200));
                }
            })?;
        *self.reconciler.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
        Ok(())
    }

    /// Names of the jobs with a driver thread here.
    pub fn running_jobs(&self) -> Vec<String> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Stops every job driver after its current batch and waits up to
    /// `wait` for them; then waits for the reconcile loop to end (within
    /// its 200 ms period), so that it holds no handle on the replica.
    pub fn shutdown(&self, wait: Duration) {
        self.stopped.store(true, Ordering::SeqCst);
        let running: Vec<Running> = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .map(|(_, r)| r)
            .collect();
        for r in &running {
            r.shutdown.store(true, Ordering::SeqCst);
        }
        let deadline = std::time::Instant::now() + wait;
        for r in running {
            while !r.thread.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let reconciler = self
            .reconciler
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(thread) = reconciler {
            let _ = thread.join();
        }
    }

    /// Records the address of every voter in the replicated metadata, so
    /// that a replica joining later (which knows no bootstrap peers) can
    /// reach them.
    fn record_peer_addresses(&self) {
        let recorded = self.replica.metadata().peer_addresses().unwrap_or_default();
        let voters = self.replica.status().voters;
        for (id, address) in self.replica.addresses() {
            if voters.contains(&id) && recorded.get(&id) != Some(&address) {
                if let Err(e) = self
                    .replica
                    .propose_blocking(crate::metadata::command::peer_address(id, &address))
                {
                    warn!(peer = id, error = %e, "cannot record a driver address");
                    return;
                }
            }
        }
    }

    fn reconcile(&self) {
        let leader = self.replica.is_leader();
        if leader {
            self.record_peer_addresses();
        }
        let jobs = if leader {
            self.replica.metadata().jobs().unwrap_or_default()
        } else {
            Vec::new()
        };
        let wanted: HashMap<String, ()> = jobs
            .iter()
            .filter(|j| j.state == pb::JobState::Running as i32)
            .filter_map(|j| j.spec.as_ref().map(|s| (s.name.clone(), ())))
            .collect();
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        running.retain(|name, r| {
            if r.thread.is_finished() {
                return false;
            }
            if !wanted.contains_key(name) {
                r.shutdown.store(true, Ordering::SeqCst);
            }
            true
        });
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        for name in wanted.keys() {
            if running.contains_key(name) {
                continue;
            }
            let shutdown = Arc::new(AtomicBool::new(false));
            let meta: Arc<dyn MetadataStore> = Arc::new(RaftMetadata::new(self.replica.clone()));
            let runner = self.runner.clone();
            let job = name.clone();
            let flag = shutdown.clone();
            let options = self.options.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("job-{name}"))
                .spawn(move || {
                    let health = options.health.clone();
                    run_job(meta, runner.clone(), &job, &flag, options);
                    runner.retire(&job);
                    health.remove(&job);
                });
            match spawned {
                Ok(thread) => {
                    info!(job = %name, "leader starts driving the job");
                    running.insert(name.clone(), Running { shutdown, thread });
                }
                Err(e) => warn!(job = %name, error = %e, "cannot start a job driver thread"),
            }
        }
    }
}

fn run_job(
    meta: Arc<dyn MetadataStore>,
    runner: Arc<dyn TaskRunner>,
    job: &str,
    shutdown: &AtomicBool,
    options: DriverOptions,
) {
    let driver = match JobDriver::new(meta, runner, job, options) {
        Ok(d) => d,
        Err(e) => {
            warn!(job, error = %e, "cannot drive the job");
            return;
        }
    };
    let mut report = |r: &BatchReport| {
        tracing::info!(
            job,
            batch_id = r.commit.batch_id,
            records_in = r.commit.records_in,
            batch_ms = r.duration.as_millis() as u64,
            "batch committed"
        );
    };
    match driver.run(shutdown, &mut report) {
        Ok(Outcome::Finished) => info!(job, "job finished"),
        Ok(Outcome::Stopped) => info!(job, "job driver stopped"),
        Err(e @ DriverError::JobFailed { .. }) => warn!(job, error = %e, "job failed"),
        Err(e) => {
            warn!(job, error = %e, "job driver stopped on an error; it restarts while this replica leads")
        }
    }
}
