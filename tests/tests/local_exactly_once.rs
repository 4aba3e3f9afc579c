//! `weir local` killed at the worst moments of the commit protocol and at
//! random times, restarted on the same state directory each time: the file
//! sink's output must equal, per key, what the generator's definition says.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;
use weir_tests::{binary, latest_by_key, read_file_sink, Proc, Rng};

const KEYS: u64 = 37;
const TOTAL: u64 = 360_000;
const PARTITIONS: u64 = 3;

struct Job {
    dir: tempfile::TempDir,
    spec: PathBuf,
    runs: u32,
}

impl Job {
    fn new(name: &str, checkpoint_every: u32, extra: &str) -> Job {
        Job::with_partitions(name, checkpoint_every, extra, PARTITIONS, 4)
    }

    /// A job over `partitions` source partitions and `state_partitions`.
    fn with_partitions(
        name: &str,
        checkpoint_every: u32,
        extra: &str,
        partitions: u64,
        state_partitions: u32,
    ) -> Job {
        let dir = tempfile::tempdir().unwrap();
        let spec = dir.path().join("job.yaml");
        let out = dir.path().join("out");
        let pipeline = if extra.is_empty() {
            "  - key_by: key\n  - aggregate: { count: {}, total: { sum: value } }\n".to_string()
        } else {
            extra.to_string()
        };
        fs::write(
            &spec,
            format!(
                "name: {name}\nbatch_interval: 100ms\ncheckpoint_every: {checkpoint_every}\nstate_partitions: {state_partitions}\n\
                 source:\n  generator: {{ partitions: {partitions}, keys: {KEYS}, rate: 0, total: {TOTAL}, \
                 max_records_per_partition: 8000, event_time_rate: 4000 }}\n\
                 pipeline:\n{pipeline}sink:\n  file: {{ path: {} }}\n",
                out.display()
            ),
        )
        .unwrap();
        Job { dir, spec, runs: 0 }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("weir.log")
    }

    fn start(&mut self, env: &[(&str, &str)]) -> Proc {
        self.runs += 1;
        let spec = self.spec.to_string_lossy().into_owned();
        let state = self.state().to_string_lossy().into_owned();
        Proc::start(
            &format!("weir local (run {})", self.runs),
            &binary("weir"),
            &["local", &spec, "--state-dir", &state, "--exit-when-idle"],
            env,
            &self.log(),
        )
        .unwrap()
    }

    /// Runs until the crash point aborts the process; false if the job
    /// finished first (the point was never reached that often).
    fn crash_at(&mut self, point: &str) -> bool {
        let mut p = self.start(&[("WEIR_CRASH_AT", point)]);
        let status = p.wait_timeout(Duration::from_secs(120)).unwrap();
        if status.success() {
            return false;
        }
        let log = p.log_tail(30);
        assert!(
            log.contains(&format!("crash point {point}")),
            "weir local failed without reaching crash point {point}: {status}\n{log}"
        );
        true
    }

    fn finish(&mut self) {
        let mut p = self.start(&[]);
        let status = p.wait_timeout(Duration::from_secs(180)).unwrap();
        assert!(
            status.success(),
            "final run failed: {status}\n{}",
            p.log_tail(40)
        );
    }
}

/// count and sum of `value` per key, from the generator's definition.
fn expected(filter: impl Fn(u64) -> bool) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    for g in (0..TOTAL).filter(|g| filter(*g)) {
        let e = out.entry(format!("\"k{}\"", g % KEYS)).or_insert((0, 0));
        e.0 += 1;
        e.1 += g;
    }
    out
}

fn check_running_counts(job: &Job) {
    let rows = read_file_sink(&job.out()).unwrap();
    assert!(
        !rows.is_empty(),
        "no output\n{}",
        weir_tests::log_tail(&job.log(), 40)
    );
    // Within one key, counts only grow from batch to batch: a replayed batch
    // that was counted twice, or state that went backwards, shows up here.
    let mut seen: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for r in &rows {
        let key = r.value["key"].to_string();
        let count = r.value["count"].as_u64().unwrap();
        if let Some((batch, last)) = seen.get(&key) {
            assert!(
                count > *last && r.batch > *batch,
                "key {key}: count {count} in batch {} after {last} in batch {batch}",
                r.batch
            );
        }
        seen.insert(key, (r.batch, count));
    }
    let latest = latest_by_key(&rows);
    let want = expected(|_| true);
    assert_eq!(latest.len(), want.len(), "keys in output");
    for (key, (count, sum)) in &want {
        let got = &latest[key];
        assert_eq!(got["count"].as_u64(), Some(*count), "count of {key}");
        assert_eq!(got["total"].as_u64(), Some(*sum), "sum of {key}");
    }
}

#[test]
fn crashes_at_every_commit_step_keep_counts_exact() {
    let mut job = Job::new("crash-points", 1, "");
    // Each point of the protocol, at a batch in the middle of the job.
    for point in [
        "stage-a@4",
        "batch-planned@2",
        "before-planned-durable@3",
        "after-precommit@7",
        "checkpoint-write@9",
        "before-committing@1",
        "after-committing@1",
        "sink-commit@3",
        "after-committed@2",
    ] {
        assert!(
            job.crash_at(point),
            "job finished before crash point {point}"
        );
    }
    job.finish();
    check_running_counts(&job);
    let log = fs::read_to_string(job.log()).unwrap();
    assert!(log.contains("finishing the commit of a batch decided before the restart"));
    assert!(log.contains("re-running a planned batch"));
}

/// One source and one state partition: `weir local` runs each stage's
/// only task on the batch's own thread instead of a thread of its own.
/// Crashes around stage A, the pre-commit, the checkpoint and the commit
/// keep the counts exact there too.
#[test]
fn a_single_partition_job_stays_exact_through_crashes() {
    let mut job = Job::with_partitions("single", 1, "", 1, 1);
    for point in [
        "stage-a@4",
        "after-precommit@7",
        "checkpoint-write@9",
        "after-committing@2",
        "sink-commit@3",
    ] {
        assert!(
            job.crash_at(point),
            "job finished before crash point {point}"
        );
    }
    job.finish();
    check_running_counts(&job);
}

#[test]
fn random_sigkills_keep_counts_exact_with_sparse_checkpoints() {
    let seed = std::env::var("WEIR_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20261125);
    let mut rng = Rng::new(seed);
    // Checkpoints every 3 batches: recovery replays committed batches.
    let mut job = Job::new("random-kills", 3, "");
    for _ in 0..6 {
        let mut p = job.start(&[]);
        std::thread::sleep(Duration::from_millis(rng.range(150, 900)));
        if p.try_wait().unwrap().is_some() {
            break;
        }
        p.kill().unwrap();
    }
    job.finish();
    check_running_counts(&job);
    let log = fs::read_to_string(job.log()).unwrap();
    assert!(
        log.contains("replaying committed batches"),
        "seed {seed}: no replay happened"
    );
}

fn newest_files(state: &Path, ext: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![state.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut files: Vec<PathBuf> = Vec::new();
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == ext) {
                files.push(p);
            }
        }
        files.sort();
        out.extend(files.pop());
    }
    out
}

#[test]
fn corrupt_newest_checkpoint_falls_back_and_stays_exact() {
    let mut job = Job::new("corrupt", 1, "");
    assert!(job.crash_at("after-committed@6"));
    let deltas = newest_files(&job.state(), "delta");
    assert_eq!(deltas.len(), 4, "one newest delta per state partition");
    // The newest snapshots too: a small state is snapshotted often, and a
    // snapshot beside the corrupt delta would make falling back needless.
    let snapshots = newest_files(&job.state(), "snapshot");
    for path in deltas.iter().chain(&snapshots) {
        let mut bytes = fs::read(path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xff;
        fs::write(path, bytes).unwrap();
    }
    job.finish();
    check_running_counts(&job);
    let log = fs::read_to_string(job.log()).unwrap();
    assert!(
        log.contains("fell back past an unusable checkpoint"),
        "no fallback logged"
    );
    assert!(log.contains("replaying committed batches"));
}

#[test]
fn windows_are_emitted_exactly_once_across_crashes() {
    let pipeline = "  - filter: \"value % 3 <> 0\"\n  - key_by: key\n  \
                    - window: { size: 2s, slide: 1s, time: ts, watermark: 1s }\n  - aggregate: { count: {} }\n";
    let mut job = Job::new("windows", 2, pipeline);
    for point in [
        "after-precommit@9",
        "after-committing@2",
        "checkpoint-write@5",
        "sink-commit@6",
    ] {
        assert!(
            job.crash_at(point),
            "job finished before crash point {point}"
        );
    }
    job.finish();
    let rows = read_file_sink(&job.out()).unwrap();
    let mut windows = HashSet::new();
    let mut per_key: BTreeMap<String, u64> = BTreeMap::new();
    for r in &rows {
        let key = r.value["key"].to_string();
        let start = r.value["window_start"].as_i64().unwrap();
        assert_eq!(r.value["window_end"].as_i64().unwrap() - start, 2_000);
        assert!(
            windows.insert((key.clone(), start)),
            "window {key}@{start} emitted twice"
        );
        *per_key.entry(key).or_default() += r.value["count"].as_u64().unwrap();
    }
    // Every record lies in two sliding windows, and none is late: event time
    // only grows with the offsets.
    let want = expected(|g| g % 3 != 0);
    assert_eq!(per_key.len(), want.len());
    for (key, (count, _)) in &want {
        assert_eq!(per_key[key], 2 * count, "window counts of {key}");
    }
}

/// A slow source over three partitions: most batches advance only some
/// partitions. Every partition must continue where it was, across a crash.
#[test]
fn partitions_without_new_records_keep_their_position() {
    let dir = tempfile::tempdir().unwrap();
    let spec = dir.path().join("slow.yaml");
    let out = dir.path().join("out");
    let (keys, total) = (5u64, 240u64);
    fs::write(
        &spec,
        format!(
            "name: slow\nbatch_interval: 50ms\nstate_partitions: 2\n\
             source:\n  generator: {{ partitions: 3, keys: {keys}, rate: 60, total: {total} }}\n\
             pipeline:\n  - key_by: key\n  - aggregate: {{ count: {{}} }}\nsink:\n  file: {{ path: {} }}\n",
            out.display()
        ),
    )
    .unwrap();
    let state = dir.path().join("state");
    let log = dir.path().join("weir.log");
    let args = [
        "local",
        spec.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--exit-when-idle",
    ];
    let mut p = Proc::start(
        "weir local",
        &binary("weir"),
        &args,
        &[("WEIR_CRASH_AT", "after-committed@25")],
        &log,
    )
    .unwrap();
    let status = p.wait_timeout(Duration::from_secs(60)).unwrap();
    assert!(
        !status.success(),
        "the crash point was not reached\n{}",
        p.log_tail(20)
    );
    let mut p = Proc::start("weir local", &binary("weir"), &args, &[], &log).unwrap();
    let status = p.wait_timeout(Duration::from_secs(60)).unwrap();
    assert!(status.success(), "{}", p.log_tail(20));
    let latest = latest_by_key(&read_file_sink(&out).unwrap());
    for k in 0..keys {
        let want = (0..total).filter(|g| g % keys == k).count() as u64;
        assert_eq!(
            latest[&format!("\"k{k}\"")]["count"].as_u64(),
            Some(want),
            "count of k{k}"
        );
    }
}
