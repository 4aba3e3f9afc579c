//! [`RaftNode`]: a raft-rs `RawNode` over [`SledRaftStorage`] with the Ready
//! loop of raft-rs `examples/single_mem_node`, conf changes, and snapshot
//! plus log compaction driven by [`RaftConfig::snapshot_threshold`].
//!
//! The node does no I/O of its own besides its storage: the caller ticks it,
//! steps incoming messages into it, and sends what [`RaftNode::on_ready`]
//! hands out. That keeps it testable in-process with a simulated network.

use protobuf::Message as _;
use raft::prelude::{ConfChange, ConfChangeV2, ConfState, Entry, EntryType, Message, Snapshot};
use raft::{RawNode, SnapshotStatus, StateRole, Storage as _};

use super::config::RaftConfig;
use super::error::RaftNodeError;
use super::log::tracing_logger;
use super::storage::SledRaftStorage;

type Result<T> = std::result::Result<T, RaftNodeError>;

/// The replicated state machine as the Raft node sees it.
///
/// `apply` must be deterministic: every node applies the same entries in the
/// same order and must end in the same state. The state machine is treated as
/// volatile: on [`RaftNode::restart`] it is restored from the latest stored
/// snapshot and the committed entries after it are applied again.
pub trait StateMachine {
    /// Applies one committed normal entry with non-empty data (the leader's
    /// empty entries and conf changes are handled by the node).
    fn apply(&mut self, entry: &Entry);

    /// Serializes the whole state as of the last applied entry.
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the whole state with one produced by [`Self::snapshot`].
    /// `data` is empty for the bootstrap snapshot at index 1, which must
    /// yield the initial (empty) state.
    fn restore(&mut self, data: &[u8]) -> std::result::Result<(), String>;
}

/// One member of a Raft group.
pub struct RaftNode {
    raw: RawNode<SledRaftStorage>,
    config: RaftConfig,
    /// The leader last logged (0: none), so each change is logged once.
    logged_leader: u64,
}

impl std::fmt::Debug for RaftNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftNode")
            .field("id", &self.id())
            .field("role", &self.role())
            .field("term", &self.term())
            .field("commit", &self.commit_index())
            .field("applied", &self.applied_index())
            .finish()
    }
}

impl RaftNode {
    /// Creates node `id` on an empty storage.
    ///
    /// With `peers` non-empty (every founding member passes the same list,
    /// including itself) the storage is bootstrapped with a snapshot at index
    /// 1, term 1 whose conf state has `peers` as voters and whose data is
    /// empty; a node added later therefore always starts from a snapshot.
    /// With `peers` empty the node joins an existing group: it stays idle
    /// until a leader that has added it sends it a snapshot.
    pub fn new(
        id: u64,
        peers: &[u64],
        storage: SledRaftStorage,
        config: &RaftConfig,
    ) -> Result<Self> {
        config.validate(id)?;
        let state = storage.initial_state()?;
        if state.initialized() || storage.last_index()? > 0 {
            return Err(RaftNodeError::AlreadyInitialized);
        }
        if !peers.is_empty() {
            let mut snapshot = Snapshot::default();
            let meta = snapshot.mut_metadata();
            meta.index = 1;
            meta.term = 1;
            meta.mut_conf_state().set_voters(peers.to_vec());
            storage.apply_snapshot(snapshot)?;
            storage.flush()?;
        }
        let applied = storage.hard_state()?.commit;
        Self::with_storage(id, storage, config, applied)
    }

    /// Reopens node `id` on a storage it used before: restores `sm` from
    /// the latest stored snapshot (if any), resets the stored conf state to
    /// the snapshot's, and resumes; the committed entries after the snapshot,
    /// conf changes included, are applied again by the next
    /// [`Self::on_ready`] calls.
    pub fn restart(
        id: u64,
        storage: SledRaftStorage,
        config: &RaftConfig,
        sm: &mut impl StateMachine,
    ) -> Result<Self> {
        config.validate(id)?;
        let mut applied = 0;
        if let Some(snap) = storage.latest_snapshot()? {
            applied = snap.get_metadata().index;
            sm.restore(snap.get_data())
                .map_err(|reason| RaftNodeError::Restore {
                    index: applied,
                    reason,
                })?;
            // The snapshot proves its index was committed; raft-rs refuses
            // an applied index above the stored commit.
            let mut hs = storage.hard_state()?;
            if hs.commit < applied {
                hs.commit = applied;
                storage.set_hard_state(&hs)?;
            }
            // raft-rs expects the conf state as of `applied`: the conf
            // changes after the snapshot are applied again with the entries.
            storage.set_conf_state(snap.get_metadata().get_conf_state())?;
            storage.flush()?;
        }
        Self::with_storage(id, storage, config, applied)
    }

    fn with_storage(
        id: u64,
        storage: SledRaftStorage,
        config: &RaftConfig,
        applied: u64,
    ) -> Result<Self> {
        // raft-rs adds `raft_id` to the logger's key-values itself.
        let raw = RawNode::new(&config.to_raft(id, applied), storage, &tracing_logger())?;
        Ok(Self {
            raw,
            config: config.clone(),
            logged_leader: 0,
        })
    }

    /// Advances the logical clock by one tick (heartbeats, elections).
    /// Returns whether there may be new work for [`Self::on_ready`].
    pub fn tick(&mut self) -> bool {
        self.raw.tick()
    }

    /// Hands a message received from a peer to the node.
    pub fn step(&mut self, msg: Message) -> Result<()> {
        Ok(self.raw.step(msg)?)
    }

    /// Proposes `data` for the log. On a follower the proposal is forwarded
    /// to the leader; with no known leader it fails with
    /// `raft::Error::ProposalDropped`. Success means accepted, not
    /// committed: the entry is applied only if it commits.
    pub fn propose(&mut self, data: Vec<u8>, context: Vec<u8>) -> Result<()> {
        Ok(self.raw.propose(context, data)?)
    }

    /// Proposes a membership change (one at a time; raft-rs drops a second
    /// one while the first is not applied).
    pub fn propose_conf_change(&mut self, cc: ConfChange, context: Vec<u8>) -> Result<()> {
        Ok(self.raw.propose_conf_change(context, cc)?)
    }

    /// The learners whose log has caught up with the leader's commit index,
    /// which the leader promotes to voters: a new driver joins as a learner
    /// and votes only once it holds the log, so adding an unreachable one
    /// never costs the group its quorum. Empty unless this node leads and
    /// no membership change is pending.
    pub fn caught_up_learners(&self) -> Vec<u64> {
        let raft = &self.raw.raft;
        if !self.is_leader() || raft.pending_conf_index > raft.raft_log.applied {
            return Vec::new();
        }
        let committed = raft.raft_log.committed;
        let mut ids: Vec<u64> = self
            .conf_state()
            .learners
            .iter()
            .copied()
            .filter(|id| raft.prs().get(*id).is_some_and(|p| p.matched >= committed))
            .collect();
        ids.sort_unstable();
        ids
    }

    /// Starts an election now (tests, leadership hand-off).
    pub fn campaign(&mut self) -> Result<()> {
        Ok(self.raw.campaign()?)
    }

    /// Tells the leader that `to` could not be reached, so it stops
    /// pipelining appends to it.
    pub fn report_unreachable(&mut self, to: u64) {
        self.raw.report_unreachable(to);
    }

    /// Tells the leader whether a snapshot message to `to` was delivered;
    /// without a `Failure` report after a lost snapshot the leader waits for
    /// that follower forever.
    pub fn report_snapshot(&mut self, to: u64, status: SnapshotStatus) {
        self.raw.report_snapshot(to, status);
    }

    /// Whether [`Self::on_ready`] has work to do.
    pub fn has_ready(&self) -> bool {
        self.raw.has_ready()
    }

    /// Processes every pending `Ready`, in the order of raft-rs
    /// `examples/single_mem_node`:
    ///
    /// 1. send the messages that may leave before persistence (a leader's
    ///    appends, Raft thesis 10.2.1);
    /// 2. store an incoming snapshot and restore `sm` from it;
    /// 3. apply committed entries (already persisted);
    /// 4. append new entries, store the hard state, flush when raft-rs says
    ///    the write must be synced;
    /// 5. send the messages that required that persistence (votes, append
    ///    responses);
    /// 6. `advance`, then store the new commit index, send, apply the
    ///    `LightReady`'s committed entries, and `advance_apply`.
    ///
    /// Finally, if the applied log exceeds the snapshot threshold, takes a
    /// state-machine snapshot and compacts. An error leaves the node unusable
    /// (raft-rs cannot take a `Ready` back); the caller should stop it and
    /// restart from storage.
    pub fn on_ready(
        &mut self,
        sm: &mut impl StateMachine,
        mut send: impl FnMut(Message),
    ) -> Result<()> {
        while self.raw.has_ready() {
            let mut ready = self.raw.ready();
            if let Some(ss) = ready.ss() {
                self.log_leader(ss.leader_id);
            }
            ready.take_messages().into_iter().for_each(&mut send);

            if !ready.snapshot().is_empty() {
                let snap = ready.snapshot().clone();
                let index = snap.get_metadata().index;
                tracing::info!(raft_id = self.id(), index, "restoring from snapshot");
                self.raw.store().apply_snapshot(snap.clone())?;
                sm.restore(snap.get_data())
                    .map_err(|reason| RaftNodeError::Restore { index, reason })?;
            }

            self.apply_entries(sm, ready.take_committed_entries())?;

            let store = self.raw.store();
            store.append(ready.entries())?;
            if let Some(hs) = ready.hs() {
                store.set_hard_state(hs)?;
            }
            if ready.must_sync() {
                store.flush()?;
            }
            ready
                .take_persisted_messages()
                .into_iter()
                .for_each(&mut send);

            let mut light = self.raw.advance(ready);
            if let Some(commit) = light.commit_index() {
                self.raw.store().set_commit(commit)?;
            }
            light.take_messages().into_iter().for_each(&mut send);
            self.apply_entries(sm, light.take_committed_entries())?;
            self.raw.advance_apply();
        }
        self.maybe_compact(sm)
    }

    /// One line per leadership change, in Weir's words; raft-rs's own
    /// account of elections is at DEBUG (see [`super::log`]).
    fn log_leader(&mut self, leader: u64) {
        if leader == self.logged_leader {
            return;
        }
        self.logged_leader = leader;
        let (id, term) = (self.id(), self.term());
        match leader {
            0 => tracing::debug!(
                raft_id = id,
                term,
                "no leader known; an election is under way"
            ),
            l if l == id => {
                tracing::info!(
                    raft_id = id,
                    term,
                    "this driver now leads the metadata group"
                )
            }
            l => tracing::info!(
                raft_id = id,
                term,
                leader = l,
                "driver {l} now leads the metadata group"
            ),
        }
    }

    fn apply_entries(&mut self, sm: &mut impl StateMachine, entries: Vec<Entry>) -> Result<()> {
        for entry in entries {
            match entry.get_entry_type() {
                EntryType::EntryNormal => {
                    if !entry.data.is_empty() {
                        sm.apply(&entry);
                    }
                }
                EntryType::EntryConfChange => {
                    let cc = ConfChange::parse_from_bytes(&entry.data).map_err(|e| {
                        RaftNodeError::BadConfChange {
                            index: entry.index,
                            reason: e.to_string(),
                        }
                    })?;
                    let result = self.raw.apply_conf_change(&cc);
                    self.record_conf_change(entry.index, result)?;
                }
                EntryType::EntryConfChangeV2 => {
                    let cc = ConfChangeV2::parse_from_bytes(&entry.data).map_err(|e| {
                        RaftNodeError::BadConfChange {
                            index: entry.index,
                            reason: e.to_string(),
                        }
                    })?;
                    let result = self.raw.apply_conf_change(&cc);
                    self.record_conf_change(entry.index, result)?;
                }
            }
        }
        Ok(())
    }

    /// Stores the conf state a conf change produced (raft-rs does not
    /// re-export its `ConfChangeI` trait, hence the result as argument).
    fn record_conf_change(&mut self, index: u64, result: raft::Result<ConfState>) -> Result<()> {
        match result {
            Ok(cs) => {
                tracing::info!(
                    raft_id = self.id(),
                    index,
                    voters = ?cs.voters,
                    learners = ?cs.learners,
                    "applied conf change"
                );
                self.raw.store().set_conf_state(&cs)?;
            }
            // Every node sees the same entry and rejects it the same way, so
            // skipping it keeps the group consistent.
            Err(e) => tracing::warn!(
                raft_id = self.id(),
                index,
                error = %e,
                "conf change rejected, skipped"
            ),
        }
        Ok(())
    }

    /// Saves a state-machine snapshot at the applied index when raft asked
    /// for one the storage could not serve, or when the applied log exceeds
    /// the threshold; in the latter case also compacts the log up to it.
    fn maybe_compact(&mut self, sm: &mut impl StateMachine) -> Result<()> {
        let applied = self.applied_index();
        let store = self.raw.store();
        let first = store.first_index()?;
        let compact = applied >= first && applied - first >= self.config.snapshot_threshold;
        let requested = store.take_snapshot_request();
        if !compact && !requested {
            return Ok(());
        }
        let conf_state = store.conf_state()?;
        store.save_snapshot(applied, conf_state, sm.snapshot())?;
        if compact {
            store.compact(applied + 1)?;
        }
        store.flush()?;
        tracing::info!(
            raft_id = self.id(),
            index = applied,
            compacted = compact,
            requested,
            "saved state machine snapshot"
        );
        Ok(())
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.raw.raft.id
    }

    /// Whether this node currently believes it is the leader.
    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// Whether this node leads and its state machine has applied an entry
    /// of its own term. A node elected leader may hold entries committed
    /// under the previous leader without knowing they are committed: it
    /// learns that, and applies them, only once the empty entry it appends
    /// on election commits. Until then its state machine can be behind
    /// what the previous leader acted on, and must not be read as current.
    pub fn leads_with_current_state(&self) -> bool {
        let log = &self.raw.raft.raft_log;
        self.is_leader() && log.term(log.applied).is_ok_and(|t| t == self.raw.raft.term)
    }

    /// The leader this node knows of, if any.
    pub fn leader_id(&self) -> Option<u64> {
        match self.raw.raft.leader_id {
            raft::INVALID_ID => None,
            id => Some(id),
        }
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// The highest log index known to be committed.
    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    /// The highest log index applied to the state machine.
    pub fn applied_index(&self) -> u64 {
        self.raw.raft.raft_log.applied
    }

    /// The role: `leader`, `follower`, `candidate` or `pre-candidate`.
    pub fn role(&self) -> &'static str {
        match self.raw.raft.state {
            StateRole::Leader => "leader",
            StateRole::Follower => "follower",
            StateRole::Candidate => "candidate",
            StateRole::PreCandidate => "pre-candidate",
        }
    }

    /// The membership as applied on this node.
    pub fn conf_state(&self) -> ConfState {
        self.raw.raft.prs().conf().to_conf_state()
    }

    /// The node's storage.
    pub fn storage(&self) -> &SledRaftStorage {
        self.raw.store()
    }
}
