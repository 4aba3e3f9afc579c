//! The `weir` CLI against a real driver and executor: a spec read from
//! standard input, `--wait` on submit and stop, `status --watch`, `weir
//! spec`, YAML output, and the exit status of a job that fails while the
//! CLI waits.

use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use weir_tests::binary;
use weir_tests::cluster::LocalCluster;

/// A job that never ends: 500 records a second in 200 ms batches.
const SPEC: &str = "name: endless
batch_interval: 200ms
state_partitions: 2
source:
  generator: { partitions: 2, keys: 10, rate: 500 }
pipeline:
  - key_by: key
  - aggregate: { count: {} }
sink:
  noop: {}
";

/// A job whose first batch overflows a BIGINT.
const FAILING: &str = "name: overflow
batch_interval: 200ms
source:
  generator: { partitions: 1, keys: 5, rate: 0, total: 20 }
pipeline:
  - map: { big: \"value * 9223372036854775807 * 9223372036854775807\" }
sink:
  noop: {}
";

fn weir(c: &LocalCluster, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(binary("weir"))
        .args(args)
        .args(["--drivers", &c.driver_list()])
        .args(c.client_security())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// The JSON documents of an output, one per line.
fn documents(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn ok(c: &LocalCluster, out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}\n{}\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr),
        c.logs()
    );
}

#[test]
fn submit_watch_spec_and_stop_wait_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 1, 1);
    c.start_all();
    c.wait_leader(Duration::from_secs(30));

    // A spec from standard input; --wait returns once a batch committed.
    let out = weir(
        &c,
        &["submit", "-", "--wait", "--timeout", "60s", "-o", "json"],
        Some(SPEC),
    );
    ok(&c, &out);
    let docs = documents(&out);
    assert_eq!(docs.len(), 2, "{docs:?}");
    assert_eq!(docs[0]["job"], "endless");
    assert_eq!(docs[0]["verdict"], "new");
    assert_eq!(docs[1]["state"], "running");
    assert!(
        docs[1]["last_committed_batch"].as_u64().unwrap() >= 1,
        "{docs:?}"
    );

    // The stored spec, as YAML that validates and names the job.
    let out = weir(&c, &["spec", "endless"], None);
    ok(&c, &out);
    let yaml = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(yaml.contains("batch_interval: 200ms"), "{yaml}");
    let out = weir(&c, &["validate", "-", "-o", "json"], Some(&yaml));
    ok(&c, &out);
    assert_eq!(documents(&out)[0]["job"], "endless");
    // YAML output of a status parses back to the JSON one's fields.
    let out = weir(&c, &["status", "endless", "-o", "yaml"], None);
    ok(&c, &out);
    let status: Value = serde_yaml_ng::from_str(&String::from_utf8_lossy(&out.stdout)).unwrap();
    assert_eq!(status["job"], "endless");
    assert_eq!(status["state"], "running");

    // --watch prints a status every interval; the batches only go up.
    let mut watch = Command::new(binary("weir"))
        .args([
            "status",
            "endless",
            "--watch",
            "--interval",
            "300ms",
            "-o",
            "json",
        ])
        .args(["--drivers", &c.driver_list()])
        .args(c.client_security())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let batches: Vec<u64> = (0..4)
        .map(|_| {
            let line = lines.next().expect("a status line").unwrap();
            let v: Value = serde_json::from_str(&line).unwrap();
            v["last_committed_batch"].as_u64().unwrap()
        })
        .collect();
    watch.kill().unwrap();
    watch.wait().unwrap();
    assert!(batches.windows(2).all(|w| w[0] <= w[1]), "{batches:?}");
    assert!(
        batches[3] > batches[0],
        "the job kept committing: {batches:?}"
    );

    // stop --wait returns once no batch is in flight.
    let out = weir(&c, &["stop", "endless", "--wait", "-o", "json"], None);
    ok(&c, &out);
    let docs = documents(&out);
    let last = docs.last().unwrap();
    assert_eq!(last["state"], "stopped", "{docs:?}");
    assert_eq!(last["pending_batch"], Value::Null, "{docs:?}");
    let stopped_at = last["last_committed_batch"].as_u64().unwrap();
    std::thread::sleep(Duration::from_millis(600));
    let now = c.weir_json(&["status", "endless"]).unwrap();
    assert_eq!(now["last_committed_batch"].as_u64(), Some(stopped_at));

    // A job that fails while the CLI waits: exit 8, the job's error.
    let out = weir(
        &c,
        &["submit", "-", "--wait", "--timeout", "60s"],
        Some(FAILING),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{stderr}\n{}", c.logs());
    assert!(stderr.contains("integer overflow"), "{stderr}");

    // A job that does not exist.
    let out = weir(&c, &["spec", "nope"], None);
    assert_eq!(
        out.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
