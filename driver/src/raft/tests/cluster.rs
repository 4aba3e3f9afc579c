//! Three-node clusters on the simulated network: election, replication
//! order, leader isolation, restart from disk, and rejoin from a snapshot.

use raft::prelude::{ConfChange, ConfChangeType};

use super::network::Network;
use crate::raft::RaftConfig;

const ALL: [u64; 3] = [1, 2, 3];

fn payloads(prefix: &str, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| format!("{prefix}-{i}").into_bytes())
        .collect()
}

fn others(id: u64) -> Vec<u64> {
    ALL.iter().copied().filter(|&x| x != id).collect()
}

#[test]
fn three_nodes_elect_one_leader() {
    let mut net = Network::new(3, RaftConfig::default());
    let leader = net.elect(&ALL);
    assert_eq!(net.leaders(), vec![leader]);
    assert_eq!(net.peer(leader).node.role(), "leader");
    for id in others(leader) {
        assert_eq!(net.peer(id).node.role(), "follower");
        assert_eq!(net.peer(id).node.term(), net.peer(leader).node.term());
    }
    // Idle ticks keep the same leader: heartbeats prevent elections.
    let term = net.peer(leader).node.term();
    for _ in 0..100 {
        net.tick();
    }
    assert_eq!(net.agreed_leader(&ALL), Some(leader));
    assert_eq!(net.peer(leader).node.term(), term);
}

/// A new leader does not know the previous leader's last entries are
/// committed until the empty entry of its own term commits: until then its
/// state machine may be behind, and it must not act on it.
#[test]
fn a_new_leader_has_current_state_only_once_an_entry_of_its_term_applies() {
    let mut net = Network::new(3, RaftConfig::default());
    let first = net.elect(&ALL);
    assert!(net.peer(first).node.leads_with_current_state());
    net.propose(first, b"before");
    net.stop(first);
    // The new leader's empty entry never reaches the other survivor.
    net.lose_appends = true;
    let survivors = others(first);
    assert!(
        net.tick_until(300, |n| survivors
            .iter()
            .any(|&id| n.peer(id).node.is_leader())),
        "no new leader"
    );
    let second = *survivors
        .iter()
        .find(|&&id| net.peer(id).node.is_leader())
        .expect("leader");
    assert!(
        !net.peer(second).node.leads_with_current_state(),
        "a leader whose own term has no applied entry acts on older state"
    );
    net.lose_appends = false;
    assert!(
        net.tick_until(50, |n| n.peer(second).node.leads_with_current_state()),
        "the leader never caught up"
    );
    assert_eq!(
        net.applied(second).last().map(Vec::as_slice),
        Some(&b"before"[..])
    );
}

#[test]
fn proposals_apply_in_the_same_order_everywhere() {
    let mut net = Network::new(3, RaftConfig::default());
    let leader = net.elect(&ALL);
    let expected = payloads("cmd", 30);
    for (i, data) in expected.iter().enumerate() {
        // Proposals through followers are forwarded to the leader.
        let via = if i % 3 == 0 {
            others(leader)[0]
        } else {
            leader
        };
        net.propose(via, data);
    }
    for id in ALL {
        assert_eq!(net.applied(id), expected.as_slice(), "node {id}");
        let node = &net.peer(id).node;
        assert_eq!(node.applied_index(), node.commit_index());
    }
    let commit = net.peer(leader).node.commit_index();
    assert!(commit >= 2 + 30, "commit {commit}");
}

#[test]
fn isolated_leader_cannot_commit_and_steps_down() {
    let mut net = Network::new(3, RaftConfig::default());
    let old = net.elect(&ALL);
    net.propose(old, b"before");
    let old_commit = net.peer(old).node.commit_index();

    net.isolate(old);
    net.propose(old, b"lost");
    let rest = others(old);
    let new = net.elect(&rest);
    assert_ne!(new, old);
    assert!(net.peer(new).node.term() > net.peer(old).node.term());
    net.propose(new, b"after");

    // check_quorum: without a quorum the old leader steps down by itself.
    assert!(net.tick_until(30, |n| !n.peer(old).node.is_leader()));
    assert_eq!(net.peer(old).node.commit_index(), old_commit);
    assert_eq!(net.applied(old), &[b"before".to_vec()]);

    net.heal();
    assert!(net.tick_until(50, |n| n.agreed_leader(&ALL) == Some(new)));
    net.process();
    let expected = vec![b"before".to_vec(), b"after".to_vec()];
    for id in ALL {
        assert_eq!(net.applied(id), expected.as_slice(), "node {id}");
    }
    // pre_vote: the returning node did not force a new term on the others.
    assert_eq!(net.peer(old).node.term(), net.peer(new).node.term());
}

#[test]
fn restarted_node_catches_up_with_nothing_lost() {
    let mut net = Network::new(3, RaftConfig::default());
    let leader = net.elect(&ALL);
    let first = payloads("first", 10);
    let second = payloads("second", 10);
    for data in &first {
        net.propose(leader, data);
    }
    let follower = others(leader)[0];
    net.stop(follower);
    for data in &second {
        net.propose(leader, data);
    }

    net.restart(follower);
    net.process();
    // Restarted from disk: what it had before is re-applied at once.
    assert!(net.applied(follower).starts_with(&first));
    let all: Vec<Vec<u8>> = first.iter().chain(&second).cloned().collect();
    assert!(net.tick_until(20, |n| n.applied(follower) == all.as_slice()));

    // The leader itself restarts: a new election, nothing lost, and the
    // cluster keeps committing.
    net.stop(leader);
    let rest = others(leader);
    let new = net.elect(&rest);
    net.propose(new, b"third");
    net.restart(leader);
    assert!(net.tick_until(50, |n| n.applied(leader).len() == all.len() + 1));
    for id in ALL {
        assert_eq!(&net.applied(id)[..all.len()], all.as_slice());
        assert_eq!(
            net.applied(id).last().map(Vec::as_slice),
            Some(&b"third"[..])
        );
    }
}

#[test]
fn wiped_node_is_removed_readded_and_catches_up_from_a_snapshot() {
    let config = RaftConfig {
        snapshot_threshold: 5,
        ..RaftConfig::default()
    };
    let mut net = Network::new(3, config);
    let leader = net.elect(&ALL);
    let mut expected = payloads("a", 12);
    for data in &expected {
        net.propose(leader, data);
    }
    assert!(net
        .peer(leader)
        .node
        .storage()
        .latest_snapshot()
        .unwrap()
        .is_some());

    let victim = others(leader)[0];
    let mut remove = ConfChange::default();
    remove.node_id = victim;
    remove.set_change_type(ConfChangeType::RemoveNode);
    net.peer_mut(leader)
        .node
        .propose_conf_change(remove, Vec::new())
        .unwrap();
    net.process();
    assert!(!net.peer(leader).node.conf_state().voters.contains(&victim));
    net.stop(victim);
    net.wipe(victim);

    let more = payloads("b", 12);
    for data in &more {
        net.propose(leader, data);
    }
    expected.extend(more);
    let first_index = {
        use raft::Storage as _;
        net.peer(leader).node.storage().first_index().unwrap()
    };
    assert!(first_index > 10, "leader log was compacted: {first_index}");

    net.start_joiner(victim);
    // The first snapshot is lost: the leader hears `Failure` and sends another.
    net.lose_snapshots = 1;
    let mut add = ConfChange::default();
    add.node_id = victim;
    add.set_change_type(ConfChangeType::AddNode);
    net.peer_mut(leader)
        .node
        .propose_conf_change(add, Vec::new())
        .unwrap();
    net.process();
    assert!(net.tick_until(50, |n| n.applied(victim) == expected.as_slice()));
    assert_eq!(net.lose_snapshots, 0, "a snapshot was sent and lost");

    let snap = net.peer(victim).node.storage().latest_snapshot().unwrap();
    assert!(
        snap.is_some_and(|s| s.get_metadata().index > 1),
        "caught up from a snapshot"
    );
    let mut voters = net.peer(victim).node.conf_state().voters;
    voters.sort_unstable();
    assert_eq!(voters, ALL.to_vec());

    // The rejoined node takes part in replication again.
    net.propose(leader, b"last");
    expected.push(b"last".to_vec());
    for id in ALL {
        assert_eq!(net.applied(id), expected.as_slice(), "node {id}");
    }

    // The third node's snapshot predates the re-add: on restart it replays
    // the conf change and ends with the full membership again.
    let bystander = others(leader)[1];
    net.stop(bystander);
    net.restart(bystander);
    net.process();
    let mut voters = net.peer(bystander).node.conf_state().voters;
    voters.sort_unstable();
    assert_eq!(voters, ALL.to_vec());
    assert_eq!(net.applied(bystander), expected.as_slice());
}

#[test]
fn restart_after_compaction_restores_the_snapshot_and_replays_the_rest() {
    let config = RaftConfig {
        snapshot_threshold: 5,
        ..RaftConfig::default()
    };
    let mut net = Network::new(3, config);
    let leader = net.elect(&ALL);
    let expected = payloads("c", 13);
    for data in &expected {
        net.propose(leader, data);
    }
    let follower = others(leader)[0];
    let snap_index = {
        let store = net.peer(follower).node.storage();
        let snap = store.latest_snapshot().unwrap().expect("snapshot");
        snap.get_metadata().index
    };
    assert!(snap_index < net.peer(follower).node.applied_index());

    net.stop(follower);
    net.restart(follower);
    // Right after restart: the snapshot is restored, the tail not yet applied.
    assert_eq!(net.peer(follower).node.applied_index(), snap_index);
    net.process();
    assert_eq!(net.applied(follower), expected.as_slice());
    assert!(net.tick_until(20, |n| n.agreed_leader(&ALL) == Some(leader)));
}
