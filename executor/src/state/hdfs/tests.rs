//! Tests of [`HdfsBackend`]. Those marked "needs HDFS" run against the real
//! HDFS at `WEIR_HDFS_URL` (`deploy/dev/hdfs.sh start`); see
//! [`hdfs_url_or_skip`].

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdfs_native::{HdfsError, WriteOptions};

use super::*;
use crate::state::format::Entry;
use crate::state::{CheckpointFileName, PartitionCheckpoints, PartitionOptions};

/// The URL of the test HDFS, or `None` after printing a skip notice.
///
/// The single place deciding whether HDFS tests run: without `WEIR_HDFS_URL`
/// they panic when `CI=true` (CI must never silently skip them) and print a
/// notice to stderr otherwise.
fn hdfs_url_or_skip(test: &str) -> Option<String> {
    match std::env::var("WEIR_HDFS_URL") {
        Ok(url) if !url.trim().is_empty() => Some(url.trim().trim_end_matches('/').to_owned()),
        _ => {
            let how = "start it with `deploy/dev/hdfs.sh start`, then \
                       `set -a; . ~/.cache/weir/dev/hdfs.env; set +a` (scripts/test.sh does both)";
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{test} needs HDFS but WEIR_HDFS_URL is not set (CI=true): {how}");
            }
            // Straight to the stderr stream: the test harness captures
            // `eprintln!` of passing tests, and this notice must be seen.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: WEIR_HDFS_URL is not set, so this HDFS test did not run; {how}"
            );
            None
        }
    }
}

/// A backend on a fresh, unique root under `/weir-test` of the test HDFS.
struct TestRoot {
    backend: Arc<HdfsBackend>,
    root_url: String,
}

impl TestRoot {
    fn new(test: &str) -> Option<Self> {
        Self::with_options(test, HashMap::new())
    }

    fn with_options(test: &str, options: HashMap<String, String>) -> Option<Self> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = hdfs_url_or_skip(test)?;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let root_url = format!(
            "{base}/weir-test/{test}-{}-{nanos}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let backend = Arc::new(HdfsBackend::new(&root_url, options).unwrap());
        Some(TestRoot { backend, root_url })
    }

    /// Runs `f` with the raw client on the backend's runtime.
    fn raw<T, F, Fut>(&self, f: F) -> T
    where
        F: FnOnce(Client, String) -> Fut,
        Fut: Future<Output = hdfs_native::Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let fut = f(self.backend.client.clone(), self.backend.root.clone());
        match self.backend.run(Duration::from_secs(30), fut) {
            Ok(v) => v,
            Err(e) => panic!("raw HDFS call failed: {e:?}"),
        }
    }

    /// Writes `bytes` to `rel` (relative to the root) directly, without a
    /// temporary file: simulates another writer or a crashed one.
    fn raw_write(&self, rel: &str, bytes: &[u8]) {
        let bytes = Bytes::copy_from_slice(bytes);
        let rel = rel.to_owned();
        self.raw(move |client, root| async move {
            let options = WriteOptions::default().overwrite(true);
            let mut w = client.create(&format!("{root}/{rel}"), options).await?;
            w.write_bytes(bytes).await?;
            w.close().await
        })
    }

    /// All names in `rel`, including hidden ones and directories.
    fn raw_names(&self, rel: &str) -> Vec<String> {
        let rel = rel.to_owned();
        let mut names: Vec<String> = self
            .raw(move |client, root| async move {
                client.list_status(&format!("{root}/{rel}"), false).await
            })
            .into_iter()
            .map(|s| s.path.rsplit('/').next().unwrap().to_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TestRoot {
    fn drop(&mut self) {
        // Leave the files of a failed test for inspection.
        if !std::thread::panicking() {
            let _ = self.backend.run(Duration::from_secs(30), {
                let client = self.backend.client.clone();
                let root = self.backend.root.clone();
                async move { client.delete(&root, true).await }
            });
        }
    }
}

fn options(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

// ---------------------------------------------------------------- needs HDFS

#[test]
fn hdfs_backend_conforms() {
    let Some(t) = TestRoot::new("hdfs_backend_conforms") else {
        return;
    };
    crate::state::conformance::backend_conformance(t.backend.as_ref());
    assert!(
        t.backend.describe().contains(&t.root_url),
        "{}",
        t.backend.describe()
    );
}

#[test]
fn put_atomic_overwrites_and_leaves_no_temp_files() {
    let Some(t) = TestRoot::new("put_atomic_overwrites_and_leaves_no_temp_files") else {
        return;
    };
    let b = t.backend.as_ref();
    b.put_atomic("d/file", b"first version").unwrap();
    b.put_atomic("d/file", b"second").unwrap();
    assert_eq!(b.get("d/file").unwrap().as_deref(), Some(&b"second"[..]));
    let big = vec![7u8; 2 << 20];
    b.put_atomic("d/file", &big).unwrap();
    assert!(b.get("d/file").unwrap().unwrap() == big);
    assert_eq!(b.list("d").unwrap(), ["file"]);
    // Not just hidden: no temporary file is left behind at all.
    assert_eq!(t.raw_names("d"), ["file"]);
}

/// A namenode that closes files with the last block only committed (as the
/// dev MiniDFS does, `num-committed-allowed=1`) reports them short, even
/// empty, to readers until a datanode reports the block: every write must
/// read back whole the moment it returns. The report is usually quick; busy
/// threads competing with the datanode for the CPU make it late often
/// enough that a write which did not wait for it is caught.
#[test]
fn every_write_reads_back_whole_at_once() {
    let Some(t) = TestRoot::new("every_write_reads_back_whole_at_once") else {
        return;
    };
    let b = t.backend.as_ref();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed) {
                    std::hint::spin_loop();
                }
            });
        }
        let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for i in 0..100u32 {
                let bytes = vec![i as u8; 4096 + i as usize];
                let path = format!("d/f{}", i % 3);
                b.put_atomic(&path, &bytes).unwrap();
                let got = b.get(&path).unwrap().unwrap();
                assert_eq!(got.len(), bytes.len(), "put_atomic #{i}: read back short");
                assert!(got == bytes, "put_atomic #{i}: other bytes read back");

                b.write_file("out/.pending", &bytes).unwrap();
                assert!(b.rename("out/.pending", &format!("out/f{i}")).unwrap());
                let got = b.get(&format!("out/f{i}")).unwrap().unwrap();
                assert_eq!(got.len(), bytes.len(), "write_file #{i}: read back short");
            }
        }));
        stop.store(true, Ordering::Relaxed);
        if let Err(panic) = checked {
            std::panic::resume_unwind(panic);
        }
    });
}

#[test]
fn list_hides_temp_files_and_directories() {
    let Some(t) = TestRoot::new("list_hides_temp_files_and_directories") else {
        return;
    };
    let b = t.backend.as_ref();
    b.put_atomic("d/real", b"x").unwrap();
    // A writer that crashed before its rename, and a subdirectory.
    t.raw_write("d/.real.tmp-1-1", b"partial");
    b.put_atomic("d/sub/inner", b"y").unwrap();
    assert_eq!(t.raw_names("d"), [".real.tmp-1-1", "real", "sub"]);
    assert_eq!(b.list("d").unwrap(), ["real"]);
    assert_eq!(b.get("d/real").unwrap().as_deref(), Some(&b"x"[..]));
    // Listing a file is an error, not a listing of the file itself.
    let err = b.list("d/real").unwrap_err();
    assert!(matches!(err, StateError::Io { .. }), "{err}");
}

#[test]
fn sweeping_deletes_leftover_temp_files_only() {
    let Some(t) = TestRoot::new("sweeping_deletes_leftover_temp_files_only") else {
        return;
    };
    let b = t.backend.as_ref();
    b.put_atomic("d/real", b"x").unwrap();
    t.raw_write("d/.real.tmp-1-1", b"partial");
    t.raw_write("d/.other.tmp-2-7", b"partial");
    b.put_atomic("d/sub/inner", b"y").unwrap();
    assert_eq!(b.sweep_temp("d").unwrap(), 2);
    assert_eq!(t.raw_names("d"), ["real", "sub"]);
    assert_eq!(b.sweep_temp("d").unwrap(), 0);
    assert_eq!(b.sweep_temp("missing").unwrap(), 0);
}

#[test]
fn write_file_rename_and_remove_file_allow_hidden_names() {
    let Some(t) = TestRoot::new("write_file_rename_and_remove_file_allow_hidden_names") else {
        return;
    };
    let b = t.backend.as_ref();
    b.write_file("out/.a.tmp", b"first").unwrap();
    // Rewriting replaces the file.
    b.write_file("out/.a.tmp", b"second").unwrap();
    assert!(b.list("out").unwrap().is_empty());
    assert!(b.rename("out/.a.tmp", "out/a").unwrap());
    assert_eq!(b.get("out/a").unwrap().as_deref(), Some(&b"second"[..]));
    // The source is gone: a repeated rename reports it and changes nothing.
    assert!(!b.rename("out/.a.tmp", "out/a").unwrap());
    // Renaming onto an existing file replaces it.
    b.write_file("out/.a.tmp", b"third").unwrap();
    assert!(b.rename("out/.a.tmp", "out/a").unwrap());
    assert_eq!(b.get("out/a").unwrap().as_deref(), Some(&b"third"[..]));
    b.write_file("out/.b.tmp", b"").unwrap();
    b.remove_file("out/.b.tmp").unwrap();
    b.remove_file("out/.b.tmp").unwrap();
    assert_eq!(t.raw_names("out"), ["a"]);
}

#[test]
fn file_sink_on_hdfs_publishes_only_on_commit_and_is_idempotent() {
    use crate::sinks::{FileSink, Sink};
    use arrow_array::{ArrayRef, Int64Array, RecordBatch};

    let Some(t) = TestRoot::new("file_sink_on_hdfs_publishes_only_on_commit_and_is_idempotent")
    else {
        return;
    };
    let sink = FileSink::new("j", &format!("{}/out", t.root_url)).unwrap();
    let batch = RecordBatch::try_from_iter(vec![(
        "count",
        Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
    )])
    .unwrap();
    assert_eq!(
        sink.pre_commit(3, 1, std::slice::from_ref(&batch)).unwrap(),
        2
    );
    assert_eq!(t.raw_names("out"), [".batch-3-part-1.jsonl.tmp"]);
    assert!(t.backend.list("out").unwrap().is_empty());
    // A replay rewrites the same hidden file; commits are idempotent, and
    // committing a pair that wrote nothing succeeds.
    sink.pre_commit(3, 1, std::slice::from_ref(&batch)).unwrap();
    sink.commit(3, 1).unwrap();
    sink.commit(3, 1).unwrap();
    assert_eq!(sink.pre_commit(4, 0, &[]).unwrap(), 0);
    sink.commit(4, 0).unwrap();
    assert_eq!(t.raw_names("out"), ["batch-3-part-1.jsonl"]);
    assert_eq!(
        t.backend
            .get("out/batch-3-part-1.jsonl")
            .unwrap()
            .as_deref(),
        Some(&b"{\"count\":1}\n{\"count\":2}\n"[..])
    );
    // A batch replayed after its commit publishes the same bytes again.
    sink.pre_commit(3, 1, &[batch]).unwrap();
    sink.commit(3, 1).unwrap();
    assert_eq!(t.raw_names("out"), ["batch-3-part-1.jsonl"]);
    assert_eq!(
        t.backend
            .get("out/batch-3-part-1.jsonl")
            .unwrap()
            .as_deref(),
        Some(&b"{\"count\":1}\n{\"count\":2}\n"[..])
    );
}

#[test]
fn checkpoint_chain_restores_and_falls_back_past_a_corrupt_delta() {
    let Some(t) = TestRoot::new("checkpoint_chain_restores_and_falls_back_past_a_corrupt_delta")
    else {
        return;
    };
    let options = PartitionOptions {
        snapshot_every: 2,
        retain_snapshots: 2,
    };
    let backend: Arc<dyn StateBackend> = t.backend.clone();
    let mut parts = PartitionCheckpoints::new(
        backend.clone(),
        crate::state::test_writers(),
        "job",
        "agg",
        3,
        options,
    )
    .unwrap();
    let mut state: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
    let mut history = vec![state.clone()];
    for v in 1..=5u64 {
        let mut changes: Vec<Entry> = vec![
            (format!("k{v}").into_bytes(), Some(v.to_le_bytes().to_vec())),
            (b"total".to_vec(), Some(v.to_string().into_bytes())),
        ];
        if v == 4 {
            changes.push((b"k1".to_vec(), None));
        }
        for (k, val) in &changes {
            match val {
                Some(val) => state.insert(k.clone(), val.clone()),
                None => state.remove(k),
            };
        }
        parts.write_delta(v, v - 1, &changes).unwrap();
        if parts.should_snapshot(v, 0) {
            parts
                .write_snapshot(v, state.iter().map(|(k, v)| (&k[..], &v[..])))
                .unwrap();
        }
        history.push(state.clone());
    }
    let files: Vec<String> = parts.files().map(|f| f.to_string()).collect();
    assert!(
        files.iter().any(|f| f.ends_with(".snapshot")),
        "no snapshot written: {files:?}"
    );

    // A fresh instance (as after a restart) restores the newest version.
    let mut reopened = PartitionCheckpoints::new(
        backend,
        crate::state::test_writers(),
        "job",
        "agg",
        3,
        options,
    )
    .unwrap();
    let r = reopened.restore(5).unwrap();
    assert_eq!(r.version, 5);
    assert_eq!(r.entries, history[5]);
    assert!(r.skipped.is_empty(), "{:?}", r.skipped);

    // Corrupt the newest delta in place, bypassing the backend.
    let newest = CheckpointFileName::delta(5).path_in(reopened.dir());
    let mut bytes = t.backend.get(&newest).unwrap().unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    t.raw_write(&newest, &bytes);
    let r = reopened.restore(5).unwrap();
    assert_eq!(r.version, 4, "skipped: {:?}", r.skipped);
    assert_eq!(r.entries, history[4]);
    assert_eq!(r.skipped.len(), 1, "{:?}", r.skipped);
    assert!(r.skipped[0].0.ends_with(&newest), "{:?}", r.skipped);
}

/// The state files of every partition stay within the retention bound of
/// docs/hdfs.md over 1 000 batches with `checkpoint_every: 1`, run through
/// the executor's task entry points (stage A, stage B with a checkpoint and
/// pruning); a fresh executor then restores the last batch exactly.
#[test]
fn thousand_checkpointed_batches_keep_state_files_bounded() {
    use crate::runtime::{Executor, ExecutorConfig};
    use weir_proto::pb;

    let test = "thousand_checkpointed_batches_keep_state_files_bounded";
    let Some(t) = TestRoot::new(test) else {
        return;
    };
    let (keys, per_batch, batches, partitions) = (20u64, 5u64, 1000u64, 2u32);
    let out = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: j\ncheckpoint_every: 1\nstate_partitions: {partitions}\n\
         source:\n  generator: {{ partitions: 1, keys: {keys}, rate: 0 }}\n\
         pipeline:\n  - key_by: key\n  - aggregate: {{ count: {{}} }}\n\
         sink:\n  file: {{ path: \"{}\" }}\n",
        out.path().display()
    );
    let spec = weir_proto::spec::parse_spec(&yaml).unwrap();
    let record = pb::JobRecord {
        fingerprint: weir_proto::spec::fingerprint(&spec),
        spec: Some(spec),
        ..Default::default()
    };
    let backend: Arc<dyn StateBackend> = t.backend.clone();
    let config = ExecutorConfig::default();
    let options = config.checkpoints;
    let bound = (options.retain_snapshots * (options.snapshot_every + 2) + 2) as usize;
    let run_batch = |ex: &Executor, batch_id: u64, start: u64, end: u64| {
        let range = pb::OffsetRange {
            partition: 0,
            start,
            end,
        };
        ex.stage_a(&pb::StageATask {
            job: "j".into(),
            batch_id,
            range: Some(range),
            watermark_ms: i64::MIN,
            replay: false,
        })
        .unwrap();
        for partition in 0..partitions {
            ex.stage_b(&pb::StageBTask {
                job: "j".into(),
                batch_id,
                partition,
                sources: vec![range],
                watermark_ms: i64::MIN,
                checkpoint: true,
                replay: false,
            })
            .unwrap();
            ex.commit(&pb::CommitTask {
                job: "j".into(),
                batch_id,
                partition,
            })
            .unwrap();
        }
    };
    let restore_all = |ex: &Executor, target: u64| {
        for partition in 0..partitions {
            let r = ex
                .restore(&pb::RestoreTask {
                    job: "j".into(),
                    partition,
                    target_version: target,
                })
                .unwrap();
            assert_eq!(r.restored_version, target);
        }
    };

    let ex = Executor::new(config.clone(), backend.clone());
    ex.deploy(&record).unwrap();
    restore_all(&ex, 0);
    let mut most = 0;
    for b in 1..=batches {
        run_batch(&ex, b, (b - 1) * per_batch, b * per_batch);
        for partition in 0..partitions {
            let dir = format!("j/aggregate/part-{partition:05}");
            let files = backend.list(&dir).unwrap();
            assert!(
                files.len() <= bound,
                "batch {b}: {} state files in {dir} > bound {bound}: {files:?}",
                files.len()
            );
            most = most.max(files.len());
        }
    }
    // The bound is reached, not vacuous: snapshots and deltas pile up to it
    // between prunes.
    assert!(
        most > options.snapshot_every as usize,
        "at most {most} files"
    );

    // A fresh executor restores batch 1000 from HDFS; one more batch touching
    // every key once then emits the exact counts. The old one is gone first:
    // dropping it waits for its checkpoints written in the background.
    drop(ex);
    let ex = Executor::new(config, backend);
    ex.deploy(&record).unwrap();
    restore_all(&ex, batches);
    let next = batches + 1;
    let start = batches * per_batch;
    run_batch(&ex, next, start, start + keys);
    let mut counts = HashMap::new();
    for entry in std::fs::read_dir(out.path()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !name.starts_with(&format!("batch-{next}-")) {
            continue;
        }
        let text = std::fs::read_to_string(out.path().join(&name)).unwrap();
        for line in text.lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            counts.insert(
                row["key"].as_str().unwrap().to_owned(),
                row["count"].as_u64(),
            );
        }
    }
    let want = (start + keys) / keys;
    assert_eq!(counts.len(), keys as usize, "{counts:?}");
    assert!(counts.values().all(|c| *c == Some(want)), "{counts:?}");
}

#[test]
fn permission_denied_names_the_path_and_user() {
    // The test HDFS runs as the user who started it (the superuser); a
    // different user may not write into the directories it created.
    let Some(owner) = TestRoot::new("permission_denied_names_the_path_and_user") else {
        return;
    };
    owner.backend.put_atomic("locked/file", b"x").unwrap();
    let other =
        HdfsBackend::new(&owner.root_url, options(&[(OPT_USER, "weir-test-nobody")])).unwrap();
    let started = Instant::now();
    let err = other.put_atomic("locked/other", b"y").unwrap_err();
    assert!(
        matches!(err, StateError::PermissionDenied { .. }),
        "expected PermissionDenied, got {err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("locked/other"), "{msg}");
    assert!(msg.contains("weir-test-nobody"), "{msg}");
    assert!(msg.contains(&owner.root_url), "{msg}");
    // A permanent error is not retried.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Reading is allowed (0644/0755).
    assert_eq!(
        other.get("locked/file").unwrap().as_deref(),
        Some(&b"x"[..])
    );
}

#[test]
fn a_file_in_place_of_a_directory_is_reported_as_parent_missing() {
    let Some(t) = TestRoot::new("a_file_in_place_of_a_directory_is_reported_as_parent_missing")
    else {
        return;
    };
    let b = t.backend.as_ref();
    b.put_atomic("blocker", b"x").unwrap();
    let err = b.put_atomic("blocker/child", b"y").unwrap_err();
    assert!(
        matches!(err, StateError::ParentMissing { .. }),
        "expected ParentMissing, got {err}"
    );
    assert_eq!(err.path(), "blocker/child");
}

// ------------------------------------------------------- no HDFS needed

#[test]
fn unreachable_namenode_fails_fast_with_a_clear_error() {
    let url = "hdfs://127.0.0.1:1/weir/state";
    let b = HdfsBackend::new(url, HashMap::new()).unwrap();
    let started = Instant::now();
    let err = b.get("job/op/part-00000/x.delta").unwrap_err();
    let took = started.elapsed();
    eprintln!("get against {url} failed after {took:?}: {err}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(err.is_unavailable(), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(url), "{msg}");
    assert!(msg.contains("namenode address"), "{msg}");
    assert!(msg.contains("after 3 attempts"), "{msg}");
    assert_eq!(err.path(), "job/op/part-00000/x.delta");

    let started = Instant::now();
    for result in [
        b.put_atomic("a/b", b"x").map(drop),
        b.list("a").map(drop),
        b.delete("a/b"),
    ] {
        assert!(
            matches!(result, Err(StateError::Unavailable { .. })),
            "{result:?}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn a_namenode_that_never_answers_times_out() {
    // Accepts connections but never answers: hdfs-native has no timeout of
    // its own for namenode calls.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("hdfs://{}/state", listener.local_addr().unwrap());
    let b = HdfsBackend::new(
        &url,
        options(&[(OPT_CALL_TIMEOUT_MS, "300"), (OPT_ATTEMPTS, "2")]),
    )
    .unwrap();
    let started = Instant::now();
    let err = b.list("x").unwrap_err();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(matches!(err, StateError::Unavailable { .. }), "{err}");
    assert!(err.to_string().contains("no answer within"), "{err}");
    drop(listener);
}

#[test]
fn root_urls() {
    let ok = |url: &str| parse_root_url(url).unwrap();
    assert_eq!(
        ok("hdfs://nn:8020/weir/state"),
        ("hdfs://nn:8020".to_owned(), "/weir/state".to_owned())
    );
    assert_eq!(
        ok("hdfs://nn:8020/weir/state/"),
        ("hdfs://nn:8020".to_owned(), "/weir/state".to_owned())
    );
    assert_eq!(
        ok("hdfs://nn:8020"),
        ("hdfs://nn:8020".to_owned(), String::new())
    );
    assert_eq!(
        ok("hdfs://nn:8020/"),
        ("hdfs://nn:8020".to_owned(), String::new())
    );
    assert_eq!(
        ok("hdfs://ns1/s"),
        ("hdfs://ns1".to_owned(), "/s".to_owned())
    );
    assert_eq!(ok("viewfs://c/s").0, "viewfs://c");
    for bad in [
        "/local/dir",
        "file:///tmp/x",
        "s3://bucket/x",
        "hdfs:///no/authority",
        "hdfs://nn:8020/a/../b",
        "hdfs://nn:8020/a//b",
        "hdfs://nn:8020/a?x=1",
        "hdfs://user@nn:8020/a",
    ] {
        let err = HdfsBackend::new(bad, HashMap::new()).unwrap_err();
        assert!(
            matches!(err, StateError::InvalidConfig { .. }),
            "{bad}: {err}"
        );
        assert!(err.to_string().contains("hdfs://"), "{bad}: {err}");
    }
    let b = HdfsBackend::new("hdfs://nn:8020/weir/state/", HashMap::new()).unwrap();
    assert_eq!(b.url(), "hdfs://nn:8020/weir/state");
    assert_eq!(b.describe(), "HDFS at hdfs://nn:8020/weir/state");
    assert_eq!(b.absolute(&[]), "/weir/state");
    assert_eq!(b.absolute(&["a", "b"]), "/weir/state/a/b");
    let b = HdfsBackend::new("hdfs://nn:8020", HashMap::new()).unwrap();
    assert_eq!(b.absolute(&[]), "/");
    assert_eq!(b.absolute(&["a"]), "/a");
}

#[test]
fn options_are_validated() {
    let url = "hdfs://nn:8020/s";
    let b = HdfsBackend::new(
        url,
        options(&[
            (OPT_ATTEMPTS, "5"),
            (OPT_BACKOFF_MS, "10"),
            (OPT_CALL_TIMEOUT_MS, "1500"),
            (OPT_HSYNC, "false"),
            ("dfs.client.failover.max.attempts", "4"),
        ]),
    )
    .unwrap();
    assert_eq!(
        b.policy,
        Policy {
            attempts: 5,
            backoff: Duration::from_millis(10),
            call_timeout: Duration::from_millis(1500),
            hsync: false,
        }
    );
    for (key, value) in [
        (OPT_ATTEMPTS, "0"),
        (OPT_ATTEMPTS, "x"),
        (OPT_CALL_TIMEOUT_MS, "0"),
        (OPT_HSYNC, "yes"),
        ("weir.hdfs.unknown", "1"),
        // hdfs-native refuses a keytab without a principal.
        (OPT_KERBEROS_KEYTAB, "/nonexistent.keytab"),
    ] {
        let err = HdfsBackend::new(url, options(&[(key, value)])).unwrap_err();
        assert!(
            matches!(err, StateError::InvalidConfig { .. }),
            "{key}: {err}"
        );
        assert!(err.to_string().contains(key), "{err}");
    }
}

#[test]
fn client_errors_map_to_actionable_state_errors() {
    let b = HdfsBackend::new("hdfs://nn:8020/s", options(&[(OPT_USER, "alice")])).unwrap();
    let map = |err: HdfsError| b.to_state_error("put", "j/o/f", Failure::Hdfs(err), "");
    let rpc = |class: &str| HdfsError::RPCError(class.to_owned(), "message\n\tat Stack".to_owned());

    let e = map(rpc(ACCESS_CONTROL_EXCEPTION));
    assert!(
        matches!(e, StateError::PermissionDenied { ref user, .. } if user == "alice"),
        "{e}"
    );
    assert!(
        e.to_string().contains("j/o/f") && !e.to_string().contains("Stack"),
        "{e}"
    );

    let e = map(rpc(SAFE_MODE_EXCEPTION));
    assert!(matches!(e, StateError::SafeMode { .. }), "{e}");
    assert!(
        e.is_unavailable() && e.to_string().contains("safemode"),
        "{e}"
    );

    for class in [FILE_NOT_FOUND_EXCEPTION, PARENT_NOT_DIRECTORY_EXCEPTION] {
        let e = map(rpc(class));
        assert!(matches!(e, StateError::ParentMissing { .. }), "{e}");
    }
    let e = map(HdfsError::IOError(io::Error::from(
        io::ErrorKind::ConnectionRefused,
    )));
    assert!(matches!(e, StateError::Unavailable { .. }), "{e}");
    assert!(e.to_string().contains("hdfs://nn:8020/s"), "{e}");
    let e = map(rpc(STANDBY_EXCEPTION));
    assert!(matches!(e, StateError::Unavailable { .. }), "{e}");
    let e = map(HdfsError::NoSASLMechanism);
    assert!(matches!(e, StateError::PermissionDenied { .. }), "{e}");
    assert!(e.to_string().contains("KRB5CCNAME"), "{e}");
    let e = map(rpc(
        "org.apache.hadoop.hdfs.protocol.QuotaExceededException",
    ));
    assert!(matches!(e, StateError::Io { .. }), "{e}");
    assert!(e.to_string().contains("QuotaExceeded"), "{e}");

    let timed_out = b.to_state_error("get", "p", Failure::TimedOut(Duration::from_secs(1)), "");
    assert!(timed_out.is_unavailable(), "{timed_out}");

    assert!(is_transient(&Failure::Hdfs(rpc(SAFE_MODE_EXCEPTION))));
    assert!(is_transient(&Failure::TimedOut(Duration::ZERO)));
    assert!(!is_transient(&Failure::Hdfs(rpc(ACCESS_CONTROL_EXCEPTION))));
    assert!(!is_transient(&Failure::Hdfs(rpc(FILE_NOT_FOUND_EXCEPTION))));
}

#[test]
fn usable_and_droppable_inside_an_async_runtime() {
    // Blocking from an async task is discouraged, but must neither panic nor
    // deadlock, and dropping the backend there must not panic either.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let b = HdfsBackend::new("hdfs://127.0.0.1:1/x", options(&[(OPT_ATTEMPTS, "1")])).unwrap();
        assert!(b.list("a").is_err());
        drop(b);
    });
}

/// A TCP proxy in front of the namenode that can cut the network: while
/// down it closes every open connection and drops new ones at once. Only
/// namenode traffic goes through it; datanodes are reached directly.
struct NamenodeProxy {
    port: u16,
    up: Arc<std::sync::atomic::AtomicBool>,
    open: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl NamenodeProxy {
    fn start(namenode: &str) -> Self {
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let open: Arc<std::sync::Mutex<Vec<TcpStream>>> = Arc::default();
        let (namenode, state, conns) = (namenode.to_owned(), up.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if !state.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees the connection close
                }
                let Ok(server) = TcpStream::connect(&namenode) else {
                    continue;
                };
                let mut list = conns.lock().unwrap();
                list.push(client.try_clone().unwrap());
                list.push(server.try_clone().unwrap());
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        NamenodeProxy { port, up, open }
    }

    fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            for conn in self.open.lock().unwrap().drain(..) {
                let _ = conn.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// The same backend instance reports `Unavailable` while the namenode is
/// unreachable and works again, by itself, once it is back.
#[test]
fn backend_reconnects_after_the_namenode_was_unreachable() {
    let test = "backend_reconnects_after_the_namenode_was_unreachable";
    let Some(base) = hdfs_url_or_skip(test) else {
        return;
    };
    let namenode = base
        .strip_prefix("hdfs://")
        .and_then(|rest| rest.split('/').next())
        .expect("WEIR_HDFS_URL is hdfs://host:port")
        .to_owned();
    let proxy = NamenodeProxy::start(&namenode);
    let Some(t) = TestRoot::new(test) else {
        return;
    };
    let root = t.root_url.strip_prefix(&base).unwrap().to_owned();
    let b = HdfsBackend::new(
        &format!("hdfs://127.0.0.1:{}{root}", proxy.port),
        options(&[
            (OPT_ATTEMPTS, "2"),
            (OPT_BACKOFF_MS, "50"),
            (OPT_CALL_TIMEOUT_MS, "3000"),
        ]),
    )
    .unwrap();
    b.put_atomic("f", b"before").unwrap();
    proxy.set_up(false);
    for op in 0..3 {
        let err = b.put_atomic("f", b"during").unwrap_err();
        assert!(err.is_unavailable(), "write {op} during the outage: {err}");
        let err = b.get("f").unwrap_err();
        assert!(err.is_unavailable(), "read {op} during the outage: {err}");
    }
    proxy.set_up(true);
    b.put_atomic("f", b"after").unwrap();
    assert_eq!(b.get("f").unwrap().as_deref(), Some(&b"after"[..]));
    // Nothing written during the outage became visible.
    assert_eq!(t.backend.list("").unwrap(), ["f"]);
}
