//! Stage B's half of the stateful aggregation: the state of one state
//! partition, merged batch by batch, emitted, checkpointed and restored.
//!
//! Groups live in an arena: their keys, accumulator slots and flags sit in
//! parallel vectors at a dense index, found through a hash table of indices.
//! The groups a batch changed and those changed since the last checkpoint
//! are lists of indices, so a batch costs one lookup per key it touches and
//! a checkpoint costs the changes, never a scan or a copy of the whole state.

use super::aggregate::{AggregatePlan, ShuffleBlock};
use super::cow_chunks::CowChunks;
use super::slot_codec::{self, COMPACT_SLOTS};
use crate::keys::{decode_state_key, encode_state_key_into, Key, StateKey};
use crate::state::format::{CheckpointEncoder, ENTRY_OVERHEAD};
use crate::state::{RestoreTarget, StateError};
use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use hashbrown::{DefaultHashBuilder, HashTable};
use std::hash::BuildHasher;
use std::sync::Arc;
use weir_plan::accumulator::{overflow_error, OutputBuilder};
use weir_plan::expr::ExprError;

/// The group at this index holds a key (else it is free for reuse).
const LIVE: u8 = 1;
/// Changed since the last checkpoint.
const DIRTY: u8 = 2;
/// Changed by the current batch (emitted by running aggregates).
const CHANGED: u8 = 4;

/// Bytes of a key in a checkpoint file, about, besides its fixed part.
const KEY_SIZE_HINT: usize = 24;

/// The state of one state partition of a job.
#[derive(Debug, Default)]
pub struct PartitionState {
    /// Last batch applied.
    pub version: u64,
    /// Accumulator slots per group (from the plan or the restored values).
    stride: usize,
    /// Each group's key; the key of a free index is [`Key::Null`]. In
    /// shared chunks: a [frozen](Self::frozen) copy shares what did not
    /// change since.
    keys: CowChunks<StateKey>,
    /// `stride` slots per index.
    slots: Vec<u64>,
    /// [`LIVE`], [`DIRTY`] and [`CHANGED`] per index.
    flags: Vec<u8>,
    /// Indices of the live groups, by the hash of their key.
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// Indices of removed groups, reused before the arena grows.
    free: Vec<u32>,
    /// Keys removed since the last checkpoint (tombstones).
    removed: Vec<StateKey>,
    /// Indices made dirty since the last checkpoint, each once per time it
    /// became dirty.
    dirty: Vec<u32>,
    /// Indices changed by the current batch, each once.
    changed: Vec<u32>,
}

impl PartitionState {
    /// State restored from checkpoint entries at `version`.
    pub fn restore(
        version: u64,
        entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
        stride: usize,
    ) -> Result<Self, String> {
        let mut restorer = StateRestorer::new(stride);
        for (key, value) in entries {
            restorer.set(&key, &value);
        }
        restorer.finish(version)
    }

    /// Number of groups held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// Whether no group is held.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Bytes of memory the state's arena holds: keys (their inline part),
    /// accumulator slots, flags, the hash index and the change lists. Key
    /// text too long to be inline is not counted.
    pub fn memory_bytes(&self) -> u64 {
        let key = std::mem::size_of::<StateKey>();
        let index = std::mem::size_of::<u32>();
        (self.keys.len() * key
            + self.slots.capacity() * 8
            + self.flags.capacity()
            // hashbrown: one control byte per bucket besides the value.
            + self.index.capacity() * (index + 1)
            + self.free.capacity() * index
            + self.removed.capacity() * key
            + (self.dirty.capacity() + self.changed.capacity()) * index) as u64
    }

    fn hash(&self, key: &StateKey) -> u64 {
        self.hasher.hash_one(key)
    }

    /// The index of `key`, if it is held.
    fn find(&self, hash: u64, key: &StateKey) -> Option<usize> {
        let keys = &self.keys;
        self.index
            .find(hash, |&i| keys[i as usize] == *key)
            .map(|&i| i as usize)
    }

    /// Stores a new group (not held yet) with `slots`; returns its index.
    fn insert(&mut self, hash: u64, key: StateKey, slots: &[u64]) -> usize {
        let i = match self.free.pop() {
            Some(i) => {
                let i = i as usize;
                self.keys.replace(i, key);
                self.slots[i * self.stride..(i + 1) * self.stride].copy_from_slice(slots);
                self.flags[i] = LIVE;
                i
            }
            None => {
                self.keys.push(key);
                self.slots.extend_from_slice(slots);
                self.flags.push(LIVE);
                self.keys.len() - 1
            }
        };
        let (keys, hasher) = (&self.keys, &self.hasher);
        self.index
            .insert_unique(hash, i as u32, |&j| hasher.hash_one(&keys[j as usize]));
        i
    }

    /// Drops the group at index `i`, recording its tombstone.
    fn remove_at(&mut self, i: usize) {
        let hash = self.hash(&self.keys[i]);
        if let Ok(entry) = self.index.find_entry(hash, |&j| j as usize == i) {
            entry.remove();
        }
        let key = self.keys.replace(i, (Key::Null, 0));
        self.removed.push(key);
        self.flags[i] = 0;
        self.free.push(i as u32);
    }

    /// Merges the partial states of one batch. An integer sum that
    /// overflows fails the batch (the state is then restored before the
    /// batch runs again).
    pub fn apply(
        &mut self,
        plan: &AggregatePlan,
        blocks: &[Arc<ShuffleBlock>],
    ) -> Result<(), ExprError> {
        let stride = plan.stride;
        self.stride = stride;
        for &i in &self.changed {
            self.flags[i as usize] &= !CHANGED;
        }
        self.changed.clear();
        let mut init = Vec::with_capacity(stride);
        plan.init_slots(&mut init);
        for block in blocks {
            for (b, key) in block.keys.iter().enumerate() {
                let hash = self.hash(key);
                let i = match self.find(hash, key) {
                    Some(i) => i,
                    None => self.insert(hash, key.clone(), &init),
                };
                let state = &mut self.slots[i * stride..(i + 1) * stride];
                let src = &block.slots[b * stride..(b + 1) * stride];
                for a in &plan.aggs {
                    let n = a.kind.slots();
                    if a.kind.merge(
                        &mut state[a.offset..a.offset + n],
                        &src[a.offset..a.offset + n],
                    ) {
                        return Err(overflow_error(&a.name));
                    }
                }
                let flags = &mut self.flags[i];
                if *flags & DIRTY == 0 {
                    self.dirty.push(i as u32);
                }
                if *flags & CHANGED == 0 {
                    self.changed.push(i as u32);
                }
                *flags |= DIRTY | CHANGED;
            }
        }
        Ok(())
    }

    /// The batch's output: changed groups (running aggregates) or windows
    /// closed by `watermark` (which are then dropped from state), in key
    /// order.
    pub fn emit(&mut self, plan: &AggregatePlan, watermark: i64) -> RecordBatch {
        let mut selected: Vec<u32> = match plan.window {
            None => self.changed.clone(),
            Some((spec, _)) => self
                .flags
                .iter()
                .enumerate()
                .filter(|&(i, f)| f & LIVE != 0 && spec.is_closed(self.keys[i].1, watermark))
                .map(|(i, _)| i as u32)
                .collect(),
        };
        let keys = &self.keys;
        selected.sort_unstable_by(|&a, &b| keys[a as usize].cmp(&keys[b as usize]));
        let n = selected.len();
        let mut int_keys = Int64Builder::with_capacity(if plan.int_keys { n } else { 0 });
        let mut str_keys = StringBuilder::with_capacity(if plan.int_keys { 0 } else { n }, n * 8);
        let mut starts = Int64Builder::with_capacity(n);
        let mut ends = Int64Builder::with_capacity(n);
        let mut outs: Vec<OutputBuilder> = plan
            .aggs
            .iter()
            .map(|a| OutputBuilder::new(a.kind, n))
            .collect();
        let stride = plan.stride;
        for &i in &selected {
            let i = i as usize;
            let key = &self.keys[i];
            match (&key.0, plan.int_keys) {
                (Key::Int(v), true) => int_keys.append_value(*v),
                (Key::Null, true) => int_keys.append_null(),
                (Key::Null, false) => str_keys.append_null(),
                (Key::Str(s), _) => str_keys.append_value(s),
                (k, _) => str_keys.append_value(k.to_string()),
            }
            if let Some((spec, _)) = plan.window {
                starts.append_value(key.1);
                ends.append_value(key.1 + spec.size_ms);
            }
            let slots = &self.slots[i * stride..(i + 1) * stride];
            for (a, b) in plan.aggs.iter().zip(outs.iter_mut()) {
                b.append(&slots[a.offset..]);
            }
        }
        let mut columns: Vec<ArrayRef> = vec![if plan.int_keys {
            Arc::new(int_keys.finish())
        } else {
            Arc::new(str_keys.finish())
        }];
        if plan.window.is_some() {
            columns.push(Arc::new(starts.finish()));
            columns.push(Arc::new(ends.finish()));
            for i in selected {
                self.remove_at(i as usize);
            }
        }
        columns.extend(outs.into_iter().map(OutputBuilder::finish));
        RecordBatch::try_new(plan.output.clone(), columns)
            .expect("columns follow the output schema")
    }

    /// Encodes the changes since the previous checkpoint into `delta` and
    /// marks the state clean: [`take_changes`](Self::take_changes), encoded
    /// at once.
    pub fn checkpoint(&mut self, delta: &mut CheckpointEncoder) -> Result<(), StateError> {
        self.take_changes().encode_into(delta)
    }

    /// The changes since the previous checkpoint, to encode as a delta
    /// elsewhere (on the checkpoint writer's thread) while the state moves
    /// on; marks the state clean. It shares the keys' chunks and copies the
    /// slots of the changed groups only: the batch pays a fraction of
    /// encoding them, and nothing for the groups that did not change. (A
    /// snapshot is written beside a delta, from [`frozen`](Self::frozen):
    /// the delta lets recovery fall back past a corrupt snapshot.)
    pub fn take_changes(&mut self) -> Changes {
        let stride = self.stride;
        let mut indices = Vec::with_capacity(self.dirty.len());
        let mut slots = Vec::with_capacity(self.dirty.len() * stride);
        for &i in &self.dirty {
            let flags = &mut self.flags[i as usize];
            // A group removed since has its tombstone; a reused index is
            // listed twice, and is taken once since this clears its flag.
            if *flags & (LIVE | DIRTY) == LIVE | DIRTY {
                *flags &= !DIRTY;
                indices.push(i);
                let i = i as usize;
                slots.extend_from_slice(&self.slots[i * stride..(i + 1) * stride]);
            }
        }
        self.dirty.clear();
        Changes {
            stride,
            keys: self.keys.clone(),
            removed: std::mem::take(&mut self.removed),
            indices,
            slots,
        }
    }

    /// A copy of the whole state as it is now, to encode as a snapshot
    /// elsewhere (on the checkpoint writer's thread) while the state moves
    /// on. It shares the keys' chunks and copies the slots and flags: a
    /// fraction of the cost of encoding them.
    pub fn frozen(&self) -> FrozenState {
        FrozenState {
            stride: self.stride,
            keys: self.keys.clone(),
            slots: self.slots.clone(),
            flags: self.flags.clone(),
            len: self.len(),
        }
    }

    /// Bytes a delta of the current changes takes, about (for sizing its
    /// encoder).
    pub fn delta_size_hint(&self) -> usize {
        (self.dirty.len() + self.removed.len()) * self.entry_size_hint()
    }

    /// Bytes a snapshot of the whole state takes, about.
    pub fn snapshot_size_hint(&self) -> usize {
        self.len() * self.entry_size_hint()
    }

    fn entry_size_hint(&self) -> usize {
        ENTRY_OVERHEAD + KEY_SIZE_HINT + self.stride * 8
    }
}

/// The changes of a partition's state since a checkpoint (see
/// [`PartitionState::take_changes`]).
#[derive(Debug)]
pub struct Changes {
    stride: usize,
    keys: CowChunks<StateKey>,
    /// Keys removed (tombstones).
    removed: Vec<StateKey>,
    /// Index of each changed group still held, each once.
    indices: Vec<u32>,
    /// `stride` slots per entry of `indices`, as they were when taken.
    slots: Vec<u64>,
}

impl Changes {
    /// The number of entries of the delta: tombstones and groups.
    pub fn len(&self) -> usize {
        self.removed.len() + self.indices.len()
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pushes the changes into `delta`: the tombstones first (so a key
    /// removed and stored again restores as stored), then the groups in
    /// index order.
    pub fn encode_into(&self, delta: &mut CheckpointEncoder) -> Result<(), StateError> {
        delta.set_value_layout(COMPACT_SLOTS);
        for key in &self.removed {
            encode_state_key_into(key, delta.next_key());
            delta.push_next_tombstone()?;
        }
        // Index order reads the keys' chunks front to back. Each entry of
        // `order` is a group's index above where its slots are, so that
        // sorting compares plain integers.
        let mut order: Vec<u64> = (self.indices.iter().enumerate())
            .map(|(at, &i)| (u64::from(i) << 32) | at as u64)
            .collect();
        order.sort_unstable();
        let stride = self.stride;
        for packed in order {
            let (i, at) = ((packed >> 32) as usize, packed as u32 as usize);
            push_group(
                delta,
                &self.keys[i],
                &self.slots[at * stride..(at + 1) * stride],
            )?;
        }
        Ok(())
    }
}

/// A copy of a partition's state at one version (see
/// [`PartitionState::frozen`]).
#[derive(Debug)]
pub struct FrozenState {
    stride: usize,
    keys: CowChunks<StateKey>,
    slots: Vec<u64>,
    flags: Vec<u8>,
    len: usize,
}

impl FrozenState {
    /// The number of groups.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no group.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Pushes every group into `snapshot`.
    pub fn encode_into(&self, snapshot: &mut CheckpointEncoder) -> Result<(), StateError> {
        snapshot.set_value_layout(COMPACT_SLOTS);
        let stride = self.stride;
        for (i, flags) in self.flags.iter().enumerate() {
            if flags & LIVE != 0 {
                push_group(
                    snapshot,
                    &self.keys[i],
                    &self.slots[i * stride..(i + 1) * stride],
                )?;
            }
        }
        Ok(())
    }
}

/// Appends a group's key and slots (in the [`COMPACT_SLOTS`] layout) to
/// `file`, each encoded in place.
fn push_group(
    file: &mut CheckpointEncoder,
    key: &StateKey,
    slots: &[u64],
) -> Result<(), StateError> {
    encode_state_key_into(key, file.next_key());
    file.push_next(|value| slot_codec::encode_compact(slots, value))
}

/// Builds a partition's state from checkpoint entries, as a
/// [`RestoreTarget`]: the first entry that does not fit the job (a key that
/// does not decode, a value of the wrong size) is kept as the error that
/// [`finish`](Self::finish) returns.
#[derive(Debug)]
pub struct StateRestorer {
    state: PartitionState,
    slots: Vec<u64>,
    /// How the values of the file being read are laid out.
    layout: u8,
    error: Option<String>,
}

impl StateRestorer {
    /// An empty state for aggregates taking `stride` slots per group.
    pub fn new(stride: usize) -> Self {
        StateRestorer {
            state: PartitionState {
                stride,
                ..Default::default()
            },
            slots: Vec::with_capacity(stride),
            layout: COMPACT_SLOTS,
            error: None,
        }
    }

    /// The state restored at `version`, or why an entry did not fit.
    pub fn finish(mut self, version: u64) -> Result<PartitionState, String> {
        if let Some(error) = self.error {
            return Err(error);
        }
        // Restored groups are clean: they are what the checkpoint holds.
        self.state.removed.clear();
        self.state.version = version;
        Ok(self.state)
    }

    fn decode_key(&mut self, key: &[u8]) -> Option<StateKey> {
        let decoded = decode_state_key(key);
        if decoded.is_none() {
            self.error = Some("a state key does not decode".into());
        }
        decoded
    }
}

impl RestoreTarget for StateRestorer {
    fn clear(&mut self) {
        self.state = PartitionState {
            stride: self.state.stride,
            ..Default::default()
        };
        self.error = None;
    }

    fn set_value_layout(&mut self, layout: u8) {
        self.layout = layout;
    }

    fn reserve(&mut self, additional: usize) {
        let s = &mut self.state;
        s.keys.reserve(additional);
        s.slots.reserve(additional * s.stride);
        s.flags.reserve(additional);
        let (keys, hasher) = (&s.keys, &s.hasher);
        s.index
            .reserve(additional, |&j| hasher.hash_one(&keys[j as usize]));
    }

    fn set(&mut self, key: &[u8], value: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let stride = self.state.stride;
        if let Err(e) = slot_codec::decode(self.layout, value, stride, &mut self.slots) {
            self.error = Some(format!("{e}; was the aggregate set changed?"));
            return;
        }
        let Some(key) = self.decode_key(key) else {
            return;
        };
        let s = &mut self.state;
        let hash = s.hash(&key);
        match s.find(hash, &key) {
            Some(i) => s.slots[i * stride..(i + 1) * stride].copy_from_slice(&self.slots),
            None => {
                s.insert(hash, key, &self.slots);
            }
        }
    }

    fn remove(&mut self, key: &[u8]) {
        if self.error.is_some() {
            return;
        }
        let Some(key) = self.decode_key(key) else {
            return;
        };
        let s = &mut self.state;
        if let Some(i) = s.find(s.hash(&key), &key) {
            s.remove_at(i);
        }
    }
}
