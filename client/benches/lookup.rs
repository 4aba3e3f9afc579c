//! Throughput of a Redis lookup step: records/s of `weir local` on the
//! generator with a `noop` sink, without a lookup, with every lookup a
//! cache miss (cold: each key looked up once), and with a warm cache
//! (1 000 keys, looked up again and again); and, for reference, lookups/s
//! of the client's own pipelined `HMGET`s on one connection.
//!
//!     WEIR_REDIS_URL=redis://:…@127.0.0.1:16379/0 cargo bench -p weir --bench lookup
//!
//! `WEIR_BENCH_RECORDS` sets the records per run (default 1 million).

use std::time::Instant;

mod common;

const PREFIX: &str = "weir-bench-lookup";

/// Writes a hash `{PREFIX}:k{i}` for every generator key `0..keys`.
fn fill(con: &mut redis::Connection, keys: u64) -> anyhow::Result<()> {
    for from in (0..keys).step_by(10_000) {
        let mut pipe = redis::pipe();
        for i in from..(from + 10_000).min(keys) {
            pipe.cmd("HSET")
                .arg(format!("{PREFIX}:k{i}"))
                .arg("name")
                .arg(format!("name-{i}"))
                .arg("weight")
                .arg(i)
                .ignore();
        }
        pipe.query::<()>(con)?;
    }
    Ok(())
}

/// Lookups/s of pipelined `HMGET`s of 1 000 keys each on one connection.
fn client(con: &mut redis::Connection, keys: u64) -> anyhow::Result<f64> {
    let started = Instant::now();
    for from in (0..keys).step_by(1_000) {
        let mut pipe = redis::pipe();
        for i in from..(from + 1_000).min(keys) {
            pipe.cmd("HMGET")
                .arg(format!("{PREFIX}:k{i}"))
                .arg("name")
                .arg("weight");
        }
        let got: Vec<(Option<String>, Option<i64>)> = pipe.query(con)?;
        anyhow::ensure!(got.iter().all(|(n, w)| n.is_some() && w.is_some()));
    }
    Ok(keys as f64 / started.elapsed().as_secs_f64())
}

/// Records/s of a job over `records` records of `keys` keys, with the
/// lookup step if `lookup`.
fn job(url: &str, records: u64, keys: u64, lookup: bool) -> anyhow::Result<f64> {
    let step = if lookup {
        format!(
            "  - lookup:\n      redis: {{ url: \"{url}\", key: \"'{PREFIX}:' || key\", fields: {{ name: string, weight: bigint }} }}\n      \
             cache: {{ ttl: 10m, max_entries: 100000 }}\n      on_missing: fail\n"
        )
    } else {
        String::new()
    };
    let elapsed = common::run_to_end(&format!(
        "name: bench-lookup\nbatch_interval: 10ms\n\
         source:\n  generator: {{ partitions: 4, keys: {keys}, rate: 0, total: {records}, max_records_per_partition: 50000 }}\n\
         pipeline:\n{step}  - filter: \"value >= 0\"\n\
         sink:\n  noop: {{}}\n"
    ))?;
    Ok(records as f64 / elapsed.as_secs_f64())
}

fn main() -> anyhow::Result<()> {
    weir_executor::allocator::keep_freed_memory();
    let url = std::env::var("WEIR_REDIS_URL")
        .map_err(|_| anyhow::anyhow!("set WEIR_REDIS_URL (deploy/dev/redis.sh start)"))?;
    let records: u64 = std::env::var("WEIR_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let mut con = redis::Client::open(url.as_str())?.get_connection()?;
    fill(&mut con, records)?;
    let client = client(&mut con, records)?;
    let none = job(&url, records, 1_000, false)?;
    // Every key once: every lookup goes to Redis.
    let cold = job(&url, records, records, true)?;
    // 1 000 keys: all but the first lookup of each key hit the cache.
    let warm = job(&url, records, 1_000, true)?;
    println!("| run | records | records/s |");
    println!("|---|---:|---:|");
    println!("| no lookup | {records} | {none:.0} |");
    println!("| lookup, cold cache (every key once: all misses) | {records} | {cold:.0} |");
    println!("| lookup, warm cache (1 000 keys: all hits but the first) | {records} | {warm:.0} |");
    println!("| client: pipelined `HMGET`, 1 000 a round trip, one connection | {records} | {client:.0} |");
    let mut pipe = redis::pipe();
    for from in (0..records).step_by(10_000) {
        pipe.cmd("DEL")
            .arg(
                (from..(from + 10_000).min(records))
                    .map(|i| format!("{PREFIX}:k{i}"))
                    .collect::<Vec<_>>(),
            )
            .ignore();
    }
    pipe.query::<()>(&mut con)?;
    Ok(())
}
