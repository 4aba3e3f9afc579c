//! The `weir` CLI as users run it: spec errors name the field, exit codes
//! tell success from failure, and a stopped job resumes where it was.

use std::fs;
use std::process::Command;
use std::time::Duration;
use weir_tests::{binary, read_file_sink, Proc};

fn weir(args: &[&str]) -> std::process::Output {
    Command::new(binary("weir")).args(args).output().unwrap()
}

#[test]
fn validate_names_the_field_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("bad.yaml");
    fs::write(
        &spec,
        "name: w\nsource:\n  generator: {}\npipeline:\n  - key_by: key\n  - window: { size: 1500ms, time: ts }\n  \
         - aggregate: { count: {} }\nsink:\n  stdout: {}\n",
    )
    .unwrap();
    let out = weir(&["validate", spec.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "pipeline[1].window.size: must be a multiple of batch_interval (1s), got 1500ms"
        ),
        "{err}"
    );

    fs::write(&spec, "name: w\nsource:\n  generator: {}\npipeline:\n  - filter: \"nope > 1\"\nsink:\n  stdout: {}\n").unwrap();
    let out = weir(&["validate", spec.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pipeline[0].filter") && err.contains("unknown column"),
        "{err}"
    );

    let out = weir(&["validate", "/nonexistent/spec.yaml"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot read job spec /nonexistent/spec.yaml"));
}

#[test]
fn examples_validate() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut checked = 0;
    let specs = fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        // The custom-operator example's spec.
        .chain([root.join("custom-operator/redact.yaml")]);
    for path in specs {
        let out = weir(&["validate", path.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        checked += 1;
    }
    assert!(checked >= 3);
}

#[test]
fn sigterm_stops_after_a_batch_and_the_job_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("job.yaml");
    let out = dir.path().join("out");
    fs::write(
        &spec,
        format!(
            "name: resume\nbatch_interval: 200ms\nstate_partitions: 2\nsource:\n  generator: {{ partitions: 2, keys: 5, rate: 20000, total: 40000 }}\n\
             pipeline:\n  - key_by: key\n  - aggregate: {{ count: {{}} }}\nsink:\n  file: {{ path: {} }}\n",
            out.display()
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let args = [
        "local",
        spec.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--exit-when-idle",
    ];
    let log = dir.path().join("weir.log");
    let mut p = Proc::start("weir local", &binary("weir"), &args, &[], &log).unwrap();
    std::thread::sleep(Duration::from_millis(700));
    let pid = p.pid().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = p.wait_timeout(Duration::from_secs(30)).unwrap();
    assert!(
        status.success(),
        "SIGTERM must stop cleanly: {status}\n{}",
        p.log_tail(20)
    );
    assert!(fs::read_to_string(&log)
        .unwrap()
        .contains("stopped; restart with the same --state-dir to resume"));
    let before = read_file_sink(&out)
        .unwrap()
        .iter()
        .map(|r| r.batch)
        .max()
        .unwrap_or(0);

    let mut p = Proc::start("weir local", &binary("weir"), &args, &[], &log).unwrap();
    let status = p.wait_timeout(Duration::from_secs(60)).unwrap();
    assert!(status.success(), "{}", p.log_tail(20));
    assert!(fs::read_to_string(&log)
        .unwrap()
        .contains("resuming from the checkpoint"));
    let rows = read_file_sink(&out).unwrap();
    assert!(rows.iter().map(|r| r.batch).max().unwrap() > before);
    let latest = weir_tests::latest_by_key(&rows);
    assert_eq!(latest.len(), 5);
    for row in latest.values() {
        assert_eq!(row["count"].as_u64(), Some(8_000));
    }
}

#[test]
fn local_snapshots_and_retains_as_its_flags_say() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("job.yaml");
    fs::write(
        &spec,
        "name: snaps\nbatch_interval: 1ms\nstate_partitions: 1\ncheckpoint_every: 1\n\
         source:\n  generator: { partitions: 1, keys: 50, rate: 0, total: 600, max_records_per_partition: 100 }\n\
         pipeline:\n  - key_by: key\n  - aggregate: { count: {} }\nsink:\n  noop: {}\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let (spec, state) = (spec.to_str().unwrap(), state.to_str().unwrap());
    let out = weir(&[
        "local",
        spec,
        "--state-dir",
        state,
        "--exit-when-idle",
        "--state-snapshot-every",
        "0",
        "--state-retain-snapshots",
        "100",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every checkpoint is a snapshot, and none is pruned: under the
    // defaults (a snapshot every 10 deltas, 2 kept) this job keeps three.
    let part = dir.path().join("state/state/snaps/aggregate/part-00000");
    let versions = |ext: &str| -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(&part)
            .unwrap_or_else(|e| panic!("{}: {e}", part.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter_map(|n| n.strip_suffix(ext).map(str::to_owned))
            .collect();
        v.sort();
        v
    };
    let (deltas, snapshots) = (versions(".delta"), versions(".snapshot"));
    // Six batches, each with a snapshot beside its delta; the deltas up to
    // the oldest snapshot kept are pruned.
    assert_eq!(snapshots.len(), 6, "snapshots {snapshots:?}");
    assert!(!deltas.is_empty(), "no deltas");
    assert!(
        deltas.iter().all(|d| snapshots.contains(d)),
        "deltas {deltas:?}, snapshots {snapshots:?}"
    );

    let out = weir(&[
        "local",
        spec,
        "--state-dir",
        state,
        "--state-retain-snapshots",
        "0",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--state-retain-snapshots"), "{stderr}");
    let out = weir(&[
        "local",
        spec,
        "--state-dir",
        state,
        "--state-snapshot-every",
        "1001",
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--state-snapshot-every"), "{stderr}");
}

/// Each class of error has its own exit status (docs/cli.md), and `--json`
/// prints the error as JSON with its class.
#[test]
fn exit_codes_tell_the_error_class() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let code = |out: &std::process::Output| out.status.code().expect("exited");

    // Usage: an unknown command (clap), an unreadable spec.
    assert_eq!(code(&weir(&["frobnicate"])), 2);
    assert_eq!(code(&weir(&["validate", "/nonexistent/spec.yaml"])), 2);

    // Invalid spec: one that does not validate, one that does not type-check.
    fs::write(
        path("bad.yaml"),
        "name: w\nsource:\n  generator: {}\nsink:\n  nowhere: {}\n",
    )
    .unwrap();
    assert_eq!(code(&weir(&["validate", &path("bad.yaml")])), 3);
    fs::write(
        path("types.yaml"),
        "name: w\nsource:\n  generator: {}\npipeline:\n  - filter: \"nope > 1\"\nsink:\n  stdout: {}\n",
    )
    .unwrap();
    assert_eq!(code(&weir(&["validate", &path("types.yaml")])), 3);
    let out = weir(&["validate", &path("types.yaml"), "--json"]);
    let err: serde_json::Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(err["class"], "invalid-spec", "{err}");
    assert_eq!(err["exit_code"], 3);
    assert!(
        err["error"].as_str().unwrap().contains("unknown column"),
        "{err}"
    );

    // Not found: a job a local state directory does not hold.
    let out = weir(&["history", "nope", "--state-dir", &path("state")]);
    assert_eq!(code(&out), 6, "{}", String::from_utf8_lossy(&out.stderr));

    // Job failed: a record overflows a BIGINT.
    fs::write(
        path("overflow.yaml"),
        "name: ovf\nbatch_interval: 100ms\nsource:\n  generator: { partitions: 1, keys: 5, rate: 0, total: 20 }\n\
         pipeline:\n  - map: { big: \"value * 9223372036854775807 * 9223372036854775807\" }\nsink:\n  noop: {}\n",
    )
    .unwrap();
    let out = weir(&[
        "local",
        &path("overflow.yaml"),
        "--exit-when-idle",
        "--state-dir",
        &path("ovf"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 8, "{stderr}");
    assert!(stderr.contains("integer overflow"), "{stderr}");

    // Refused: a change that needs a state decision, in local mode.
    fs::write(
        path("count.yaml"),
        "name: c\nbatch_interval: 100ms\nstate_partitions: 2\nsource:\n  generator: { partitions: 1, keys: 5, rate: 0, total: 20 }\n\
         pipeline:\n  - key_by: key\n  - aggregate: { count: {} }\nsink:\n  noop: {}\n",
    )
    .unwrap();
    let local = |spec: &str| {
        weir(&[
            "local",
            &path(spec),
            "--exit-when-idle",
            "--state-dir",
            &path("count"),
        ])
    };
    let out = local("count.yaml");
    assert_eq!(code(&out), 0, "{}", String::from_utf8_lossy(&out.stderr));
    let changed = fs::read_to_string(path("count.yaml"))
        .unwrap()
        .replace("key_by: key", "key_by: value");
    fs::write(path("count2.yaml"), changed).unwrap();
    let out = local("count2.yaml");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code(&out), 4, "{stderr}");
    assert!(stderr.contains("--reset-state"), "{stderr}");

    // Unreachable: no driver listens there.
    let port = weir_tests::cluster::free_port();
    let out = weir(&["list", "--drivers", &format!("127.0.0.1:{port}")]);
    assert_eq!(code(&out), 5, "{}", String::from_utf8_lossy(&out.stderr));
}

/// `weir stop --purge` deletes only the job's own directories: a job name
/// that is not one (`..`, a path) is refused before anything is touched.
#[test]
fn purge_never_leaves_the_jobs_own_directories() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("state");
    fs::create_dir_all(root.join("keep")).unwrap();
    fs::write(root.join("keep/data"), "precious").unwrap();
    for job in ["..", ".", "../state", "a/b", ".meta"] {
        let out = weir(&[
            "stop",
            "--purge",
            "--yes",
            "--state-dir",
            root.to_str().unwrap(),
            job,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{job}: {stderr}");
        assert!(stderr.contains("job name"), "{job}: {stderr}");
        assert_eq!(
            fs::read_to_string(root.join("keep/data")).unwrap(),
            "precious",
            "{job}"
        );
    }
}

/// A BIGINT `sum` that overflows fails the job with an error saying so and
/// what to do, in stage A (within one batch) and in stage B (across
/// batches), under `on_error: skip` too: it never wraps silently.
#[test]
fn an_overflowing_sum_fails_the_job() {
    let dir = tempfile::tempdir().unwrap();
    for (name, per_batch, on_error) in [
        ("within", 10, "fail"),
        ("across", 1, "fail"),
        ("skipping", 1, "skip"),
    ] {
        let spec = dir.path().join(format!("{name}.yaml"));
        fs::write(
            &spec,
            format!(
                "name: {name}\nbatch_interval: 100ms\non_error: {on_error}\nstate_partitions: 1\n\
                 source:\n  generator: {{ partitions: 1, keys: 1, rate: 0, total: 4, max_records_per_partition: {per_batch} }}\n\
                 pipeline:\n  - map: {{ key: key, big: \"value + 4611686018427387904\" }}\n  - key_by: key\n  \
                 - aggregate: {{ total: {{ sum: big }} }}\nsink:\n  noop: {{}}\n"
            ),
        )
        .unwrap();
        let out = weir(&[
            "local",
            spec.to_str().unwrap(),
            "--exit-when-idle",
            "--state-dir",
            dir.path().join(name).to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(8), "{name}: {stderr}");
        assert!(
            stderr.contains("aggregate total: the sum overflows BIGINT")
                && stderr.contains("CAST(value AS DOUBLE)"),
            "{name}: {stderr}"
        );
    }
}
