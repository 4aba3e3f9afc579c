//! Distributed execution figures on real processes on loopback (one driver):
//! running-count throughput with 1, 2 and 3 executors; per-batch protocol
//! overhead at a 100 ms interval (batches whose task work is negligible:
//! planning, launch, shuffle round trips and the three Raft commits); and the
//! time from an executor's SIGKILL to the next committed batch.
//!
//!     cargo bench -p weir-tests --bench executors
//!
//! `WEIR_BENCH_RECORDS` (default 20 million), `WEIR_BENCH_KILLS` (default
//! 20), `WEIR_BENCH_KEYS` (state size for the kill test, default 1 million),
//! `WEIR_BENCH_PARTS` (default `throughput,overhead,kills`; `tls` compares a
//! plaintext cluster with a TLS one, alternating, `WEIR_BENCH_ROUNDS` times,
//! default 3), `WEIR_BENCH_DIR` (keep every process's log and data under
//! this directory).

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};
use weir_tests::cluster::LocalCluster;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len().max(1) as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn spec(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(format!("{name}.yaml"));
    fs::write(&path, format!("name: {name}\n{body}sink:\n  noop: {{}}\n")).expect("write spec");
    path.to_string_lossy().into_owned()
}

fn status(c: &LocalCluster, job: &str) -> serde_json::Value {
    c.weir_json(&["status", job]).unwrap_or_default()
}

fn wait_finished(c: &LocalCluster, job: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while status(c, job)["state"] != "finished" {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{job} did not finish\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A fresh work directory, kept (logs included) under `WEIR_BENCH_DIR`
/// when that is set.
fn work_dir() -> anyhow::Result<tempfile::TempDir> {
    Ok(match std::env::var_os("WEIR_BENCH_DIR") {
        Some(root) => {
            fs::create_dir_all(&root)?;
            let mut dir = tempfile::tempdir_in(root)?;
            dir.disable_cleanup(true);
            eprintln!("work dir (kept): {}", dir.path().display());
            dir
        }
        None => tempfile::tempdir()?,
    })
}

/// The running count: 6 partitions, checkpoints every batch, `records`
/// records as fast as they come.
fn throughput_spec(dir: &Path, records: u64) -> String {
    spec(
        dir,
        "throughput",
        &format!(
            "batch_interval: 10ms\nstate_partitions: 6\ncheckpoint_every: 1\nsource:\n  generator: {{ partitions: 6, rate: 0, total: {records}, max_records_per_partition: 500000 }}\n\
             pipeline:\n  - key_by: \"value % 100000\"\n  - aggregate: {{ count: {{}} }}\n"
        ),
    )
}

/// Batches with negligible task work at a 100 ms interval, for the
/// leader's per-batch overhead.
fn overhead_spec(dir: &Path) -> String {
    spec(
        dir,
        "overhead",
        "batch_interval: 100ms\nstate_partitions: 6\nsource:\n  generator: { partitions: 3, keys: 100, rate: 300, total: 30000 }\n\
         pipeline:\n  - key_by: key\n  - aggregate: { count: {} }\n",
    )
}

/// A started cluster of one driver and `executors` executors, with TLS on
/// every port or plaintext.
fn cluster(dir: &Path, executors: usize, tls: bool) -> LocalCluster {
    let mut c = if tls {
        LocalCluster::secure(dir, 1, executors)
    } else {
        LocalCluster::new(dir, 1, executors)
    };
    c.start_all();
    c.wait_leader(Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    c
}

/// Running-count throughput over three executors (records/s) and the
/// leader's per-batch overhead at a 100 ms interval (p50, p99 in ms), on
/// one cluster.
fn tls_round(records: u64, tls: bool) -> anyhow::Result<(f64, f64, f64)> {
    let dir = work_dir()?;
    let c = cluster(dir.path(), 3, tls);
    let s = throughput_spec(dir.path(), records);
    let t = Instant::now();
    c.weir_json(&["submit", &s]).map_err(anyhow::Error::msg)?;
    wait_finished(&c, "throughput")?;
    let rate = records as f64 / t.elapsed().as_secs_f64();
    let s = overhead_spec(dir.path());
    c.weir_json(&["submit", &s]).map_err(anyhow::Error::msg)?;
    std::thread::sleep(Duration::from_secs(25));
    let live = status(&c, "overhead");
    let ms = |q: &str| live["overhead_ms"][q].as_f64().unwrap_or(f64::NAN);
    Ok((rate, ms("p50"), ms("p99")))
}

fn main() -> anyhow::Result<()> {
    let records = env("WEIR_BENCH_RECORDS", 20_000_000);
    let kills = env("WEIR_BENCH_KILLS", 20) as usize;
    let keys = env("WEIR_BENCH_KEYS", 1_000_000);
    let parts =
        std::env::var("WEIR_BENCH_PARTS").unwrap_or_else(|_| "throughput,overhead,kills".into());
    let part = |name: &str| parts.split(',').any(|p| p.trim() == name);
    println!("| measure | value |");
    println!("|---|---|");
    if part("tls") {
        for round in 1..=env("WEIR_BENCH_ROUNDS", 3) {
            for tls in [false, true] {
                let (rate, p50, p99) = tls_round(records, tls)?;
                let mode = if tls { "TLS" } else { "plaintext" };
                println!("| round {round}, {mode}: running count, 3 executors, {records} records | {rate:.0} records/s |");
                println!("| round {round}, {mode}: per-batch overhead at 100 ms, 3 executors | p50 {p50:.2} ms, p99 {p99:.2} ms |");
            }
        }
    }
    for executors in (1..=3).filter(|_| part("throughput")) {
        let dir = work_dir()?;
        let c = cluster(dir.path(), executors, false);
        let s = throughput_spec(dir.path(), records);
        let t = Instant::now();
        c.weir_json(&["submit", &s]).map_err(anyhow::Error::msg)?;
        wait_finished(&c, "throughput")?;
        let secs = t.elapsed().as_secs_f64();
        println!("| running count, {executors} executor(s), {records} records | {:.0} records/s ({secs:.1} s) |", records as f64 / secs);
    }

    let dir = work_dir()?;
    let mut c = cluster(dir.path(), 3, false);
    if part("overhead") {
        let s = overhead_spec(dir.path());
        c.weir_json(&["submit", &s]).map_err(anyhow::Error::msg)?;
        std::thread::sleep(Duration::from_secs(25));
        // The leader's own figure: wall time minus the executors' task work.
        let live = status(&c, "overhead");
        println!(
        "| per-batch scheduling overhead (planning + launch + commit, task work excluded) at 100 ms interval, 3 executors ({} batches) | p50 {:.2} ms, p99 {:.2} ms |",
        live["overhead_ms"]["batches"], live["overhead_ms"]["p50"].as_f64().unwrap_or(f64::NAN), live["overhead_ms"]["p99"].as_f64().unwrap_or(f64::NAN)
    );
        let batches = c
            .weir_json(&["batches", "overhead", "--limit", "100"])
            .map_err(anyhow::Error::msg)?;
        let mut d: Vec<Duration> = batches
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b["duration_ms"].as_u64())
            .map(Duration::from_millis)
            .collect();
        d.sort();
        println!(
        "| whole batch (task work included) at 100 ms interval, 3 executors ({} batches) | p50 {} ms, p99 {} ms |",
        d.len(),
        percentile(&d, 0.5).as_millis(),
        percentile(&d, 0.99).as_millis()
    );
    }
    if part("kills") {
        let s = spec(
        dir.path(),
        "kills",
        &format!(
            "batch_interval: 200ms\nstate_partitions: 6\ncheckpoint_every: 5\nsource:\n  generator: {{ partitions: 3, keys: {keys}, rate: 30000, max_records_per_partition: 20000 }}\n\
             pipeline:\n  - key_by: key\n  - aggregate: {{ count: {{}} }}\n"
        ),
    );
        c.weir_json(&["submit", &s]).map_err(anyhow::Error::msg)?;
        let committed = |c: &LocalCluster| {
            status(c, "kills")["last_committed_batch"]
                .as_u64()
                .unwrap_or(0)
        };
        // Let every key exist in state before the first kill.
        let warm = Instant::now();
        while status(&c, "kills")["totals"]["records_in"]
            .as_u64()
            .unwrap_or(0)
            < keys
        {
            anyhow::ensure!(
                warm.elapsed() < Duration::from_secs(300),
                "state did not reach {keys} keys\n{}",
                c.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut recovery = Vec::new();
        for round in 0..kills {
            let victim = round % 3 + 1;
            let at = committed(&c);
            let t = Instant::now();
            c.kill_executor(victim);
            while committed(&c) <= at + 1 {
                anyhow::ensure!(
                    t.elapsed() < Duration::from_secs(120),
                    "no recovery\n{}",
                    c.logs()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            recovery.push(t.elapsed());
            c.start_executor(victim);
            // Settle before the next kill: the restarted executor has taken
            // its share of partitions back and batches run on time again.
            let settle = Instant::now();
            let victim_id = format!("exec-{victim}");
            loop {
                let s = status(&c, "kills");
                let back = s["partitions"]
                    .as_array()
                    .is_some_and(|p| p.iter().any(|o| o["executor_id"] == victim_id.as_str()));
                if back && s["scheduling_delay_ms"].as_u64() == Some(0) {
                    break;
                }
                anyhow::ensure!(
                    settle.elapsed() < Duration::from_secs(120),
                    "{victim_id} did not get partitions back: {s}\n{}",
                    c.logs()
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        recovery.sort();
        println!(
        "| executor SIGKILL → next committed batch, {keys} keys, {kills} kills | p50 {:.2} s, p99 {:.2} s, max {:.2} s |",
        percentile(&recovery, 0.5).as_secs_f64(),
        percentile(&recovery, 0.99).as_secs_f64(),
        recovery.last().copied().unwrap_or_default().as_secs_f64()
    );
    }
    Ok(())
}
