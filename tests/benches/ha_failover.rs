//! Driver high availability figures, on real processes on loopback:
//! metadata commit latency (a replicated, durable proposal per call) and
//! failover time (leader SIGKILL → first batch committed by the new
//! leader) over repeated kills.
//!
//!     cargo bench -p weir-tests --bench ha_failover
//!
//! `WEIR_BENCH_KILLS` (default 20) and `WEIR_BENCH_COMMITS` (default 500).

use std::time::{Duration, Instant};
use weir_proto::pb;
use weir_proto::pb::weir_client_client::WeirClientClient;
use weir_tests::cluster::LocalCluster;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len().max(1) as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

fn summary(name: &str, mut v: Vec<Duration>) {
    v.sort();
    println!(
        "| {name} | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
        v.len(),
        percentile(&v, 0.5).as_secs_f64() * 1e3,
        percentile(&v, 0.99).as_secs_f64() * 1e3,
        v.last().copied().unwrap_or_default().as_secs_f64() * 1e3
    );
}

async fn leader_client(c: &LocalCluster) -> WeirClientClient<tonic::transport::Channel> {
    let id = c.wait_leader(Duration::from_secs(30));
    let address = &c.drivers[(id - 1) as usize].address;
    WeirClientClient::connect(format!("http://{address}"))
        .await
        .expect("leader reachable")
}

async fn committed(c: &LocalCluster) -> Option<u64> {
    for d in &c.drivers {
        if d.proc.is_none() {
            continue;
        }
        let Ok(mut client) = WeirClientClient::connect(format!("http://{}", d.address)).await
        else {
            continue;
        };
        if let Ok(s) = client
            .status(pb::StatusRequest {
                job: "bench".into(),
            })
            .await
        {
            return Some(s.into_inner().last_committed_batch);
        }
    }
    None
}

fn main() -> anyhow::Result<()> {
    let kills: usize = std::env::var("WEIR_BENCH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let commits: usize = std::env::var("WEIR_BENCH_COMMITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(500);
    let dir = tempfile::tempdir()?;
    let mut c = LocalCluster::new(dir.path(), 3, 1);
    c.start_all();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let spec = dir.path().join("bench.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: bench\nbatch_interval: 100ms\nstate_partitions: 4\nsource:\n  generator: {{ partitions: 2, keys: 100, rate: 20000 }}\n\
             pipeline:\n  - key_by: key\n  - aggregate: {{ count: {{}} }}\nsink:\n  file: {{ path: {} }}\n",
            dir.path().join("out").display()
        ),
    )?;
    c.wait_leader(Duration::from_secs(30));
    c.weir_json(&["submit", spec.to_str().unwrap_or_default()])
        .map_err(anyhow::Error::msg)?;

    // Commit latency: each Stop of a missing job is rejected without a
    // proposal, so use job-state proposals on a job of its own.
    let latencies = rt.block_on(async {
        let mut client = leader_client(&c).await;
        let spec = weir_proto::spec::parse_spec(
            "name: latency\nsource:\n  generator: { total: 1 }\nsink:\n  noop: {}\n",
        )
        .expect("valid spec");
        client
            .submit(pb::SubmitRequest {
                spec: Some(spec.clone()),
                ..Default::default()
            })
            .await
            .expect("submit");
        let mut out = Vec::with_capacity(commits);
        for _ in 0..commits {
            let t = Instant::now();
            // Stop proposes one replicated, fsynced state change.
            client
                .stop(pb::StopRequest {
                    job: "latency".into(),
                    purge: false,
                })
                .await
                .expect("stop");
            out.push(t.elapsed());
        }
        out
    });

    let mut detection = Vec::new();
    let mut failover = Vec::new();
    for round in 0..kills {
        let before = rt.block_on(committed(&c)).unwrap_or(0);
        // Let the job run a few batches under the current leader.
        let deadline = Instant::now() + Duration::from_secs(20);
        while rt.block_on(committed(&c)).unwrap_or(0) < before + 3 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let leader = c.wait_leader(Duration::from_secs(30));
        let at_kill = rt.block_on(committed(&c)).unwrap_or(0);
        let killed = Instant::now();
        c.kill_driver(leader);
        let mut elected = None;
        loop {
            if elected.is_none() {
                if let Ok(v) = c.weir_json(&["cluster"]) {
                    let new = v["drivers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|d| d["role"] == "leader");
                    if new {
                        elected = Some(killed.elapsed());
                    }
                }
            }
            if rt.block_on(committed(&c)).unwrap_or(0) > at_kill {
                break;
            }
            anyhow::ensure!(
                killed.elapsed() < Duration::from_secs(60),
                "round {round}: no commit after failover\n{}",
                c.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        failover.push(killed.elapsed());
        detection.push(elected.unwrap_or_else(|| killed.elapsed()));
        c.start_driver(leader);
        std::thread::sleep(Duration::from_millis(1500));
    }
    println!("| measure | samples | p50 | p99 | max |");
    println!("|---|---:|---:|---:|---:|");
    summary("metadata commit (3 drivers, fsync)", latencies);
    summary("leader elected after SIGKILL", detection);
    summary("SIGKILL → first batch committed by new leader", failover);
    Ok(())
}
