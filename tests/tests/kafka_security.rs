//! Kafka in production, on real processes against the dev broker's secured
//! listeners (deploy/dev/kafka.sh: SASL_SSL with SCRAM-SHA-512 on 9095, its
//! CA and user in kafka.env):
//!
//! - a Kafka → Kafka running count over SASL_SSL, reading a zstd-compressed
//!   topic and writing with zstd, exact per key, with the password given as
//!   `${env:WEIR_KAFKA_SASL_PASSWORD}` to the source and as `${file:...}`
//!   to the sink; the password's bytes are then looked
//!   for in everything the cluster wrote (data directories with the Raft
//!   log, logs, state) and in `weir spec`/`history`/`status`: never there,
//!   while the reference is;
//! - a wrong password fails the job within seconds with the broker's
//!   message instead of retrying as degraded, whether the driver's client
//!   (the source's offsets) or an executor's (the sink) is refused, and so
//!   does a secret reference an executor cannot resolve (also one that the
//!   driver can: each process resolves its own);
//! - an unknown librdkafka property, an invalid value and an unresolvable
//!   secret reference are refused at submit, by the CLI and by the driver
//!   itself, with their path.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tonic::Code;
use weir_proto::pb;
use weir_proto::pb::weir_client_client::WeirClientClient;
use weir_tests::binary;
use weir_tests::cluster::LocalCluster;
use weir_tests::kafka::{create_topic, produce_with, read_committed, secure_kafka, unique_topic};

const PARTITIONS: i32 = 4;
const KEYS: u64 = 37;

/// The spec's client settings for the SASL_SSL listener, the password as a
/// reference.
fn sasl_properties(ca: &str, user: &str, password: &str) -> String {
    format!(
        "security.protocol: SASL_SSL, sasl.mechanism: SCRAM-SHA-512, sasl.username: {user}, \
         sasl.password: '{password}', ssl.ca.location: '{ca}'"
    )
}

fn write_spec(
    dir: &Path,
    name: &str,
    brokers: &str,
    input: &str,
    output: &str,
    props: &str,
) -> PathBuf {
    let sink = format!("{props}, compression.type: zstd");
    write_spec_with(dir, name, brokers, (input, props), (output, &sink))
}

/// A running count from `input` to `output` with each side's properties.
fn write_spec_with(
    dir: &Path,
    name: &str,
    brokers: &str,
    (input, source_props): (&str, &str),
    (output, sink_props): (&str, &str),
) -> PathBuf {
    let path = dir.join(format!("{name}.yaml"));
    fs::write(
        &path,
        format!(
            "name: {name}\nbatch_interval: 200ms\nstate_partitions: 4\n\
             source:\n  kafka: {{ brokers: \"{brokers}\", topic: {input}, start: earliest, \
             max_records_per_partition: 2000, format: json, schema: {{ user: string, n: bigint }}, \
             properties: {{ {source_props} }} }}\n\
             pipeline:\n  - key_by: user\n  - aggregate: {{ count: {{}} }}\n\
             sink:\n  kafka: {{ brokers: \"{brokers}\", topic: {output}, properties: {{ {sink_props} }} }}\n"
        ),
    )
    .unwrap();
    path
}

/// `weir ARGS --drivers ...` (text output), with its exit status.
fn weir(c: &LocalCluster, args: &[&str]) -> (bool, String) {
    let out = Command::new(binary("weir"))
        .args(args)
        .args(["--drivers", &c.driver_list()])
        .args(c.client_security())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every file under `dir`, recursively.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn exactly_once_over_sasl_ssl_with_zstd_and_the_secret_kept_out() {
    let Some(k) = secure_kafka("exactly_once_over_sasl_ssl_with_zstd_and_the_secret_kept_out")
    else {
        return;
    };
    assert!(
        k.password.len() >= 16,
        "the dev broker's password is random"
    );
    let input = unique_topic("sec-in");
    let output = unique_topic("sec-out");
    // The topic stores zstd batches, and the producer sends them.
    weir_kafka::ensure_topic(
        &k.plain,
        [],
        &input,
        PARTITIONS,
        &[("compression.type", "zstd")],
    )
    .unwrap();
    create_topic(&k.plain, &output, PARTITIONS);
    let total = 24_000u64;
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    let records: Vec<(i32, String, String)> = (0..total)
        .map(|i| {
            let user = format!("u{}", i % KEYS);
            *want.entry(user.clone()).or_default() += 1;
            let v = format!("{{\"user\":\"{user}\",\"n\":{i}}}");
            ((i % PARTITIONS as u64) as i32, user, v)
        })
        .collect();
    produce_with(&k.plain, &input, &records, &[("compression.type", "zstd")]);

    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 1, 2);
    // Every process gets the password only through its environment
    // (inherited: the test has WEIR_KAFKA_SASL_PASSWORD from kafka.env)
    // and, for the sink, a file outside the cluster's directories.
    c.start_all();
    c.wait_leader(Duration::from_secs(30));
    let secrets = tempfile::tempdir().unwrap();
    let password_file = secrets.path().join("kafka-password");
    fs::write(&password_file, format!("{}\n", k.password)).unwrap();
    let reference = "${env:WEIR_KAFKA_SASL_PASSWORD}";
    let file_reference = format!("${{file:{}}}", password_file.display());
    let source_props = sasl_properties(&k.ca, &k.user, reference);
    let sink_props = format!(
        "{}, compression.type: zstd",
        sasl_properties(&k.ca, &k.user, &file_reference)
    );
    let spec = write_spec_with(
        dir.path(),
        "secure-count",
        &k.sasl_ssl,
        (&input, &source_props),
        (&output, &sink_props),
    );
    c.weir_json(&["submit", &spec.to_string_lossy()]).unwrap();

    // 24 000 records / 4 partitions / 2 000 per batch: 3 batches.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = c.weir_json(&["status", "secure-count"]).unwrap_or_default();
        assert_ne!(s["state"], "failed", "{s}\n{}", c.logs());
        if s["last_committed_batch"].as_u64().unwrap_or(0) >= 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not caught up: {s}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Exact per key: counts strictly increase (no batch published twice)
    // and the newest is the input's count.
    let mut latest: BTreeMap<String, u64> = BTreeMap::new();
    for r in read_committed(&k.plain, &output) {
        let v: serde_json::Value = serde_json::from_str(&r.value).unwrap();
        let key = v["key"].as_str().unwrap().to_string();
        let count = v["count"].as_u64().unwrap();
        if let Some(last) = latest.get(&key) {
            assert!(count > *last, "key {key}: {count} after {last}");
        }
        latest.insert(key, count);
    }
    assert_eq!(latest, want, "newest count per key\n{}", c.logs());

    // What users see holds the reference, never the password.
    let mut shown = String::new();
    for args in [
        &["spec", "secure-count"][..],
        &["history", "secure-count"],
        &["history", "secure-count", "--json"],
        &["status", "secure-count"],
        &["status", "secure-count", "--json"],
    ] {
        let (ok, text) = weir(&c, args);
        assert!(ok, "weir {args:?}: {text}");
        shown.push_str(&text);
    }
    assert!(
        shown.contains(reference) && shown.contains(&file_reference),
        "weir spec shows the references:\n{shown}"
    );
    assert!(
        !shown.contains(&k.password),
        "weir spec/history/status show the password"
    );

    let (ok, text) = weir(&c, &["stop", "secure-count"]);
    assert!(ok, "{text}");
    drop(c);
    // Every byte the cluster wrote: the driver's data directory (Raft log,
    // metadata), every process's log, the executors' state.
    let mut all = Vec::new();
    files(dir.path(), &mut all);
    let mut reference_found = false;
    for f in &all {
        let bytes = fs::read(f).unwrap();
        assert!(
            !contains(&bytes, k.password.as_bytes()),
            "the password is in {}",
            f.display()
        );
        if f.starts_with(dir.path().join("driver-1")) && contains(&bytes, reference.as_bytes()) {
            reference_found = true;
        }
    }
    assert!(
        reference_found,
        "the driver's data directory should hold the spec with the reference ({} files searched)",
        all.len()
    );
}

/// Submits `spec` and waits until the job fails; returns its error and
/// how long that took.
fn wait_failed(c: &LocalCluster, spec: &Path, job: &str) -> (String, Duration) {
    c.weir_json(&["submit", &spec.to_string_lossy()]).unwrap();
    let submitted = Instant::now();
    loop {
        let s = c.weir_json(&["status", job]).unwrap_or_default();
        if s["state"] == "failed" {
            let error = s["error"].as_str().unwrap_or_default().to_string();
            return (error, submitted.elapsed());
        }
        assert!(
            submitted.elapsed() < Duration::from_secs(60),
            "job {job} did not fail: {s}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn refused_clients_fail_the_job_with_the_reason() {
    let Some(k) = secure_kafka("refused_clients_fail_the_job_with_the_reason") else {
        return;
    };
    let input = unique_topic("sec-bad-in");
    let output = unique_topic("sec-bad-out");
    create_topic(&k.plain, &input, 2);
    create_topic(&k.plain, &output, 2);
    // Something to read, so that batches reach the sink.
    let records: Vec<(i32, String, String)> = (0..10)
        .map(|i| {
            (
                i % 2,
                format!("u{i}"),
                format!("{{\"user\":\"u{i}\",\"n\":{i}}}"),
            )
        })
        .collect();
    produce_with(&k.plain, &input, &records, &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 1, 1);
    // Only the driver has WEIR_TEST_DRIVER_ONLY_SECRET.
    c.start_driver_with(1, &[("WEIR_TEST_DRIVER_ONLY_SECRET", &k.password)]);
    c.start_executor(1);
    c.wait_leader(Duration::from_secs(30));
    let good = sasl_properties(&k.ca, &k.user, "${env:WEIR_KAFKA_SASL_PASSWORD}");
    let wrong = sasl_properties(&k.ca, &k.user, "not-the-password");
    let unset = sasl_properties(&k.ca, &k.user, "${env:WEIR_TEST_NEVER_SET_SECRET}");
    let sasl_failed = |error: &str| {
        error.contains("SASL authentication error") && error.contains("Authentication failed")
    };

    // The driver's client (offsets of the source) is refused.
    let spec = write_spec(
        dir.path(),
        "bad-source",
        &k.sasl_ssl,
        &input,
        &output,
        &wrong,
    );
    let (error, took) = wait_failed(&c, &spec, "bad-source");
    eprintln!("bad-source failed after {took:?}: {error}");
    assert!(sasl_failed(&error), "the broker's message: {error}");
    assert!(took < Duration::from_secs(15), "failed after {took:?}");

    // An executor's client (the sink's producer) is refused.
    let spec = write_spec_with(
        dir.path(),
        "bad-sink",
        &k.sasl_ssl,
        (&input, &good),
        (&output, &wrong),
    );
    let (error, took) = wait_failed(&c, &spec, "bad-sink");
    eprintln!("bad-sink failed after {took:?}: {error}");
    assert!(sasl_failed(&error), "the broker's message: {error}");
    assert!(error.contains("sink kafka topic"), "{error}");
    assert!(took < Duration::from_secs(15), "failed after {took:?}");

    // A reference the executor cannot resolve (the driver resolves only
    // the source's properties, so the submit passes).
    let spec = write_spec_with(
        dir.path(),
        "unset-sink-secret",
        &k.sasl_ssl,
        (&input, &good),
        (&output, &unset),
    );
    let (error, took) = wait_failed(&c, &spec, "unset-sink-secret");
    eprintln!("unset-sink-secret failed after {took:?}: {error}");
    assert!(
        error.contains("sink.kafka.properties.sasl.password: environment variable WEIR_TEST_NEVER_SET_SECRET (from ${env:WEIR_TEST_NEVER_SET_SECRET}) is not set in the executor's environment"),
        "{error}"
    );
    assert!(took < Duration::from_secs(15), "failed after {took:?}");

    // Each process resolves for itself: the driver lists the source's
    // offsets with its variable, the executor's consumer has none.
    let driver_only = sasl_properties(&k.ca, &k.user, "${env:WEIR_TEST_DRIVER_ONLY_SECRET}");
    let spec = write_spec_with(
        dir.path(),
        "driver-only-secret",
        &k.sasl_ssl,
        (&input, &driver_only),
        (&output, &good),
    );
    let (error, took) = wait_failed(&c, &spec, "driver-only-secret");
    eprintln!("driver-only-secret failed after {took:?}: {error}");
    assert!(
        error.contains("source.kafka.properties.sasl.password: environment variable WEIR_TEST_DRIVER_ONLY_SECRET (from ${env:WEIR_TEST_DRIVER_ONLY_SECRET}) is not set in the executor's environment"),
        "{error}"
    );
    assert!(took < Duration::from_secs(15), "failed after {took:?}");

    // Failed as the user's error, never degraded and retried.
    let log = fs::read_to_string(c.driver_log(1)).unwrap();
    assert!(!log.contains("job degraded, retrying"), "{log}");
}

#[test]
fn bad_properties_are_refused_at_submit_with_their_path() {
    // Needs no broker: nothing connects before the checks refuse the spec.
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 1, 0);
    c.start_driver(1);
    c.wait_leader(Duration::from_secs(30));
    let cases = [
        (
            "foo.bar: 1",
            "source.kafka.properties.foo.bar: is not a librdkafka property",
        ),
        (
            "security.protocol: tls",
            "source.kafka.properties.security.protocol: invalid value",
        ),
        (
            "sasl.password: '${env:WEIR_TEST_NEVER_SET_SECRET}'",
            "source.kafka.properties.sasl.password: environment variable WEIR_TEST_NEVER_SET_SECRET (from ${env:WEIR_TEST_NEVER_SET_SECRET}) is not set in the driver's environment",
        ),
    ];
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for (i, (props, want)) in cases.iter().enumerate() {
        let name = format!("bad-props-{i}");
        let spec = write_spec(dir.path(), &name, "127.0.0.1:9", "in", "out", props);
        // The CLI checks what it can without the driver's environment.
        let cli_checks = !props.contains("${env:");
        for command in ["validate", "submit"] {
            let (ok, text) = weir(&c, &[command, &spec.to_string_lossy()]);
            if cli_checks || command == "submit" {
                assert!(!ok, "weir {command} accepted {props}");
                assert!(text.contains(want), "weir {command}: {text}");
            } else {
                assert!(ok, "weir validate resolves no references: {text}");
            }
        }
        // The driver refuses it too, whoever submits it.
        let parsed = weir_proto::spec::parse_spec(&fs::read_to_string(&spec).unwrap()).unwrap();
        let address = c.drivers[0].address.clone();
        let e = runtime.block_on(async {
            let mut client = WeirClientClient::connect(format!("http://{address}"))
                .await
                .unwrap();
            client
                .submit(pb::SubmitRequest {
                    spec: Some(parsed),
                    ..Default::default()
                })
                .await
                .unwrap_err()
        });
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(want), "{}", e.message());
    }
    let (ok, text) = weir(&c, &["list"]);
    assert!(ok && !text.contains("bad-props"), "nothing stored: {text}");
}
