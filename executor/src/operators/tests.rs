//! Operator tests on hand-built batches.

use super::aggregate::{AggregatePlan, PreAggregator, ShuffleBlock};
use super::partition_state::{PartitionState, StateRestorer};
use super::slot_codec::{self, COMPACT_SLOTS, FIXED_SLOTS};
use super::stateless::StatelessOp;
use crate::custom::OperatorRegistry;
use crate::keys::{decode_state_key, Key, StateKey};
use crate::state::format::{self, CheckpointEncoder, Entry};
use crate::state::{
    CheckpointFileName, LocalBackend, PartitionCheckpoints, PartitionOptions, StateBackend,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int64Type};
use arrow_array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray};
use arrow_schema::SchemaRef;
use std::collections::BTreeMap;
use std::sync::Arc;
use weir_proto::pb::{self, step::Kind, AggregateFunction};

/// A checkpoint of `state` at version 7 (on top of 6), encoded and read
/// back: the delta's entries and, if asked for, the snapshot's.
fn checkpoint(state: &mut PartitionState, snapshot: bool) -> (Vec<Entry>, Option<Vec<Entry>>) {
    let mut delta = CheckpointEncoder::delta("d", 7, 6, 0).unwrap();
    let full = snapshot.then(|| {
        let mut full = CheckpointEncoder::snapshot("s", 7, 0);
        state.frozen().encode_into(&mut full).unwrap();
        full
    });
    state.checkpoint(&mut delta).unwrap();
    let entries = |file: CheckpointEncoder| format::decode("f", &file.finish()).unwrap().entries;
    (entries(delta), full.map(entries))
}

fn batch() -> RecordBatch {
    RecordBatch::try_from_iter(vec![
        (
            "user",
            Arc::new(StringArray::from(vec!["Ann", "bob", "ann", "Cy"])) as ArrayRef,
        ),
        (
            "amount",
            Arc::new(Int64Array::from(vec![5, 7, -2, 10])) as ArrayRef,
        ),
        (
            "ts",
            Arc::new(Int64Array::from(vec![1_000, 2_500, 4_000, 11_000])) as ArrayRef,
        ),
        (
            "line",
            Arc::new(StringArray::from(vec![
                Some("a b"),
                Some(""),
                None,
                Some("c  d e"),
            ])) as ArrayRef,
        ),
    ])
    .unwrap()
}

fn op(step: Kind, input: &SchemaRef) -> StatelessOp {
    StatelessOp::compile("pipeline[0]".into(), &step, input, &OperatorRegistry::new()).unwrap()
}

fn ints(b: &RecordBatch, col: &str) -> Vec<i64> {
    b.column_by_name(col)
        .unwrap()
        .as_primitive::<Int64Type>()
        .values()
        .to_vec()
}

fn strings(b: &RecordBatch, col: &str) -> Vec<String> {
    let c = b.column_by_name(col).unwrap();
    let c = c.as_string::<i32>();
    (0..c.len()).map(|i| c.value(i).to_string()).collect()
}

#[test]
fn filter_keeps_matching_rows() {
    let b = batch();
    let f = op(
        Kind::Filter("amount > 0 AND user <> 'Cy'".into()),
        &b.schema(),
    );
    let out = f.apply(&b).unwrap();
    assert_eq!(ints(&out, "amount"), vec![5, 7]);
    let not_bool = StatelessOp::compile(
        "pipeline[3]".into(),
        &Kind::Filter("amount + 1".into()),
        &b.schema(),
        &OperatorRegistry::new(),
    );
    let e = not_bool.unwrap_err().to_string();
    assert!(
        e.starts_with("pipeline[3].filter: filter must be a boolean condition"),
        "{e}"
    );
}

#[test]
fn map_sets_and_replaces_fields() {
    let b = batch();
    let m = op(
        Kind::Map(pb::MapStep {
            fields: vec![
                pb::Assignment {
                    name: "user".into(),
                    expr: "lower(user)".into(),
                },
                pb::Assignment {
                    name: "cents".into(),
                    expr: "amount * 100".into(),
                },
            ],
        }),
        &b.schema(),
    );
    let out = m.apply(&b).unwrap();
    assert_eq!(strings(&out, "user"), vec!["ann", "bob", "ann", "cy"]);
    assert_eq!(ints(&out, "cents"), vec![500, 700, -200, 1_000]);
    assert_eq!(out.schema().fields().len(), 5);
    let bad = StatelessOp::compile(
        "pipeline[1]".into(),
        &Kind::Map(pb::MapStep {
            fields: vec![pb::Assignment {
                name: "x".into(),
                expr: "nope + 1".into(),
            }],
        }),
        &b.schema(),
        &OperatorRegistry::new(),
    );
    assert!(bad
        .unwrap_err()
        .to_string()
        .starts_with("pipeline[1].map.x: "));
}

#[test]
fn flat_map_splits_into_records() {
    let b = batch();
    let f = op(
        Kind::FlatMap(pb::FlatMapStep {
            field: "line".into(),
            separator: " ".into(),
            as_field: "word".into(),
        }),
        &b.schema(),
    );
    let out = f.apply(&b).unwrap();
    assert_eq!(strings(&out, "word"), vec!["a", "b", "c", "d", "e"]);
    // other columns are repeated for each part
    assert_eq!(ints(&out, "amount"), vec![5, 5, 10, 10, 10]);
    let not_string = StatelessOp::compile(
        "pipeline[0]".into(),
        &Kind::FlatMap(pb::FlatMapStep {
            field: "amount".into(),
            separator: " ".into(),
            as_field: "x".into(),
        }),
        &b.schema(),
        &OperatorRegistry::new(),
    );
    assert!(not_string
        .unwrap_err()
        .to_string()
        .contains("must be a string"));
}

fn aggregate_plan(window: Option<pb::WindowStep>, schema: &SchemaRef) -> AggregatePlan {
    let agg = pb::AggregateStep {
        aggregates: vec![
            pb::Aggregate {
                name: "n".into(),
                function: AggregateFunction::Count as i32,
                expr: String::new(),
            },
            pb::Aggregate {
                name: "total".into(),
                function: AggregateFunction::Sum as i32,
                expr: "amount".into(),
            },
            pb::Aggregate {
                name: "low".into(),
                function: AggregateFunction::Min as i32,
                expr: "amount".into(),
            },
            pb::Aggregate {
                name: "mean".into(),
                function: AggregateFunction::Avg as i32,
                expr: "amount".into(),
            },
        ],
    };
    AggregatePlan::compile(
        "pipeline[0]",
        "lower(user)",
        window.as_ref().map(|w| ("pipeline[1]", w)),
        "pipeline[2]",
        &agg,
        schema,
    )
    .unwrap()
}

fn merge_all(blocks: Vec<ShuffleBlock>) -> Vec<Arc<ShuffleBlock>> {
    blocks.into_iter().map(Arc::new).collect()
}

/// Pre-aggregates `records` as one stage-A task and merges them into `state`.
fn merge(state: &mut PartitionState, plan: &AggregatePlan, records: &RecordBatch) {
    let mut pre = PreAggregator::new(plan, i64::MIN);
    pre.add(records).unwrap();
    state.apply(plan, &merge_all(pre.finish(1).0)).unwrap();
}

#[test]
fn running_aggregate_across_tasks_and_batches() {
    let b = batch();
    let plan = aggregate_plan(None, &b.schema());
    // two stage-A tasks over the same records: everything counts twice
    let mut blocks = Vec::new();
    for _ in 0..2 {
        let mut pre = PreAggregator::new(&plan, i64::MIN);
        pre.add(&b).unwrap();
        let (mut out, stats) = pre.finish(1);
        assert_eq!(stats.late, 0);
        blocks.push(Arc::new(out.remove(0)));
    }
    let mut state = PartitionState::default();
    state.apply(&plan, &blocks).unwrap();
    let out = state.emit(&plan, i64::MIN);
    assert_eq!(strings(&out, "key"), vec!["ann", "bob", "cy"]);
    assert_eq!(ints(&out, "n"), vec![4, 2, 2]);
    assert_eq!(ints(&out, "total"), vec![6, 14, 20]);
    assert_eq!(ints(&out, "low"), vec![-2, 7, 10]);
    let mean = out
        .column_by_name("mean")
        .unwrap()
        .as_primitive::<Float64Type>();
    assert_eq!(mean.value(0), 1.5);

    // next batch touches only bob: only bob is emitted, with its running total
    let next = b.slice(1, 1);
    let mut pre = PreAggregator::new(&plan, i64::MIN);
    pre.add(&next).unwrap();
    let (out, _) = pre.finish(1);
    state.apply(&plan, &merge_all(out)).unwrap();
    let out = state.emit(&plan, i64::MIN);
    assert_eq!(strings(&out, "key"), vec!["bob"]);
    assert_eq!(ints(&out, "n"), vec![3]);
}

#[test]
fn blocks_are_split_by_key_partition() {
    let b = batch();
    let plan = aggregate_plan(None, &b.schema());
    let mut pre = PreAggregator::new(&plan, i64::MIN);
    pre.add(&b).unwrap();
    let (blocks, _) = pre.finish(4);
    assert_eq!(blocks.len(), 4);
    for (p, block) in blocks.iter().enumerate() {
        for (key, _) in &block.keys {
            assert_eq!(key.partition(4) as usize, p);
        }
    }
    assert_eq!(blocks.iter().map(|b| b.keys.len()).sum::<usize>(), 3);
}

#[test]
fn checkpoints_restore_the_same_state() {
    let b = batch();
    let plan = aggregate_plan(None, &b.schema());
    let mut pre = PreAggregator::new(&plan, i64::MIN);
    pre.add(&b).unwrap();
    let mut state = PartitionState::default();
    state.apply(&plan, &merge_all(pre.finish(1).0)).unwrap();
    let (delta, snapshot) = checkpoint(&mut state, true);
    assert_eq!(delta.len(), 3);
    let snapshot = snapshot.unwrap();
    assert_eq!(snapshot.len(), 3);
    let entries = snapshot.into_iter().map(|(k, v)| (k, v.unwrap()));
    let mut restored = PartitionState::restore(7, entries, plan.stride).unwrap();
    assert_eq!(restored.version, 7);
    assert_eq!(restored.len(), 3);
    // nothing changed since the checkpoint: an empty delta
    assert!(checkpoint(&mut restored, false).0.is_empty());
    // the restored state emits what the original holds
    let next = b.slice(0, 1);
    for s in [&mut state, &mut restored] {
        let mut pre = PreAggregator::new(&plan, i64::MIN);
        pre.add(&next).unwrap();
        s.apply(&plan, &merge_all(pre.finish(1).0)).unwrap();
    }
    let (a, b) = (state.emit(&plan, i64::MIN), restored.emit(&plan, i64::MIN));
    assert_eq!(ints(&a, "total"), ints(&b, "total"));
    assert_eq!(strings(&a, "key"), strings(&b, "key"));
    let e = PartitionState::restore(7, vec![(vec![0; 9], vec![1, 2, 3])], plan.stride).unwrap_err();
    assert!(e.contains("was the aggregate set changed"), "{e}");
}

#[test]
fn a_frozen_state_encodes_the_state_as_it_was_when_frozen() {
    let b = batch();
    let plan = aggregate_plan(None, &b.schema());
    let apply = |state: &mut PartitionState, records: &RecordBatch| merge(state, &plan, records);
    let mut state = PartitionState::default();
    apply(&mut state, &b.slice(0, 2));
    let before = held(&mut state, plan.stride);
    let frozen = state.frozen();
    assert_eq!(frozen.len(), before.len());
    // The state moves on: values change and keys are added.
    apply(&mut state, &b);
    let after = held(&mut state, plan.stride);
    assert_ne!(after, before);
    let mut file = CheckpointEncoder::snapshot("s", 1, 0);
    frozen.encode_into(&mut file).unwrap();
    let encoded = format::decode("s", &file.finish()).unwrap().entries;
    assert_eq!(first_slots(encoded, plan.stride), before);
}

#[test]
fn changes_taken_encode_the_delta_as_it_was_when_taken() {
    let b = batch();
    let plan = aggregate_plan(None, &b.schema());
    let apply = |state: &mut PartitionState, records: &RecordBatch| merge(state, &plan, records);
    let build = || {
        let mut state = PartitionState::default();
        for records in [b.slice(0, 3), b.slice(1, 3)] {
            apply(&mut state, &records);
        }
        state
    };
    let (mut inline, mut taken) = (build(), build());
    let (want, _) = checkpoint(&mut inline, false);
    assert!(!want.is_empty());
    let changes = taken.take_changes();
    assert_eq!(changes.len(), want.len());
    // Clean now, as after an inline checkpoint; then the state moves on
    // before the changes are encoded.
    assert!(checkpoint(&mut taken, false).0.is_empty());
    apply(&mut taken, &b);
    let mut delta = CheckpointEncoder::delta("d", 7, 6, 0).unwrap();
    changes.encode_into(&mut delta).unwrap();
    let got = format::decode("d", &delta.finish()).unwrap().entries;
    assert_eq!(got, want);
}

#[test]
fn a_group_removed_and_stored_again_at_the_same_index_is_taken_once_after_its_tombstone() {
    let b = batch();
    let window = pb::WindowStep {
        size_ms: 4_000,
        slide_ms: 4_000,
        time: "ts".into(),
        watermark_ms: 0,
    };
    let plan = aggregate_plan(Some(window), &b.schema());
    let mut state = PartitionState::default();
    let apply = |state: &mut PartitionState, records: &RecordBatch, watermark: i64| {
        let mut pre = PreAggregator::new(&plan, i64::MIN);
        pre.add(records).unwrap();
        state.apply(&plan, &merge_all(pre.finish(1).0)).unwrap();
        state.emit(&plan, watermark)
    };
    apply(&mut state, &b.slice(0, 1), i64::MIN);
    let held_before = state.len();
    // Its window closes: the group is removed (a tombstone), and its index
    // is free; the same record stored again reuses that index.
    apply(&mut state, &b.slice(0, 0), i64::MAX);
    assert_eq!(state.len(), 0);
    apply(&mut state, &b.slice(0, 1), i64::MIN);
    assert_eq!(state.len(), held_before);
    let (delta, _) = checkpoint(&mut state, false);
    let tombstones = delta.iter().filter(|(_, v)| v.is_none()).count();
    let values = delta.iter().filter(|(_, v)| v.is_some()).count();
    assert_eq!(
        (tombstones, values),
        (held_before, held_before),
        "{delta:?}"
    );
    assert!(delta[..tombstones].iter().all(|(_, v)| v.is_none()));
}

#[test]
fn windows_close_at_the_watermark_and_late_records_are_counted() {
    let b = batch();
    let window = pb::WindowStep {
        size_ms: 4_000,
        slide_ms: 2_000,
        time: "ts".into(),
        watermark_ms: 1_000,
    };
    let plan = aggregate_plan(Some(window), &b.schema());
    // watermark 3s: the record at 1s (windows [-2s,2s) and [0s,4s)) keeps
    // only [0s,4s); nothing is entirely late yet
    let mut pre = PreAggregator::new(&plan, 3_000);
    pre.add(&b).unwrap();
    let (blocks, stats) = pre.finish(1);
    assert_eq!(stats.late, 0);
    assert_eq!(stats.max_event_time, 11_000);
    let mut state = PartitionState::default();
    state.apply(&plan, &merge_all(blocks)).unwrap();
    // a watermark of 6s closes windows ending at or before 6s
    let out = state.emit(&plan, 6_000);
    let rows: Vec<(String, i64, i64)> = strings(&out, "key")
        .into_iter()
        .zip(ints(&out, "window_start"))
        .zip(ints(&out, "n"))
        .map(|((k, s), n)| (k, s, n))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("ann".into(), 0, 1),
            ("ann".into(), 2_000, 1),
            ("bob".into(), 0, 1),
            ("bob".into(), 2_000, 1)
        ]
    );
    assert_eq!(ints(&out, "window_end"), vec![4_000, 6_000, 4_000, 6_000]);
    // closed windows left state with tombstones
    let (delta, _) = checkpoint(&mut state, false);
    assert_eq!(delta.iter().filter(|(_, v)| v.is_none()).count(), 4);

    // a record at 1s arriving at watermark 6s is late: all its windows closed
    let late = b.slice(0, 1);
    let mut pre = PreAggregator::new(&plan, 6_000);
    pre.add(&late).unwrap();
    let (blocks, stats) = pre.finish(1);
    assert_eq!(stats.late, 1);
    assert!(blocks[0].keys.is_empty());
    // everything left is emitted by the final (infinite) watermark
    let rest = state.emit(&plan, i64::MAX);
    assert!(state.is_empty());
    let keys: Vec<Key> = strings(&rest, "key")
        .into_iter()
        .map(|k| Key::Str(k.into()))
        .collect();
    assert!(keys.contains(&Key::Str("ann".into())) && keys.contains(&Key::Str("cy".into())));
}

/// A plan counting records per `lower(user)`, windowed when asked.
fn count_plan(window: Option<pb::WindowStep>) -> AggregatePlan {
    let agg = pb::AggregateStep {
        aggregates: vec![pb::Aggregate {
            name: "n".into(),
            function: AggregateFunction::Count as i32,
            expr: String::new(),
        }],
    };
    AggregatePlan::compile(
        "pipeline[0]",
        "lower(user)",
        window.as_ref().map(|w| ("pipeline[1]", w)),
        "pipeline[2]",
        &agg,
        &batch().schema(),
    )
    .unwrap()
}

/// The groups a partition holds, read back from a snapshot of it.
fn held(state: &mut PartitionState, stride: usize) -> BTreeMap<StateKey, u64> {
    let (_, snapshot) = checkpoint(state, true);
    first_slots(snapshot.unwrap(), stride)
}

/// Each entry's key and first slot.
fn first_slots(entries: Vec<Entry>, stride: usize) -> BTreeMap<StateKey, u64> {
    entries
        .into_iter()
        .map(|(k, v)| {
            let v = v.unwrap();
            let mut slots = Vec::new();
            slot_codec::decode(COMPACT_SLOTS, &v, stride, &mut slots).unwrap();
            (decode_state_key(&k).unwrap(), slots[0])
        })
        .collect()
}

/// A partition checkpointed by a build from before value layouts (format
/// version 2, each slot in 8 bytes) restores on this build, with the deltas
/// this build wrote on top of those files.
#[test]
fn a_snapshot_of_the_previous_format_restores_under_this_builds_deltas() {
    let b = batch();
    let plan = aggregate_plan(None, &b.schema());
    let apply = |state: &mut PartitionState, records: &RecordBatch| merge(state, &plan, records);
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn StateBackend> = Arc::new(LocalBackend::new(dir.path().to_path_buf()));
    let options = PartitionOptions::default();
    let mut state = PartitionState::default();
    apply(&mut state, &b.slice(0, 2));

    // Version 1, as the previous build wrote it.
    let mut file = CheckpointEncoder::snapshot("s", 1, 0);
    state.frozen().encode_into(&mut file).unwrap();
    let snapshot = format::decode("s", &file.finish()).unwrap();
    assert_eq!(snapshot.value_layout, COMPACT_SLOTS);
    let fixed: Vec<Entry> = (snapshot.entries.into_iter())
        .map(|(k, v)| {
            let mut slots = Vec::new();
            slot_codec::decode(COMPACT_SLOTS, &v.unwrap(), plan.stride, &mut slots).unwrap();
            (
                k,
                Some(slots.iter().flat_map(|s| s.to_le_bytes()).collect()),
            )
        })
        .collect();
    let files = PartitionCheckpoints::new(
        backend.clone(),
        crate::state::test_writers(),
        "j",
        "agg",
        0,
        options,
    )
    .unwrap();
    let path = CheckpointFileName::snapshot(1).path_in(files.dir());
    let old = format::v2_file(format::CheckpointKind::Snapshot, 1, 1, &fixed);
    backend.put_atomic(&path, &old).unwrap();
    let _ = state.take_changes();

    // Version 2 from this build.
    apply(&mut state, &b);
    let mut files = PartitionCheckpoints::new(
        backend.clone(),
        crate::state::test_writers(),
        "j",
        "agg",
        0,
        options,
    )
    .unwrap();
    let mut delta = files.encoder(CheckpointFileName::delta(2), 1, 0).unwrap();
    state.checkpoint(&mut delta).unwrap();
    files.write(delta).unwrap();

    let mut reopened = PartitionCheckpoints::new(
        backend,
        crate::state::test_writers(),
        "j",
        "agg",
        0,
        options,
    )
    .unwrap();
    let mut restorer = StateRestorer::new(plan.stride);
    let outcome = reopened.restore_into(2, &mut restorer).unwrap();
    assert_eq!(outcome.version, 2);
    assert!(outcome.skipped.is_empty(), "{:?}", outcome.skipped);
    let mut restored = restorer.finish(2).unwrap();
    // Both emit the same running aggregates once the next batch is merged.
    for s in [&mut state, &mut restored] {
        apply(s, &b);
    }
    let (a, r) = (state.emit(&plan, i64::MIN), restored.emit(&plan, i64::MIN));
    assert_eq!(strings(&r, "key"), strings(&a, "key"));
    assert_eq!(ints(&r, "n"), ints(&a, "n"));
    assert_eq!(ints(&r, "total"), ints(&a, "total"));
    assert_eq!(ints(&r, "total").len(), 3);
    // The old file's values are the fixed layout: read as compact they
    // would not decode.
    let mut slots = Vec::new();
    let v = fixed[0].1.as_deref().unwrap();
    assert!(slot_codec::decode(FIXED_SLOTS, v, plan.stride, &mut slots).is_ok());
    assert!(slot_codec::decode(COMPACT_SLOTS, v, plan.stride, &mut slots).is_err());
}

/// Windows close and their groups go; groups come and go again (a closed
/// window's key applied anew, as a hand-built block can); indices are
/// reused. Through all of it the output, the groups held and every
/// checkpoint chain (deltas on local disk, snapshots written in the
/// background, pruning) agree with a plain map doing the same.
#[test]
fn partition_state_matches_a_model_through_windows_checkpoints_and_restores() {
    let window = pb::WindowStep {
        size_ms: 2_000,
        slide_ms: 1_000,
        time: "ts".into(),
        watermark_ms: 0,
    };
    let plan = count_plan(Some(window));
    let dir = tempfile::tempdir().unwrap();
    let backend: Arc<dyn StateBackend> = Arc::new(LocalBackend::new(dir.path().to_path_buf()));
    let options = PartitionOptions {
        snapshot_every: 4,
        retain_snapshots: 2,
    };
    let mut files = PartitionCheckpoints::new(
        backend.clone(),
        crate::state::test_writers(),
        "j",
        "agg",
        0,
        options,
    )
    .unwrap();
    let mut state = PartitionState::default();
    let mut model: BTreeMap<StateKey, u64> = BTreeMap::new();
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let mut last_checkpoint = 0;
    for v in 1..=80u64 {
        let mut block = ShuffleBlock::default();
        let mut in_block = std::collections::HashSet::new();
        for _ in 0..next(12) {
            let key = (
                Key::Str(format!("u{}", next(9)).into()),
                next(10) as i64 * 1_000,
            );
            if in_block.insert(key.clone()) {
                let n = 1 + next(5);
                *model.entry(key.clone()).or_default() += n;
                block.keys.push(key);
                block.slots.push(n);
            }
        }
        state.apply(&plan, &[Arc::new(block)]).unwrap();
        // The watermark sweeps forward and back again, so closed windows'
        // keys come back in later blocks.
        let watermark = ((v % 12) as i64) * 1_000;
        let out = state.emit(&plan, watermark);
        let starts = ints(&out, "window_start");
        let counts = ints(&out, "n");
        for ((user, start), n) in strings(&out, "key").into_iter().zip(starts).zip(counts) {
            let key = (Key::Str(user.into()), start);
            assert_eq!(
                model.remove(&key),
                Some(n as u64),
                "batch {v}: emitted {key:?}"
            );
        }
        if v % 3 != 0 {
            // checkpoint_every 3 would skip these; every other batch here
            continue;
        }
        let mut delta = files
            .encoder(CheckpointFileName::delta(v), last_checkpoint, 0)
            .unwrap();
        let snapshot = files.should_snapshot(v, state.len()).then(|| {
            files
                .encoder(CheckpointFileName::snapshot(v), 0, 0)
                .unwrap()
        });
        // Every other checkpoint's delta is taken and encoded on the
        // writer's thread while the state moves on, as is every snapshot:
        // both must restore as of this batch.
        if v % 6 == 0 {
            let changes = state.take_changes();
            let entries = changes.len() as u64;
            files
                .fill_in_background(delta, entries, Box::new(move |f| changes.encode_into(f)))
                .unwrap();
        } else {
            state.checkpoint(&mut delta).unwrap();
            files.write(delta).unwrap();
        }
        if let Some(snapshot) = snapshot {
            let frozen = state.frozen();
            let entries = frozen.len() as u64;
            files
                .fill_in_background(snapshot, entries, Box::new(move |f| frozen.encode_into(f)))
                .unwrap();
        }
        files.prune(last_checkpoint).unwrap();
        last_checkpoint = v;
        assert_eq!(state.len(), model.len(), "batch {v}");
        if v % 9 == 0 {
            // What a restarted executor finds once the writes are done.
            files.settle();
            let mut reopened = PartitionCheckpoints::new(
                backend.clone(),
                crate::state::test_writers(),
                "j",
                "agg",
                0,
                options,
            )
            .unwrap();
            let mut restorer = StateRestorer::new(plan.stride);
            let outcome = reopened.restore_into(v, &mut restorer).unwrap();
            assert_eq!(outcome.version, v);
            assert!(outcome.skipped.is_empty(), "{:?}", outcome.skipped);
            let mut restored = restorer.finish(v).unwrap();
            assert_eq!(
                held(&mut restored, plan.stride),
                model,
                "restored at batch {v}"
            );
        }
    }
    assert!(held(&mut state, plan.stride) == model);
}
