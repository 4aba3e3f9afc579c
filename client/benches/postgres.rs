//! Rows/s into PostgreSQL through Weir's sink against the client's own
//! bulk path (`COPY` in one transaction) on the same database.
//!
//!     WEIR_POSTGRES_URL=postgres://… cargo bench -p weir --bench postgres
//!
//! `WEIR_BENCH_ROWS` sets the rows per run (default 2 million). Each run
//! writes `(key text, value bigint, doubled bigint)` rows into a fresh
//! table: COPY of rows made in the bench, then `weir local` with a
//! generator and a `map`, appending and upserting (on `value`).

use std::io::Write;
use std::time::Instant;

mod common;

fn fresh(db: &mut postgres::Client, table: &str, key: bool) -> anyhow::Result<()> {
    let pk = if key { " PRIMARY KEY" } else { "" };
    db.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (key text, value bigint{pk}, doubled bigint)"
    ))?;
    Ok(())
}

fn copy(db: &mut postgres::Client, rows: u64) -> anyhow::Result<f64> {
    fresh(db, "bench_copy", false)?;
    let started = Instant::now();
    let mut txn = db.transaction()?;
    let mut w = txn.copy_in("COPY bench_copy (key, value, doubled) FROM STDIN")?;
    let mut buf = Vec::with_capacity(1 << 20);
    for g in 0..rows {
        writeln!(buf, "k{}\t{g}\t{}", g % 1000, g * 2)?;
        if buf.len() >= 1 << 20 {
            w.write_all(&buf)?;
            buf.clear();
        }
    }
    w.write_all(&buf)?;
    w.finish()?;
    txn.commit()?;
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

/// The client's own bulk upsert: `COPY` into a temporary table, then one
/// `INSERT … ON CONFLICT`.
fn copy_upsert(db: &mut postgres::Client, rows: u64) -> anyhow::Result<f64> {
    fresh(db, "bench_copy_upsert", true)?;
    let started = Instant::now();
    let mut txn = db.transaction()?;
    txn.batch_execute("CREATE TEMP TABLE rows (LIKE bench_copy_upsert) ON COMMIT DROP")?;
    let mut w = txn.copy_in("COPY rows (key, value, doubled) FROM STDIN")?;
    let mut buf = Vec::with_capacity(1 << 20);
    for g in 0..rows {
        writeln!(buf, "k{}\t{g}\t{}", g % 1000, g * 2)?;
        if buf.len() >= 1 << 20 {
            w.write_all(&buf)?;
            buf.clear();
        }
    }
    w.write_all(&buf)?;
    w.finish()?;
    txn.execute(
        "INSERT INTO bench_copy_upsert SELECT * FROM rows ON CONFLICT (value) DO UPDATE SET key = EXCLUDED.key, doubled = EXCLUDED.doubled",
        &[],
    )?;
    txn.commit()?;
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

fn weir(db: &mut postgres::Client, rows: u64, upsert: bool) -> anyhow::Result<f64> {
    let table = if upsert {
        "bench_upsert"
    } else {
        "bench_append"
    };
    fresh(db, table, upsert)?;
    let mode = if upsert {
        "key: [value], mode: upsert"
    } else {
        "mode: append"
    };
    let elapsed = common::run_to_end(&format!(
        "name: bench-{table}\nbatch_interval: 10ms\n\
         source:\n  generator: {{ partitions: 4, keys: 1000, rate: 0, total: {rows}, max_records_per_partition: 100000 }}\n\
         pipeline:\n  - map: {{ doubled: \"value * 2\" }}\n\
         sink:\n  postgres: {{ url: \"${{env:WEIR_POSTGRES_URL}}\", table: {table}, {mode}, columns: [key, value, doubled] }}\n"
    ))?;
    let n: i64 = db
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])?
        .get(0);
    anyhow::ensure!(n as u64 == rows, "{table}: {n} rows of {rows}");
    Ok(rows as f64 / elapsed.as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    weir_executor::allocator::keep_freed_memory();
    let url = std::env::var("WEIR_POSTGRES_URL")
        .map_err(|_| anyhow::anyhow!("set WEIR_POSTGRES_URL (deploy/dev/postgres.sh start)"))?;
    let rows: u64 = std::env::var("WEIR_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let mut db = postgres::Client::connect(&url, postgres::NoTls)?;
    let copy = copy(&mut db, rows)?;
    let append = weir(&mut db, rows, false)?;
    let copy_upsert = copy_upsert(&mut db, rows)?;
    let upsert = weir(&mut db, rows, true)?;
    println!("| path | rows | rows/s | against the client's bulk path |");
    println!("|---|---:|---:|---:|");
    println!("| append: `COPY`, one transaction (client) | {rows} | {copy:.0} | |");
    println!(
        "| append: Weir sink | {rows} | {append:.0} | {:.0} % |",
        append / copy * 100.0
    );
    println!("| upsert: `COPY` into a temporary table + `INSERT … ON CONFLICT` (client) | {rows} | {copy_upsert:.0} | |");
    println!(
        "| upsert: Weir sink | {rows} | {upsert:.0} | {:.0} % |",
        upsert / copy_upsert * 100.0
    );
    db.batch_execute(
        "DROP TABLE bench_copy; DROP TABLE bench_append; DROP TABLE bench_copy_upsert; DROP TABLE bench_upsert",
    )?;
    Ok(())
}
