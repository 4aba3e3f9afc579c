//! Choosing and reading the checkpoint files that restore a partition.
//!
//! [`plan_restore`] is a pure function over a directory listing: the newest
//! usable snapshot ≤ target and the deltas after it. [`restore`] executes
//! plans, reading and validating each file; a corrupt or missing file is
//! skipped (logged and reported) and the plan is recomputed without it, which
//! falls back to an older snapshot or a shorter delta chain. Restoring to a
//! version below the target is normal: the caller replays the batches after
//! the restored version from its source.

use std::collections::{HashMap, HashSet};

use super::format::{self, CheckpointFile};
use super::{CheckpointFileName, CheckpointKind, StateBackend, StateError};

/// Which checkpoint files to read, in order, to restore a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestorePlan {
    /// Nothing usable at or below the target: start from empty state (version 0).
    Empty,
    /// Read the snapshot (if any), then apply the deltas in order.
    Chain {
        /// Version of the snapshot to start from; `None` starts from empty
        /// state at version 0.
        snapshot: Option<u64>,
        /// Versions of the deltas to apply after the snapshot, ascending. The
        /// reader stops early if a delta's base version is not the version
        /// reached so far.
        deltas: Vec<u64>,
    },
}

/// Plans a restore to `target` from the checkpoint files `files` (any order),
/// ignoring files in `excluded` (known to be unreadable).
///
/// Picks the newest non-excluded snapshot with version ≤ `target` (or none),
/// then every delta newer than it and ≤ `target` in ascending order, stopping
/// before the first excluded delta (the chain cannot continue past it). Files
/// above `target` belong to batches that never committed and are ignored.
pub fn plan_restore(
    files: &[CheckpointFileName],
    target: u64,
    excluded: &HashSet<CheckpointFileName>,
) -> RestorePlan {
    let snapshot = files
        .iter()
        .filter(|f| f.kind == CheckpointKind::Snapshot && f.version <= target)
        .filter(|f| !excluded.contains(f))
        .map(|f| f.version)
        .max();
    let mut deltas: Vec<u64> = files
        .iter()
        .filter(|f| f.kind == CheckpointKind::Delta && f.version <= target)
        .filter(|f| snapshot.is_none_or(|s| f.version > s))
        .map(|f| f.version)
        .collect();
    deltas.sort_unstable();
    deltas.dedup();
    let usable = deltas
        .iter()
        .take_while(|v| !excluded.contains(&CheckpointFileName::delta(**v)))
        .count();
    deltas.truncate(usable);
    if snapshot.is_none() && deltas.is_empty() {
        RestorePlan::Empty
    } else {
        RestorePlan::Chain { snapshot, deltas }
    }
}

/// The oldest snapshot in `files` if the files below it were pruned.
///
/// Every checkpoint writes a delta, so a partition's files start with a
/// delta until a prune deletes everything below the oldest snapshot it
/// keeps (deltas at or below it included), which it does only once a
/// version at or above that snapshot committed. A restore below it comes
/// from metadata that is behind.
fn pruned_below(files: &[CheckpointFileName]) -> Option<u64> {
    let oldest = files
        .iter()
        .filter(|f| f.kind == CheckpointKind::Snapshot)
        .map(|f| f.version)
        .min()?;
    let delta_at_or_below = files
        .iter()
        .any(|f| f.kind == CheckpointKind::Delta && f.version <= oldest);
    (!delta_at_or_below).then_some(oldest)
}

/// The result of [`restore`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    /// The version actually restored (≤ the target); 0 if nothing was.
    pub version: u64,
    /// The partition's state at `version`.
    pub entries: HashMap<Vec<u8>, Vec<u8>>,
    /// Files that could not be used: `(path, reason)`.
    pub skipped: Vec<(String, String)>,
}

/// What [`restore_into`] reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreOutcome {
    /// The version actually restored (≤ the target); 0 if nothing was.
    pub version: u64,
    /// Files that could not be used: `(path, reason)`.
    pub skipped: Vec<(String, String)>,
    /// Entries read from the deltas applied after the snapshot (all of
    /// them without a snapshot): what a restore costs beyond the snapshot.
    pub delta_entries: u64,
}

/// Receives the state [`restore_into`] reads, entry by entry, straight from
/// the checkpoint files (no copy of the whole state in between).
pub trait RestoreTarget {
    /// Forgets everything received so far: the file being read turned out
    /// unusable and the restore starts over from an older checkpoint.
    fn clear(&mut self);
    /// About `additional` more keys are coming (from a snapshot's header).
    fn reserve(&mut self, additional: usize) {
        let _ = additional;
    }
    /// The values of the file about to be read are laid out as `layout`
    /// (what its writer [set](super::format::CheckpointEncoder::set_value_layout);
    /// 0 by default). Called before each file's entries.
    fn set_value_layout(&mut self, layout: u8) {
        let _ = layout;
    }
    /// Sets `key` to `value`.
    fn set(&mut self, key: &[u8], value: &[u8]);
    /// Removes `key` (a tombstone).
    fn remove(&mut self, key: &[u8]);
}

impl RestoreTarget for HashMap<Vec<u8>, Vec<u8>> {
    fn clear(&mut self) {
        HashMap::clear(self);
    }
    fn reserve(&mut self, additional: usize) {
        HashMap::reserve(self, additional);
    }
    fn set(&mut self, key: &[u8], value: &[u8]) {
        self.insert(key.to_vec(), value.to_vec());
    }
    fn remove(&mut self, key: &[u8]) {
        HashMap::remove(self, key);
    }
}

/// Restores the partition stored in `dir` of `backend` to the newest
/// version ≤ `target` that its readable checkpoint files reach, returning
/// the state as a map. See [`restore_into`].
pub fn restore(backend: &dyn StateBackend, dir: &str, target: u64) -> Result<Restored, StateError> {
    let mut entries = HashMap::new();
    let RestoreOutcome {
        version, skipped, ..
    } = restore_into(backend, dir, target, &mut entries)?;
    Ok(Restored {
        version,
        entries,
        skipped,
    })
}

/// Restores the partition stored in `dir` of `backend` into `into`, to the
/// newest version ≤ `target` that its readable checkpoint files reach.
///
/// Corrupt files (bad magic, checksum, truncation, unsupported format,
/// header not matching the name) and files listed but gone are logged with
/// `tracing::warn!`, reported in [`RestoreOutcome::skipped`] and worked
/// around; `into` then only holds the state at the version returned. Backend
/// errors (listing or reading failed) are returned as they are: the store
/// may be temporarily unreachable, and silently restoring an older version
/// because of that would force needless replay.
pub fn restore_into(
    backend: &dyn StateBackend,
    dir: &str,
    target: u64,
    into: &mut dyn RestoreTarget,
) -> Result<RestoreOutcome, StateError> {
    let files = CheckpointFileName::parse_listing(&backend.list(dir)?);
    restore_listed(backend, dir, &files, target, into)
}

/// [`restore_into`] from `files`, the checkpoint files a listing of `dir`
/// just returned (each listing is a namenode RPC on HDFS).
pub fn restore_listed(
    backend: &dyn StateBackend,
    dir: &str,
    files: &[CheckpointFileName],
    target: u64,
    into: &mut dyn RestoreTarget,
) -> Result<RestoreOutcome, StateError> {
    if let Some(oldest) = pruned_below(files).filter(|&oldest| target < oldest) {
        return Err(StateError::BehindRetained {
            path: dir.to_string(),
            target,
            oldest,
        });
    }
    let mut excluded = HashSet::new();
    let mut skipped = Vec::new();

    'plan: loop {
        into.clear();
        let (snapshot, deltas) = match plan_restore(files, target, &excluded) {
            RestorePlan::Empty => {
                return Ok(RestoreOutcome {
                    version: 0,
                    skipped,
                    delta_entries: 0,
                })
            }
            RestorePlan::Chain { snapshot, deltas } => (snapshot, deltas),
        };

        let mut version = 0;
        let mut delta_entries = 0;
        if let Some(s) = snapshot {
            let name = CheckpointFileName::snapshot(s);
            let applied = read_checkpoint(backend, dir, name, |file| {
                into.reserve(file.count as usize);
                into.set_value_layout(file.value_layout);
                file.for_each_entry(|key, value| match value {
                    Some(value) => into.set(key, value),
                    None => into.remove(key),
                })
            })?;
            if let Err(reason) = applied {
                skip(dir, name, reason, &mut excluded, &mut skipped);
                continue 'plan;
            }
            version = s;
        }

        for d in deltas {
            let name = CheckpointFileName::delta(d);
            let mut chain_ends = None;
            let applied = read_checkpoint(backend, dir, name, |file| {
                if file.base_version != version {
                    chain_ends = Some(file.base_version);
                    return Ok(());
                }
                // Checked whole before any of it is applied: the state
                // reached so far stays usable if this delta is not.
                file.validate()?;
                delta_entries += file.count;
                into.set_value_layout(file.value_layout);
                file.for_each_entry(|key, value| match value {
                    Some(value) => into.set(key, value),
                    None => into.remove(key),
                })
            })?;
            if let Err(reason) = applied {
                // Re-planning without this delta yields the same snapshot
                // and exactly the deltas applied so far, so stop here
                // instead of reading them all again.
                skip(dir, name, reason, &mut excluded, &mut skipped);
                break;
            }
            if let Some(base_version) = chain_ends {
                tracing::info!(
                    path = %name.path_in(dir),
                    base_version,
                    reached = version,
                    "checkpoint chain ends: delta does not apply on top of the version reached"
                );
                break;
            }
            version = d;
        }
        return Ok(RestoreOutcome {
            version,
            skipped,
            delta_entries,
        });
    }
}

fn skip(
    dir: &str,
    name: CheckpointFileName,
    reason: String,
    excluded: &mut HashSet<CheckpointFileName>,
    skipped: &mut Vec<(String, String)>,
) {
    let path = name.path_in(dir);
    tracing::warn!(%path, %reason, "skipping unusable state checkpoint; falling back to an older one");
    excluded.insert(name);
    skipped.push((path, reason));
}

/// Reads one checkpoint, validates its header against its name and hands it
/// to `apply`. The outer error is a backend failure; the inner one the
/// reason the file is unusable (corrupt or missing; `apply` may report
/// corrupt entries).
fn read_checkpoint(
    backend: &dyn StateBackend,
    dir: &str,
    name: CheckpointFileName,
    apply: impl FnOnce(&CheckpointFile<'_>) -> Result<(), StateError>,
) -> Result<Result<(), String>, StateError> {
    let path = name.path_in(dir);
    let Some(bytes) = backend.get(&path)? else {
        return Ok(Err("listed but no longer present".to_owned()));
    };
    let checked = format::open(&path, &bytes).and_then(|file| {
        if file.kind != name.kind || file.version != name.version {
            return Err(StateError::Malformed {
                path: path.clone(),
                detail: format!(
                    "header says {:?} at version {}, which does not match the file name",
                    file.kind, file.version
                ),
            });
        }
        apply(&file)
    });
    match checked {
        Ok(()) => Ok(Ok(())),
        Err(e) if e.is_corrupt_file() => Ok(Err(e.to_string())),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::format::{encode, Entry};
    use crate::state::LocalBackend;

    fn d(v: u64) -> CheckpointFileName {
        CheckpointFileName::delta(v)
    }
    fn s(v: u64) -> CheckpointFileName {
        CheckpointFileName::snapshot(v)
    }
    fn chain(snapshot: Option<u64>, deltas: &[u64]) -> RestorePlan {
        RestorePlan::Chain {
            snapshot,
            deltas: deltas.to_vec(),
        }
    }

    /// (description, files, target, excluded, expected plan)
    type Case = (
        &'static str,
        Vec<CheckpointFileName>,
        u64,
        Vec<CheckpointFileName>,
        RestorePlan,
    );

    #[test]
    fn planner_table() {
        use RestorePlan::Empty;
        let cases: Vec<Case> = vec![
            ("no files", vec![], 10, vec![], Empty),
            (
                "only deltas",
                vec![d(1), d(2), d(3)],
                10,
                vec![],
                chain(None, &[1, 2, 3]),
            ),
            (
                "only deltas, unsorted input",
                vec![d(3), d(1), d(2)],
                10,
                vec![],
                chain(None, &[1, 2, 3]),
            ),
            (
                "deltas above target ignored",
                vec![d(1), d(2), d(3)],
                2,
                vec![],
                chain(None, &[1, 2]),
            ),
            (
                "target below everything",
                vec![s(5), d(6), d(7)],
                4,
                vec![],
                Empty,
            ),
            ("target zero", vec![d(1)], 0, vec![], Empty),
            (
                "snapshot + deltas",
                vec![d(1), d(2), s(2), d(3), d(4)],
                10,
                vec![],
                chain(Some(2), &[3, 4]),
            ),
            (
                "newest snapshot wins",
                vec![s(2), d(3), s(4), d(5)],
                10,
                vec![],
                chain(Some(4), &[5]),
            ),
            (
                "snapshot exactly at target",
                vec![s(2), d(3), s(4), d(5)],
                4,
                vec![],
                chain(Some(4), &[]),
            ),
            (
                "snapshot above target ignored",
                vec![s(2), d(3), s(4), d(5)],
                3,
                vec![],
                chain(Some(2), &[3]),
            ),
            (
                "corrupt newest delta",
                vec![s(2), d(3), d(4)],
                10,
                vec![d(4)],
                chain(Some(2), &[3]),
            ),
            (
                "corrupt middle delta cuts the chain",
                vec![s(2), d(3), d(4), d(5)],
                10,
                vec![d(4)],
                chain(Some(2), &[3]),
            ),
            (
                "corrupt first delta after snapshot",
                vec![s(2), d(3), d(4)],
                10,
                vec![d(3)],
                chain(Some(2), &[]),
            ),
            ("corrupt only delta", vec![d(1)], 10, vec![d(1)], Empty),
            (
                "corrupt snapshot falls back to older snapshot",
                vec![s(2), d(3), d(4), d(5), s(5), d(6)],
                10,
                vec![s(5)],
                chain(Some(2), &[3, 4, 5, 6]),
            ),
            (
                "corrupt only snapshot falls back to deltas from the start",
                vec![d(1), d(2), s(2), d(3)],
                10,
                vec![s(2)],
                chain(None, &[1, 2, 3]),
            ),
            (
                "all snapshots corrupt, deltas pruned",
                vec![s(2), s(4), d(5)],
                10,
                vec![s(2), s(4)],
                chain(None, &[5]),
            ),
            (
                "gaps are left to the reader",
                vec![s(10), d(12), d(17), d(30)],
                20,
                vec![],
                chain(Some(10), &[12, 17]),
            ),
            (
                "excluded above target is irrelevant",
                vec![s(2), d(3)],
                10,
                vec![d(7)],
                chain(Some(2), &[3]),
            ),
            (
                "delta and snapshot at the same version",
                vec![d(4), s(4), d(5)],
                10,
                vec![],
                chain(Some(4), &[5]),
            ),
        ];
        for (what, files, target, excluded, expected) in cases {
            let excluded: HashSet<_> = excluded.into_iter().collect();
            assert_eq!(plan_restore(&files, target, &excluded), expected, "{what}");
        }
    }

    const DIR: &str = "job/op/part-00000";

    struct Fixture {
        _tmp: tempfile::TempDir,
        backend: LocalBackend,
    }

    impl Fixture {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let backend = LocalBackend::new(tmp.path().to_path_buf());
            Fixture { _tmp: tmp, backend }
        }
        fn delta(&self, v: u64, base: u64, entries: &[(&str, Option<&str>)]) {
            let entries: Vec<Entry> = entries
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
                .collect();
            let path = d(v).path_in(DIR);
            let bytes = encode(&path, CheckpointKind::Delta, v, base, &entries).unwrap();
            self.backend.put_atomic(&path, &bytes).unwrap();
        }
        fn snapshot(&self, v: u64, entries: &[(&str, &str)]) {
            let entries: Vec<Entry> = entries
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec())))
                .collect();
            let path = s(v).path_in(DIR);
            let bytes = encode(&path, CheckpointKind::Snapshot, v, v, &entries).unwrap();
            self.backend.put_atomic(&path, &bytes).unwrap();
        }
        fn corrupt(&self, name: CheckpointFileName) {
            let path = name.path_in(DIR);
            let mut bytes = self.backend.get(&path).unwrap().unwrap();
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0xff;
            self.backend.put_atomic(&path, &bytes).unwrap();
        }
        fn restore(&self, target: u64) -> Restored {
            restore(&self.backend, DIR, target).unwrap()
        }
    }

    fn state(pairs: &[(&str, &str)]) -> HashMap<Vec<u8>, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    /// s5 = {a:1, b:2}; d6 sets c; d7 deletes a; s7 = {b:2, c:3}; d8 sets b:20.
    fn standard(f: &Fixture) {
        f.delta(5, 0, &[("a", Some("1")), ("b", Some("2"))]);
        f.snapshot(5, &[("a", "1"), ("b", "2")]);
        f.delta(6, 5, &[("c", Some("3"))]);
        f.delta(7, 6, &[("a", None)]);
        f.snapshot(7, &[("b", "2"), ("c", "3")]);
        f.delta(8, 7, &[("b", Some("20"))]);
    }

    #[test]
    fn empty_directory_restores_nothing() {
        let f = Fixture::new();
        assert_eq!(f.restore(100), Restored::default());
    }

    #[test]
    fn normal_chain() {
        let f = Fixture::new();
        standard(&f);
        let r = f.restore(8);
        assert_eq!(r.version, 8);
        assert_eq!(r.entries, state(&[("b", "20"), ("c", "3")]));
        assert!(r.skipped.is_empty());

        let r = f.restore(6);
        assert_eq!(r.version, 6);
        assert_eq!(r.entries, state(&[("a", "1"), ("b", "2"), ("c", "3")]));
    }

    #[test]
    fn a_format_version_1_chain_restores_with_newer_deltas_on_top() {
        let f = Fixture::new();
        // Written by an earlier build: a version 1 snapshot and delta...
        let entries = |pairs: &[(&str, Option<&str>)]| -> Vec<Entry> {
            pairs
                .iter()
                .map(|(k, v)| (k.as_bytes().to_vec(), v.map(|v| v.as_bytes().to_vec())))
                .collect()
        };
        let old = [("a", Some("1")), ("b", Some("2"))];
        let bytes = format::v1_file(CheckpointKind::Snapshot, 5, 5, &entries(&old));
        f.backend.put_atomic(&s(5).path_in(DIR), &bytes).unwrap();
        let bytes = format::v1_file(CheckpointKind::Delta, 6, 5, &entries(&[("a", None)]));
        f.backend.put_atomic(&d(6).path_in(DIR), &bytes).unwrap();
        // ...and this build's deltas after the upgrade.
        f.delta(7, 6, &[("c", Some("3")), ("b", Some("20"))]);
        let r = f.restore(7);
        assert_eq!(r.version, 7);
        assert_eq!(r.entries, state(&[("b", "20"), ("c", "3")]));
        assert!(r.skipped.is_empty());
    }

    #[test]
    fn deltas_only_with_tombstones() {
        let f = Fixture::new();
        f.delta(1, 0, &[("a", Some("1")), ("b", Some("2"))]);
        f.delta(3, 1, &[("a", None), ("c", Some("3"))]);
        f.delta(4, 3, &[("c", Some("33")), ("a", Some("again"))]);
        let r = f.restore(4);
        assert_eq!(r.version, 4);
        assert_eq!(r.entries, state(&[("a", "again"), ("b", "2"), ("c", "33")]));
    }

    #[test]
    fn corrupt_newest_delta_falls_back_to_previous_version() {
        let f = Fixture::new();
        standard(&f);
        f.corrupt(d(8));
        let r = f.restore(8);
        assert_eq!(r.version, 7);
        assert_eq!(r.entries, state(&[("b", "2"), ("c", "3")]));
        assert_eq!(r.skipped.len(), 1);
        assert_eq!(r.skipped[0].0, d(8).path_in(DIR));
        assert!(r.skipped[0].1.contains("checksum"), "{}", r.skipped[0].1);
    }

    #[test]
    fn corrupt_newest_snapshot_falls_back_to_older_snapshot_and_deltas() {
        let f = Fixture::new();
        standard(&f);
        // d7 was written alongside s7, so the older chain reaches 8 as well.
        f.corrupt(s(7));
        let r = f.restore(8);
        assert_eq!(r.version, 8);
        assert_eq!(r.entries, state(&[("b", "20"), ("c", "3")]));
        assert_eq!(r.skipped.len(), 1);
        assert_eq!(r.skipped[0].0, s(7).path_in(DIR));
    }

    #[test]
    fn corrupt_snapshot_without_delta_at_its_version_stops_before_it() {
        let f = Fixture::new();
        f.snapshot(5, &[("a", "1")]);
        f.delta(6, 5, &[("b", Some("2"))]);
        f.snapshot(7, &[("a", "1"), ("b", "2"), ("c", "3")]);
        f.delta(8, 7, &[("d", Some("4"))]);
        f.corrupt(s(7));
        let r = f.restore(8);
        // d8 applies on top of 7, which only the corrupt snapshot provides.
        assert_eq!(r.version, 6);
        assert_eq!(r.entries, state(&[("a", "1"), ("b", "2")]));
    }

    #[test]
    fn every_snapshot_corrupt_falls_back_to_deltas_from_the_start() {
        let f = Fixture::new();
        standard(&f);
        f.delta(1, 0, &[("z", Some("0"))]);
        f.corrupt(s(5));
        f.corrupt(s(7));
        // d5 has base 0 but d1 was reached first: the chain ends at 1.
        let r = f.restore(8);
        assert_eq!(r.version, 1);
        assert_eq!(r.entries, state(&[("z", "0")]));
        assert_eq!(r.skipped.len(), 2);
    }

    #[test]
    fn missing_delta_in_the_middle_ends_the_chain() {
        let f = Fixture::new();
        standard(&f);
        f.backend.delete(&d(8).path_in(DIR)).unwrap();
        f.delta(9, 8, &[("x", Some("9"))]);
        let r = f.restore(9);
        assert_eq!(r.version, 7);
        assert!(r.skipped.is_empty(), "a gap is not a corrupt file");
    }

    #[test]
    fn files_above_target_are_ignored_even_if_corrupt() {
        let f = Fixture::new();
        standard(&f);
        f.delta(9, 8, &[("x", Some("9"))]);
        f.snapshot(10, &[("everything", "else")]);
        f.corrupt(d(9));
        let r = f.restore(8);
        assert_eq!(r.version, 8);
        assert!(r.skipped.is_empty());
    }

    #[test]
    fn target_below_everything_is_empty() {
        let f = Fixture::new();
        standard(&f);
        assert_eq!(f.restore(4), Restored::default());
    }

    #[test]
    fn file_whose_header_does_not_match_its_name_is_skipped() {
        let f = Fixture::new();
        standard(&f);
        // Copy d6 over d8: valid file, wrong version.
        let d6 = f.backend.get(&d(6).path_in(DIR)).unwrap().unwrap();
        f.backend.put_atomic(&d(8).path_in(DIR), &d6).unwrap();
        let r = f.restore(8);
        assert_eq!(r.version, 7);
        assert!(r.skipped[0].1.contains("file name"), "{:?}", r.skipped);
    }

    /// Lists phantom files that `get` cannot find, and can fail reads.
    #[derive(Debug)]
    struct Phantom {
        inner: LocalBackend,
        phantom: Vec<String>,
        fail_reads: bool,
    }

    impl StateBackend for Phantom {
        fn put_atomic(&self, path: &str, bytes: &[u8]) -> Result<(), StateError> {
            self.inner.put_atomic(path, bytes)
        }
        fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StateError> {
            if self.fail_reads {
                return Err(StateError::Io {
                    op: "read",
                    path: path.to_owned(),
                    source: std::io::Error::other("store unreachable"),
                });
            }
            self.inner.get(path)
        }
        fn sweep_temp(&self, dir: &str) -> Result<usize, StateError> {
            self.inner.sweep_temp(dir)
        }
        fn list(&self, dir: &str) -> Result<Vec<String>, StateError> {
            let mut names = self.inner.list(dir)?;
            names.extend(self.phantom.iter().cloned());
            names.sort();
            Ok(names)
        }
        fn delete(&self, path: &str) -> Result<(), StateError> {
            self.inner.delete(path)
        }
        fn describe(&self) -> String {
            "phantom".into()
        }
    }

    #[test]
    fn listed_but_missing_files_are_skipped() {
        let f = Fixture::new();
        standard(&f);
        let b = Phantom {
            inner: f.backend.clone(),
            phantom: vec![s(8).to_string(), d(9).to_string()],
            fail_reads: false,
        };
        let r = restore(&b, DIR, 9).unwrap();
        assert_eq!(r.version, 8);
        assert_eq!(r.entries, state(&[("b", "20"), ("c", "3")]));
        let paths: Vec<&str> = r.skipped.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, [s(8).path_in(DIR), d(9).path_in(DIR)]);
    }

    #[test]
    fn backend_errors_are_returned_not_skipped() {
        let f = Fixture::new();
        standard(&f);
        let b = Phantom {
            inner: f.backend.clone(),
            phantom: vec![],
            fail_reads: true,
        };
        let err = restore(&b, DIR, 8).unwrap_err();
        assert!(matches!(err, StateError::Io { .. }), "{err}");
        assert_eq!(err.path(), s(7).path_in(DIR));
    }
}
