//! Custom operators on a real cluster: a driver, one stock `weir-executor`
//! and one `weir-executor-redact` (examples/custom-operator, registering
//! `redact@1`).
//!
//! - A spec using an operator no live executor has is refused at submit
//!   (`FailedPrecondition`) naming the operator and what each executor has.
//! - `weir local` refuses a spec with custom steps.
//! - With the custom executor up, a job using `redact@1` runs to the end
//!   with exact, masked output, and the stock executor gets none of its
//!   tasks (the job is never deployed there, it owns no partition of it).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use weir_tests::cluster::LocalCluster;
use weir_tests::{binary, latest_by_key, read_file_sink};

const KEYS: u64 = 37;
const TOTAL: u64 = 60_000;

fn spec(dir: &Path, name: &str, version: &str) -> String {
    spec_at_rate(dir, name, version, 0)
}

fn spec_at_rate(dir: &Path, name: &str, version: &str, rate: u64) -> String {
    let path = dir.join(format!("{name}.yaml"));
    fs::write(
        &path,
        format!(
            "name: {name}\nbatch_interval: 200ms\nstate_partitions: 4\n\
             source:\n  generator: {{ partitions: 3, keys: {KEYS}, rate: {rate}, total: {TOTAL}, max_records_per_partition: 4000 }}\n\
             pipeline:\n  - custom: {{ name: redact, version: {version}, config: {{ column: key, keep: 2, mask: \"#\" }} }}\n  \
             - key_by: key\n  - aggregate: {{ count: {{}}, total: {{ sum: value }} }}\n\
             sink:\n  file: {{ path: {} }}\n",
            dir.join(format!("out-{name}")).display()
        ),
    )
    .unwrap();
    path.to_string_lossy().into_owned()
}

/// Waits until `weir cluster` lists `id` alive with `operators`.
fn wait_executor(c: &LocalCluster, id: &str, operators: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(v) = c.weir_json(&["cluster"]) {
            let found = v["executors"].as_array().into_iter().flatten().any(|e| {
                e["id"] == id
                    && e["health"] == "alive"
                    && e["operators"] == serde_json::json!(operators)
            });
            if found {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "executor {id} did not register with {operators:?}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn jobs_with_custom_operators_run_only_where_the_operators_are() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 1, 2);
    c.executors[1].binary = "weir-executor-redact".into();
    c.start_driver(1);
    c.start_executor(1);
    c.wait_leader(Duration::from_secs(20));
    wait_executor(&c, "exec-1", &[]);

    // Only the stock executor is up: refused, naming what is missing.
    let redacted = spec(dir.path(), "redacted", "1");
    let e = c.weir_json(&["submit", &redacted]).unwrap_err();
    assert!(
        e.contains(
            "job redacted uses custom operator redact@1 that no live executor has; \
             live executors: exec-1 (no custom operators)"
        ),
        "{e}"
    );
    assert!(
        c.weir_json(&["status", "redacted"]).is_err(),
        "a refused job must not exist"
    );

    // `weir local` has no custom operators.
    let out = Command::new(binary("weir"))
        .args(["local", &redacted, "--state-dir"])
        .arg(dir.path().join("local"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("job redacted uses custom operators (redact@1); `weir local` runs only Weir's built-in steps"),
        "{stderr}"
    );

    // The custom executor joins: the job runs, on it alone.
    c.start_executor(2);
    wait_executor(&c, "exec-2", &["redact@1"]);
    // A version it does not have is still refused.
    let e = c
        .weir_json(&["submit", &spec(dir.path(), "redacted-v2", "2")])
        .unwrap_err();
    assert!(
        e.contains("uses custom operator redact@2 that no live executor has; live executors: exec-1 (no custom operators), exec-2 (redact@1)"),
        "{e}"
    );
    let r = c.weir_json(&["submit", &redacted]).unwrap();
    assert_eq!(r["verdict"], "new", "{r}");
    wait_finished(&c, "redacted");
    let want = expected();
    assert_eq!(output(dir.path(), "redacted"), want, "{}", c.logs());
    assert_eq!(want.len(), 13, "k0..k9, k1#, k2#, k3#");

    // Every state partition of the job lived on the custom executor (the
    // leader forgets a finished job's owners, so the logs tell).
    let restored = |id: &str| -> Vec<String> {
        let log = fs::read_to_string(dir.path().join(format!("{id}.log"))).unwrap_or_default();
        let mut partitions: Vec<String> = log
            .lines()
            .filter(|l| l.contains("state partition restored") && l.contains("job=redacted "))
            .filter_map(|l| l.split("partition=").nth(1))
            .filter_map(|r| r.split_whitespace().next())
            .map(|p| format!("redacted/{p}"))
            .collect();
        partitions.sort();
        partitions.dedup();
        partitions
    };
    assert_eq!(
        restored("exec-2"),
        (0..4).map(|p| format!("redacted/{p}")).collect::<Vec<_>>(),
        "{}",
        c.logs()
    );
    assert!(restored("exec-1").is_empty(), "{}", c.logs());
    let custom_log = fs::read_to_string(dir.path().join("exec-2.log")).unwrap();
    assert!(custom_log.contains("job deployed"), "{custom_log}");

    // The custom executor dies mid-job: the job waits for an executor with
    // the operator instead of failing or moving to the stock one, and
    // finishes exactly once the custom executor is back.
    let slow = spec_at_rate(dir.path(), "slow", "1", 10_000);
    c.weir_json(&["submit", &slow]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = c.weir_json(&["status", "slow"]).unwrap_or_default();
        if s["last_committed_batch"].as_u64().unwrap_or(0) >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {s}\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(50));
    }
    c.kill_executor(2);
    std::thread::sleep(Duration::from_secs(5));
    let s = c.weir_json(&["status", "slow"]).unwrap();
    assert_eq!(s["state"], "running", "{s}");
    c.start_executor(2);
    wait_finished(&c, "slow");
    assert_eq!(output(dir.path(), "slow"), want, "{}", c.logs());

    let plain_log = fs::read_to_string(dir.path().join("exec-1.log")).unwrap();
    assert!(
        !plain_log.contains("job deployed"),
        "the stock executor was given a job with a custom operator:\n{plain_log}"
    );
}

fn wait_finished(c: &LocalCluster, job: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = c.weir_json(&["status", job]).unwrap_or_default();
        if s["state"] == "finished" {
            return;
        }
        assert_ne!(s["state"], "failed", "{s}\n{}", c.logs());
        assert!(Instant::now() < deadline, "not finished: {s}\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// count and sum of `value` per masked key: k0..k9 stay as they are (two
/// characters kept), k10..k36 become k1#, k2#, k3#.
fn expected() -> BTreeMap<String, (u64, u64)> {
    let mask = |g: u64| {
        let key = format!("k{}", g % KEYS);
        let kept: String = key.chars().take(2).collect();
        kept + &"#".repeat(key.len().saturating_sub(2))
    };
    let mut want: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for g in 0..TOTAL {
        let e = want.entry(mask(g)).or_default();
        e.0 += 1;
        e.1 += g;
    }
    want
}

/// The latest count and sum per key in job `name`'s file sink.
fn output(dir: &Path, name: &str) -> BTreeMap<String, (u64, u64)> {
    let rows = read_file_sink(&dir.join(format!("out-{name}"))).unwrap();
    latest_by_key(&rows)
        .into_values()
        .map(|v| {
            (
                v["key"].as_str().unwrap().to_string(),
                (v["count"].as_u64().unwrap(), v["total"].as_u64().unwrap()),
            )
        })
        .collect()
}
