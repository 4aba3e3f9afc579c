//! The replica thread: owns the Raft node and the metadata state machine,
//! ticks, steps peer messages, proposes commands and answers proposers
//! when their command is applied.
//!
//! Everything Raft does happens on this one thread; gRPC handlers and job
//! drivers talk to it through a channel ([`ReplicaHandle`]).

use super::transport::Transport;
use crate::config::DriverConfig;
use crate::metadata::{MetaError, SledMetadata};
use crate::raft::{
    ConfChange, ConfChangeType, Entry, Message, RaftConfig, RaftNode, SledRaftStorage, StateMachine,
};
use prometheus_client::metrics::histogram::Histogram;
use prost::Message as _;
use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};
use weir_proto::pb::{self, meta_command::Kind};

/// What the replica reports about itself.
#[derive(Debug, Clone, Default)]
pub struct ReplicaStatus {
    /// This replica's id.
    pub id: u64,
    /// `leader`, `follower`, `candidate` or `pre-candidate`.
    pub role: String,
    /// Raft term.
    pub term: u64,
    /// The leader this replica knows of.
    pub leader_id: Option<u64>,
    /// Highest committed log index.
    pub commit: u64,
    /// Highest applied log index.
    pub applied: u64,
    /// Whether this replica leads and has applied an entry of its own term,
    /// so that its metadata holds everything committed before it was
    /// elected (see [`crate::raft::RaftNode::leads_with_current_state`]).
    pub current: bool,
    /// Voting members.
    pub voters: Vec<u64>,
    /// Members that receive the log but do not vote yet (a driver added
    /// with `cluster add-driver` until it has caught up).
    pub learners: Vec<u64>,
    /// When each peer was last heard from.
    pub last_contact: BTreeMap<u64, Instant>,
}

impl ReplicaStatus {
    /// Whether this replica leads with current metadata (see
    /// [`ReplicaHandle::is_leader`]).
    pub fn leads(&self) -> bool {
        self.role == "leader" && self.current
    }
}

/// Where a proposal's outcome goes: an async task or a plain thread.
pub(super) enum Reply {
    Async(oneshot::Sender<Result<(), MetaError>>),
    Blocking(mpsc::Sender<Result<(), MetaError>>),
}

impl Reply {
    fn send(self, result: Result<(), MetaError>) {
        match self {
            Reply::Async(tx) => {
                let _ = tx.send(result);
            }
            Reply::Blocking(tx) => {
                let _ = tx.send(result);
            }
        }
    }
}

pub(super) enum Event {
    Messages {
        from: u64,
        messages: Vec<Message>,
    },
    Propose {
        command: Box<pb::MetaCommand>,
        reply: Reply,
    },
    ConfChange {
        change: ConfChange,
        reply: Reply,
    },
    Unreachable(u64),
    /// Whether a snapshot sent to a peer arrived (the leader waits for it).
    Snapshot {
        to: u64,
        delivered: bool,
    },
    /// Stop the replica thread (`ReplicaHandle::stop`).
    Stop,
}

/// Talks to the replica thread.
#[derive(Clone)]
pub struct ReplicaHandle {
    events: mpsc::Sender<Event>,
    status: Arc<RwLock<ReplicaStatus>>,
    meta: Arc<SledMetadata>,
    addresses: Arc<RwLock<BTreeMap<u64, String>>>,
    proposal_timeout: Duration,
    election_timeout: Duration,
    cluster_id: String,
    /// The replica thread, joined by `stop`.
    thread: Arc<Mutex<Option<std::thread::JoinHandle<()>>>>,
    /// Time from proposal to applied of the commands that succeed.
    proposals: Histogram,
}

impl ReplicaHandle {
    /// A copy of the replica's current status.
    pub fn status(&self) -> ReplicaStatus {
        self.status
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether this replica is the leader and may act as one: its metadata
    /// holds every entry committed before it was elected. A replica just
    /// elected is not yet: acting on its older metadata (driving a job from
    /// a batch the previous leader had gone past) would undo work.
    pub fn is_leader(&self) -> bool {
        self.status().leads()
    }

    /// The cluster id.
    pub fn cluster_id(&self) -> &str {
        &self.cluster_id
    }

    /// The voters this replica can count on now: itself, and the peers it
    /// heard from within an election timeout.
    pub fn reachable(&self, voters: &[u64]) -> Vec<u64> {
        let status = self.status();
        let now = Instant::now();
        voters
            .iter()
            .copied()
            .filter(|id| {
                *id == status.id
                    || status
                        .last_contact
                        .get(id)
                        .is_some_and(|t| now.duration_since(*t) <= self.election_timeout)
            })
            .collect()
    }

    /// Address of replica `id`, if known.
    pub fn address_of(&self, id: u64) -> Option<String> {
        self.addresses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Every known replica address.
    pub fn addresses(&self) -> BTreeMap<u64, String> {
        self.addresses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The leader's address, if a leader is known.
    ///
    /// A replica just elected is not named until its metadata is current
    /// (see [`is_leader`](Self::is_leader)): calls sent to it meanwhile
    /// would only come back.
    pub fn leader_address(&self) -> Option<String> {
        let status = self.status();
        match status.leader_id {
            Some(id) if id == status.id && !status.current => None,
            leader => leader.and_then(|id| self.address_of(id)),
        }
    }

    /// The local copy of the metadata checkpoint (reads only).
    pub fn metadata(&self) -> &Arc<SledMetadata> {
        &self.meta
    }

    /// Delivers messages from peer `from`, learning its address when this
    /// replica does not know it yet (it joined after the others).
    pub fn deliver(&self, from: u64, from_address: &str, messages: Vec<Message>) {
        if !from_address.is_empty() {
            let mut a = self.addresses.write().unwrap_or_else(|p| p.into_inner());
            a.entry(from).or_insert_with(|| from_address.to_string());
        }
        let _ = self.events.send(Event::Messages { from, messages });
    }

    fn not_leader(&self) -> MetaError {
        MetaError::NotLeader {
            leader: self.leader_address(),
        }
    }

    /// The histogram of proposal times (`weir_raft_proposal_seconds`).
    pub fn proposals(&self) -> Histogram {
        self.proposals.clone()
    }

    async fn wait(&self, rx: oneshot::Receiver<Result<(), MetaError>>) -> Result<(), MetaError> {
        let started = Instant::now();
        match tokio::time::timeout(self.proposal_timeout, rx).await {
            Ok(Ok(result)) => {
                if result.is_ok() {
                    self.proposals.observe(started.elapsed().as_secs_f64());
                }
                result
            }
            Ok(Err(_)) => Err(self.not_leader()),
            Err(_) => Err(self.no_quorum()),
        }
    }

    fn no_quorum(&self) -> MetaError {
        let voters = self.status().voters.len();
        MetaError::NoQuorum(format!(
            "the command was not committed within {:?}: fewer than {} of {voters} driver replicas are reachable; \
             restart the stopped drivers or check the network between them",
            self.proposal_timeout,
            voters / 2 + 1
        ))
    }

    /// Replicates a command; returns once it is applied on this replica,
    /// or fails with `NotLeader` or `NoQuorum` within the proposal timeout.
    pub async fn propose(&self, command: pb::MetaCommand) -> Result<(), MetaError> {
        let (reply, rx) = oneshot::channel();
        self.events
            .send(Event::Propose {
                command: Box::new(command),
                reply: Reply::Async(reply),
            })
            .map_err(|_| self.not_leader())?;
        self.wait(rx).await
    }

    /// [`propose`](Self::propose) for plain threads.
    pub fn propose_blocking(&self, command: pb::MetaCommand) -> Result<(), MetaError> {
        self.propose_detached(command)?.wait()
    }

    /// Hands a command to the replica thread and returns at once; the
    /// returned [`Proposal`] waits for its outcome. Commands proposed one
    /// after another from one thread enter the log in that order.
    pub fn propose_detached(&self, command: pb::MetaCommand) -> Result<Proposal, MetaError> {
        let (reply, rx) = mpsc::channel();
        self.events
            .send(Event::Propose {
                command: Box::new(command),
                reply: Reply::Blocking(reply),
            })
            .map_err(|_| self.not_leader())?;
        Ok(Proposal {
            rx,
            started: Instant::now(),
            deadline: Instant::now() + self.proposal_timeout,
            replica: self.clone(),
        })
    }

    /// Waits until this replica leads (a single-replica group elects itself
    /// at once); false after `timeout`.
    pub fn wait_for_leadership(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.is_leader() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// Stops the replica thread after the events before this one and
    /// waits for it to exit (within one tick): it persists what those
    /// events produced, then stops ticking and answering. Proposals
    /// waiting for an outcome fail; the status says `stopped`. The data
    /// directory is released once every handle is dropped. For a driver
    /// that shuts down ([`crate::server::run`]).
    pub fn stop(&self) {
        let _ = self.events.send(Event::Stop);
        let thread = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Proposes a membership change and waits until this replica applied it.
    pub async fn change_membership(&self, change: ConfChange) -> Result<(), MetaError> {
        let (reply, rx) = oneshot::channel();
        self.events
            .send(Event::ConfChange {
                change,
                reply: Reply::Async(reply),
            })
            .map_err(|_| self.not_leader())?;
        self.wait(rx).await
    }
}

/// A proposed command whose outcome is not known yet.
pub struct Proposal {
    rx: mpsc::Receiver<Result<(), MetaError>>,
    started: Instant,
    deadline: Instant,
    replica: ReplicaHandle,
}

impl Proposal {
    /// Waits until the command is applied on this replica, or fails with
    /// `NotLeader` or `NoQuorum` by the proposal timeout.
    pub fn wait(self) -> Result<(), MetaError> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        match self.rx.recv_timeout(left) {
            Ok(result) => {
                if result.is_ok() {
                    self.replica
                        .proposals
                        .observe(self.started.elapsed().as_secs_f64());
                }
                result
            }
            Err(RecvTimeoutError::Timeout) => Err(self.replica.no_quorum()),
            Err(RecvTimeoutError::Disconnected) => Err(self.replica.not_leader()),
        }
    }
}

/// A proposal waiting for its entry to be applied.
struct Waiter {
    reply: Reply,
    deadline: Instant,
}

/// The metadata store as the Raft state machine.
struct MetaMachine {
    meta: Arc<SledMetadata>,
    id: u64,
    waiters: HashMap<u64, Waiter>,
    addresses: Arc<RwLock<BTreeMap<u64, String>>>,
}

fn context(id: u64, proposal: u64) -> Vec<u8> {
    let mut c = id.to_be_bytes().to_vec();
    c.extend_from_slice(&proposal.to_be_bytes());
    c
}

impl MetaMachine {
    fn refresh_addresses(&self) {
        if let Ok(peers) = self.meta.peer_addresses() {
            let mut a = self.addresses.write().unwrap_or_else(|p| p.into_inner());
            a.extend(peers);
        }
    }

    fn waiter_of(&mut self, entry: &Entry) -> Option<Waiter> {
        let ctx = entry.get_context();
        if ctx.len() != 16 || ctx[..8] != self.id.to_be_bytes() {
            return None;
        }
        let proposal = u64::from_be_bytes(ctx[8..].try_into().ok()?);
        self.waiters.remove(&proposal)
    }
}

impl StateMachine for MetaMachine {
    fn apply(&mut self, entry: &Entry) {
        let result = match pb::MetaCommand::decode(entry.get_data()) {
            Ok(command) => {
                let peer = matches!(command.kind, Some(Kind::PeerAddress(_)));
                let r = self.meta.apply_at(command, Some(entry.index));
                if peer {
                    self.refresh_addresses();
                }
                r
            }
            Err(e) => {
                error!(index = entry.index, error = %e, "undecodable metadata command in the replicated log, skipped");
                Err(MetaError::Rejected(format!("undecodable command: {e}")))
            }
        };
        if let Err(e) = &result {
            if diverges(e) {
                // Every other replica applied this entry: going on without it
                // would serve and replicate a different state. Stop, as for a
                // snapshot that cannot be read; a restart replays the entry.
                error!(index = entry.index, error = %e, "cannot apply a committed metadata command; exiting");
                std::process::exit(70);
            }
        }
        if let Some(w) = self.waiter_of(entry) {
            w.reply.send(result);
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        match self.meta.export() {
            Ok(bytes) => bytes,
            Err(e) => {
                // An empty snapshot would wipe every follower; stop instead.
                error!(error = %e, "cannot read the metadata store for a snapshot; exiting");
                std::process::exit(70);
            }
        }
    }

    fn restore(&mut self, data: &[u8]) -> Result<(), String> {
        self.meta.import(data).map_err(|e| e.to_string())?;
        self.refresh_addresses();
        Ok(())
    }
}

/// Whether failing to apply a committed command leaves this replica with a
/// state the others do not have. A rejection is decided by the command and
/// the state alone, so every replica rejects it alike; a store that cannot
/// be written or read is this replica's own failure.
fn diverges(e: &MetaError) -> bool {
    match e {
        MetaError::Rejected(_) | MetaError::NotLeader { .. } | MetaError::NoQuorum(_) => false,
        MetaError::Storage { .. } | MetaError::Corrupt { .. } => true,
    }
}

/// Starts replicas.
pub struct Replica;

impl Replica {
    /// Opens the replica's storage under `config.data_dir`, bootstraps or
    /// restarts its Raft node, and starts its thread. Peer messages go out
    /// through tasks on `runtime`, dialing peers with `peers`.
    pub fn start(
        config: &DriverConfig,
        is_new: bool,
        runtime: tokio::runtime::Handle,
        peers: weir_security::Transport,
    ) -> Result<ReplicaHandle, String> {
        let raft_dir = config.data_dir.join("raft");
        let path = raft_dir.display().to_string();
        let db = sled::Config::new()
            .path(&raft_dir)
            .cache_capacity(32 * 1024 * 1024)
            .open()
            .map_err(|e| {
                format!("cannot open {path}: {e}; is another driver using this data directory?")
            })?;
        let storage = SledRaftStorage::from_db(&db).map_err(|e| format!("{path}: {e}"))?;
        let meta = Arc::new(SledMetadata::in_db(&db, &path, false).map_err(|e| e.to_string())?);
        let addresses = Arc::new(RwLock::new(config.bootstrap_peers()));
        let mut machine = MetaMachine {
            meta: meta.clone(),
            id: config.id,
            waiters: HashMap::new(),
            addresses: addresses.clone(),
        };
        let raft_config = RaftConfig {
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            snapshot_threshold: config.snapshot_threshold,
            ..Default::default()
        };
        let node = if is_new {
            let peers: Vec<u64> = if config.join {
                Vec::new()
            } else {
                config.bootstrap_peers().keys().copied().collect()
            };
            info!(
                id = config.id,
                ?peers,
                join = config.join,
                "bootstrapping a new replica"
            );
            RaftNode::new(config.id, &peers, storage, &raft_config)
        } else {
            info!(id = config.id, "restarting replica from its data directory");
            RaftNode::restart(config.id, storage, &raft_config, &mut machine)
        }
        .map_err(|e| format!("cannot start raft on {path}: {e}"))?;
        machine.refresh_addresses();
        let (tx, rx) = mpsc::channel();
        let status = Arc::new(RwLock::new(ReplicaStatus {
            id: config.id,
            ..Default::default()
        }));
        let handle = ReplicaHandle {
            events: tx.clone(),
            status: status.clone(),
            meta,
            addresses: addresses.clone(),
            proposal_timeout: config.proposal_timeout,
            election_timeout: config.tick * config.election_ticks as u32,
            cluster_id: config.cluster_id.clone(),
            thread: Arc::new(Mutex::new(None)),
            proposals: weir_web::metrics::seconds(),
        };
        let transport = Transport::new(
            runtime,
            config.cluster_id.clone(),
            config.id,
            addresses,
            tx,
            peers,
        );
        let mut run = Loop {
            node,
            machine,
            transport,
            status,
            tick: config.tick,
            proposal_timeout: config.proposal_timeout,
            next_proposal: 0,
            last_contact: BTreeMap::new(),
            stopping: false,
        };
        let thread = std::thread::Builder::new()
            .name("raft".into())
            .spawn(move || run.run(rx))
            .map_err(|e| format!("cannot start the raft thread: {e}"))?;
        *handle.thread.lock().unwrap_or_else(|p| p.into_inner()) = Some(thread);
        Ok(handle)
    }
}

struct Loop {
    node: RaftNode,
    machine: MetaMachine,
    transport: Transport,
    status: Arc<RwLock<ReplicaStatus>>,
    tick: Duration,
    proposal_timeout: Duration,
    next_proposal: u64,
    last_contact: BTreeMap<u64, Instant>,
    /// An `Event::Stop` arrived: finish this round and return.
    stopping: bool,
}

impl Loop {
    fn run(&mut self, rx: mpsc::Receiver<Event>) {
        // A group of one needs no election timeout: it leads at once.
        if self.node.conf_state().voters == [self.machine.id] {
            if let Err(e) = self.node.campaign() {
                warn!(error = %e, "single replica could not campaign");
            }
        }
        let mut next_tick = Instant::now() + self.tick;
        loop {
            let wait = next_tick.saturating_duration_since(Instant::now());
            match rx.recv_timeout(wait) {
                Ok(event) => self.handle(event),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
            while let Ok(event) = rx.try_recv() {
                self.handle(event);
            }
            if Instant::now() >= next_tick {
                self.node.tick();
                next_tick += self.tick;
                if next_tick < Instant::now() {
                    next_tick = Instant::now() + self.tick;
                }
                self.expire_waiters();
                self.promote_caught_up_learners();
            }
            let transport = &mut self.transport;
            if let Err(e) = self.node.on_ready(&mut self.machine, |m| transport.send(m)) {
                error!(error = %e, "raft failed; the replica stops and must be restarted");
                std::process::exit(70);
            }
            self.publish_status();
            if self.stopping {
                let mut s = self.status.write().unwrap_or_else(|p| p.into_inner());
                s.role = "stopped".to_string();
                s.leader_id = None;
                info!(id = self.machine.id, "replica stopped");
                return;
            }
        }
    }

    /// Proposes a learner that has caught up as a voter (one membership
    /// change at a time: the next one after this one is applied).
    fn promote_caught_up_learners(&mut self) {
        if let Some(id) = self.node.caught_up_learners().first() {
            let mut cc = ConfChange::default();
            cc.set_change_type(ConfChangeType::AddNode);
            cc.node_id = *id;
            match self.node.propose_conf_change(cc, Vec::new()) {
                Ok(()) => info!(
                    driver = id,
                    "driver caught up with the log: promoting it from learner to voter"
                ),
                Err(e) => debug!(driver = id, error = %e, "promotion not proposed yet"),
            }
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Messages { from, messages } => {
                self.last_contact.insert(from, Instant::now());
                for m in messages {
                    if let Err(e) = self.node.step(m) {
                        warn!(from, error = %e, "dropped a raft message");
                    }
                }
            }
            Event::Propose { command, reply } => {
                if !self.node.is_leader() {
                    let leader = self
                        .node
                        .leader_id()
                        .and_then(|id| self.transport.address_of(id));
                    reply.send(Err(MetaError::NotLeader { leader }));
                    return;
                }
                self.next_proposal += 1;
                let ctx = context(self.machine.id, self.next_proposal);
                match self.node.propose(command.encode_to_vec(), ctx) {
                    Ok(()) => {
                        self.machine.waiters.insert(
                            self.next_proposal,
                            Waiter {
                                reply,
                                deadline: Instant::now() + self.proposal_timeout,
                            },
                        );
                    }
                    Err(e) => {
                        reply.send(Err(MetaError::Rejected(format!("proposal dropped: {e}"))));
                    }
                }
            }
            Event::ConfChange { change, reply } => {
                if !self.node.is_leader() {
                    let leader = self
                        .node
                        .leader_id()
                        .and_then(|id| self.transport.address_of(id));
                    reply.send(Err(MetaError::NotLeader { leader }));
                    return;
                }
                let result = self
                    .node
                    .propose_conf_change(change, Vec::new())
                    .map_err(|e| MetaError::Rejected(format!("membership change refused: {e}")));
                // Applied when the entry commits; the caller watches the voters.
                reply.send(result);
            }
            Event::Unreachable(peer) => self.node.report_unreachable(peer),
            Event::Stop => self.stopping = true,
            Event::Snapshot { to, delivered } => {
                let status = if delivered {
                    crate::raft::SnapshotStatus::Finish
                } else {
                    crate::raft::SnapshotStatus::Failure
                };
                self.node.report_snapshot(to, status);
            }
        }
    }

    fn expire_waiters(&mut self) {
        let now = Instant::now();
        let expired: Vec<u64> = self
            .machine
            .waiters
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.machine.waiters.remove(&id);
        }
        if !self.node.is_leader() && !self.machine.waiters.is_empty() {
            // Leadership was lost: these proposals may never commit.
            let leader = self
                .node
                .leader_id()
                .and_then(|id| self.transport.address_of(id));
            for (_, w) in self.machine.waiters.drain() {
                w.reply.send(Err(MetaError::NotLeader {
                    leader: leader.clone(),
                }));
            }
        }
    }

    fn publish_status(&self) {
        let mut s = self.status.write().unwrap_or_else(|p| p.into_inner());
        s.role = self.node.role().to_string();
        s.term = self.node.term();
        s.leader_id = self.node.leader_id();
        s.commit = self.node.commit_index();
        s.applied = self.node.applied_index();
        s.current = self.node.leads_with_current_state();
        let conf = self.node.conf_state();
        s.voters = conf.voters.clone();
        s.learners = conf.learners.clone();
        s.last_contact = self.last_contact.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rejection is the same on every replica; a local store failure is
    /// not, and stops the replica.
    #[test]
    fn only_local_store_failures_stop_the_replica() {
        let stops = [
            (MetaError::Rejected("stale".into()), false),
            (MetaError::NotLeader { leader: None }, false),
            (MetaError::NoQuorum("q".into()), false),
            (
                MetaError::Storage {
                    path: "p".into(),
                    message: "disk full".into(),
                },
                true,
            ),
            (
                MetaError::Corrupt {
                    path: "p".into(),
                    key: "k".into(),
                    message: "bad".into(),
                },
                true,
            ),
        ];
        for (e, stop) in stops {
            assert_eq!(diverges(&e), stop, "{e}");
        }
    }
}
