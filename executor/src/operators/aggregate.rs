//! The stateful aggregation (`key_by` + optional `window` + `aggregate`),
//! split into its two halves:
//!
//! - stage A: [`PreAggregator`] groups a task's records by key (and window)
//!   and emits one [`ShuffleBlock`] of partial states per state partition;
//! - stage B: [`PartitionState`](super::partition_state::PartitionState)
//!   merges the blocks into the partition's state, emits output and
//!   produces checkpoint deltas and snapshots.
//!
//! Both run an [`AggregatePlan`], compiled (and type-checked) by
//! `weir-plan`.

use crate::keys::{Key, StateKey};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::DataType;
use hashbrown::HashMap;
use smol_str::SmolStr;
use weir_plan::accumulator::overflow_error;
pub use weir_plan::aggregate::{AggPlan, AggregatePlan};
use weir_plan::expr::ExprError;

/// Partial states of one batch for one state partition.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ShuffleBlock {
    /// Group keys.
    pub keys: Vec<StateKey>,
    /// `keys.len() * stride` slots.
    pub slots: Vec<u64>,
}

/// Counters of one stage-A task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreAggStats {
    /// Records dropped because every window they belong to had closed.
    pub late: u64,
    /// Largest event time seen (`i64::MIN` when none or no window).
    pub max_event_time: i64,
}

/// Groups one stage-A task's records by key and window.
pub struct PreAggregator<'p> {
    plan: &'p AggregatePlan,
    watermark: i64,
    /// Distinct keys of this task.
    keys: Vec<Key>,
    int_ids: HashMap<i64, u32>,
    str_ids: HashMap<SmolStr, u32>,
    null_id: Option<u32>,
    /// Dictionary index → key id, reused while batches share a dictionary.
    dict_ids: Vec<u32>,
    dict_identity: Option<(usize, usize)>,
    /// (key id, window start) → group, for windows; group = key id otherwise.
    window_groups: HashMap<(u32, i64), u32>,
    group_keys: Vec<(u32, i64)>,
    slots: Vec<u64>,
    stats: PreAggStats,
}

const NO_ID: u32 = u32::MAX;

impl<'p> PreAggregator<'p> {
    /// A pre-aggregator for one task at the batch's `watermark`.
    pub fn new(plan: &'p AggregatePlan, watermark: i64) -> Self {
        PreAggregator {
            plan,
            watermark,
            keys: Vec::new(),
            int_ids: HashMap::new(),
            str_ids: HashMap::new(),
            null_id: None,
            dict_ids: Vec::new(),
            dict_identity: None,
            window_groups: HashMap::new(),
            group_keys: Vec::new(),
            slots: Vec::new(),
            stats: PreAggStats {
                late: 0,
                max_event_time: i64::MIN,
            },
        }
    }

    fn key_id(&mut self, key: Key) -> u32 {
        let next = self.keys.len() as u32;
        let id = match &key {
            Key::Null => *self.null_id.get_or_insert(next),
            Key::Int(v) => *self.int_ids.entry(*v).or_insert(next),
            Key::Str(s) => match self.str_ids.get(s.as_str()) {
                Some(id) => *id,
                None => {
                    self.str_ids.insert(s.clone(), next);
                    next
                }
            },
        };
        if id == next {
            self.keys.push(key);
        }
        id
    }

    /// Key id of every row of the key column.
    fn key_ids(&mut self, col: &ArrayRef) -> Vec<u32> {
        let n = col.len();
        let mut ids = Vec::with_capacity(n);
        match col.data_type() {
            DataType::Int64 => {
                let a = col.as_primitive::<Int64Type>();
                for i in 0..n {
                    let id = if a.is_null(i) {
                        self.key_id(Key::Null)
                    } else {
                        let v = a.value(i);
                        match self.int_ids.get(&v) {
                            Some(id) => *id,
                            None => self.key_id(Key::Int(v)),
                        }
                    };
                    ids.push(id);
                }
            }
            DataType::Dictionary(_, _) => {
                let dict = col.as_dictionary::<Int32Type>();
                let values: &StringArray = dict.values().as_string::<i32>();
                let identity = (values.value_offsets().as_ptr() as usize, values.len());
                if self.dict_identity != Some(identity) {
                    self.dict_ids.clear();
                    self.dict_ids.resize(values.len(), NO_ID);
                    self.dict_identity = Some(identity);
                }
                for i in 0..n {
                    if dict.is_null(i) {
                        ids.push(self.key_id(Key::Null));
                        continue;
                    }
                    let d = dict.keys().value(i) as usize;
                    let mut id = self.dict_ids[d];
                    if id == NO_ID {
                        id = self.key_id(Key::Str(values.value(d).into()));
                        self.dict_ids[d] = id;
                    }
                    ids.push(id);
                }
            }
            DataType::Utf8 => {
                let a = col.as_string::<i32>();
                for i in 0..n {
                    let id = if a.is_null(i) {
                        self.key_id(Key::Null)
                    } else {
                        match self.str_ids.get(a.value(i)) {
                            Some(id) => *id,
                            None => self.key_id(Key::Str(a.value(i).into())),
                        }
                    };
                    ids.push(id);
                }
            }
            _ => {
                for i in 0..n {
                    let key = scalar_key(col, i);
                    ids.push(self.key_id(key));
                }
            }
        }
        ids
    }

    fn group(&mut self, key_id: u32, window: i64) -> u32 {
        let next = self.group_keys.len() as u32;
        let g = *self.window_groups.entry((key_id, window)).or_insert(next);
        if g == next {
            self.group_keys.push((key_id, window));
            self.plan.init_slots(&mut self.slots);
        }
        g
    }

    /// Adds a batch of records (already through the stateless steps).
    pub fn add(&mut self, batch: &RecordBatch) -> Result<(), ExprError> {
        let key_col = self.plan.key.evaluate(batch)?;
        let inputs: Vec<Option<ArrayRef>> = self
            .plan
            .aggs
            .iter()
            .map(|a| a.input.as_ref().map(|e| e.evaluate(batch)).transpose())
            .collect::<Result<_, _>>()?;
        let ids = self.key_ids(&key_col);
        // (row, group) pairs: one per row, or one per open window of the row.
        let mut rows: Vec<u32> = Vec::new();
        let groups: Vec<u32> = match self.plan.window {
            None => {
                // Without windows a group is a key: key ids are dense, so new
                // ids are exactly the next groups.
                while self.group_keys.len() < self.keys.len() {
                    self.group_keys.push((self.group_keys.len() as u32, 0));
                    self.plan.init_slots(&mut self.slots);
                }
                ids
            }
            Some((spec, ts_col)) => {
                let ts = batch.column(ts_col).as_primitive::<Int64Type>();
                let mut groups = Vec::with_capacity(ids.len() * 2);
                rows.reserve(ids.len() * 2);
                for (row, id) in ids.iter().enumerate() {
                    if ts.is_null(row) {
                        self.stats.late += 1;
                        continue;
                    }
                    let t = ts.value(row);
                    self.stats.max_event_time = self.stats.max_event_time.max(t);
                    let before = groups.len();
                    for start in spec.open_windows(t, self.watermark) {
                        rows.push(row as u32);
                        groups.push(self.group(*id, start));
                    }
                    if groups.len() == before {
                        self.stats.late += 1;
                    }
                }
                groups
            }
        };
        let stride = self.plan.stride;
        for (agg, input) in self.plan.aggs.iter().zip(&inputs) {
            let kind = agg.kind;
            let off = agg.offset;
            let row_of = |i: usize| if rows.is_empty() { i } else { rows[i] as usize };
            let mut overflow = false;
            match input {
                None => {
                    for g in &groups {
                        let s = *g as usize * stride + off;
                        overflow |= kind.update_int(&mut self.slots[s..], 0);
                    }
                }
                Some(col) => match col.data_type() {
                    DataType::Int64 => {
                        let a = col.as_primitive::<Int64Type>();
                        for (i, g) in groups.iter().enumerate() {
                            let r = row_of(i);
                            if a.is_valid(r) {
                                let s = *g as usize * stride + off;
                                overflow |= kind.update_int(&mut self.slots[s..], a.value(r));
                            }
                        }
                    }
                    DataType::Float64 => {
                        let a = col.as_primitive::<Float64Type>();
                        for (i, g) in groups.iter().enumerate() {
                            let r = row_of(i);
                            if a.is_valid(r) {
                                let s = *g as usize * stride + off;
                                overflow |= kind.update_float(&mut self.slots[s..], a.value(r));
                            }
                        }
                    }
                    _ => {
                        // count(expr) over a non-numeric input
                        for (i, g) in groups.iter().enumerate() {
                            if col.is_valid(row_of(i)) {
                                let s = *g as usize * stride + off;
                                overflow |= kind.update_int(&mut self.slots[s..], 0);
                            }
                        }
                    }
                },
            }
            if overflow {
                return Err(overflow_error(&agg.name));
            }
        }
        Ok(())
    }

    /// Splits the partial states into one block per state partition.
    pub fn finish(self, partitions: u32) -> (Vec<ShuffleBlock>, PreAggStats) {
        let stride = self.plan.stride;
        let key_partition: Vec<u32> = self.keys.iter().map(|k| k.partition(partitions)).collect();
        let mut blocks = vec![ShuffleBlock::default(); partitions as usize];
        for (g, (key_id, window)) in self.group_keys.iter().enumerate() {
            let block = &mut blocks[key_partition[*key_id as usize] as usize];
            block
                .keys
                .push((self.keys[*key_id as usize].clone(), *window));
            block
                .slots
                .extend_from_slice(&self.slots[g * stride..(g + 1) * stride]);
        }
        (blocks, self.stats)
    }
}

fn scalar_key(col: &ArrayRef, i: usize) -> Key {
    if col.is_null(i) {
        return Key::Null;
    }
    match col.data_type() {
        DataType::Float64 => Key::Str(
            col.as_primitive::<Float64Type>()
                .value(i)
                .to_string()
                .into(),
        ),
        DataType::Boolean => Key::Str(col.as_boolean().value(i).to_string().into()),
        other => Key::Str(format!("<{other}>").into()),
    }
}
