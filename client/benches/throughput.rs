//! Whole-process throughput of `weir local` on the generator with a `noop`
//! sink: records/s and per-batch p50/p99 duration for the three reference
//! jobs of docs/benchmarks.md.
//!
//!     cargo bench -p weir --bench throughput [-- JOB...]
//!
//! `WEIR_BENCH_RECORDS` sets the records per job (default 200 million).

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use weir::local::run_job;
use weir_driver::{DriverOptions, Outcome};

const JOBS: [(&str, &str); 3] = [
    (
        "stateless",
        "pipeline:\n  - map: { key: \"value % 10000\" }\n  - filter: \"value % 2 = 0\"\n",
    ),
    (
        "running-count",
        "checkpoint_every: 1\npipeline:\n  - key_by: \"value % 100000\"\n  - aggregate: { count: {} }\n",
    ),
    (
        "sliding-window",
        "pipeline:\n  - key_by: \"value % 1000\"\n  - window: { size: 10s, slide: 5s, time: ts, watermark: 10s }\n  - aggregate: { count: {} }\n",
    ),
];

fn spec(name: &str, body: &str, records: u64) -> String {
    format!(
        "name: bench-{name}\nbatch_interval: 10ms\nstate_partitions: 8\n{body}\
         source:\n  generator: {{ partitions: 4, keys: 1000, rate: 0, total: {records}, max_records_per_partition: 1000000 }}\n\
         sink:\n  noop: {{}}\n"
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    // As `weir local` and `weir-executor` do.
    weir_executor::allocator::keep_freed_memory();
    let records: u64 = std::env::var("WEIR_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000_000);
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    println!("| job | records | seconds | records/s | batches | batch p50 | batch p99 |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, body) in JOBS {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == name) {
            continue;
        }
        let dir = tempfile::tempdir()?;
        let spec = weir_proto::spec::parse_spec(&spec(name, body, records))?;
        let mut durations = Vec::new();
        let mut records_in = 0;
        let shutdown = AtomicBool::new(false);
        let options = DriverOptions {
            exit_when_idle: true,
            ..Default::default()
        };
        let started = Instant::now();
        let outcome = run_job(spec, dir.path(), options, &shutdown, &mut |r| {
            durations.push(r.duration);
            records_in += r.commit.records_in;
        })?;
        let elapsed = started.elapsed();
        anyhow::ensure!(outcome == Outcome::Finished, "{name}: did not finish");
        anyhow::ensure!(
            records_in == records,
            "{name}: read {records_in} of {records} records"
        );
        durations.sort();
        println!(
            "| {name} | {records} | {:.2} | {:.0} | {} | {} ms | {} ms |",
            elapsed.as_secs_f64(),
            records as f64 / elapsed.as_secs_f64(),
            durations.len(),
            percentile(&durations, 0.5).as_millis(),
            percentile(&durations, 0.99).as_millis(),
        );
    }
    Ok(())
}
