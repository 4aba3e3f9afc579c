//! A simulated network of Raft nodes in one process, after raft-rs
//! `harness/src/network.rs`: messages go through a queue the test drains,
//! links can be cut per direction, nodes can be stopped, restarted on their
//! sled directory, or wiped. No sockets, and time is `tick()`.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use raft::prelude::{Entry, Message, MessageType};
use raft::SnapshotStatus;
use tempfile::TempDir;

use crate::raft::{RaftConfig, RaftNode, SledRaftStorage, StateMachine};

const CACHE: u64 = 8 * 1024 * 1024;

/// A tiny state machine: the list of applied payloads, in order.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied(pub Vec<Vec<u8>>);

impl StateMachine for Applied {
    fn apply(&mut self, entry: &Entry) {
        self.0.push(entry.data.to_vec());
    }

    fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for item in &self.0 {
            out.extend_from_slice(&(item.len() as u32).to_be_bytes());
            out.extend_from_slice(item);
        }
        out
    }

    fn restore(&mut self, mut data: &[u8]) -> Result<(), String> {
        let mut items = Vec::new();
        while !data.is_empty() {
            if data.len() < 4 {
                return Err("truncated length".into());
            }
            let (len, rest) = data.split_at(4);
            let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
            if rest.len() < len {
                return Err("truncated item".into());
            }
            let (item, rest) = rest.split_at(len);
            items.push(item.to_vec());
            data = rest;
        }
        self.0 = items;
        Ok(())
    }
}

/// A running node and its state machine.
pub struct Peer {
    pub node: RaftNode,
    pub sm: Applied,
}

/// The simulated cluster.
pub struct Network {
    pub peers: BTreeMap<u64, Option<Peer>>,
    cut: HashSet<(u64, u64)>,
    queue: VecDeque<Message>,
    base: TempDir,
    pub config: RaftConfig,
    /// How many upcoming snapshot messages to lose in transit.
    pub lose_snapshots: usize,
    /// Lose every log append (`MsgAppend`) in transit while set.
    pub lose_appends: bool,
}

impl Network {
    /// `n` founding members with ids `1..=n`.
    pub fn new(n: u64, config: RaftConfig) -> Self {
        // RUST_LOG=raft=debug shows raft-rs's own log through the bridge.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let base = tempfile::tempdir().expect("tempdir");
        let mut net = Self {
            peers: BTreeMap::new(),
            cut: HashSet::new(),
            queue: VecDeque::new(),
            base,
            config,
            lose_snapshots: 0,
            lose_appends: false,
        };
        let ids: Vec<u64> = (1..=n).collect();
        for &id in &ids {
            let node = RaftNode::new(id, &ids, net.open_storage(id), &net.config).expect("new");
            net.peers.insert(
                id,
                Some(Peer {
                    node,
                    sm: Applied::default(),
                }),
            );
        }
        net
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.base.path().join(format!("node-{id}"))
    }

    /// Opens node `id`'s storage. sled lets go of a database's file lock
    /// once its background writes of the last buffers end, which can be a
    /// moment after a stopped node's storage was dropped: opening it again
    /// waits for that (no simulated time passes meanwhile).
    fn open_storage(&self, id: u64) -> SledRaftStorage {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match SledRaftStorage::open(&self.dir(id), CACHE) {
                Ok(storage) => return storage,
                Err(e)
                    if e.to_string().contains("could not acquire lock")
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("open storage of node {id}: {e}"),
            }
        }
    }

    pub fn peer(&self, id: u64) -> &Peer {
        self.peers[&id].as_ref().expect("peer is running")
    }

    pub fn peer_mut(&mut self, id: u64) -> &mut Peer {
        self.peers
            .get_mut(&id)
            .and_then(Option::as_mut)
            .expect("peer is running")
    }

    /// Runs every Ready and delivers every message until the cluster is quiet.
    pub fn process(&mut self) {
        for _ in 0..10_000 {
            for peer in self.peers.values_mut().flatten() {
                let queue = &mut self.queue;
                peer.node
                    .on_ready(&mut peer.sm, |m| queue.push_back(m))
                    .expect("on_ready");
            }
            if self.queue.is_empty() {
                return;
            }
            while let Some(msg) = self.queue.pop_front() {
                self.deliver(msg);
            }
        }
        panic!("cluster did not quiesce");
    }

    fn deliver(&mut self, msg: Message) {
        let (from, to) = (msg.from, msg.to);
        let is_snapshot = msg.get_msg_type() == MessageType::MsgSnapshot;
        let mut reachable =
            !self.cut.contains(&(from, to)) && matches!(self.peers.get(&to), Some(Some(_)));
        if self.lose_appends && msg.get_msg_type() == MessageType::MsgAppend {
            reachable = false;
        }
        if reachable && is_snapshot && self.lose_snapshots > 0 {
            self.lose_snapshots -= 1;
            reachable = false;
        }
        if !reachable {
            // The transport would notice the failure; without the report a
            // leader waits for a lost snapshot forever.
            if let Some(Some(sender)) = self.peers.get_mut(&from) {
                sender.node.report_unreachable(to);
                if is_snapshot {
                    sender.node.report_snapshot(to, SnapshotStatus::Failure);
                }
            }
            return;
        }
        // Messages from removed peers are refused by raft-rs; that is fine.
        let _ = self.peer_mut(to).node.step(msg);
        if is_snapshot {
            if let Some(Some(sender)) = self.peers.get_mut(&from) {
                sender.node.report_snapshot(to, SnapshotStatus::Finish);
            }
        }
    }

    /// One tick on every running node, then everything that follows.
    pub fn tick(&mut self) {
        for peer in self.peers.values_mut().flatten() {
            peer.node.tick();
        }
        self.process();
    }

    /// Ticks until `cond` holds; false if it did not within `max` ticks.
    pub fn tick_until(&mut self, max: usize, cond: impl Fn(&Network) -> bool) -> bool {
        for _ in 0..max {
            if cond(self) {
                return true;
            }
            self.tick();
        }
        cond(self)
    }

    /// Running nodes that think they lead.
    pub fn leaders(&self) -> Vec<u64> {
        self.peers
            .values()
            .flatten()
            .filter(|p| p.node.is_leader())
            .map(|p| p.node.id())
            .collect()
    }

    /// The leader, one of `ids`, that every node in `ids` agrees on, if any.
    pub fn agreed_leader(&self, ids: &[u64]) -> Option<u64> {
        let first = self.peer(ids[0]).node.leader_id()?;
        let agreed = ids.contains(&first)
            && ids
                .iter()
                .all(|&id| self.peer(id).node.leader_id() == Some(first));
        (agreed && self.peer(first).node.is_leader()).then_some(first)
    }

    /// Ticks until nodes `ids` agree on a leader among them; returns it.
    pub fn elect(&mut self, ids: &[u64]) -> u64 {
        assert!(
            self.tick_until(300, |n| n.agreed_leader(ids).is_some()),
            "no leader among {ids:?}"
        );
        self.agreed_leader(ids).expect("leader")
    }

    /// Cuts every link to and from `id`.
    pub fn isolate(&mut self, id: u64) {
        for &other in self.peers.keys() {
            if other != id {
                self.cut.insert((id, other));
                self.cut.insert((other, id));
            }
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    /// Proposes `data` on node `id` and processes the consequences.
    pub fn propose(&mut self, id: u64, data: &[u8]) {
        self.peer_mut(id)
            .node
            .propose(data.to_vec(), Vec::new())
            .expect("propose");
        self.process();
    }

    /// Stops node `id` (dropping its storage closes the sled database).
    pub fn stop(&mut self, id: u64) {
        self.peers.insert(id, None);
    }

    /// Restarts a stopped node on its data directory with a fresh state machine.
    pub fn restart(&mut self, id: u64) {
        let mut sm = Applied::default();
        let node =
            RaftNode::restart(id, self.open_storage(id), &self.config, &mut sm).expect("restart");
        self.peers.insert(id, Some(Peer { node, sm }));
    }

    /// Deletes a stopped node's data directory.
    pub fn wipe(&mut self, id: u64) {
        assert!(self.peers[&id].is_none(), "stop the node first");
        std::fs::remove_dir_all(self.dir(id)).expect("wipe");
    }

    /// Starts node `id` on an empty directory as a joiner (no peers).
    pub fn start_joiner(&mut self, id: u64) {
        let node = RaftNode::new(id, &[], self.open_storage(id), &self.config).expect("new joiner");
        self.peers.insert(
            id,
            Some(Peer {
                node,
                sm: Applied::default(),
            }),
        );
    }

    /// The applied payloads of node `id`.
    pub fn applied(&self, id: u64) -> &[Vec<u8>] {
        &self.peer(id).sm.0
    }
}
