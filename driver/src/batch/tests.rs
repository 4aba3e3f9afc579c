//! The batch loop against a scripted task runner: no sockets, no
//! executors; failures of a chosen class are injected at a chosen call, and
//! the published output is compared with the output of a run without
//! failures.

use super::policy::{next_step, Phase, Step};
use super::*;
use crate::metadata::SledMetadata;
use crate::submit::submit;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use weir_proto::spec::parse_spec;

/// Two batches of 20 records over two state partitions.
const SPEC: &str = "name: j
batch_interval: 10ms
state_partitions: 2
source:
  generator: { partitions: 2, keys: 5, rate: 0, total: 40, max_records_per_partition: 10 }
pipeline:
  - key_by: key
  - aggregate: { count: {} }
sink:
  noop: {}
";

const MAX_RECOVERIES: u32 = 2;

/// The task runner's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Call {
    Deploy,
    Restore,
    StageA,
    StageB,
    Commit,
}

/// An executor's effects, modelled: state per partition (version and a
/// running count), its durable checkpoints, pre-committed output and
/// published output.
#[derive(Default)]
struct World {
    /// Partition → (version, count).
    state: BTreeMap<u32, (u64, u64)>,
    /// (partition, version) → count, as checkpointed by stage B.
    checkpoints: BTreeMap<(u32, u64), u64>,
    /// (batch, partition) → count, pre-committed by stage B.
    pending: BTreeMap<(u64, u32), u64>,
    /// (batch, partition) → count, made visible by commits.
    published: BTreeMap<(u64, u32), u64>,
    /// Every call, with the batch it was for (0 for deploy and restore) and
    /// whether it failed.
    trace: Vec<(Call, u64, bool)>,
    calls: HashMap<Call, usize>,
}

/// Runs tasks on a [`World`]; the `n`-th call (from 0) of a kind fails with
/// the class given, after the call took effect on part of its tasks, as a
/// task of a failed call may have.
struct Scripted {
    faults: Vec<(Call, usize, FailureClass)>,
    world: Mutex<World>,
}

impl Scripted {
    fn new(faults: &[(Call, usize, FailureClass)]) -> Self {
        Scripted {
            faults: faults.to_vec(),
            world: Mutex::new(World::default()),
        }
    }

    /// Counts the call and says whether it is to fail.
    fn call(&self, call: Call, batch: u64) -> Option<TaskFailure> {
        let mut w = self.world.lock().unwrap();
        let n = w.calls.entry(call).or_default();
        let nth = *n;
        *n += 1;
        let fault = self
            .faults
            .iter()
            .find(|(c, i, _)| *c == call && *i == nth)
            .map(|(_, _, class)| TaskFailure {
                class: *class,
                message: format!("injected {class} failure of {call:?} call {nth}"),
            });
        w.trace.push((call, batch, fault.is_some()));
        fault
    }

    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap()
    }
}

impl TaskRunner for Scripted {
    fn deploy(&self, _: &pb::JobRecord) -> Result<(), TaskFailure> {
        self.call(Call::Deploy, 0).map_or(Ok(()), Err)
    }

    fn stage_a(&self, tasks: Vec<pb::StageATask>) -> Result<Vec<pb::StageAResult>, TaskFailure> {
        let batch = tasks.first().map_or(0, |t| t.batch_id);
        if let Some(f) = self.call(Call::StageA, batch) {
            return Err(f);
        }
        Ok(tasks
            .iter()
            .map(|t| {
                let r = t.range.unwrap_or_default();
                pb::StageAResult {
                    partition: r.partition,
                    records_in: r.end - r.start,
                    max_event_time_ms: i64::MIN,
                    ..Default::default()
                }
            })
            .collect())
    }

    fn restore(&self, tasks: Vec<pb::RestoreTask>) -> Result<Vec<pb::RestoreResult>, TaskFailure> {
        let fault = self.call(Call::Restore, 0);
        let mut w = self.world();
        let mut out = Vec::new();
        for t in &tasks {
            let count = match t.target_version {
                0 => 0,
                v => match w.checkpoints.get(&(t.partition, v)) {
                    Some(c) => *c,
                    None => {
                        return Err(TaskFailure {
                            class: FailureClass::Internal,
                            message: format!("no checkpoint {v} of partition {}", t.partition),
                        })
                    }
                },
            };
            w.state.insert(t.partition, (t.target_version, count));
            out.push(pb::RestoreResult {
                partition: t.partition,
                restored_version: t.target_version,
            });
            // A failed restore leaves the other partitions where they were.
            if fault.is_some() {
                break;
            }
        }
        fault.map_or(Ok(out), Err)
    }

    fn stage_b(&self, tasks: Vec<pb::StageBTask>) -> Result<Vec<pb::StageBResult>, TaskFailure> {
        let batch = tasks.first().map_or(0, |t| t.batch_id);
        let fault = self.call(Call::StageB, batch);
        let mut w = self.world();
        let mut out = Vec::new();
        for t in &tasks {
            let records: u64 = t
                .sources
                .iter()
                .filter(|r| r.partition % 2 == t.partition)
                .map(|r| r.end - r.start)
                .sum();
            let (version, count) = w.state.get(&t.partition).copied().unwrap_or((0, 0));
            if version + 1 != t.batch_id {
                // What an executor does: never apply a batch onto the
                // wrong state.
                return Err(TaskFailure {
                    class: FailureClass::Internal,
                    message: format!(
                        "partition {} is at version {version}, batch {} needs {}",
                        t.partition,
                        t.batch_id,
                        t.batch_id - 1
                    ),
                });
            }
            let count = count + records;
            w.state.insert(t.partition, (t.batch_id, count));
            w.checkpoints.insert((t.partition, t.batch_id), count);
            if !t.replay {
                w.pending.insert((t.batch_id, t.partition), count);
            }
            out.push(pb::StageBResult {
                partition: t.partition,
                records_out: 1,
                durable_version: t.batch_id,
                ..Default::default()
            });
            // A failed stage B applied the batch to its first partition.
            if fault.is_some() {
                break;
            }
        }
        fault.map_or(Ok(out), Err)
    }

    fn commit(&self, tasks: Vec<pb::CommitTask>) -> Result<(), TaskFailure> {
        let batch = tasks.first().map_or(0, |t| t.batch_id);
        let fault = self.call(Call::Commit, batch);
        let mut w = self.world();
        for t in &tasks {
            let key = (t.batch_id, t.partition);
            if w.published.contains_key(&key) {
                continue; // idempotent, like a sink's commit
            }
            if fault
                .as_ref()
                .is_some_and(|f| f.class == FailureClass::OutputLost)
            {
                // The transaction holding the output is gone.
                w.pending.remove(&key);
                continue;
            }
            let Some(count) = w.pending.remove(&key) else {
                return Err(TaskFailure {
                    class: FailureClass::OutputLost,
                    message: format!("no pre-committed output of {key:?}"),
                });
            };
            w.published.insert(key, count);
            // A failed commit published its first partition.
            if fault.is_some() {
                break;
            }
        }
        fault.map_or(Ok(()), Err)
    }
}

/// Runs the job to its end against a runner with `faults`.
fn run(
    faults: &[(Call, usize, FailureClass)],
) -> (Result<Outcome, DriverError>, Arc<Scripted>, pb::JobRecord) {
    let dir = tempfile::tempdir().unwrap();
    let meta = SledMetadata::open(dir.path()).unwrap();
    submit(&meta, parse_spec(SPEC).unwrap()).unwrap();
    let meta: Arc<dyn MetadataStore> = Arc::new(meta);
    let runner = Arc::new(Scripted::new(faults));
    let options = DriverOptions {
        finish_finite_sources: true,
        retry_backoff: Duration::from_millis(1),
        max_state_recoveries: MAX_RECOVERIES,
        ..Default::default()
    };
    let driver = JobDriver::new(meta.clone(), runner.clone(), "j", options).unwrap();
    let outcome = driver.run(&AtomicBool::new(false), &mut |_| {});
    let record = meta.job("j").unwrap().unwrap();
    (outcome, runner, record)
}

/// The output of a run without failures.
fn expected() -> BTreeMap<(u64, u32), u64> {
    let (outcome, runner, _) = run(&[]);
    assert_eq!(outcome.unwrap(), Outcome::Finished);
    let published = runner.world().published.clone();
    assert_eq!(
        published,
        BTreeMap::from([((1, 0), 10), ((1, 1), 10), ((2, 0), 20), ((2, 1), 20)]),
        "two batches of 10 records per partition"
    );
    published
}

/// Where a failure is injected to hit a phase: the call and its index.
/// Stage A of a stateful job runs first (while its plan becomes durable),
/// so the n-th stage-A call is batch n+1's. The reproduce phase is reached
/// through a commit whose output was lost: its stage A is call 1.
fn injection(phase: Phase, class: FailureClass) -> Vec<(Call, usize, FailureClass)> {
    match phase {
        Phase::Deploy => vec![(Call::Deploy, 0, class)],
        Phase::RestoreState => vec![(Call::Restore, 0, class)],
        Phase::Stages => vec![(Call::StageB, 0, class)],
        Phase::Commit => vec![(Call::Commit, 0, class)],
        Phase::Reproduce => vec![
            (Call::Commit, 0, FailureClass::OutputLost),
            (Call::StageA, 1, class),
        ],
    }
}

/// The calls after the first injected failure of a phase, up to the next
/// call of the failed kind, as the step requires.
fn assert_step_taken(phase: Phase, step: Step, trace: &[(Call, u64, bool)]) {
    let failed = trace
        .iter()
        .rposition(|(_, _, f)| *f)
        .expect("a failure was injected");
    let (call, _, _) = trace[failed];
    let after: Vec<Call> = trace[failed + 1..].iter().map(|t| t.0).collect();
    let next_same = after.iter().position(|c| *c == call);
    let between = &after[..next_same.unwrap_or(after.len())];
    match step {
        Step::Retry => assert!(
            next_same.is_some() && !between.contains(&Call::Restore),
            "{phase:?}: {call:?} retried without restoring state: {trace:?}"
        ),
        Step::RebuildAndRetry => {
            let retried = after
                .iter()
                .position(|c| matches!(c, Call::StageA | Call::StageB))
                .expect("the stages ran again");
            assert!(
                after[..retried].contains(&Call::Restore),
                "{phase:?}: state restored before the stages ran again: {trace:?}"
            )
        }
        Step::RerunDecided => assert_eq!(
            &after[..4],
            [Call::Restore, Call::StageA, Call::StageB, Call::Commit],
            "{phase:?}: the decided batch re-run, then committed: {trace:?}"
        ),
        Step::FailJob => assert!(after.is_empty(), "{phase:?}: nothing after: {trace:?}"),
    }
}

/// Every row of the policy table, on the batch loop: the step taken, and
/// either the same output as without failures or a failed job that
/// published nothing twice.
#[test]
fn every_row_of_the_policy_table_on_the_batch_loop() {
    let expected = expected();
    for phase in Phase::ALL {
        for class in FailureClass::ALL {
            let step = next_step(phase, class, 0, MAX_RECOVERIES);
            let (outcome, runner, record) = run(&injection(phase, class));
            let w = runner.world();
            assert_step_taken(phase, step, &w.trace);
            if step == Step::FailJob {
                match &outcome {
                    Err(DriverError::JobFailed { failure, .. }) => {
                        assert_eq!(failure.class, class, "{phase:?} {class:?}")
                    }
                    other => panic!("{phase:?} {class:?}: the job fails: {other:?}"),
                }
                assert_eq!(record.state, pb::JobState::Failed as i32);
                assert!(record.error.contains("injected"), "{}", record.error);
                for (key, count) in &w.published {
                    assert_eq!(expected.get(key), Some(count), "{phase:?} {class:?}");
                }
            } else {
                assert_eq!(
                    outcome.as_ref().ok(),
                    Some(&Outcome::Finished),
                    "{phase:?} {class:?}: {outcome:?}"
                );
                assert_eq!(w.published, expected, "{phase:?} {class:?}");
                assert_eq!(record.state, pb::JobState::Finished as i32);
            }
        }
    }
}

/// Internal failures of one operation are recovered `MAX_RECOVERIES`
/// times; the next one fails the job.
#[test]
fn recoveries_are_bounded_per_operation() {
    let expected = expected();
    for (call, phase) in [
        (Call::StageB, Phase::Stages),
        (Call::Commit, Phase::Commit),
        (Call::Restore, Phase::RestoreState),
        (Call::Deploy, Phase::Deploy),
    ] {
        let faults =
            |n: usize| -> Vec<_> { (0..n).map(|i| (call, i, FailureClass::Internal)).collect() };
        let (outcome, runner, _) = run(&faults(MAX_RECOVERIES as usize));
        assert_eq!(outcome.ok(), Some(Outcome::Finished), "{phase:?}");
        assert_eq!(runner.world().published, expected, "{phase:?}");
        let (outcome, _, record) = run(&faults(MAX_RECOVERIES as usize + 1));
        assert!(
            matches!(outcome, Err(DriverError::JobFailed { .. })),
            "{phase:?}: {outcome:?}"
        );
        assert_eq!(record.state, pb::JobState::Failed as i32, "{phase:?}");
    }
}

/// An outage is retried for as long as it lasts, whatever the bound.
#[test]
fn outages_are_retried_past_the_recovery_bound() {
    let expected = expected();
    for call in [
        Call::Deploy,
        Call::Restore,
        Call::StageA,
        Call::StageB,
        Call::Commit,
    ] {
        let faults: Vec<_> = (0..8).map(|i| (call, i, FailureClass::External)).collect();
        let (outcome, runner, record) = run(&faults);
        assert_eq!(outcome.ok(), Some(Outcome::Finished), "{call:?}");
        assert_eq!(runner.world().published, expected, "{call:?}");
        assert_eq!(record.state, pb::JobState::Finished as i32);
    }
}

/// Executors that never come: every call fails as an outside error.
struct NoExecutors;

impl TaskRunner for NoExecutors {
    fn deploy(&self, _: &pb::JobRecord) -> Result<(), TaskFailure> {
        Err(TaskFailure {
            class: FailureClass::External,
            message: "no live executor has registered within 10s".into(),
        })
    }
    fn stage_a(&self, _: Vec<pb::StageATask>) -> Result<Vec<pb::StageAResult>, TaskFailure> {
        unreachable!("nothing is deployed")
    }
    fn restore(&self, _: Vec<pb::RestoreTask>) -> Result<Vec<pb::RestoreResult>, TaskFailure> {
        unreachable!("nothing is deployed")
    }
    fn stage_b(&self, _: Vec<pb::StageBTask>) -> Result<Vec<pb::StageBResult>, TaskFailure> {
        unreachable!("nothing is deployed")
    }
    fn commit(&self, _: Vec<pb::CommitTask>) -> Result<(), TaskFailure> {
        unreachable!("nothing is deployed")
    }
}

/// A driver told to stop (its replica stopped leading) while it waits
/// out an outage leaves the job running for the next driver: it is not
/// recorded as failed, and it shows as degraded meanwhile.
#[test]
fn stopping_while_retrying_an_outage_does_not_fail_the_job() {
    let dir = tempfile::tempdir().unwrap();
    let meta = SledMetadata::open(dir.path()).unwrap();
    submit(&meta, parse_spec(SPEC).unwrap()).unwrap();
    let meta: Arc<dyn MetadataStore> = Arc::new(meta);
    let health = JobHealthBoard::default();
    let options = DriverOptions {
        retry_backoff: Duration::from_millis(20),
        health: health.clone(),
        ..Default::default()
    };
    let driver = JobDriver::new(meta.clone(), Arc::new(NoExecutors), "j", options).unwrap();
    let shutdown = Arc::new(AtomicBool::new(false));
    let stop = shutdown.clone();
    let stopper = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        stop.store(true, Ordering::SeqCst);
    });
    let outcome = driver.run(&shutdown, &mut |_| {});
    stopper.join().unwrap();
    assert_eq!(outcome.ok(), Some(Outcome::Stopped));
    let record = meta.job("j").unwrap().unwrap();
    assert_eq!(record.state, pb::JobState::Running as i32, "{record:?}");
    let degraded = health.get("j").and_then(|h| h.degraded).unwrap();
    assert!(degraded.reason.contains("no live executor"), "{degraded:?}");
}
