//! The HTTP ports of a secured 3-driver / 3-executor cluster: probes need
//! nothing, `/metrics` needs the viewer role over TLS, and what every
//! process exports, parsed by an independent Prometheus text parser,
//! agrees with `weir status` and the committed output:
//!
//! - the leader's totals equal the job's status and the generator's
//!   records, and its batch histograms count every committed batch once;
//! - followers export the same Raft term and no job figures;
//! - executors are registered and time their tasks and checkpoints;
//! - source lag rises while the job is stopped and falls back to 0 once
//!   it has caught up with its (finite) source.

use std::fs;
use std::time::{Duration, Instant};
use weir_tests::cluster::{assert_generator_counts, LocalCluster};
use weir_tests::http::{get, parse_metrics, sample};
use weir_tests::pki::{OPERATOR_TOKEN, VIEWER_TOKEN};

const KEYS: u64 = 20;
const TOTAL: u64 = 24_000;

/// The leader's scrape.
fn scrape(c: &LocalCluster, address: &str) -> prometheus_parse::Scrape {
    let ca = c.pki.as_ref().map(|p| p.ca());
    let r = get(address, "/metrics", Some(VIEWER_TOKEN), ca.as_deref()).unwrap();
    assert_eq!(r.status, 200, "{}: {}", address, r.body);
    parse_metrics(&r.body).unwrap_or_else(|e| panic!("{address}: {e}\n{}", r.body))
}

fn lag(c: &LocalCluster, leader: &str) -> f64 {
    let s = scrape(c, leader);
    s.samples
        .iter()
        .filter(|x| x.metric == "weir_source_lag_records" && x.labels.get("job") == Some("metered"))
        .map(|x| match x.value {
            prometheus_parse::Value::Gauge(v) => v,
            _ => panic!("lag is a gauge"),
        })
        .sum()
}

/// Polls `f` every 200 ms until it holds, for at most `within`.
fn eventually(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "{what} within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_process_exports_metrics_that_match_status_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::secure(dir.path(), 3, 3);
    c.start_all();
    let leader_id = c.wait_leader(Duration::from_secs(30));
    let ca = c.pki.as_ref().unwrap().ca();
    let ca = Some(ca.as_str());
    let all: Vec<String> = c
        .drivers
        .iter()
        .map(|d| d.http.clone())
        .chain(c.executors.iter().map(|e| e.http.clone()))
        .collect();

    // Probes need nothing; metrics need a token with a role, over TLS.
    for address in &all {
        let r = get(address, "/healthz", None, ca).unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "ok\n"), "{address}");
        eventually(Duration::from_secs(30), &format!("{address} ready"), || {
            get(address, "/readyz", None, ca).is_ok_and(|r| r.status == 200)
        });
        let r = get(address, "/metrics", None, ca).unwrap();
        assert_eq!(r.status, 401, "{address} without a token: {}", r.body);
        let r = get(address, "/metrics", Some("not-a-token"), ca).unwrap();
        assert_eq!(r.status, 401, "{address} with a bad token: {}", r.body);
        let r = get(address, "/metrics", Some(OPERATOR_TOKEN), ca).unwrap();
        assert_eq!(r.status, 200, "{address}: an operator is a viewer too");
        assert!(
            get(address, "/metrics", Some(VIEWER_TOKEN), None).is_err_and(|e| !e.is_empty())
                || get(address, "/metrics", Some(VIEWER_TOKEN), None)
                    .is_ok_and(|r| r.status != 200),
            "{address} must not answer plaintext"
        );
    }

    let out = dir.path().join("out");
    let spec = dir.path().join("metered.yaml");
    fs::write(
        &spec,
        format!(
            "name: metered\nbatch_interval: 200ms\nstate_partitions: 4\ncheckpoint_every: 2\n\
             source:\n  generator: {{ partitions: 3, keys: {KEYS}, rate: 2000, total: {TOTAL} }}\n\
             pipeline:\n  - key_by: key\n  - aggregate: {{ count: {{}} }}\n\
             sink:\n  file: {{ path: {} }}\n",
            out.display()
        ),
    )
    .unwrap();
    let spec = spec.to_string_lossy().into_owned();
    c.weir_json(&["submit", &spec]).unwrap();
    c.wait_committed_beyond("metered", 3, Duration::from_secs(60));

    // Executors: registered, and between them they ran and timed every
    // stage-A task of the running job (its series go when it is
    // undeployed) and wrote checkpoints.
    let batches = c.committed("metered");
    let mut stage_a = 0.0;
    let mut checkpoint_bytes = 0.0;
    for e in &c.executors {
        let x = scrape(&c, &e.http);
        assert_eq!(
            sample(&x, "weir_executor_registered", &[]),
            Some(1.0),
            "{}",
            e.id
        );
        stage_a += x
            .samples
            .iter()
            .filter(|s| s.metric == "weir_task_seconds" && s.labels.get("task") == Some("stage_a"))
            .filter_map(|s| match &s.value {
                prometheus_parse::Value::Histogram(h) => h.last().map(|b| b.count),
                _ => None,
            })
            .sum::<f64>();
        checkpoint_bytes += sample(&x, "weir_checkpoint_bytes_total", &[]).unwrap_or(0.0);
    }
    assert!(
        stage_a >= (batches * 3) as f64,
        "{stage_a} stage-A tasks timed for {batches} batches of 3 partitions"
    );
    assert!(checkpoint_bytes > 0.0, "checkpoint bytes counted");

    // Stopped, the job falls behind its source: lag rises.
    c.weir_json(&["stop", "metered"]).unwrap();
    let leader = c.drivers[(leader_id - 1) as usize].http.clone();
    eventually(
        Duration::from_secs(20),
        "the stopped job's lag listed",
        || lag(&c, &leader) > 0.0,
    );
    let before = lag(&c, &leader);
    std::thread::sleep(Duration::from_secs(2));
    let after = lag(&c, &leader);
    assert!(
        after > before + 1_000.0,
        "lag rises while stopped at 2000 records/s: {before} then {after}"
    );
    let status = c.weir_json(&["status", "metered"]).unwrap();
    assert_eq!(status["state"], "stopped");
    assert!(
        status["lag"]["records"].as_f64().unwrap() >= before,
        "weir status shows the lag: {status}"
    );

    // Resumed, it catches up with its finite source: lag falls to 0.
    c.weir_json(&["submit", &spec]).unwrap();
    c.wait_finished("metered", Duration::from_secs(120));
    eventually(Duration::from_secs(20), "lag back to 0", || {
        lag(&c, &leader) == 0.0
    });
    assert_generator_counts(&out, KEYS, TOTAL);

    // The leader's figures equal weir status and the generator's records.
    let status = c.weir_json(&["status", "metered"]).unwrap();
    let batches = status["totals"]["batches"].as_u64().unwrap();
    assert_eq!(
        status["totals"]["records_in"].as_u64(),
        Some(TOTAL),
        "{status}"
    );
    assert_eq!(status["lag"]["records"].as_u64(), Some(0), "{status}");
    let m = scrape(&c, &leader);
    let job = [("job", "metered")];
    assert_eq!(
        sample(&m, "weir_records_in_total", &job),
        Some(TOTAL as f64)
    );
    assert_eq!(
        sample(&m, "weir_batches_committed_total", &job),
        Some(batches as f64)
    );
    assert_eq!(
        sample(&m, "weir_last_committed_batch", &job),
        status["last_committed_batch"].as_f64()
    );
    assert_eq!(
        sample(&m, "weir_records_out_total", &job),
        status["totals"]["records_out"].as_f64()
    );
    assert_eq!(
        sample(
            &m,
            "weir_job_state",
            &[("job", "metered"), ("state", "finished")]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &m,
            "weir_job_state",
            &[("job", "metered"), ("state", "running")]
        ),
        Some(0.0)
    );
    // Every committed batch was timed once, in every phase (one leader).
    let count = |phase: &str| {
        m.samples
            .iter()
            .find(|s| {
                s.metric == "weir_batch_phase_seconds"
                    && s.labels.get("job") == Some("metered")
                    && s.labels.get("phase") == Some(phase)
            })
            .and_then(|s| match &s.value {
                prometheus_parse::Value::Histogram(h) => h.last().map(|b| b.count),
                _ => None,
            })
    };
    for phase in [
        "plan",
        "stage_a",
        "shuffle",
        "stage_b",
        "checkpoint",
        "commit",
    ] {
        assert_eq!(count(phase), Some(batches as f64), "phase {phase}");
    }
    assert_eq!(sample(&m, "weir_raft_is_leader", &[]), Some(1.0));
    assert_eq!(
        sample(&m, "weir_executors", &[("state", "alive")]),
        Some(3.0)
    );
    let term = sample(&m, "weir_raft_term", &[]).unwrap();

    // Followers: the same term, the leader named, no job figures.
    for d in c.drivers.iter().filter(|d| d.id != leader_id) {
        let f = scrape(&c, &d.http);
        assert_eq!(
            sample(&f, "weir_raft_term", &[]),
            Some(term),
            "driver {}",
            d.id
        );
        assert_eq!(sample(&f, "weir_raft_is_leader", &[]), Some(0.0));
        assert_eq!(
            sample(&f, "weir_raft_leader_id", &[]),
            Some(leader_id as f64)
        );
        assert_eq!(sample(&f, "weir_records_in_total", &job), None);
    }
}

/// `weir local` serves its metrics where `--http-listen` says, and a Kafka
/// source's lag (the last stable offset past the committed end) is
/// exported per partition: above 0 while the job works through a backlog
/// in small batches, then 0, with every record read. Its `report_group`
/// then holds the committed end offsets, for monitoring tools.
#[test]
fn weir_local_exports_kafka_lag_until_caught_up() {
    use weir_tests::kafka::{create_topic, kafka_brokers, produce, unique_topic};
    let Some(brokers) = kafka_brokers("weir_local_exports_kafka_lag_until_caught_up") else {
        return;
    };
    let input = unique_topic("lag-in");
    let group = unique_topic("weir-monitor");
    create_topic(&brokers, &input, 3);
    let records: Vec<(i32, String, String)> = (0..3_000)
        .map(|i: i32| (i % 3, format!("k{i}"), format!("v{i}")))
        .collect();
    produce(&brokers, &input, &records);
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("lagging.yaml");
    fs::write(
        &spec,
        format!(
            "name: lagging\nbatch_interval: 500ms\n\
             source:\n  kafka: {{ brokers: \"{brokers}\", topic: {input}, start: earliest, format: text, max_records_per_partition: 50, report_group: {group} }}\n\
             sink:\n  noop: {{}}\n"
        ),
    )
    .unwrap();
    let http = format!("127.0.0.1:{}", weir_tests::cluster::free_port());
    let log = dir.path().join("weir.log");
    let state = dir.path().join("state");
    let _job = weir_tests::Proc::start(
        "weir local",
        &weir_tests::binary("weir"),
        &[
            "local",
            &spec.to_string_lossy(),
            "--state-dir",
            &state.to_string_lossy(),
            "--http-listen",
            &http,
        ],
        &[],
        &log,
    )
    .unwrap();
    let metrics = || {
        get(&http, "/metrics", None, None)
            .ok()
            .filter(|r| r.status == 200)
            .and_then(|r| parse_metrics(&r.body).ok())
    };
    let lag = |m: &prometheus_parse::Scrape| -> Vec<f64> {
        (0..3)
            .filter_map(|p| {
                sample(
                    m,
                    "weir_source_lag_records",
                    &[("job", "lagging"), ("partition", &p.to_string())],
                )
            })
            .collect()
    };
    // 1000 records a partition at 50 a batch, 2 batches a second.
    eventually(Duration::from_secs(30), "a backlog shown as lag", || {
        metrics().is_some_and(|m| {
            let l = lag(&m);
            l.len() == 3 && l.iter().sum::<f64>() > 1_000.0
        })
    });
    let r = get(&http, "/readyz", None, None).unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    eventually(
        Duration::from_secs(60),
        "caught up: lag 0, every record read",
        || {
            metrics().is_some_and(|m| {
                lag(&m) == [0.0, 0.0, 0.0]
                    && sample(&m, "weir_records_in_total", &[("job", "lagging")]) == Some(3_000.0)
            })
        },
    );
    let reporter = weir_kafka::GroupReporter::new(&brokers, &input, &group, []).unwrap();
    eventually(
        Duration::from_secs(20),
        "the report group at the end offsets",
        || {
            reporter
                .committed(&[0, 1, 2])
                .is_ok_and(|c| c == [(0, Some(1_000)), (1, Some(1_000)), (2, Some(1_000))])
        },
    );
    let printed = fs::read_to_string(&log).unwrap();
    assert!(
        printed.contains(&format!("web UI and metrics at http://{http}")),
        "weir local prints where its UI is:\n{printed}"
    );
}
