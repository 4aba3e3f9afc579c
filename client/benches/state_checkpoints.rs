//! Cost of state checkpoints, on local disk and on HDFS: throughput of the
//! running-count job (1 million keys, 10% of them touched per batch) with
//! `checkpoint_every` 1, 5 and "none", then the time to restore its
//! 1-million-key state partition. See docs/benchmarks.md.
//!
//!     cargo bench -p weir --bench state_checkpoints [-- local|hdfs|put|encode ...]
//!
//! `WEIR_LOG` sets the log filter (default `warn`).
//!
//! `put` times 40 `put_atomic` calls of a 1 KiB file on HDFS (the latency
//! floor of one checkpoint file). `encode` times encoding the snapshot of
//! the 1-million-key partition in memory, the checkpoint writer's main work
//! (a delta's entries are encoded the same way).
//!
//! The HDFS runs use `WEIR_HDFS_URL` (`deploy/dev/hdfs.sh start`); without
//! it they are left out with a notice. `WEIR_BENCH_BATCHES` sets the batches
//! per run (default 60, of 100 000 records each), `WEIR_BENCH_ROUNDS` how
//! many times each run is repeated (default 3; the table gives medians),
//! `WEIR_BENCH_EVERY` which runs are made (default `1,5,none`; one alone
//! is handy under a profiler).
//! The CPU column is the process's CPU time during the run (user and
//! system, the checkpoint writer's included): what checkpoints cost in work,
//! which wall-clock throughput on a shared machine blurs.
//! `WEIR_BENCH_STORE_PID` names a process on the same machine whose CPU time
//! during each run the "store CPU" column gives: the dev MiniDFS's
//! (`$(cat ~/.cache/weir/dev/hdfs.pid)`), which competes for the same cores;
//! its scheduling policy is printed above the table (`WEIR_HDFS_SCHED=idle
//! deploy/dev/hdfs.sh start` keeps it from preempting the job).

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weir::local::{with_local_meta, LocalRunner};
use weir_driver::{submit_with, DriverOptions, JobDriver, Outcome, SubmitOptions};
use weir_executor::keys::{encode_state_key_into, Key};
use weir_executor::operators::partition_state::PartitionState;
use weir_executor::state::format::CheckpointEncoder;
use weir_executor::state::{partition_dir, HdfsBackend, LocalBackend, StateBackend};
use weir_executor::{Executor, ExecutorConfig};
use weir_proto::pb;

const KEYS: u64 = 1_000_000;
const PER_BATCH: u64 = 100_000;

/// `checkpoint_every` of the three runs; "none" is the longest interval a
/// spec may ask for (`max_checkpoint_every`), longer than the run, so no
/// batch but the last checkpoints.
const INTERVALS: [(&str, u32); 3] = [("1", 1), ("5", 5), ("none", NONE)];
const NONE: u32 = weir_proto::spec::limits::MAX_CHECKPOINT_EVERY;

fn spec_yaml(checkpoint_every: u32, total: u64) -> String {
    format!(
        "name: ckpt\nbatch_interval: 1ms\nstate_partitions: 1\ncheckpoint_every: {checkpoint_every}\n\
         source:\n  generator: {{ partitions: 1, keys: {KEYS}, rate: 0, total: {total}, \
         max_records_per_partition: {PER_BATCH} }}\n\
         pipeline:\n  - key_by: key\n  - aggregate: {{ count: {{}} }}\nsink:\n  noop: {{}}\n"
    )
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Run {
    seconds: f64,
    p50: Duration,
    p99: Duration,
    /// CPU time of the whole process (the checkpoint writer's included).
    process_cpu: f64,
    /// CPU time of the `WEIR_BENCH_STORE_PID` process, if set.
    store_cpu: Option<f64>,
}

/// CPU seconds (user and system) of process `pid` so far, from
/// `/proc/<pid>/stat`; `None` if it cannot be read.
fn pid_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3 on:
    // utime and stime are fields 14 and 15, in clock ticks.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks = |i: usize| fields.get(i - 3)?.parse::<f64>().ok();
    // SAFETY: sysconf only reads a system setting.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((ticks(14)? + ticks(15)?) / per_second)
}

/// The `WEIR_BENCH_STORE_PID` process, if set.
fn store_pid() -> Option<u32> {
    std::env::var("WEIR_BENCH_STORE_PID")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The scheduling policy of process `pid` (its main thread), as named in
/// `sched(7)`; see `WEIR_HDFS_SCHED` in docs/dev-services.md.
fn pid_policy(pid: u32) -> String {
    // SAFETY: sched_getscheduler only reads the policy of the given thread.
    let policy = unsafe { libc::sched_getscheduler(pid as libc::pid_t) };
    match policy {
        libc::SCHED_OTHER => "SCHED_OTHER".to_owned(),
        libc::SCHED_BATCH => "SCHED_BATCH".to_owned(),
        libc::SCHED_IDLE => "SCHED_IDLE".to_owned(),
        libc::SCHED_FIFO => "SCHED_FIFO".to_owned(),
        libc::SCHED_RR => "SCHED_RR".to_owned(),
        -1 => format!("unknown ({})", std::io::Error::last_os_error()),
        other => format!("policy {other}"),
    }
}

/// CPU seconds (user and system) of the process so far, its ended threads
/// included.
fn process_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// Runs the job to its end on `backend`, the metadata under `meta_dir`.
fn run(
    backend: Arc<dyn StateBackend>,
    meta_dir: &std::path::Path,
    yaml: &str,
    total: u64,
) -> anyhow::Result<Run> {
    let spec = weir_proto::spec::parse_spec(yaml)?;
    with_local_meta(meta_dir, |meta| {
        let name = spec.name.clone();
        submit_with(meta.as_ref(), spec, &SubmitOptions::default())?;
        let runner = Arc::new(LocalRunner::new(Executor::new(
            ExecutorConfig::default(),
            backend,
        )));
        let options = DriverOptions {
            exit_when_idle: true,
            ..Default::default()
        };
        let driver = JobDriver::new(meta, runner, &name, options)?;
        let mut durations = Vec::new();
        let mut records = 0;
        let cpu_before = process_cpu_seconds();
        let store_before = store_pid().and_then(pid_cpu_seconds);
        let started = Instant::now();
        let outcome = driver.run(&AtomicBool::new(false), &mut |r| {
            durations.push(r.duration);
            records += r.commit.records_in;
        })?;
        let seconds = started.elapsed().as_secs_f64();
        let process_cpu = process_cpu_seconds() - cpu_before;
        let store_cpu = store_pid()
            .and_then(pid_cpu_seconds)
            .zip(store_before)
            .map(|(after, before)| after - before);
        anyhow::ensure!(outcome == Outcome::Finished, "the job did not finish");
        anyhow::ensure!(records == total, "read {records} of {total} records");
        durations.sort();
        Ok(Run {
            seconds,
            p50: percentile(&durations, 0.5),
            p99: percentile(&durations, 0.99),
            process_cpu,
            store_cpu,
        })
    })
}

/// Restores partition 0 of the job at `target` on a fresh executor over
/// `backend`; returns the time and the keys restored.
fn restore(
    backend: Arc<dyn StateBackend>,
    yaml: &str,
    target: u64,
) -> anyhow::Result<(Duration, u64)> {
    let spec = weir_proto::spec::parse_spec(yaml)?;
    let record = pb::JobRecord {
        fingerprint: weir_proto::spec::fingerprint(&spec),
        spec: Some(spec),
        ..Default::default()
    };
    let executor = Executor::new(ExecutorConfig::default(), backend);
    executor.deploy(&record)?;
    let started = Instant::now();
    let result = executor.restore(&pb::RestoreTask {
        job: "ckpt".into(),
        partition: 0,
        target_version: target,
    })?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        result.restored_version > 0,
        "nothing restored (version {})",
        result.restored_version
    );
    Ok((elapsed, result.restored_version))
}

/// The size in bytes of the newest snapshot of partition 0.
fn newest_snapshot_len(backend: &dyn StateBackend) -> anyhow::Result<usize> {
    let dir = partition_dir("ckpt", "aggregate", 0)?;
    let newest = (backend.list(&dir)?.into_iter())
        .filter(|name| name.ends_with(".snapshot"))
        .max()
        .ok_or_else(|| anyhow::anyhow!("no snapshot in {dir}"))?;
    let bytes = (backend.get(&format!("{dir}/{newest}"))?)
        .ok_or_else(|| anyhow::anyhow!("{dir}/{newest} is listed but gone"))?;
    Ok(bytes.len())
}

/// Times encoding the snapshot of a running count's partition of 1 million
/// keys (`k0` to `k999999`, as the generator names them) into a reused
/// buffer: nanoseconds per entry, best and median of 20 rounds.
fn encode_speed() -> anyhow::Result<()> {
    const ROUNDS: usize = 20;
    let entries = (0..KEYS).map(|k| {
        let mut key = Vec::new();
        encode_state_key_into(&(Key::Str(format!("k{k}").into()), 0), &mut key);
        // A count of 1 to 13 in the compact slot layout: an empty raw-slot
        // mask, then the count's zigzag varint (twice the count).
        (key, vec![0, 2 * (1 + (k % 13) as u8)])
    });
    let state = PartitionState::restore(1, entries, 1).map_err(anyhow::Error::msg)?;
    let frozen = state.frozen();
    let capacity = state.snapshot_size_hint();
    let (mut buf, mut times) = (Vec::new(), Vec::with_capacity(ROUNDS));
    for _ in 0..ROUNDS {
        let mut file =
            CheckpointEncoder::snapshot_into(std::mem::take(&mut buf), "bench", 1, capacity);
        let started = Instant::now();
        frozen.encode_into(&mut file)?;
        buf = file.finish();
        times.push(started.elapsed());
    }
    times.sort();
    let per_entry = |d: Duration| d.as_secs_f64() * 1e9 / KEYS as f64;
    println!(
        "encode a {KEYS}-key snapshot ({} bytes): best {:.1} ns, median {:.1} ns per entry ({ROUNDS} rounds)",
        buf.len(),
        per_entry(times[0]),
        per_entry(percentile(&times, 0.5)),
    );
    Ok(())
}

/// Times `put_atomic` of a 1 KiB file on HDFS: p50, p90 and max.
fn put_latency(url: &str) -> anyhow::Result<()> {
    let backend = HdfsBackend::new(url, HashMap::new())?;
    let mut times = Vec::new();
    for i in 0..40 {
        let started = Instant::now();
        backend.put_atomic(&format!("f{}", i % 4), &[i as u8; 1024])?;
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "put_atomic of 1 KiB on {url}: p50 {} ms, p90 {} ms, max {} ms (40 calls)",
        percentile(&times, 0.5).as_millis(),
        percentile(&times, 0.9).as_millis(),
        times.last().copied().unwrap_or_default().as_millis()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // As `weir local` and `weir-executor` do.
    weir_executor::allocator::keep_freed_memory();
    // WEIR_LOG=weir_executor::runtime=debug shows each stage-B task's phases.
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let batches: u64 = std::env::var("WEIR_BENCH_BATCHES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let total = batches * PER_BATCH;
    let wanted: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let hdfs = std::env::var("WEIR_HDFS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    if let Some(url) = hdfs.as_deref() {
        if wanted.is_empty() || wanted.iter().any(|w| w == "put") {
            put_latency(&format!(
                "{}/weir-bench/put-{}-{nanos}",
                url.trim_end_matches('/'),
                std::process::id()
            ))?;
        }
    }
    if wanted.is_empty() || wanted.iter().any(|w| w == "encode") {
        encode_speed()?;
    }
    if !wanted.is_empty() && !wanted.iter().any(|w| w == "local" || w == "hdfs") {
        return Ok(());
    }
    let every = std::env::var("WEIR_BENCH_EVERY").unwrap_or_else(|_| "1,5,none".into());
    let intervals: Vec<(&str, u32)> = INTERVALS
        .into_iter()
        .filter(|(label, _)| every.split(',').any(|e| e.trim() == *label))
        .collect();
    anyhow::ensure!(
        !intervals.is_empty(),
        "WEIR_BENCH_EVERY={every} names none of the runs 1, 5 and none"
    );
    let rounds: usize = std::env::var("WEIR_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    println!("{rounds} rounds; medians, \"vs none\" paired within each round (range in brackets)");
    if let Some(pid) = store_pid() {
        println!("store process {pid}: {}", pid_policy(pid));
    }
    println!();
    println!("| store | checkpoint_every | records | seconds | records/s | vs none | batch p50 | batch p99 | CPU | store CPU |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut restores = Vec::new();
    for store in ["local", "hdfs"] {
        if !wanted.is_empty() && !wanted.iter().any(|w| w == store) {
            continue;
        }
        if store == "hdfs" && hdfs.is_none() {
            eprintln!("hdfs runs left out: WEIR_HDFS_URL is not set (deploy/dev/hdfs.sh start)");
            continue;
        }
        // Rounds alternate the intervals, so that each "vs none" compares
        // runs next to each other in time; the table gives medians.
        let mut runs: Vec<(&str, Vec<Run>)> =
            intervals.iter().map(|(l, _)| (*l, Vec::new())).collect();
        for round in 0..rounds {
            for (i, (label, every)) in intervals.iter().enumerate() {
                let dir = tempfile::tempdir()?;
                let backend: Arc<dyn StateBackend> = match store {
                    "local" => Arc::new(LocalBackend::new(dir.path().join("state"))),
                    _ => Arc::new(HdfsBackend::new(
                        &format!(
                            "{}/weir-bench/ckpt-{}-{nanos}-{round}-{label}",
                            hdfs.as_deref().unwrap_or_default().trim_end_matches('/'),
                            std::process::id()
                        ),
                        HashMap::new(),
                    )?),
                };
                let yaml = spec_yaml(*every, total);
                let r = run(backend.clone(), &dir.path().join("meta"), &yaml, total)?;
                runs[i].1.push(r);
                if *every != NONE && round + 1 == rounds {
                    // Newest version on disk: the last batch with checkpoint_every 1,
                    // the last multiple of 5 otherwise.
                    let target = batches - batches % u64::from(*every);
                    let (elapsed, version) = restore(backend.clone(), &yaml, target)?;
                    let snapshot = newest_snapshot_len(backend.as_ref())?;
                    restores.push((store, *label, version, elapsed, snapshot));
                }
            }
        }
        let none: Vec<f64> = runs
            .iter()
            .find(|(l, _)| *l == "none")
            .map(|(_, r)| r.iter().map(|r| r.seconds).collect())
            .unwrap_or_default();
        for (label, rs) in &runs {
            let seconds = median(rs.iter().map(|r| r.seconds).collect());
            let versus: Vec<f64> = rs
                .iter()
                .zip(&none)
                .map(|(r, none)| (none / r.seconds - 1.0) * 100.0)
                .collect();
            let spread = if versus.is_empty() {
                "(no run without checkpoints)".to_owned()
            } else {
                format!(
                    "{:+.1}% ({:+.1} to {:+.1})",
                    median(versus.clone()),
                    versus.iter().copied().fold(f64::INFINITY, f64::min),
                    versus.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                )
            };
            let store_cpu: Vec<f64> = rs.iter().filter_map(|r| r.store_cpu).collect();
            let store_cpu = if store_cpu.is_empty() {
                "-".to_owned()
            } else {
                format!("{:.2} s", median(store_cpu))
            };
            println!(
                "| {store} | {label} | {total} | {seconds:.2} | {:.0} | {spread} | {} ms | {} ms | {:.2} s | {store_cpu} |",
                total as f64 / seconds,
                median(rs.iter().map(|r| r.p50.as_secs_f64() * 1e3).collect()).round(),
                median(rs.iter().map(|r| r.p99.as_secs_f64() * 1e3).collect()).round(),
                median(rs.iter().map(|r| r.process_cpu).collect()),
            );
        }
    }
    println!();
    println!("| store | checkpoint_every | keys | restored version | restore | newest snapshot |");
    println!("|---|---|---:|---:|---:|---:|");
    for (store, label, version, elapsed, snapshot) in restores {
        let keys = KEYS.min(version * PER_BATCH);
        println!(
            "| {store} | {label} | {keys} | {version} | {:.2} s | {:.1} MB, {:.1} bytes per key |",
            elapsed.as_secs_f64(),
            snapshot as f64 / 1e6,
            snapshot as f64 / keys as f64,
        );
    }
    Ok(())
}
