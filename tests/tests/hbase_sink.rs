//! The HBase sink against a real HBase and its Thrift gateway
//! (deploy/dev/hbase.sh):
//!
//! - a running count written into a table ends with each key's newest
//!   cells equal to the count and sum computed from the input, while
//!   `weir local` is killed at each step of the commit protocol; every
//!   cell's version is a batch id, a batch's versions hold that batch's
//!   values once (replays overwrite, never add), and a commit whose rows
//!   died with the process had its batch produced again;
//! - a stateless job writing each record as a row, its partitions
//!   written in several requests, is killed between two requests of a
//!   commit too: every record's row is there once, each cell with one
//!   version;
//! - a missing table and a missing family fail the job naming what to
//!   create, before anything is written.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use weir_tests::hbase::{connect, hbase_thrift, unique_table};
use weir_tests::local_job::LocalJob;

const KEYS: u64 = 37;
const TOTAL: u64 = 30_000;

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn a_running_count_in_hbase_stays_exact_across_kills() {
    let Some(addr) = hbase_thrift("a_running_count_in_hbase_stays_exact_across_kills") else {
        return;
    };
    let table = unique_table("counts");
    let mut hbase = connect(&addr);
    // Enough versions to keep every batch's.
    hbase
        .create_table(table.as_bytes(), &[(b"f", 100)])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut job = LocalJob::new(
        dir.path(),
        "hbase-counts",
        &format!(
            "name: hbase-counts\nbatch_interval: 10ms\nstate_partitions: 4\ncheckpoint_every: 2\n\
             source:\n  generator: {{ partitions: 3, keys: {KEYS}, rate: 0, total: {TOTAL}, max_records_per_partition: 1000 }}\n\
             pipeline:\n  - key_by: key\n  - aggregate: {{ count: {{}}, total: {{ sum: value }} }}\n\
             sink:\n  hbase: {{ thrift: \"{addr}\", table: {table}, family: f, row_key: key }}\n"
        ),
    );
    // 10 batches of 3 000 records.
    job.run_with_crashes(&[
        "after-precommit@3",
        "before-committing@2",
        "after-committing@2",
        "sink-commit@3",
        "after-committed@1",
    ]);
    let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for g in 0..TOTAL {
        let e = want.entry(format!("k{}", g % KEYS)).or_default();
        e.0 += 1;
        e.1 += g as i64;
    }
    let rows = hbase.scan(table.as_bytes(), &[b"f"]).unwrap();
    let mut got: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for r in &rows {
        let key = text(&r.row);
        let columns: Vec<String> = r.columns.iter().map(|(c, _)| text(c)).collect();
        assert_eq!(columns, ["f:count", "f:total"], "row {key}'s cells");
        let value = |i: usize| -> i64 { text(&r.columns[i].1.value).parse().unwrap() };
        got.insert(key.clone(), (value(0), value(1)));
        for (column, cell) in &r.columns {
            // A batch id: small, never wall time.
            assert!(
                (1..=1_000).contains(&cell.timestamp),
                "{key} {}: version {} is not a batch id",
                text(column),
                cell.timestamp
            );
        }
        // Each batch wrote this key's count once: one version per batch,
        // the count growing with the batch id.
        let versions = hbase
            .get_ver(table.as_bytes(), &r.row, b"f:count", 100)
            .unwrap();
        let stamps: BTreeSet<i64> = versions.iter().map(|c| c.timestamp).collect();
        assert_eq!(stamps.len(), versions.len(), "{key}: {versions:?}");
        let counts: Vec<i64> = versions
            .iter()
            .map(|c| text(&c.value).parse().unwrap())
            .collect();
        assert!(
            counts.windows(2).all(|w| w[0] > w[1]),
            "{key}: the newest version first, each batch's count larger: {versions:?}"
        );
        assert_eq!(versions[0].timestamp, r.columns[0].1.timestamp);
    }
    assert_eq!(got, want, "the table's rows, key by key");
    assert!(
        job.logs()
            .contains("re-running the batch to produce it again"),
        "a decided batch was produced again after a restart"
    );
    let _ = hbase.disable_table(table.as_bytes());
    let _ = hbase.delete_table(table.as_bytes());
}

#[test]
fn records_written_as_rows_are_exact_across_kills_inside_a_commit() {
    let Some(addr) = hbase_thrift("records_written_as_rows_are_exact_across_kills_inside_a_commit")
    else {
        return;
    };
    let table = unique_table("events");
    let mut hbase = connect(&addr);
    hbase.create_table(table.as_bytes(), &[(b"f", 10)]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // 4 batches of 3 partitions x up to 6 000 records: more rows than one
    // request takes, so each partition is written in 2 requests and
    // hbase-commit (between them) is reached.
    const EVENTS: u64 = 60_000;
    let mut job = LocalJob::new(
        dir.path(),
        "hbase-events",
        &format!(
            "name: hbase-events\nbatch_interval: 10ms\n\
             source:\n  generator: {{ partitions: 3, keys: {KEYS}, rate: 0, total: {EVENTS}, max_records_per_partition: 6000 }}\n\
             pipeline:\n  - map: {{ id: \"CAST(value AS STRING)\", doubled: \"value * 2\" }}\n\
             sink:\n  hbase: {{ thrift: \"{addr}\", table: {table}, family: f, row_key: id }}\n"
        ),
    );
    job.run_with_crashes(&[
        "hbase-commit@2",
        "stage-a@2",
        "before-committing@1",
        "hbase-commit@4",
        "sink-commit@2",
    ]);
    let rows = hbase.scan(table.as_bytes(), &[b"f"]).unwrap();
    let mut seen = BTreeSet::new();
    for r in &rows {
        let id: u64 = text(&r.row).parse().unwrap();
        let cell = |name: &str| {
            r.columns
                .iter()
                .find(|(c, _)| text(c) == format!("f:{name}"))
                .map(|(_, cell)| text(&cell.value))
                .unwrap_or_else(|| panic!("row {id} has no f:{name}: {r:?}"))
        };
        assert_eq!(cell("value"), id.to_string());
        assert_eq!(cell("doubled"), (id * 2).to_string());
        assert_eq!(cell("key"), format!("k{}", id % KEYS));
        assert!(r
            .columns
            .iter()
            .all(|(_, c)| (1..=1_000).contains(&c.timestamp)));
        assert!(seen.insert(id), "row {id} twice in a scan");
    }
    assert_eq!(seen.len() as u64, EVENTS, "every record's row");
    // Rewritten rows are the same cells: one version each.
    for id in [0u64, 1, 5_999, 6_000, 17_321, 41_000, EVENTS - 1] {
        let versions = hbase
            .get_ver(
                table.as_bytes(),
                id.to_string().as_bytes(),
                b"f:doubled",
                10,
            )
            .unwrap();
        assert_eq!(versions.len(), 1, "row {id}: {versions:?}");
    }
    let _ = hbase.disable_table(table.as_bytes());
    let _ = hbase.delete_table(table.as_bytes());
}

#[test]
fn a_missing_table_or_family_fails_the_job_with_what_to_create() {
    let Some(addr) = hbase_thrift("a_missing_table_or_family_fails_the_job_with_what_to_create")
    else {
        return;
    };
    let mut hbase = connect(&addr);
    let other = unique_table("other_family");
    hbase.create_table(other.as_bytes(), &[(b"g", 1)]).unwrap();
    let missing = unique_table("missing");
    let dir = tempfile::tempdir().unwrap();
    for (name, table, message) in [
        (
            "hbase-missing",
            missing.as_str(),
            format!("the table does not exist; create it in the HBase shell: create '{missing}', {{NAME => 'f'"),
        ),
        (
            "hbase-family",
            other.as_str(),
            format!("the table has no column family f (its families: g); add it in the HBase shell: alter '{other}'"),
        ),
    ] {
        fs::create_dir_all(dir.path().join(name)).unwrap();
        let mut job = LocalJob::new(
            &dir.path().join(name),
            name,
            &format!(
                "name: {name}\nbatch_interval: 10ms\n\
                 source:\n  generator: {{ partitions: 1, keys: 3, rate: 0, total: 100 }}\n\
                 sink:\n  hbase: {{ thrift: \"{addr}\", table: {table}, family: f, row_key: key }}\n"
            ),
        );
        let (ok, log) = job.run(&[]);
        assert!(!ok, "{name}: the job must fail\n{log}");
        assert!(log.contains(&message), "{name}: {message}\n{log}");
    }
    let rows = hbase.scan(other.as_bytes(), &[b"g"]).unwrap();
    assert!(rows.is_empty(), "nothing written: {rows:?}");
    let _ = hbase.disable_table(other.as_bytes());
    let _ = hbase.delete_table(other.as_bytes());
}
