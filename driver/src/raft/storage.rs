//! [`SledRaftStorage`]: the Raft log, hard state, conf state and the latest
//! state-machine snapshot in one sled tree.
//!
//! Layout (one tree, so every write below is one atomic sled batch):
//!
//! | key | value |
//! |---|---|
//! | `e` + index (u64 big-endian) | term (u64 big-endian) + `eraftpb::Entry` |
//! | `m/hard_state` | `eraftpb::HardState` |
//! | `m/conf_state` | `eraftpb::ConfState` |
//! | `m/truncated` | index + term (u64 big-endian) of the entry before the first one kept |
//! | `m/snapshot` | `eraftpb::Snapshot` (metadata and state-machine bytes) |
//!
//! Big-endian indexes make sled's byte order the log order, so range scans
//! return entries in sequence. The term prefix lets `term()` answer without
//! decoding the entry. Messages are encoded with raft-rs's own codec
//! (`protobuf` 2), never with Weir's prost types.
//!
//! Writers do not flush: the Ready loop in [`RaftNode`](super::RaftNode)
//! decides when durability is required and calls [`SledRaftStorage::flush`].

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use protobuf::Message as _;
use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, StorageError};

use super::error::RaftStoreError;

const LOG_PREFIX: u8 = b'e';
const KEY_HARD_STATE: &[u8] = b"m/hard_state";
const KEY_CONF_STATE: &[u8] = b"m/conf_state";
const KEY_TRUNCATED: &[u8] = b"m/truncated";
const KEY_SNAPSHOT: &[u8] = b"m/snapshot";
const TREE_NAME: &str = "raft";

type Result<T> = std::result::Result<T, RaftStoreError>;

/// Raft storage on sled, implementing [`raft::Storage`] as its doc comments
/// demand.
///
/// Cloning is cheap and clones share the same tree. Reads never panic on bad
/// data: a record that does not decode is reported as
/// `raft::Error::Store(StorageError::Other(..))` wrapping
/// [`RaftStoreError::Corrupt`].
#[derive(Clone, Debug)]
pub struct SledRaftStorage {
    tree: sled::Tree,
    /// Set when raft asked for a snapshot that the stored one cannot serve
    /// (none yet, too old, or from before the requesting peer was added).
    snapshot_wanted: Arc<AtomicBool>,
}

fn log_key(index: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = LOG_PREFIX;
    key[1..].copy_from_slice(&index.to_be_bytes());
    key
}

fn corrupt(key: impl Into<String>, reason: impl Into<String>) -> RaftStoreError {
    RaftStoreError::Corrupt {
        key: key.into(),
        reason: reason.into(),
    }
}

fn be_u64(bytes: &[u8], what: &str) -> Result<u64> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| corrupt(what, format!("expected 8 bytes, found {}", bytes.len())))?;
    Ok(u64::from_be_bytes(arr))
}

fn index_of_key(key: &[u8]) -> Result<u64> {
    match key.split_first() {
        Some((&LOG_PREFIX, rest)) => be_u64(rest, "log key"),
        _ => Err(corrupt("log key", "missing log prefix")),
    }
}

/// Splits a log value into its term and entry bytes.
fn split_value(index: u64, value: &[u8]) -> Result<(u64, &[u8])> {
    if value.len() < 8 {
        return Err(corrupt(
            format!("entry {index}"),
            format!("value of {} bytes is shorter than its term", value.len()),
        ));
    }
    let (term, entry) = value.split_at(8);
    Ok((be_u64(term, "entry term")?, entry))
}

fn decode_entry(index: u64, value: &[u8]) -> Result<Entry> {
    let (term, bytes) = split_value(index, value)?;
    let entry = Entry::parse_from_bytes(bytes)
        .map_err(|e| corrupt(format!("entry {index}"), e.to_string()))?;
    if entry.index != index || entry.term != term {
        return Err(corrupt(
            format!("entry {index}"),
            format!(
                "key says index {index} term {term}, entry says index {} term {}",
                entry.index, entry.term
            ),
        ));
    }
    Ok(entry)
}

fn encode<M: protobuf::Message>(what: &'static str, msg: &M) -> Result<Vec<u8>> {
    msg.write_to_bytes().map_err(|e| RaftStoreError::Encode {
        what,
        reason: e.to_string(),
    })
}

fn encode_entry(entry: &Entry) -> Result<Vec<u8>> {
    let bytes = encode("entry", entry)?;
    let mut value = Vec::with_capacity(8 + bytes.len());
    value.extend_from_slice(&entry.term.to_be_bytes());
    value.extend_from_slice(&bytes);
    Ok(value)
}

fn encode_truncated(index: u64, term: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&index.to_be_bytes());
    v[8..].copy_from_slice(&term.to_be_bytes());
    v
}

impl SledRaftStorage {
    /// Opens (or creates) a sled database at `path` with the given page cache
    /// size in bytes (sled's default is 1 GiB, so callers choose), and uses
    /// its `raft` tree.
    pub fn open(path: &Path, cache_capacity: u64) -> Result<Self> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_capacity)
            .open()?;
        Self::from_db(&db)
    }

    /// Uses the `raft` tree of an already open database, so the Raft log can
    /// share a database (and its cache) with other trees.
    pub fn from_db(db: &sled::Db) -> Result<Self> {
        Ok(Self {
            tree: db.open_tree(TREE_NAME)?,
            snapshot_wanted: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Whether raft asked for a snapshot the stored one could not serve
    /// since the last call; the owner should then save a fresh one with
    /// [`Self::save_snapshot`] (raft retries on the follower's next response).
    pub fn take_snapshot_request(&self) -> bool {
        self.snapshot_wanted.swap(false, Ordering::AcqRel)
    }

    /// Flushes every write so far to disk; returns once they are durable.
    pub fn flush(&self) -> Result<()> {
        self.tree.flush()?;
        Ok(())
    }

    fn get_msg<M: protobuf::Message>(&self, key: &[u8]) -> Result<Option<M>> {
        match self.tree.get(key)? {
            None => Ok(None),
            Some(bytes) => M::parse_from_bytes(&bytes)
                .map(Some)
                .map_err(|e| corrupt(String::from_utf8_lossy(key), e.to_string())),
        }
    }

    /// The persisted hard state (default when none was stored).
    pub fn hard_state(&self) -> Result<HardState> {
        Ok(self.get_msg(KEY_HARD_STATE)?.unwrap_or_default())
    }

    /// The persisted conf state (default, i.e. uninitialized, when none was stored).
    pub fn conf_state(&self) -> Result<ConfState> {
        Ok(self.get_msg(KEY_CONF_STATE)?.unwrap_or_default())
    }

    /// The latest stored snapshot, metadata and state-machine data, if any.
    pub fn latest_snapshot(&self) -> Result<Option<Snapshot>> {
        self.get_msg(KEY_SNAPSHOT)
    }

    /// Index and term of the entry just before the first kept entry
    /// (`(0, 0)` for a log that was never compacted).
    pub fn truncated(&self) -> Result<(u64, u64)> {
        match self.tree.get(KEY_TRUNCATED)? {
            None => Ok((0, 0)),
            Some(v) if v.len() == 16 => Ok((
                be_u64(&v[..8], "truncated index")?,
                be_u64(&v[8..], "truncated term")?,
            )),
            Some(v) => Err(corrupt(
                "m/truncated",
                format!("expected 16 bytes, found {}", v.len()),
            )),
        }
    }

    fn first(&self) -> Result<u64> {
        Ok(self.truncated()?.0 + 1)
    }

    fn last(&self) -> Result<u64> {
        let last_entry = self
            .tree
            .range(log_key(0)..=log_key(u64::MAX))
            .next_back()
            .transpose()?;
        match last_entry {
            Some((key, _)) => index_of_key(&key),
            None => Ok(self.truncated()?.0),
        }
    }

    fn term_of(&self, index: u64) -> Result<u64> {
        let (t_index, t_term) = self.truncated()?;
        if index == t_index {
            return Ok(t_term);
        }
        if index < t_index {
            return Err(RaftStoreError::Compacted {
                index,
                first_index: t_index + 1,
            });
        }
        match self.tree.get(log_key(index))? {
            Some(value) => Ok(split_value(index, &value)?.0),
            None => Err(RaftStoreError::Unavailable {
                index,
                last_index: self.last()?,
            }),
        }
    }

    /// Appends entries handed over by a `Ready`, first removing every stored
    /// entry at or after `entries[0].index` (a conflicting suffix from an
    /// older leader). Errors, instead of panicking like raft-rs's
    /// `MemStorage`, when the entries start inside the compacted prefix or
    /// after a gap.
    pub fn append(&self, entries: &[Entry]) -> Result<()> {
        let Some(first_new) = entries.first().map(|e| e.index) else {
            return Ok(());
        };
        let first = self.first()?;
        if first_new < first {
            return Err(RaftStoreError::Compacted {
                index: first_new,
                first_index: first,
            });
        }
        let last = self.last()?;
        if first_new > last + 1 {
            return Err(RaftStoreError::Unavailable {
                index: first_new,
                last_index: last,
            });
        }
        let mut batch = sled::Batch::default();
        for key in self
            .tree
            .range(log_key(first_new)..=log_key(u64::MAX))
            .keys()
        {
            batch.remove(key?);
        }
        for (offset, entry) in entries.iter().enumerate() {
            if entry.index != first_new + offset as u64 {
                return Err(corrupt(
                    format!("entry {}", entry.index),
                    format!("appended entries are not contiguous from {first_new}"),
                ));
            }
            batch.insert(&log_key(entry.index), encode_entry(entry)?);
        }
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Stores the hard state (term, vote, commit).
    pub fn set_hard_state(&self, hs: &HardState) -> Result<()> {
        self.tree
            .insert(KEY_HARD_STATE, encode("hard state", hs)?)?;
        Ok(())
    }

    /// Updates only the commit index of the stored hard state (what a
    /// `LightReady` hands over).
    pub fn set_commit(&self, commit: u64) -> Result<()> {
        let mut hs = self.hard_state()?;
        hs.commit = commit;
        self.set_hard_state(&hs)
    }

    /// Stores the conf state (after a conf change was applied).
    pub fn set_conf_state(&self, cs: &ConfState) -> Result<()> {
        self.tree
            .insert(KEY_CONF_STATE, encode("conf state", cs)?)?;
        Ok(())
    }

    /// Replaces the log with a snapshot received from the leader: every
    /// entry is dropped, the snapshot point becomes the compaction point, the
    /// conf state and commit index come from the snapshot, and the snapshot
    /// (with its data) becomes the one [`raft::Storage::snapshot`] returns.
    /// One atomic batch.
    pub fn apply_snapshot(&self, snapshot: Snapshot) -> Result<()> {
        let meta = snapshot.get_metadata();
        let (index, term) = (meta.index, meta.term);
        let (t_index, _) = self.truncated()?;
        if index < t_index {
            return Err(RaftStoreError::SnapshotOutOfDate {
                index,
                truncated_index: t_index,
            });
        }
        let mut hs = self.hard_state()?;
        hs.term = hs.term.max(term);
        hs.commit = index;
        let mut batch = sled::Batch::default();
        for key in self.tree.range(log_key(0)..=log_key(u64::MAX)).keys() {
            batch.remove(key?);
        }
        batch.insert(KEY_TRUNCATED, &encode_truncated(index, term));
        batch.insert(KEY_HARD_STATE, encode("hard state", &hs)?);
        batch.insert(KEY_CONF_STATE, encode("conf state", meta.get_conf_state())?);
        batch.insert(KEY_SNAPSHOT, encode("snapshot", &snapshot)?);
        self.tree.apply_batch(batch)?;
        Ok(())
    }

    /// Stores a state-machine snapshot taken at `index` (which must still be
    /// in the log or be the compaction point) with the conf state at that
    /// index, for [`raft::Storage::snapshot`] to return. Does not compact.
    pub fn save_snapshot(&self, index: u64, conf_state: ConfState, data: Vec<u8>) -> Result<()> {
        let term = self.term_of(index)?;
        let mut snapshot = Snapshot::default();
        snapshot.set_data(data.into());
        let meta = snapshot.mut_metadata();
        meta.index = index;
        meta.term = term;
        meta.set_conf_state(conf_state);
        self.tree
            .insert(KEY_SNAPSHOT, encode("snapshot", &snapshot)?)?;
        Ok(())
    }

    /// Log compaction: drops every entry below `index` and remembers the term
    /// of `index - 1`, so `term(first_index - 1)` still answers. A no-op when
    /// `index` is at or below the first index. The caller must have stored a
    /// snapshot at or after `index - 1` first, or lagging followers cannot
    /// catch up. One atomic batch.
    pub fn compact(&self, index: u64) -> Result<()> {
        let first = self.first()?;
        if index <= first {
            return Ok(());
        }
        let last = self.last()?;
        if index > last + 1 {
            return Err(RaftStoreError::Unavailable {
                index,
                last_index: last,
            });
        }
        let term = self.term_of(index - 1)?;
        let mut batch = sled::Batch::default();
        for key in self.tree.range(log_key(first)..log_key(index)).keys() {
            batch.remove(key?);
        }
        batch.insert(KEY_TRUNCATED, &encode_truncated(index - 1, term));
        self.tree.apply_batch(batch)?;
        Ok(())
    }
}

impl raft::Storage for SledRaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(self.hard_state()?, self.conf_state()?))
    }

    /// Entries in `[low, high)`, at least one when any exist, then as many as
    /// fit in `max_size` bytes. `Compacted` when `low` is below the first
    /// index; `Unavailable` (rather than raft-rs's documented panic) when
    /// `high` is past `last_index + 1`.
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let max_size = max_size.into().unwrap_or(raft::NO_LIMIT);
        if low < self.first()? {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if high > self.last()? + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let mut out = Vec::new();
        let mut size = 0u64;
        for item in self.tree.range(log_key(low)..log_key(high)) {
            let (key, value) = item.map_err(RaftStoreError::from)?;
            let index = index_of_key(&key)?;
            let expected = low + out.len() as u64;
            if index != expected {
                return Err(corrupt(format!("entry {expected}"), "missing from the log").into());
            }
            let entry = decode_entry(index, &value)?;
            size += u64::from(entry.compute_size());
            if !out.is_empty() && size > max_size {
                break;
            }
            out.push(entry);
        }
        if out.len() as u64 != high.saturating_sub(low) && size <= max_size {
            let missing = low + out.len() as u64;
            return Err(corrupt(format!("entry {missing}"), "missing from the log").into());
        }
        Ok(out)
    }

    /// Term of `idx` for `idx` in `[first_index - 1, last_index]`;
    /// `Compacted` below, `Unavailable` above.
    fn term(&self, idx: u64) -> raft::Result<u64> {
        Ok(self.term_of(idx)?)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first()?)
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last()?)
    }

    /// The latest stored snapshot. `SnapshotTemporarilyUnavailable`, with a
    /// request flagged for [`SledRaftStorage::take_snapshot_request`], when
    /// none is stored yet, it is older than `request_index`, or its conf
    /// state does not contain `to` (a peer added after it was taken would
    /// refuse it).
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        if let Some(snap) = self.latest_snapshot()? {
            let meta = snap.get_metadata();
            let cs = meta.get_conf_state();
            let has_peer = [
                &cs.voters,
                &cs.learners,
                &cs.voters_outgoing,
                &cs.learners_next,
            ]
            .iter()
            .any(|ids| ids.contains(&to));
            if !snap.is_empty() && meta.index >= request_index && has_peer {
                return Ok(snap);
            }
        }
        self.snapshot_wanted.store(true, Ordering::Release);
        Err(raft::Error::Store(
            StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}
