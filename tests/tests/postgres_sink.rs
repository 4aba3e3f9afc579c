//! The PostgreSQL sink against a real PostgreSQL (deploy/dev/postgres.sh):
//!
//! - a running count upserted into a table stays exact per key while
//!   `weir local` is killed at each step of the commit protocol, inside
//!   the sink's own transaction (rows written, marker not yet) included,
//!   and a commit whose rows died with the process producing its batch
//!   again;
//! - a stateless job appending rows writes each record once across the
//!   same kills;
//! - a missing table, a missing column, a type mismatch and an upsert key
//!   without a unique index refuse the spec at submit (the database is
//!   reachable from the driver) with what to change; nothing is written.

use std::collections::BTreeMap;
use weir_tests::local_job::LocalJob;
use weir_tests::postgres::{connect, postgres_url, unique_table};

const KEYS: u64 = 37;
const TOTAL: u64 = 30_000;

fn generator(batch_records: u64) -> String {
    format!(
        "source:\n  generator: {{ partitions: 3, keys: {KEYS}, rate: 0, total: {TOTAL}, max_records_per_partition: {batch_records} }}\n"
    )
}

#[test]
fn a_running_count_upserted_stays_exact_across_kills() {
    let Some(url) = postgres_url("a_running_count_upserted_stays_exact_across_kills") else {
        return;
    };
    let table = unique_table("counts");
    let mut db = connect(&url);
    db.batch_execute(&format!(
        "CREATE TABLE {table} (key text PRIMARY KEY, count bigint NOT NULL, total bigint)"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut job = LocalJob::new(
        dir.path(),
        "pg-counts",
        &format!(
            "name: pg-counts\nbatch_interval: 10ms\nstate_partitions: 4\ncheckpoint_every: 2\n{}\
             pipeline:\n  - key_by: key\n  - aggregate: {{ count: {{}}, total: {{ sum: value }} }}\n\
             sink:\n  postgres: {{ url: \"${{env:WEIR_POSTGRES_URL}}\", table: {table}, key: [key] }}\n",
            generator(1_000)
        ),
    );
    // 10 batches of 3 000 records.
    job.run_with_crashes(&[
        "after-precommit@3",
        "before-committing@2",
        "after-committing@2",
        "postgres-commit@3",
        "sink-commit@2",
        "after-committed@1",
    ]);
    let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for g in 0..TOTAL {
        let e = want.entry(format!("k{}", g % KEYS)).or_default();
        e.0 += 1;
        e.1 += g as i64;
    }
    let got: BTreeMap<String, (i64, i64)> = db
        .query(&format!("SELECT key, count, total FROM {table}"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    assert_eq!(got, want, "the table's rows, key by key");
    // A commit decided before a kill found its rows gone with the process
    // and had the batch produced again.
    assert!(
        job.logs()
            .contains("re-running the batch to produce it again"),
        "a decided batch was produced again after a restart"
    );
}

#[test]
fn appended_rows_are_written_once_across_kills() {
    let Some(url) = postgres_url("appended_rows_are_written_once_across_kills") else {
        return;
    };
    let table = unique_table("events");
    let mut db = connect(&url);
    db.batch_execute(&format!(
        "CREATE TABLE {table} (key text, value bigint, doubled bigint)"
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut job = LocalJob::new(
        dir.path(),
        "pg-events",
        &format!(
            "name: pg-events\nbatch_interval: 10ms\n{}\
             pipeline:\n  - map: {{ doubled: \"value * 2\" }}\n\
             sink:\n  postgres: {{ url: \"${{env:WEIR_POSTGRES_URL}}\", table: {table}, mode: append, columns: [key, value, doubled] }}\n",
            generator(2_000)
        ),
    );
    // 5 batches of 3 partitions; stage A pre-commits a stateless job's
    // output.
    job.run_with_crashes(&[
        "stage-a@5",
        "before-committing@1",
        "postgres-commit@4",
        "sink-commit@3",
        "after-committed@2",
    ]);
    let rows = db
        .query(
            &format!("SELECT value, doubled, count(*) FROM {table} GROUP BY value, doubled"),
            &[],
        )
        .unwrap();
    let mut seen = 0;
    for r in &rows {
        let (value, doubled, n): (i64, i64, i64) = (r.get(0), r.get(1), r.get(2));
        assert_eq!(n, 1, "record {value} written {n} times");
        assert_eq!(doubled, value * 2);
        seen += 1;
    }
    assert_eq!(seen, TOTAL, "every record written");
}

#[test]
fn a_table_that_does_not_fit_is_refused_at_submit_with_what_to_change() {
    let Some(url) =
        postgres_url("a_table_that_does_not_fit_is_refused_at_submit_with_what_to_change")
    else {
        return;
    };
    let mut db = connect(&url);
    let missing = unique_table("missing");
    let narrow = unique_table("narrow");
    let typed = unique_table("typed");
    let unindexed = unique_table("unindexed");
    db.batch_execute(&format!(
        "CREATE TABLE {narrow} (key text PRIMARY KEY);\
         CREATE TABLE {typed} (key text PRIMARY KEY, count text);\
         CREATE TABLE {unindexed} (key text, count bigint);"
    ))
    .unwrap();
    for (table, message) in [
        (&missing, "the table does not exist"),
        (
            &narrow,
            "the job's output has column count (BIGINT) that the table lacks",
        ),
        (
            &typed,
            "column count is text in the table but the job writes BIGINT there",
        ),
        (&unindexed, "needs a unique index on exactly those columns"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut job = LocalJob::new(
            dir.path(),
            "pg-bad",
            &format!(
                "name: pg-bad\nbatch_interval: 10ms\nstate_partitions: 2\n{}\
                 pipeline:\n  - key_by: key\n  - aggregate: {{ count: {{}} }}\n\
                 sink:\n  postgres: {{ url: \"${{env:WEIR_POSTGRES_URL}}\", table: {table}, key: [key] }}\n",
                generator(1_000)
            ),
        );
        // The database is reachable from the driver (the same process in
        // `weir local`): the spec is refused at submit, before any batch.
        let (ok, log) = job.run(&[]);
        assert!(!ok, "{table}: the job must be refused\n{log}");
        assert!(
            log.contains(&format!(
                "invalid job spec pg-bad: sink.postgres.table: table {table}: "
            )) && log.contains(message),
            "{table}: {message}\n{log}"
        );
        assert!(
            !log.contains("batch committed"),
            "{table}: no batch ran\n{log}"
        );
        if table != &missing {
            let n: i64 = db
                .query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .unwrap()
                .get(0);
            assert_eq!(n, 0, "{table}: nothing written");
        }
    }
}
