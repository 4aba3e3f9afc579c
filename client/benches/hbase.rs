//! Rows/s into HBase through Weir's sink against the client's own bulk
//! path (`mutateRowsTs` calls of 5 000 rows on one Thrift connection) on
//! the same gateway.
//!
//!     WEIR_HBASE_THRIFT=127.0.0.1:19090 cargo bench -p weir --bench hbase
//!
//! `WEIR_BENCH_ROWS` sets the rows per run (default 400 000). Each run
//! writes rows `id → (key, value, doubled)` into a fresh table: the bench's
//! own requests, then `weir local` with a generator and a `map` (a
//! stateless job: each record a row, written at commit).

use std::time::{Duration, Instant};
use weir_executor::hbase_thrift::{encode_row, HbaseClient};

mod common;

/// Rows per request on the client's path, as the sink's largest.
const CHUNK: u64 = 5_000;

fn fresh(client: &mut HbaseClient, table: &str) -> anyhow::Result<()> {
    let names = client.get_table_names()?;
    if names.iter().any(|n| n == table.as_bytes()) {
        client.disable_table(table.as_bytes())?;
        client.delete_table(table.as_bytes())?;
    }
    client.create_table(table.as_bytes(), &[(b"f", 1)])?;
    Ok(())
}

fn count(client: &mut HbaseClient, table: &str) -> anyhow::Result<u64> {
    Ok(client.scan(table.as_bytes(), &[b"f:key"])?.len() as u64)
}

fn bulk(client: &mut HbaseClient, rows: u64) -> anyhow::Result<f64> {
    let table = "bench_hbase_client";
    fresh(client, table)?;
    let started = Instant::now();
    let mut buf = Vec::with_capacity(1 << 20);
    let mut from = 0;
    while from < rows {
        let to = (from + CHUNK).min(rows);
        buf.clear();
        for g in from..to {
            let (id, key, value, doubled) = (
                g.to_string(),
                format!("k{}", g % 1000),
                g.to_string(),
                (g * 2).to_string(),
            );
            let cells = [
                (&b"f:key"[..], key.as_bytes()),
                (&b"f:value"[..], value.as_bytes()),
                (&b"f:doubled"[..], doubled.as_bytes()),
            ];
            encode_row(&mut buf, id.as_bytes(), cells.into_iter());
        }
        client.mutate_rows_ts(table.as_bytes(), (to - from) as i32, &buf, 1)?;
        from = to;
    }
    let rate = rows as f64 / started.elapsed().as_secs_f64();
    let n = count(client, table)?;
    anyhow::ensure!(n == rows, "{table}: {n} rows of {rows}");
    Ok(rate)
}

fn weir(client: &mut HbaseClient, addr: &str, rows: u64) -> anyhow::Result<f64> {
    let table = "bench_hbase_weir";
    fresh(client, table)?;
    let elapsed = common::run_to_end(&format!(
        "name: bench-hbase\nbatch_interval: 10ms\n\
         source:\n  generator: {{ partitions: 4, keys: 1000, rate: 0, total: {rows}, max_records_per_partition: 25000 }}\n\
         pipeline:\n  - map: {{ id: \"CAST(value AS STRING)\", doubled: \"value * 2\" }}\n\
         sink:\n  hbase: {{ thrift: \"{addr}\", table: {table}, family: f, row_key: id }}\n"
    ))?;
    let n = count(client, table)?;
    anyhow::ensure!(n == rows, "{table}: {n} rows of {rows}");
    Ok(rows as f64 / elapsed.as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    weir_executor::allocator::keep_freed_memory();
    let addr = std::env::var("WEIR_HBASE_THRIFT")
        .map_err(|_| anyhow::anyhow!("set WEIR_HBASE_THRIFT (deploy/dev/hbase.sh start)"))?;
    let rows: u64 = std::env::var("WEIR_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400_000);
    let mut client = HbaseClient::connect(&addr, Duration::from_secs(120))?;
    // Twice each, alternating: the second pair runs on a warmed-up region
    // server.
    let mut runs = Vec::new();
    for _ in 0..2 {
        runs.push((bulk(&mut client, rows)?, weir(&mut client, &addr, rows)?));
    }
    let (bulk, weir) = runs[1];
    println!("| path | rows | rows/s | against the client's bulk path |");
    println!("|---|---:|---:|---:|");
    println!(
        "| `mutateRowsTs`, 5 000 rows a call, one connection (client) | {rows} | {bulk:.0} | |"
    );
    println!(
        "| Weir sink (4 partitions) | {rows} | {weir:.0} | {:.0} % |",
        weir / bulk * 100.0
    );
    for table in ["bench_hbase_client", "bench_hbase_weir"] {
        client.disable_table(table.as_bytes())?;
        client.delete_table(table.as_bytes())?;
    }
    Ok(())
}
