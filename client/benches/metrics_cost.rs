//! What metrics cost: the running-count job of the throughput benchmark
//! in `weir local`, with its HTTP port off, and on with a scraper reading
//! `/metrics` every 100 ms (150 times more often than Prometheus' default
//! 15 s). Runs alternate, so both sides meet the same machine; the
//! report gives each run and the medians.
//!
//!     cargo bench -p weir --bench metrics_cost
//!
//! `WEIR_BENCH_RECORDS` sets the records per run (default 1 billion),
//! `WEIR_BENCH_PAIRS` the pairs of runs (default 5).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::local::{run_job_with, HttpPort, LocalOptions};
use weir_driver::{DriverOptions, Outcome};

const JOB: &str =
    "name: bench-metrics\nbatch_interval: 10ms\nstate_partitions: 8\ncheckpoint_every: 1\n\
    pipeline:\n  - key_by: \"value % 100000\"\n  - aggregate: { count: {} }\n";

/// Scrapes `address` every `every` until `stop`; returns the scrapes and
/// the bytes read.
fn scrape(address: String, every: Duration, stop: Arc<AtomicBool>) -> (u64, u64) {
    let (mut n, mut bytes) = (0, 0);
    while !stop.load(Ordering::SeqCst) {
        if let Ok(mut s) = TcpStream::connect(&address) {
            let _ = s.write_all(
                format!("GET /metrics HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
            let mut out = Vec::new();
            if s.read_to_end(&mut out).is_ok() && out.starts_with(b"HTTP/1.1 200") {
                n += 1;
                bytes += out.len() as u64;
            }
        }
        std::thread::sleep(every);
    }
    (n, bytes)
}

/// One run; records/s and the scrapes made.
fn run(records: u64, metrics: bool) -> anyhow::Result<(f64, u64)> {
    let dir = tempfile::tempdir()?;
    let spec = weir_proto::spec::parse_spec(&format!(
        "{JOB}source:\n  generator: {{ partitions: 4, keys: 1000, rate: 0, total: {records}, max_records_per_partition: 1000000 }}\nsink:\n  noop: {{}}\n"
    ))?;
    let address = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?.to_string()
    };
    let local = LocalOptions {
        http: if metrics {
            HttpPort::At(address.clone())
        } else {
            HttpPort::Off
        },
        ..LocalOptions::default()
    };
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = metrics.then(|| {
        let stop = stop.clone();
        std::thread::spawn(move || scrape(address, Duration::from_millis(100), stop))
    });
    let shutdown = AtomicBool::new(false);
    let options = DriverOptions {
        exit_when_idle: true,
        ..Default::default()
    };
    let mut read = 0;
    let started = Instant::now();
    let outcome = run_job_with(spec, dir.path(), &local, options, &shutdown, &mut |r| {
        read += r.commit.records_in;
    })?;
    let elapsed = started.elapsed();
    stop.store(true, Ordering::SeqCst);
    let scrapes = scraper.map(|s| s.join().map_or(0, |(n, _)| n)).unwrap_or(0);
    anyhow::ensure!(
        outcome == Outcome::Finished && read == records,
        "the run did not finish"
    );
    Ok((records as f64 / elapsed.as_secs_f64(), scrapes))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    weir_executor::allocator::keep_freed_memory();
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let records = env("WEIR_BENCH_RECORDS", 1_000_000_000);
    let pairs = env("WEIR_BENCH_PAIRS", 5);
    println!("| pair | metrics off (records/s) | metrics on, scraped every 100 ms (records/s) | scrapes |");
    println!("|---:|---:|---:|---:|");
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for pair in 1..=pairs {
        // Alternate which side runs first.
        let first_on = pair % 2 == 0;
        let a = run(records, first_on)?;
        let b = run(records, !first_on)?;
        let (with, without) = if first_on { (a, b) } else { (b, a) };
        println!("| {pair} | {:.0} | {:.0} | {} |", without.0, with.0, with.1);
        off.push(without.0);
        on.push(with.0);
    }
    let (off, on) = (median(&mut off), median(&mut on));
    println!(
        "\nmedian: off {off:.0} records/s, on {on:.0} records/s: metrics cost {:.2} %",
        (off - on) / off * 100.0
    );
    Ok(())
}
