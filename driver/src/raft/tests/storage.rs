//! `SledRaftStorage` against the `raft::Storage` contract and its writers.

use raft::prelude::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, Storage as _, StorageError};
use tempfile::TempDir;

use crate::raft::{RaftStoreError, SledRaftStorage};

const CACHE: u64 = 8 * 1024 * 1024;

fn open() -> (TempDir, SledRaftStorage) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SledRaftStorage::open(dir.path(), CACHE).expect("open");
    (dir, store)
}

fn entry(index: u64, term: u64) -> Entry {
    let mut e = Entry::default();
    e.index = index;
    e.term = term;
    e.data = format!("data-{index}-{term}").into_bytes().into();
    e
}

fn entries(range: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    range.map(|i| entry(i, term)).collect()
}

fn ctx() -> GetEntriesContext {
    GetEntriesContext::empty(false)
}

fn store_err(r: raft::Result<impl std::fmt::Debug>) -> StorageError {
    match r {
        Err(raft::Error::Store(e)) => e,
        other => panic!("expected a storage error, got {other:?}"),
    }
}

fn snapshot(index: u64, term: u64, voters: Vec<u64>, data: &[u8]) -> Snapshot {
    let mut s = Snapshot::default();
    s.set_data(data.to_vec().into());
    s.mut_metadata().index = index;
    s.mut_metadata().term = term;
    s.mut_metadata().mut_conf_state().set_voters(voters);
    s
}

#[test]
fn empty_storage_answers_the_contract() {
    let (_dir, s) = open();
    let state = s.initial_state().unwrap();
    assert!(!state.initialized());
    assert_eq!(state.hard_state, HardState::default());
    assert_eq!(s.first_index().unwrap(), 1);
    assert_eq!(s.last_index().unwrap(), 0);
    assert_eq!(s.term(0).unwrap(), 0);
    assert_eq!(store_err(s.term(1)), StorageError::Unavailable);
    assert!(s.entries(1, 1, None, ctx()).unwrap().is_empty());
    assert_eq!(
        store_err(s.snapshot(0, 2)),
        StorageError::SnapshotTemporarilyUnavailable
    );
}

#[test]
fn entries_and_term_edge_cases() {
    let (_dir, s) = open();
    s.append(&entries(1..=5, 1)).unwrap();
    s.append(&entries(6..=8, 2)).unwrap();
    s.compact(3).unwrap();

    assert_eq!(s.first_index().unwrap(), 3);
    assert_eq!(s.last_index().unwrap(), 8);
    // The term of first_index - 1 is kept after compaction.
    assert_eq!(s.term(2).unwrap(), 1);
    assert_eq!(store_err(s.term(1)), StorageError::Compacted);
    assert_eq!(s.term(6).unwrap(), 2);
    assert_eq!(store_err(s.term(9)), StorageError::Unavailable);

    assert_eq!(
        store_err(s.entries(2, 5, None, ctx())),
        StorageError::Compacted
    );
    assert_eq!(
        store_err(s.entries(3, 10, None, ctx())),
        StorageError::Unavailable
    );
    let got = s.entries(3, 9, None, ctx()).unwrap();
    assert_eq!(
        got.iter().map(|e| e.index).collect::<Vec<_>>(),
        vec![3, 4, 5, 6, 7, 8]
    );
    assert_eq!(got[3], entry(6, 2));
    assert!(s.entries(5, 5, None, ctx()).unwrap().is_empty());
}

#[test]
fn entries_respect_max_size_but_return_at_least_one() {
    use protobuf::Message as _;
    let (_dir, s) = open();
    let all = entries(1..=5, 1);
    s.append(&all).unwrap();
    let size = u64::from(all[0].compute_size());

    assert_eq!(s.entries(1, 6, Some(0), ctx()).unwrap().len(), 1);
    assert_eq!(s.entries(1, 6, Some(size), ctx()).unwrap().len(), 1);
    assert_eq!(s.entries(1, 6, Some(2 * size), ctx()).unwrap().len(), 2);
    assert_eq!(s.entries(1, 6, Some(3 * size - 1), ctx()).unwrap().len(), 2);
    assert_eq!(s.entries(1, 6, raft::NO_LIMIT, ctx()).unwrap().len(), 5);
    assert_eq!(s.entries(2, 6, None, ctx()).unwrap().len(), 4);
}

#[test]
fn append_truncates_a_conflicting_suffix() {
    let (_dir, s) = open();
    s.append(&entries(1..=5, 1)).unwrap();
    // A new leader overwrites from index 3 with a shorter log.
    s.append(&entries(3..=3, 2)).unwrap();
    assert_eq!(s.last_index().unwrap(), 3);
    assert_eq!(s.term(3).unwrap(), 2);
    assert_eq!(s.term(2).unwrap(), 1);
    assert_eq!(store_err(s.term(4)), StorageError::Unavailable);
    // Appending right after the end extends the log.
    s.append(&entries(4..=6, 2)).unwrap();
    assert_eq!(s.last_index().unwrap(), 6);
    // A gap is refused, as is a write into the compacted prefix.
    assert!(matches!(
        s.append(&entries(8..=8, 2)),
        Err(RaftStoreError::Unavailable {
            index: 8,
            last_index: 6
        })
    ));
    s.compact(4).unwrap();
    assert!(matches!(
        s.append(&entries(2..=2, 3)),
        Err(RaftStoreError::Compacted {
            index: 2,
            first_index: 4
        })
    ));
    assert!(s.append(&[]).is_ok());
}

#[test]
fn compact_is_bounded_and_idempotent() {
    let (_dir, s) = open();
    s.append(&entries(1..=4, 1)).unwrap();
    s.compact(3).unwrap();
    s.compact(2).unwrap();
    assert_eq!(s.first_index().unwrap(), 3);
    assert!(matches!(
        s.compact(6),
        Err(RaftStoreError::Unavailable { .. })
    ));
    // Compacting everything leaves an empty log that still knows its last term.
    s.compact(5).unwrap();
    assert_eq!(s.first_index().unwrap(), 5);
    assert_eq!(s.last_index().unwrap(), 4);
    assert_eq!(s.term(4).unwrap(), 1);
}

#[test]
fn apply_snapshot_replaces_the_log() {
    let (_dir, s) = open();
    s.append(&entries(1..=5, 1)).unwrap();
    let mut hs = HardState::default();
    hs.term = 2;
    hs.vote = 1;
    hs.commit = 3;
    s.set_hard_state(&hs).unwrap();

    s.apply_snapshot(snapshot(8, 3, vec![1, 2, 3], b"state"))
        .unwrap();
    assert_eq!(s.first_index().unwrap(), 9);
    assert_eq!(s.last_index().unwrap(), 8);
    assert_eq!(s.term(8).unwrap(), 3);
    assert_eq!(store_err(s.term(5)), StorageError::Compacted);
    let state = s.initial_state().unwrap();
    assert_eq!(state.conf_state.voters, vec![1, 2, 3]);
    assert_eq!(state.hard_state.commit, 8);
    assert_eq!(state.hard_state.term, 3);
    assert_eq!(state.hard_state.vote, 1);

    let snap = s.snapshot(0, 2).unwrap();
    assert_eq!(snap.get_metadata().index, 8);
    assert_eq!(snap.get_data(), b"state");
    assert_eq!(
        store_err(s.snapshot(9, 2)),
        StorageError::SnapshotTemporarilyUnavailable
    );
    assert!(matches!(
        s.apply_snapshot(snapshot(5, 1, vec![1], b"")),
        Err(RaftStoreError::SnapshotOutOfDate { .. })
    ));
    // Entries continue after the snapshot.
    s.append(&entries(9..=10, 3)).unwrap();
    assert_eq!(s.entries(9, 11, None, ctx()).unwrap().len(), 2);
}

#[test]
fn saved_snapshot_is_served_with_its_term() {
    let (_dir, s) = open();
    s.append(&entries(1..=3, 1)).unwrap();
    s.append(&entries(4..=6, 2)).unwrap();
    let cs = ConfState::from((vec![1, 2], vec![]));
    s.save_snapshot(5, cs.clone(), b"five".to_vec()).unwrap();
    s.compact(6).unwrap();
    let snap = s.snapshot(4, 1).unwrap();
    assert_eq!(snap.get_metadata().index, 5);
    assert_eq!(snap.get_metadata().term, 2);
    assert_eq!(snap.get_metadata().get_conf_state(), &cs);
    assert_eq!(snap.get_data(), b"five");
    // A snapshot at an index no longer in the log cannot be taken.
    assert!(s.save_snapshot(2, cs, Vec::new()).is_err());
}

#[test]
fn state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut hs = HardState::default();
    hs.term = 4;
    hs.vote = 2;
    hs.commit = 6;
    let cs = ConfState::from((vec![1, 2, 3], vec![]));
    {
        let s = SledRaftStorage::open(dir.path(), CACHE).unwrap();
        s.append(&entries(1..=7, 4)).unwrap();
        s.set_hard_state(&hs).unwrap();
        s.set_conf_state(&cs).unwrap();
        s.save_snapshot(3, cs.clone(), b"three".to_vec()).unwrap();
        s.compact(4).unwrap();
        s.set_commit(7).unwrap();
        s.flush().unwrap();
    }
    let s = SledRaftStorage::open(dir.path(), CACHE).unwrap();
    let state = s.initial_state().unwrap();
    hs.commit = 7;
    assert_eq!(state.hard_state, hs);
    assert_eq!(state.conf_state, cs);
    assert_eq!(s.first_index().unwrap(), 4);
    assert_eq!(s.last_index().unwrap(), 7);
    assert_eq!(s.term(3).unwrap(), 4);
    assert_eq!(s.entries(4, 8, None, ctx()).unwrap(), entries(4..=7, 4));
    assert_eq!(s.snapshot(0, 1).unwrap().get_data(), b"three");
}

#[test]
fn corrupt_records_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new()
        .path(dir.path())
        .cache_capacity(CACHE)
        .open()
        .unwrap();
    let s = SledRaftStorage::from_db(&db).unwrap();
    s.append(&entries(1..=3, 1)).unwrap();
    let tree = db.open_tree("raft").unwrap();
    let mut key = vec![b'e'];
    key.extend_from_slice(&2u64.to_be_bytes());
    // Right term prefix, garbage entry.
    let mut value = 1u64.to_be_bytes().to_vec();
    value.extend_from_slice(&[0xff, 0xff, 0xff]);
    tree.insert(&key, value).unwrap();
    let err = store_err(s.entries(1, 4, None, ctx()));
    assert!(matches!(err, StorageError::Other(_)), "{err:?}");
    assert!(err.to_string().contains("entry 2"), "{err}");
    // Too short to hold a term.
    tree.insert(&key, vec![1u8, 2]).unwrap();
    assert!(matches!(store_err(s.term(2)), StorageError::Other(_)));
    // A bad hard state.
    tree.insert(b"m/hard_state", vec![0xffu8; 4]).unwrap();
    assert!(matches!(
        store_err(s.initial_state()),
        StorageError::Other(_)
    ));
}
