//! The stateful aggregation (`key_by` + optional `window` + `aggregate`),
//! split into its two halves:
//!
//! - stage A: [`PreAggregator`] groups a task's records by key (and window)
//!   and emits one [`ShuffleBlock`] of partial states per state partition;
//! - stage B: [`PartitionState`] merges the blocks into the partition's
//!   state, emits output and produces checkpoint deltas and snapshots.

use super::accumulator::{AccKind, OutputBuilder};
use super::window::WindowSpec;
use crate::expr::{CompiledExpr, ExprError};
use crate::keys::{decode_state_key, encode_state_key, Key, StateKey};
use arrow_array::builder::{Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use hashbrown::HashMap;
use std::sync::Arc;
use weir_proto::pb;

/// One compiled aggregate output.
#[derive(Debug, Clone)]
pub struct AggPlan {
    /// Output column name.
    pub name: String,
    /// Accumulator.
    pub kind: AccKind,
    /// Input expression (`None` for `count(*)`).
    pub input: Option<CompiledExpr>,
    /// First slot of this accumulator in a group's slots.
    pub offset: usize,
}

/// The compiled stateful operator.
#[derive(Debug, Clone)]
pub struct AggregatePlan {
    /// The `key_by` expression.
    pub key: CompiledExpr,
    /// Event-time window, with the index of the time column.
    pub window: Option<(WindowSpec, usize)>,
    /// The aggregates.
    pub aggs: Vec<AggPlan>,
    /// Slots per group.
    pub stride: usize,
    /// Whether output keys are integers (else strings).
    pub int_keys: bool,
    /// Schema of the emitted rows: `key`, [`window_start`, `window_end`], aggregates.
    pub output: SchemaRef,
}

impl AggregatePlan {
    /// Compiles `key_by`, `window` and `aggregate` against the input schema.
    /// Errors carry the step path.
    pub fn compile(
        key_path: &str,
        key_sql: &str,
        window: Option<(&str, &pb::WindowStep)>,
        agg_path: &str,
        aggregate: &pb::AggregateStep,
        input: &SchemaRef,
    ) -> Result<Self, String> {
        let key =
            CompiledExpr::compile(key_sql, input).map_err(|e| format!("{key_path}.key_by: {e}"))?;
        let int_keys = key.data_type() == &DataType::Int64;
        let window = match window {
            Some((path, w)) => {
                let Some((idx, field)) = input.column_with_name(&w.time) else {
                    return Err(format!(
                        "{path}.window.time: unknown column {:?}; available: {}",
                        w.time,
                        super::stateless::column_names(input)
                    ));
                };
                if field.data_type() != &DataType::Int64 {
                    return Err(format!(
                        "{path}.window.time: column {:?} must hold event time as BIGINT milliseconds, it is {}",
                        w.time,
                        field.data_type()
                    ));
                }
                Some((WindowSpec::from_step(w), idx))
            }
            None => None,
        };
        let mut aggs = Vec::with_capacity(aggregate.aggregates.len());
        let mut stride = 0;
        for a in &aggregate.aggregates {
            let path = format!("{agg_path}.aggregate.{}", a.name);
            let function = pb::AggregateFunction::try_from(a.function)
                .map_err(|_| format!("{path}: unknown aggregate function {}", a.function))?;
            let input_expr = if a.expr.trim().is_empty() {
                None
            } else {
                Some(CompiledExpr::compile(&a.expr, input).map_err(|e| format!("{path}: {e}"))?)
            };
            let kind = AccKind::for_input(function, input_expr.as_ref().map(|e| e.data_type()))
                .map_err(|m| format!("{path}: {m}"))?;
            aggs.push(AggPlan {
                name: a.name.clone(),
                kind,
                input: input_expr,
                offset: stride,
            });
            stride += kind.slots();
        }
        let mut fields = vec![Field::new(
            "key",
            if int_keys {
                DataType::Int64
            } else {
                DataType::Utf8
            },
            true,
        )];
        if window.is_some() {
            fields.push(Field::new("window_start", DataType::Int64, false));
            fields.push(Field::new("window_end", DataType::Int64, false));
        }
        for a in &aggs {
            fields.push(Field::new(&a.name, a.kind.output_type(), true));
        }
        Ok(AggregatePlan {
            key,
            window,
            aggs,
            stride,
            int_keys,
            output: Arc::new(Schema::new(fields)),
        })
    }

    fn init_slots(&self, out: &mut Vec<u64>) {
        for a in &self.aggs {
            out.extend_from_slice(&a.kind.init()[..a.kind.slots()]);
        }
    }

    /// Operator name used in state paths.
    pub fn operator_name(&self) -> &'static str {
        if self.window.is_some() {
            "window"
        } else {
            "aggregate"
        }
    }
}

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
    str_ids: HashMap<Box<str>, u32>,
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
            Key::Str(s) => match self.str_ids.get(s.as_ref()) {
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
            match input {
                None => {
                    for g in &groups {
                        let s = *g as usize * stride + off;
                        kind.update_int(&mut self.slots[s..], 0);
                    }
                }
                Some(col) => match col.data_type() {
                    DataType::Int64 => {
                        let a = col.as_primitive::<Int64Type>();
                        for (i, g) in groups.iter().enumerate() {
                            let r = row_of(i);
                            if a.is_valid(r) {
                                let s = *g as usize * stride + off;
                                kind.update_int(&mut self.slots[s..], a.value(r));
                            }
                        }
                    }
                    DataType::Float64 => {
                        let a = col.as_primitive::<Float64Type>();
                        for (i, g) in groups.iter().enumerate() {
                            let r = row_of(i);
                            if a.is_valid(r) {
                                let s = *g as usize * stride + off;
                                kind.update_float(&mut self.slots[s..], a.value(r));
                            }
                        }
                    }
                    _ => {
                        // count(expr) over a non-numeric input
                        for (i, g) in groups.iter().enumerate() {
                            if col.is_valid(row_of(i)) {
                                let s = *g as usize * stride + off;
                                kind.update_int(&mut self.slots[s..], 0);
                            }
                        }
                    }
                },
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

/// One group's state in a partition.
#[derive(Debug, Clone)]
struct Entry {
    slots: Box<[u64]>,
    /// Changed since the last checkpoint.
    dirty: bool,
    /// Changed in the current batch (emitted by running aggregates).
    changed: bool,
}

/// The state of one state partition of a job.
#[derive(Debug, Default)]
pub struct PartitionState {
    /// Last batch applied.
    pub version: u64,
    map: HashMap<StateKey, Entry>,
    /// Keys removed since the last checkpoint (tombstones).
    removed: Vec<StateKey>,
    /// Keys made dirty since the last checkpoint, each once: a checkpoint
    /// costs the changes, not the whole state.
    dirty: Vec<StateKey>,
    /// Keys changed by the current batch, each once.
    changed: Vec<StateKey>,
}

/// A checkpoint to persist: always the changes since the previous
/// checkpoint, and the whole state when a snapshot is due (the delta beside
/// it lets recovery fall back past a corrupt snapshot).
pub struct CheckpointData {
    /// Changes since the previous checkpoint (`None` = removed).
    pub delta: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// The whole state.
    pub snapshot: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

impl PartitionState {
    /// State restored from checkpoint entries at `version`.
    pub fn restore(
        version: u64,
        entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
        stride: usize,
    ) -> Result<Self, String> {
        let mut map = HashMap::new();
        for (k, v) in entries {
            let key = decode_state_key(&k).ok_or("a state key does not decode")?;
            if v.len() != stride * 8 {
                return Err(format!(
                    "a state value holds {} bytes, the job's aggregates need {}; was the aggregate set changed?",
                    v.len(),
                    stride * 8
                ));
            }
            let slots: Box<[u64]> = v
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect();
            map.insert(
                key,
                Entry {
                    slots,
                    dirty: false,
                    changed: false,
                },
            );
        }
        Ok(PartitionState {
            version,
            map,
            ..Default::default()
        })
    }

    /// Number of groups held.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no group is held.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Merges the partial states of one batch.
    pub fn apply(&mut self, plan: &AggregatePlan, blocks: &[Arc<ShuffleBlock>]) {
        let stride = plan.stride;
        for key in self.changed.drain(..) {
            if let Some(e) = self.map.get_mut(&key) {
                e.changed = false;
            }
        }
        for block in blocks {
            for (i, key) in block.keys.iter().enumerate() {
                let src = &block.slots[i * stride..(i + 1) * stride];
                if !self.map.contains_key(key) {
                    let mut init = Vec::with_capacity(stride);
                    plan.init_slots(&mut init);
                    let entry = Entry {
                        slots: init.into_boxed_slice(),
                        dirty: false,
                        changed: false,
                    };
                    self.map.insert(key.clone(), entry);
                }
                let entry = self.map.get_mut(key).expect("inserted above");
                for a in &plan.aggs {
                    let n = a.kind.slots();
                    a.kind.merge(
                        &mut entry.slots[a.offset..a.offset + n],
                        &src[a.offset..a.offset + n],
                    );
                }
                if !entry.dirty {
                    entry.dirty = true;
                    self.dirty.push(key.clone());
                }
                if !entry.changed {
                    entry.changed = true;
                    self.changed.push(key.clone());
                }
            }
        }
    }

    /// The batch's output: changed groups (running aggregates) or windows
    /// closed by `watermark` (which are then dropped from state).
    pub fn emit(&mut self, plan: &AggregatePlan, watermark: i64) -> RecordBatch {
        let mut selected: Vec<StateKey> = match plan.window {
            None => self.changed.clone(),
            Some((spec, _)) => self
                .map
                .keys()
                .filter(|(_, start)| spec.is_closed(*start, watermark))
                .cloned()
                .collect(),
        };
        selected.sort_unstable();
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
        for key in &selected {
            match (&key.0, plan.int_keys) {
                (Key::Int(v), true) => int_keys.append_value(*v),
                (Key::Null, true) => int_keys.append_null(),
                (Key::Null, false) => str_keys.append_null(),
                (k, _) => str_keys.append_value(k.to_string()),
            }
            if let Some((spec, _)) = plan.window {
                starts.append_value(key.1);
                ends.append_value(key.1 + spec.size_ms);
            }
            let entry = &self.map[key];
            for (a, b) in plan.aggs.iter().zip(outs.iter_mut()) {
                b.append(&entry.slots[a.offset..]);
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
            for key in selected {
                self.map.remove(&key);
                self.removed.push(key);
            }
        }
        columns.extend(outs.into_iter().map(OutputBuilder::finish));
        RecordBatch::try_new(plan.output.clone(), columns)
            .expect("columns follow the output schema")
    }

    /// The checkpoint to write (with a snapshot when `snapshot` is set).
    /// Marks the state clean.
    pub fn checkpoint(&mut self, snapshot: bool) -> CheckpointData {
        let encode =
            |slots: &[u64]| -> Vec<u8> { slots.iter().flat_map(|s| s.to_le_bytes()).collect() };
        let snapshot = snapshot.then(|| {
            self.map
                .iter()
                .map(|(k, e)| (encode_state_key(k), encode(&e.slots)))
                .collect()
        });
        let mut delta: Vec<(Vec<u8>, Option<Vec<u8>>)> =
            Vec::with_capacity(self.dirty.len() + self.removed.len());
        for key in self.dirty.drain(..) {
            // Removed since (a closed window): its tombstone follows.
            if let Some(e) = self.map.get_mut(&key) {
                e.dirty = false;
                delta.push((encode_state_key(&key), Some(encode(&e.slots))));
            }
        }
        delta.extend(self.removed.drain(..).map(|k| (encode_state_key(&k), None)));
        CheckpointData { delta, snapshot }
    }
}
