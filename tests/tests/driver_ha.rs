//! Three `weir-driver` replicas and executors as real processes on
//! loopback: leader kills, follower kills, quorum loss, a paused leader, and
//! a wiped replica rejoining — with the job's output exact per key.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};
use weir_tests::cluster::{assert_generator_counts, LocalCluster};

const KEYS: u64 = 23;
const PARTITIONS: u64 = 2;

fn write_spec(dir: &Path, name: &str, total: u64, rate: u64) -> String {
    let spec = dir.join(format!("{name}.yaml"));
    fs::write(
        &spec,
        format!(
            "name: {name}\nbatch_interval: 200ms\ncheckpoint_every: 2\nstate_partitions: 4\n\
             source:\n  generator: {{ partitions: {PARTITIONS}, keys: {KEYS}, rate: {rate}, total: {total}, max_records_per_partition: 5000 }}\n\
             pipeline:\n  - key_by: key\n  - aggregate: {{ count: {{}} }}\nsink:\n  file: {{ path: {} }}\n",
            dir.join(format!("{name}-out")).display()
        ),
    )
    .unwrap();
    spec.to_string_lossy().into_owned()
}

fn status(c: &LocalCluster, job: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match c.weir_json(&["status", job]) {
            Ok(v) => return v,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("status of {job}: {e}\n{}", c.logs()),
        }
    }
}

fn wait_state(c: &LocalCluster, job: &str, state: &str, timeout: Duration) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let s = status(c, job);
        if s["state"] == state {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "job {job} not {state} within {timeout:?}: {s}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn check_counts(dir: &Path, job: &str, total: u64) {
    assert_generator_counts(&dir.join(format!("{job}-out")), KEYS, total);
}

#[test]
fn leader_and_follower_kills_keep_the_job_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 3, 1);
    c.start_all();
    let leader = c.wait_leader(Duration::from_secs(20));
    let total = 120_000;
    let spec = write_spec(dir.path(), "ha", total, 20_000);
    c.weir_json(&["submit", &spec]).unwrap();
    c.wait_committed_beyond("ha", 3, Duration::from_secs(30));
    // The leader shows the job's live health and where its state lives.
    let s = status(&c, "ha");
    assert_eq!(s["health"], "healthy", "{s}");
    let owners = s["partitions"].as_array().cloned().unwrap_or_default();
    assert_eq!(owners.len(), 4, "{s}");
    for (i, p) in owners.iter().enumerate() {
        assert_eq!(p["partition"].as_u64(), Some(i as u64), "{s}");
        assert!(
            p["executor_id"].as_str().is_some_and(|id| !id.is_empty()),
            "{s}"
        );
        assert!(p["epoch"].as_u64().is_some_and(|e| e > 0), "{s}");
    }

    // The leader dies mid-run: another replica takes over.
    let before = c.committed("ha");
    let killed = Instant::now();
    c.kill_driver(leader);
    let new_leader = c.wait_leader(Duration::from_secs(20));
    assert_ne!(new_leader, leader);
    c.wait_committed_beyond("ha", before, Duration::from_secs(30));
    eprintln!(
        "failover to driver {new_leader}: next commit after {:?}",
        killed.elapsed()
    );
    // The killed replica restarts and catches up.
    c.start_driver(leader);

    // A follower dies: nothing changes for the job.
    let follower = (1..=3)
        .find(|id| *id != new_leader && *id != leader)
        .unwrap();
    c.kill_driver(follower);
    let before = c.committed("ha");
    c.wait_committed_beyond("ha", before, Duration::from_secs(30));
    c.start_driver(follower);

    wait_state(&c, "ha", "finished", Duration::from_secs(90));
    check_counts(dir.path(), "ha", total);
    // Every replica applied the same log: each reports an applied index.
    let cluster = c.weir_json(&["cluster"]).unwrap();
    let drivers = cluster["drivers"].as_array().unwrap();
    assert_eq!(drivers.len(), 3, "{cluster}");
    assert!(
        drivers.iter().all(|d| d["role"] != "unreachable"),
        "{cluster}"
    );
}

/// Every replica is armed to crash right after a batch's `committed`
/// record is handed to Raft, before it is durable (the batch's output is
/// already published); each one that dies is restarted without the crash
/// point. The leaders that take over finish those commits again, and the
/// output stays exact per key.
#[test]
fn leaders_dying_before_the_committed_record_is_durable_keep_the_job_exact() {
    run_with_leaders_crashing_at("after-committed@4", "committed");
}

/// Every replica is armed to crash after a batch's stage A ran while its
/// `planned` record was still on its way to the quorum. The next leader
/// re-runs the batch if the record became durable, or plans it again (the
/// generator's rate makes the new ranges differ) and its stage B merges
/// only the new plan's stage-A output: the output stays exact per key.
#[test]
fn leaders_dying_before_the_planned_record_is_durable_keep_the_job_exact() {
    run_with_leaders_crashing_at("before-planned-durable@5", "planned");
}

/// Runs a job on three replicas armed with `point`, restarting each one
/// that crashes there without it, until the job finishes; at least two
/// must have crashed. Checks the output per key.
fn run_with_leaders_crashing_at(point: &str, job: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 3, 1);
    for id in 1..=3 {
        c.start_driver_with(id, &[("WEIR_CRASH_AT", point)]);
    }
    c.start_executor(1);
    c.wait_leader(Duration::from_secs(20));
    let total = 120_000;
    let spec = write_spec(dir.path(), job, total, 20_000);
    c.weir_json(&["submit", &spec]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(150);
    let mut crashed = Vec::new();
    loop {
        for id in 1..=3u64 {
            let exited = c.drivers[(id - 1) as usize]
                .proc
                .as_mut()
                .is_some_and(|p| p.try_wait().unwrap().is_some());
            if exited {
                let log = fs::read_to_string(c.driver_log(id)).unwrap();
                assert!(
                    log.contains(&format!("crash point {point} reached")),
                    "driver {id} ended, but not at {point}\n{}",
                    c.logs()
                );
                crashed.push(id);
                // Back once an armed replica leads: restarted at once, the
                // unarmed one could win the election and no leader would
                // crash again.
                let leader = c.wait_leader(Duration::from_secs(20));
                assert_ne!(leader, id, "{}", c.logs());
                c.start_driver(id);
            }
        }
        if c.weir_json(&["status", job])
            .is_ok_and(|s| s["state"] == "finished")
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "job not finished; crashed drivers {crashed:?}\n{}",
            c.logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        crashed.len() >= 2,
        "only drivers {crashed:?} reached {point}: the job ended before the leaders changed\n{}",
        c.logs()
    );
    check_counts(dir.path(), job, total);
}

#[test]
fn without_quorum_nothing_commits_and_progress_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 3, 1);
    c.start_all();
    let leader = c.wait_leader(Duration::from_secs(20));
    let total = 60_000;
    let spec = write_spec(dir.path(), "quorum", total, 10_000);
    c.weir_json(&["submit", &spec]).unwrap();
    c.wait_committed_beyond("quorum", 2, Duration::from_secs(30));

    // Two of three down: the survivor cannot commit anything.
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    c.kill_driver(others[0]);
    c.kill_driver(others[1]);
    std::thread::sleep(Duration::from_secs(4));
    let err = c.weir_json(&["stop", "quorum"]).unwrap_err();
    assert!(
        err.contains("no quorum") || err.contains("no leader"),
        "{err}"
    );
    let files_before = fs::read_dir(dir.path().join("quorum-out")).unwrap().count();
    std::thread::sleep(Duration::from_secs(2));
    let files_after = fs::read_dir(dir.path().join("quorum-out")).unwrap().count();
    assert_eq!(
        files_before, files_after,
        "output was published without a quorum"
    );

    // One comes back: a quorum again, and the job finishes exactly.
    c.start_driver(others[0]);
    c.wait_leader(Duration::from_secs(20));
    wait_state(&c, "quorum", "finished", Duration::from_secs(90));
    check_counts(dir.path(), "quorum", total);
}

#[test]
fn a_paused_leader_steps_down_and_cannot_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 3, 1);
    c.start_all();
    let leader = c.wait_leader(Duration::from_secs(20));
    let total = 160_000;
    let spec = write_spec(dir.path(), "pause", total, 16_000);
    c.weir_json(&["submit", &spec]).unwrap();
    c.wait_committed_beyond("pause", 2, Duration::from_secs(30));

    c.signal_driver(leader, "STOP");
    // The others elect a new leader while the old one is frozen.
    let deadline = Instant::now() + Duration::from_secs(20);
    let new_leader = loop {
        let l = c.wait_leader(Duration::from_secs(20));
        if l != leader {
            break l;
        }
        assert!(Instant::now() < deadline, "no new leader\n{}", c.logs());
        std::thread::sleep(Duration::from_millis(200));
    };
    let before = c.committed("pause");
    c.wait_committed_beyond("pause", before, Duration::from_secs(30));
    c.signal_driver(leader, "CONT");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        c.wait_leader(Duration::from_secs(10)),
        new_leader,
        "the woken replica must not lead"
    );
    wait_state(&c, "pause", "finished", Duration::from_secs(90));
    check_counts(dir.path(), "pause", total);
}

#[test]
fn a_wiped_replica_rejoins_from_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 3, 1);
    c.start_all();
    let leader = c.wait_leader(Duration::from_secs(20));
    let spec = write_spec(dir.path(), "wipe", 40_000, 20_000);
    c.weir_json(&["submit", &spec]).unwrap();
    let victim = (1..=3).find(|id| *id != leader).unwrap();
    c.remove_and_wipe_driver(victim);
    wait_state(&c, "wipe", "finished", Duration::from_secs(60));
    c.rejoin_driver(victim);
    // The rejoined replica reports the same applied index as the others.
    if let Err(v) = c.wait_caught_up(victim, Duration::from_secs(30)) {
        panic!("replica {victim} did not catch up: {v}\n{}", c.logs());
    }
    check_counts(dir.path(), "wipe", 40_000);
}

/// A follower forwards client calls to the leader, so a client that knows
/// one address (a port-forward, an Ingress, a Service) reaches the
/// cluster; a call already forwarded is refused with the leader hint, not
/// forwarded again.
#[test]
fn followers_forward_client_calls_to_the_leader() {
    use weir_proto::pb;
    use weir_proto::pb::weir_client_client::WeirClientClient;
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 3, 1);
    c.start_all();
    let leader = c.wait_leader(Duration::from_secs(20));
    let follower = c.drivers.iter().find(|d| d.id != leader).unwrap();
    let (follower, leader_address) = (
        follower.address.clone(),
        c.drivers[(leader - 1) as usize].address.clone(),
    );
    let spec = weir_proto::spec::parse_spec(
        &fs::read_to_string(write_spec(dir.path(), "fwd", 20_000, 10_000)).unwrap(),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut client = WeirClientClient::connect(format!("http://{follower}"))
            .await
            .unwrap();
        let submitted = client
            .submit(pb::SubmitRequest {
                spec: Some(spec),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("submit through a follower: {e:?}\n{}", c.logs()))
            .into_inner();
        assert_eq!(
            (submitted.job.as_str(), submitted.verdict.as_str()),
            ("fwd", "new")
        );
        let jobs = client
            .list(pb::ListRequest {})
            .await
            .unwrap()
            .into_inner()
            .jobs;
        assert_eq!(jobs.len(), 1);
        // Answered by the leader: it knows the job's live health.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = client
                .status(pb::StatusRequest { job: "fwd".into() })
                .await
                .unwrap()
                .into_inner();
            if s.health == "healthy" && s.last_committed_batch > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{s:?}\n{}", c.logs());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let missing = client
            .status(pb::StatusRequest { job: "nope".into() })
            .await
            .unwrap_err();
        assert_eq!(missing.code(), tonic::Code::NotFound, "{missing:?}");
        // A call that says it was forwarded already is not forwarded again.
        let mut again = tonic::Request::new(pb::ListRequest {});
        again
            .metadata_mut()
            .insert(weir_proto::wire::FORWARDED_KEY, "1".parse().unwrap());
        let refused = client.list(again).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
        assert_eq!(
            weir_proto::wire::leader_hint(&refused).as_deref(),
            Some(leader_address.as_str())
        );
    });
    c.wait_finished("fwd", Duration::from_secs(60));
    check_counts(dir.path(), "fwd", 20_000);
}

/// A driver is added as a learner and votes only once it has caught up, so
/// adding one that never comes (here at an address nothing listens on)
/// leaves a single driver leading and committing, across its restart: it
/// used to need that driver's vote for every later entry, forever.
#[test]
fn adding_an_unreachable_driver_keeps_the_group_working() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 1, 1);
    c.start_all();
    c.wait_leader(Duration::from_secs(20));
    let nowhere = format!("127.0.0.1:{}", weir_tests::cluster::free_port());
    c.weir_json(&["cluster", "add-driver", "9", &nowhere])
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    let v = c.weir_json(&["cluster"]).unwrap();
    let nine = v["drivers"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["id"] == 9))
        .cloned();
    // Asked itself, driver 9 does not answer; the leader counts it.
    assert_eq!(
        nine.map(|d| d["role"].clone()),
        Some("unreachable".into()),
        "{v}"
    );
    let spec = write_spec(dir.path(), "alone", 10_000, 10_000);
    c.weir_json(&["submit", &spec]).unwrap();
    wait_state(&c, "alone", "finished", Duration::from_secs(60));
    // Restarted, it still leads alone: driver 9 is not a voter.
    c.kill_driver(1);
    c.start_driver(1);
    c.wait_leader(Duration::from_secs(20));
    let listed = c.weir_json(&["list"]).unwrap();
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");
    // The learner can be removed again.
    c.weir_json(&["cluster", "remove-driver", "9"])
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
    check_counts(dir.path(), "alone", 10_000);
}

/// Removing a driver is refused when the voters left would have no quorum
/// the leader can reach.
#[test]
fn a_removal_that_would_lose_the_quorum_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = LocalCluster::new(dir.path(), 3, 0);
    c.start_all();
    let leader = c.wait_leader(Duration::from_secs(20));
    let followers: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    c.kill_driver(followers[0]);
    // Past an election timeout (0.6 s) the dead follower is unreachable.
    std::thread::sleep(Duration::from_secs(2));
    // Voters left {leader, dead follower}: one of two reachable.
    let e = c
        .weir_json(&["cluster", "remove-driver", &followers[1].to_string()])
        .unwrap_err();
    assert!(e.contains("a quorum needs 2"), "{e}");
    let v = c.weir_json(&["cluster"]).unwrap();
    assert_eq!(
        v["drivers"].as_array().map(Vec::len),
        Some(3),
        "nothing removed: {v}"
    );
    // Removing the dead one leaves two reachable voters: allowed.
    c.weir_json(&["cluster", "remove-driver", &followers[0].to_string()])
        .unwrap_or_else(|e| panic!("{e}\n{}", c.logs()));
}
