//! Exactly-once checks: the output of a job run under faults against the
//! result computed from its input's definition alone.
//!
//! Every check returns problems as lines naming the job, the keys and the
//! batches involved; an empty list is a clean result.

use super::io::{InputProducer, OutputUnit};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Most lines reported per check, so one systematic error does not drown
/// the report.
const MAX_LINES: usize = 40;

fn push(problems: &mut Vec<String>, line: String) {
    if problems.len() < MAX_LINES {
        problems.push(line);
    } else if problems.len() == MAX_LINES {
        problems.push("... (more problems not shown)".into());
    }
}

fn key_of(row: &Value) -> String {
    match &row["key"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Running count: per key, counts strictly grow from batch to batch (a
/// batch applied twice or state going backwards breaks this) and the last
/// emitted `count` and `total` equal the input's count and sum of `value`.
pub fn check_running_count(
    job: &str,
    input: &dyn InputProducer,
    units: &[OutputUnit],
) -> Vec<String> {
    let mut want: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    input.for_each(&mut |r| {
        let e = want.entry(r.key.clone()).or_default();
        e.0 += 1;
        e.1 = e.1.wrapping_add(r.value);
    });
    // key -> [(batch, count, total)] in batch order
    let mut seen: BTreeMap<String, Vec<(u64, u64, u64)>> = BTreeMap::new();
    let mut problems = Vec::new();
    for u in units {
        for row in &u.rows {
            let (Some(count), Some(total)) = (row["count"].as_u64(), row["total"].as_u64()) else {
                push(
                    &mut problems,
                    format!(
                        "{job}: batch {} part {}: row without count/total: {row}",
                        u.batch, u.partition
                    ),
                );
                continue;
            };
            seen.entry(key_of(row))
                .or_default()
                .push((u.batch, count, total));
        }
    }
    let history = |h: &[(u64, u64, u64)]| -> String {
        let tail = &h[h.len().saturating_sub(6)..];
        tail.iter()
            .map(|(b, c, _)| format!("batch {b}: {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for (key, h) in &seen {
        for w in h.windows(2) {
            let ((b0, c0, _), (b1, c1, _)) = (w[0], w[1]);
            if b1 <= b0 || c1 <= c0 {
                push(
                    &mut problems,
                    format!("{job}: key {key}: count {c1} in batch {b1} after {c0} in batch {b0} (a batch applied twice, or state went back)"),
                );
            }
        }
        match want.get(key) {
            None => push(
                &mut problems,
                format!("{job}: key {key} is in the output but not in the input"),
            ),
            Some((count, total)) => {
                let (batch, got, got_total) = *h.last().expect("non-empty");
                if got != *count {
                    let what = if got < *count { "lost" } else { "duplicated" };
                    push(
                        &mut problems,
                        format!(
                            "{job}: key {key}: count {got} (last emitted in batch {batch}), expected {count}: {} record(s) {what}; emitted: {}",
                            got.abs_diff(*count),
                            history(h)
                        ),
                    );
                } else if got_total != *total {
                    push(
                        &mut problems,
                        format!("{job}: key {key}: total {got_total} (batch {batch}), expected {total}; emitted: {}", history(h)),
                    );
                }
            }
        }
    }
    for (key, (count, _)) in &want {
        if !seen.contains_key(key) {
            push(
                &mut problems,
                format!("{job}: key {key} ({count} records) never emitted: lost"),
            );
        }
    }
    problems
}

/// Floor division for window starts before the epoch, too.
fn floor_to(t: i64, step: i64) -> i64 {
    t.div_euclid(step) * step
}

/// One output row of a window: `(batch, partition, row)`.
type Emission = (u64, u32, Value);

/// Per-window aggregates: count, sum and min of `value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Agg {
    count: u64,
    total: u64,
    first: u64,
}

/// Windowed count (`size` = 2 x `slide`, nothing late): every
/// `(key, window_start)` is emitted exactly once, each with the exact
/// count, sum and min of `value` of the input records in it, and per key
/// the window counts add up to 2x the key's records.
///
/// The generator's origin (the job's creation time) is not exposed; it is
/// recovered from the first window whose smallest `value` is not 0, and
/// every window is then checked exactly against it.
pub fn check_windows(
    job: &str,
    input: &dyn InputProducer,
    units: &[OutputUnit],
    size_ms: i64,
    slide_ms: i64,
) -> Vec<String> {
    let mut problems = Vec::new();
    // (key, start) -> emissions
    let mut got: BTreeMap<(String, i64), Vec<Emission>> = BTreeMap::new();
    for u in units {
        for row in &u.rows {
            let Some(start) = row["window_start"].as_i64() else {
                push(
                    &mut problems,
                    format!(
                        "{job}: batch {} part {}: row without window_start: {row}",
                        u.batch, u.partition
                    ),
                );
                continue;
            };
            if row["window_end"].as_i64() != Some(start + size_ms) {
                push(
                    &mut problems,
                    format!(
                        "{job}: batch {}: window_end of {row} is not window_start + {size_ms}",
                        u.batch
                    ),
                );
            }
            got.entry((key_of(row), start))
                .or_default()
                .push((u.batch, u.partition, row.clone()));
        }
    }
    // Recover the origin: the smallest value in window `start` over all
    // keys is the first record at or after `start`.
    let mut first_by_start: BTreeMap<i64, u64> = BTreeMap::new();
    for ((_, start), rows) in &got {
        if let Some(f) = rows[0].2["first"].as_u64() {
            let e = first_by_start.entry(*start).or_insert(u64::MAX);
            *e = (*e).min(f);
        }
    }
    let mut offsets: HashMap<u64, i64> = HashMap::new();
    let mut wanted_values: BTreeSet<u64> = first_by_start.values().copied().collect();
    wanted_values.retain(|v| *v > 0);
    input.for_each(&mut |r| {
        if wanted_values.contains(&r.value) {
            offsets.insert(r.value, r.event_offset_ms);
        }
    });
    let origin = first_by_start
        .iter()
        .find(|(_, f)| **f > 0)
        .and_then(|(start, f)| offsets.get(f).map(|o| start - o));
    let Some(origin) = origin else {
        push(&mut problems, format!("{job}: cannot recover the input's event-time origin: no window starts after it ({} windows in the output)", got.len()));
        return problems;
    };
    let mut want: BTreeMap<(String, i64), Agg> = BTreeMap::new();
    let mut per_key: BTreeMap<String, u64> = BTreeMap::new();
    input.for_each(&mut |r| {
        let t = origin + r.event_offset_ms;
        *per_key.entry(r.key.clone()).or_default() += 1;
        let mut start = floor_to(t, slide_ms);
        while start + size_ms > t {
            let e = want.entry((r.key.clone(), start)).or_insert(Agg {
                count: 0,
                total: 0,
                first: u64::MAX,
            });
            e.count += 1;
            e.total = e.total.wrapping_add(r.value);
            e.first = e.first.min(r.value);
            start -= slide_ms;
        }
    });
    let where_ = |rows: &[Emission]| -> String {
        rows.iter()
            .map(|(b, p, _)| format!("batch {b} part {p}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for ((key, start), rows) in &got {
        if rows.len() > 1 {
            push(
                &mut problems,
                format!(
                    "{job}: window ({key}, {start}) emitted {} times: duplicated ({})",
                    rows.len(),
                    where_(rows)
                ),
            );
        }
        let row = &rows[0].2;
        let agg = Agg {
            count: row["count"].as_u64().unwrap_or(u64::MAX),
            total: row["total"].as_u64().unwrap_or(u64::MAX),
            first: row["first"].as_u64().unwrap_or(u64::MAX),
        };
        match want.get(&(key.clone(), *start)) {
            None => push(
                &mut problems,
                format!(
                    "{job}: window ({key}, {start}) in {} has no input records in it",
                    where_(rows)
                ),
            ),
            Some(w) if *w != agg => {
                let what = match agg.count.cmp(&w.count) {
                    std::cmp::Ordering::Less => "records lost",
                    std::cmp::Ordering::Greater => "records duplicated",
                    std::cmp::Ordering::Equal => "wrong aggregate",
                };
                push(
                    &mut problems,
                    format!("{job}: window ({key}, {start}) in {}: count {} total {} first {}, expected {} {} {}: {what}",
                        where_(rows), agg.count, agg.total, agg.first, w.count, w.total, w.first),
                );
            }
            Some(_) => {}
        }
    }
    for ((key, start), w) in &want {
        if !got.contains_key(&(key.clone(), *start)) {
            push(
                &mut problems,
                format!(
                    "{job}: window ({key}, {start}) with {} records never emitted: lost",
                    w.count
                ),
            );
        }
    }
    let windows_per_record = (size_ms / slide_ms) as u64;
    let mut sums: BTreeMap<&str, u64> = BTreeMap::new();
    for ((key, _), rows) in &got {
        *sums.entry(key.as_str()).or_default() += rows
            .iter()
            .map(|r| r.2["count"].as_u64().unwrap_or(0))
            .sum::<u64>();
    }
    for (key, n) in &per_key {
        let s = sums.get(key.as_str()).copied().unwrap_or(0);
        if s != windows_per_record * n {
            push(&mut problems, format!("{job}: key {key}: window counts add up to {s}, expected {windows_per_record} x {n} = {}", windows_per_record * n));
        }
    }
    problems
}

/// The job's commit history from `weir status --json` and `weir batches
/// --json`: in one of `final_states` (`finished`; a job over Kafka never
/// ends by itself and is `stopped` or, once its driver wound down,
/// `finished` after `weir stop`), batch ids contiguous from 1, every input record read
/// once, nothing late, and no output unit from a batch that never
/// committed. With `complete` unset, `batches` is only the tail the driver
/// keeps (its last 100 commits): ids must be contiguous up to the last
/// committed batch, and the record count is checked on the totals only.
pub fn check_batches(
    job: &str,
    status: &Value,
    batches: &Value,
    units: &[OutputUnit],
    total: u64,
    complete: bool,
    final_states: &[&str],
) -> Vec<String> {
    let mut problems = Vec::new();
    if !final_states.iter().any(|s| status["state"] == *s) {
        push(
            &mut problems,
            format!(
                "{job}: state {} (error {:?}), expected {}",
                status["state"],
                status["error"],
                final_states.join(" or ")
            ),
        );
    }
    let last = status["last_committed_batch"].as_u64().unwrap_or(0);
    let totals = &status["totals"];
    if totals["batches"].as_u64() != Some(last) {
        push(
            &mut problems,
            format!(
                "{job}: totals.batches {} but last committed batch {last}",
                totals["batches"]
            ),
        );
    }
    if totals["records_in"].as_u64() != Some(total) {
        push(
            &mut problems,
            format!(
                "{job}: totals.records_in {}, the input has {total}",
                totals["records_in"]
            ),
        );
    }
    if totals["records_late"].as_u64() != Some(0) {
        push(
            &mut problems,
            format!(
                "{job}: totals.records_late {}, expected 0 (the watermark leaves nothing late)",
                totals["records_late"]
            ),
        );
    }
    let rows = batches.as_array().cloned().unwrap_or_default();
    let mut ids: Vec<u64> = rows.iter().filter_map(|b| b["batch_id"].as_u64()).collect();
    ids.sort_unstable();
    let mut dup = ids.clone();
    dup.dedup();
    if dup.len() != ids.len() {
        push(
            &mut problems,
            format!("{job}: `weir batches` lists a batch id twice: {ids:?}"),
        );
    }
    let first = if complete {
        1
    } else {
        dup.first().copied().unwrap_or(1)
    };
    let expected: Vec<u64> = (first..=last).collect();
    if dup != expected {
        let missing: Vec<u64> = expected
            .iter()
            .filter(|b| !dup.contains(b))
            .copied()
            .collect();
        let extra: Vec<u64> = dup
            .iter()
            .filter(|b| !expected.contains(b))
            .copied()
            .collect();
        push(&mut problems, format!("{job}: committed batch ids are not {first}..={last}: missing {missing:?}, unexpected {extra:?}"));
    }
    let records_in: u64 = rows.iter().filter_map(|b| b["records_in"].as_u64()).sum();
    if complete && records_in != total {
        push(
            &mut problems,
            format!("{job}: batches read {records_in} records in all, the input has {total}"),
        );
    }
    for b in &rows {
        if b["records_late"].as_u64().unwrap_or(0) != 0 {
            push(
                &mut problems,
                format!(
                    "{job}: batch {} has {} late records",
                    b["batch_id"], b["records_late"]
                ),
            );
        }
    }
    let committed: BTreeSet<u64> = dup.into_iter().collect();
    for u in units {
        if u.batch > last || (u.batch >= first && !committed.contains(&u.batch)) {
            push(
                &mut problems,
                format!(
                    "{job}: output file of batch {} part {} but that batch never committed",
                    u.batch, u.partition
                ),
            );
        }
    }
    problems
}

/// What each output unit looked like when first seen, across snapshots
/// taken after every fault: a committed unit never changes and never goes
/// away.
#[derive(Debug, Default)]
pub struct SinkHistory {
    seen: HashMap<(String, u64, u32), (u64, usize)>,
}

impl SinkHistory {
    /// Records a snapshot of `job`'s units taken after fault `fault`
    /// (0 before the first); returns what changed.
    pub fn observe(&mut self, job: &str, fault: usize, units: &[OutputUnit]) -> Vec<String> {
        let mut problems = Vec::new();
        let now: HashMap<(u64, u32), u64> = units
            .iter()
            .map(|u| ((u.batch, u.partition), u.hash))
            .collect();
        for u in units {
            let key = (job.to_string(), u.batch, u.partition);
            match self.seen.get(&key) {
                None => {
                    self.seen.insert(key, (u.hash, fault));
                }
                Some((hash, at)) if *hash != u.hash => push(
                    &mut problems,
                    format!("{job}: output of batch {} part {} was rewritten with different content between the snapshot after fault {at} and the one after fault {fault}", u.batch, u.partition),
                ),
                Some(_) => {}
            }
        }
        for ((j, batch, part), (_, at)) in &self.seen {
            if j == job && !now.contains_key(&(*batch, *part)) {
                push(&mut problems, format!("{job}: output of batch {batch} part {part} (seen after fault {at}) is gone after fault {fault}"));
            }
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::io::GeneratorInput;

    fn input(total: u64) -> GeneratorInput {
        GeneratorInput {
            partitions: 2,
            keys: 3,
            rate: 100,
            total,
            event_time_rate: 1_000,
            max_records_per_partition: 100,
        }
    }

    fn unit(batch: u64, rows: Vec<Value>) -> OutputUnit {
        OutputUnit {
            batch,
            partition: 0,
            hash: batch,
            rows,
        }
    }

    #[test]
    fn running_counts_catch_lost_and_duplicated_records() {
        let i = input(9); // k0: 0,3,6  k1: 1,4,7  k2: 2,5,8
        let ok = vec![
            unit(
                1,
                vec![
                    serde_json::json!({"key":"k0","count":1,"total":0}),
                    serde_json::json!({"key":"k1","count":2,"total":5}),
                ],
            ),
            unit(
                2,
                vec![
                    serde_json::json!({"key":"k0","count":3,"total":9}),
                    serde_json::json!({"key":"k1","count":3,"total":12}),
                    serde_json::json!({"key":"k2","count":3,"total":15}),
                ],
            ),
        ];
        assert_eq!(check_running_count("j", &i, &ok), Vec::<String>::new());
        let mut dup = ok.clone();
        dup[1].rows[0] = serde_json::json!({"key":"k0","count":4,"total":9});
        let p = check_running_count("j", &i, &dup);
        assert!(
            p[0].contains("key k0") && p[0].contains("duplicated") && p[0].contains("batch 2"),
            "{p:?}"
        );
        let mut lost = ok.clone();
        lost[1].rows.pop();
        let p = check_running_count("j", &i, &lost);
        assert!(p[0].contains("k2") && p[0].contains("lost"), "{p:?}");
    }

    #[test]
    fn windows_are_checked_exactly_after_recovering_the_origin() {
        // 3000 records at 1/ms from origin 10_500: windows of 2 s by 1 s
        let i = input(3_000);
        let origin = 10_500;
        let mut want: BTreeMap<(String, i64), (u64, u64, u64)> = BTreeMap::new();
        i.for_each(&mut |r| {
            let t = origin + r.event_offset_ms;
            for start in [floor_to(t, 1_000), floor_to(t, 1_000) - 1_000] {
                let e = want
                    .entry((r.key.clone(), start))
                    .or_insert((0, 0, u64::MAX));
                e.0 += 1;
                e.1 += r.value;
                e.2 = e.2.min(r.value);
            }
        });
        let rows: Vec<Value> = want
            .iter()
            .map(|((k, s), (c, t, f))| serde_json::json!({"key":k,"window_start":s,"window_end":s+2_000,"count":c,"total":t,"first":f}))
            .collect();
        let units = vec![unit(3, rows.clone())];
        assert_eq!(
            check_windows("w", &i, &units, 2_000, 1_000),
            Vec::<String>::new()
        );
        // the same window in a second batch is a duplicate
        let twice = vec![unit(3, rows.clone()), unit(4, vec![rows[5].clone()])];
        let p = check_windows("w", &i, &twice, 2_000, 1_000);
        assert!(
            p.iter()
                .any(|l| l.contains("emitted 2 times") && l.contains("batch 4")),
            "{p:?}"
        );
        // a missing window is lost
        let mut fewer = rows.clone();
        fewer.remove(7);
        let p = check_windows("w", &i, &[unit(3, fewer)], 2_000, 1_000);
        assert!(p.iter().any(|l| l.contains("never emitted: lost")), "{p:?}");
    }

    #[test]
    fn sink_history_notices_rewrites_and_disappearances() {
        let mut h = SinkHistory::default();
        let a = unit(1, vec![]);
        assert!(h.observe("j", 0, std::slice::from_ref(&a)).is_empty());
        assert!(h.observe("j", 1, std::slice::from_ref(&a)).is_empty());
        let mut changed = a.clone();
        changed.hash = 99;
        assert_eq!(h.observe("j", 2, &[changed]).len(), 1);
        assert_eq!(h.observe("j", 3, &[]).len(), 1);
    }

    #[test]
    fn batch_history_must_be_contiguous_and_complete() {
        let status = serde_json::json!({"state":"finished","last_committed_batch":3,"totals":{"batches":3,"records_in":10,"records_late":0}});
        let batches = serde_json::json!([{"batch_id":3,"records_in":2},{"batch_id":2,"records_in":4},{"batch_id":1,"records_in":4}]);
        assert!(check_batches(
            "j",
            &status,
            &batches,
            &[unit(2, vec![])],
            10,
            true,
            &["finished"]
        )
        .is_empty());
        let gap = serde_json::json!([{"batch_id":3,"records_in":6},{"batch_id":1,"records_in":4}]);
        let p = check_batches(
            "j",
            &status,
            &gap,
            &[unit(4, vec![])],
            10,
            true,
            &["finished"],
        );
        assert!(p.iter().any(|l| l.contains("missing [2]")), "{p:?}");
        assert!(
            p.iter()
                .any(|l| l.contains("batch 4 part 0 but that batch never committed")),
            "{p:?}"
        );
    }
}
