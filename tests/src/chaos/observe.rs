//! Watching the cluster while faults happen: who leads, which executors
//! the leader holds alive, how far each job has committed.
//!
//! These are the calls behind `weir cluster --json` and `weir status
//! --json`, made through the client library with short timeouts and
//! without a process per poll, so that polling every 50 ms neither skews
//! the timings on a small machine nor stalls on a paused driver (the CLI
//! waits its 3 s read timeout for a replica that is stopped).

use std::collections::HashMap;
use std::time::Duration;
use weir::remote::{Access, Client};
use weir_proto::pb;

/// Per-call timeout of a probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// What one replica says of itself.
#[derive(Debug, Clone)]
pub struct DriverView {
    /// Replica id.
    pub id: u64,
    /// `leader`, `follower`, `candidate`, ...
    pub role: String,
    /// Its Raft term.
    pub term: u64,
    /// Its full answer (executors are filled in by the leader).
    pub info: pb::ClusterInfo,
}

/// Calls replicas directly.
pub struct Probe {
    rt: tokio::runtime::Runtime,
    clients: HashMap<String, Client>,
    leader_hint: Option<String>,
    access: Access,
}

impl Probe {
    /// A probe with its own small runtime, calling with `access`.
    pub fn new(access: Access) -> anyhow::Result<Probe> {
        Ok(Probe {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?,
            clients: HashMap::new(),
            leader_hint: None,
            access,
        })
    }

    fn client(&mut self, address: &str) -> Option<Client> {
        if !self.clients.contains_key(address) {
            // tonic's lazy channel spawns its connection task here
            let _runtime = self.rt.enter();
            let c = weir::remote::connect(address, PROBE_TIMEOUT, &self.access).ok()?;
            self.clients.insert(address.to_string(), c);
        }
        self.clients.get(address).cloned()
    }

    /// The view of every replica in `up` that answers.
    pub fn drivers(&mut self, up: &[(u64, String)]) -> Vec<DriverView> {
        let clients: Vec<(String, Client)> = up
            .iter()
            .filter_map(|(_, a)| self.client(a).map(|c| (a.clone(), c)))
            .collect();
        self.rt.block_on(async {
            let tasks: Vec<_> = clients
                .into_iter()
                .map(|(address, mut c)| {
                    tokio::spawn(async move {
                        let info = c.cluster(pb::ClusterRequest {}).await.ok()?.into_inner();
                        // the row about itself is the one with a term
                        let me = info
                            .drivers
                            .iter()
                            .find(|d| d.address == address && d.term > 0)
                            .or_else(|| info.drivers.iter().find(|d| d.term > 0))?
                            .clone();
                        Some(DriverView {
                            id: me.id,
                            role: me.role,
                            term: me.term,
                            info,
                        })
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                if let Ok(Some(v)) = t.await {
                    out.push(v);
                }
            }
            out
        })
    }

    /// The replica that says it leads with the highest term, among `up`.
    pub fn leader(&mut self, up: &[(u64, String)]) -> Option<DriverView> {
        let leader = self
            .drivers(up)
            .into_iter()
            .filter(|v| v.role == "leader")
            .max_by_key(|v| v.term)?;
        self.leader_hint = up
            .iter()
            .find(|(id, _)| *id == leader.id)
            .map(|(_, a)| a.clone());
        Some(leader)
    }

    /// The status of `job` from the leader among `up`, as `weir status`
    /// shows it; `None` while no leader answers.
    pub fn status(&mut self, up: &[(u64, String)], job: &str) -> Option<pb::JobStatus> {
        let mut order: Vec<String> = Vec::new();
        if let Some(h) = &self.leader_hint {
            if up.iter().any(|(_, a)| a == h) {
                order.push(h.clone());
            }
        }
        for (_, a) in up {
            if !order.contains(a) {
                order.push(a.clone());
            }
        }
        for address in order {
            let Some(mut c) = self.client(&address) else {
                continue;
            };
            let r = self.rt.block_on(c.status(pb::StatusRequest {
                job: job.to_string(),
            }));
            if let Ok(r) = r {
                self.leader_hint = Some(address);
                return Some(r.into_inner());
            }
        }
        None
    }

    /// The recent committed batches of `job` (the driver keeps the last
    /// 100), as `weir batches` lists them; `None` while no leader answers.
    pub fn batches(&mut self, up: &[(u64, String)], job: &str) -> Option<Vec<pb::BatchCommit>> {
        let address = self.leader_hint.clone()?;
        if !up.iter().any(|(_, a)| *a == address) {
            return None;
        }
        let mut c = self.client(&address)?;
        let r = self.rt.block_on(c.batches(pb::BatchesRequest {
            job: job.to_string(),
            limit: 100,
        }));
        r.ok().map(|r| r.into_inner().batches)
    }
}
