//! Writing, restoring and pruning the checkpoints of one state partition.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use super::format::{self, CheckpointEncoder, Entry};
use super::recovery::{self, RestoreOutcome, RestoreTarget, Restored};
use super::writer::{BackgroundWriter, Done, Fill, WriterPool};
use super::{partition_dir, CheckpointFileName, CheckpointKind, StateBackend, StateError, Tenure};

/// Tuning of a partition's checkpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOptions {
    /// A snapshot is due once this many deltas were written since the last
    /// snapshot (see [`PartitionCheckpoints::should_snapshot`]). 0 makes every
    /// checkpoint a snapshot.
    pub snapshot_every: u32,
    /// How many snapshots ≤ the durable version [`PartitionCheckpoints::prune`]
    /// keeps (values below 1 are treated as 1). Keeping more than one lets
    /// recovery fall back past a corrupt snapshot.
    pub retain_snapshots: u32,
}

/// Largest [`PartitionOptions::snapshot_every`] a setting may give: a
/// restore reads at most this many deltas past a snapshot (fewer when they
/// hold more entries than the state).
pub const MAX_SNAPSHOT_EVERY: u32 = 1_000;
/// Largest [`PartitionOptions::retain_snapshots`] a setting may give.
pub const MAX_RETAIN_SNAPSHOTS: u32 = 100;

impl Default for PartitionOptions {
    /// A snapshot every 10 deltas; keep 2 snapshots.
    fn default() -> Self {
        PartitionOptions {
            snapshot_every: 10,
            retain_snapshots: 2,
        }
    }
}

/// The checkpoint files of one `(job, operator, partition)`.
///
/// Assumes it is the only writer of its directory, and makes sure of it
/// with a [`Tenure`]: every write and delete is refused once the tenure it
/// was asked under ends (see [`set_tenure`](Self::set_tenure)). It remembers which files
/// exist (from a listing when opened, then its own writes and deletes) to
/// decide when a snapshot is due.
///
/// Typical use by the task owning the partition:
///
/// 1. [`restore`](Self::restore) the last committed version, then
///    [`discard_after`](Self::discard_after) the version actually restored
///    and replay later batches from the source;
/// 2. at each checkpoint batch `v`, write the delta on top of the previous
///    checkpoint and, if [`should_snapshot`](Self::should_snapshot), a
///    snapshot too (the delta lets recovery fall back past a corrupt
///    snapshot), [in the background](Self::write_in_background) or not;
///    report [`durable_version`](Self::durable_version), the newest version
///    the written files restore;
/// 3. [`prune`](Self::prune) what no restore to a committed, durable
///    version needs.
#[derive(Debug)]
pub struct PartitionCheckpoints {
    backend: Arc<dyn StateBackend>,
    dir: String,
    snapshot_every: u32,
    retain_snapshots: u32,
    files: BTreeSet<CheckpointFileName>,
    /// Writes files of [`write_in_background`](Self::write_in_background).
    writer: BackgroundWriter,
    /// See [`durable_version`](Self::durable_version).
    durable: u64,
    /// See [`take_failure`](Self::take_failure).
    failure: Option<StateError>,
    /// Entries in the deltas since the newest snapshot: what a restore
    /// reads beyond the snapshot (learnt from [`restore_into`](Self::restore_into)
    /// after a restart).
    delta_entries: u64,
    /// What the changes asked for from now on are made under.
    tenure: Tenure,
    /// The newest snapshot kept by the last [`prune`](Self::prune) that
    /// listed the store (`None` before any): until a newer one is durable,
    /// nothing more is prunable and the listing is skipped.
    pruned_at: Option<u64>,
}

impl PartitionCheckpoints {
    /// Opens the checkpoints of `partition` of `operator` in `job`, listing
    /// the existing files; files written in the background are written by
    /// the threads of `writers`. `job` and `operator` must be single path
    /// components.
    pub fn new(
        backend: Arc<dyn StateBackend>,
        writers: &WriterPool,
        job: &str,
        operator: &str,
        partition: u32,
        options: PartitionOptions,
    ) -> Result<Self, StateError> {
        let dir = partition_dir(job, operator, partition)?;
        let mut this = PartitionCheckpoints {
            writer: BackgroundWriter::new(backend.clone(), writers),
            backend,
            dir,
            snapshot_every: options.snapshot_every,
            retain_snapshots: options.retain_snapshots.max(1),
            files: BTreeSet::new(),
            durable: 0,
            failure: None,
            delta_entries: 0,
            tenure: Tenure::unfenced(),
            pruned_at: None,
        };
        this.refresh()?;
        Ok(this)
    }

    /// Makes the writes and deletes asked for from now on under `tenure`
    /// (those already queued keep the tenure they were asked under). A new
    /// instance is [unfenced](Tenure::unfenced).
    pub fn set_tenure(&mut self, tenure: Tenure) {
        self.tenure = tenure;
    }

    /// What the changes asked for from now on are made under (see
    /// [`set_tenure`](Self::set_tenure)).
    pub fn tenure(&self) -> &Tenure {
        &self.tenure
    }

    /// The partition's directory relative to the backend root
    /// (`<job>/<operator>/part-<partition:05>`).
    pub fn dir(&self) -> &str {
        &self.dir
    }

    /// The checkpoint files known to exist, ascending (a file still being
    /// written in the background is not among them).
    pub fn files(&self) -> impl Iterator<Item = CheckpointFileName> + '_ {
        self.files.iter().copied()
    }

    /// An encoder for the checkpoint file `name`: a delta on top of
    /// `base_version` (0 if there is none) or a snapshot (`base_version` is
    /// then ignored). `capacity` is the expected size in bytes. Write the
    /// result with [`write`](Self::write) or
    /// [`write_in_background`](Self::write_in_background).
    pub fn encoder(
        &self,
        name: CheckpointFileName,
        base_version: u64,
        capacity: usize,
    ) -> Result<CheckpointEncoder, StateError> {
        let path = name.path_in(&self.dir);
        let buf = self.writer.spare_buffer(capacity);
        match name.kind {
            CheckpointKind::Delta => {
                CheckpointEncoder::delta_into(buf, &path, name.version, base_version, capacity)
            }
            CheckpointKind::Snapshot => Ok(CheckpointEncoder::snapshot_into(
                buf,
                &path,
                name.version,
                capacity,
            )),
        }
    }

    /// Writes an encoded checkpoint file; durable when it returns. Files
    /// written in the background before are written first.
    pub fn write(&mut self, file: CheckpointEncoder) -> Result<(), StateError> {
        self.settle();
        let name = encoded_name(&file);
        self.count_entries(name, file.entry_count());
        let path = name.path_in(&self.dir);
        self.tenure.check("write", &path)?;
        self.backend.put_atomic(&path, &file.finish())?;
        self.written(name);
        Ok(())
    }

    /// Queues an encoded checkpoint file to be written by a thread of the
    /// writer pool, after the files of this partition queued before it, and
    /// returns at once (or once the partition's short queue has room).
    ///
    /// The file counts as written when its write succeeded: then
    /// [`durable_version`](Self::durable_version) moves to it. A failed
    /// write leaves no file and is kept for [`take_failure`](Self::take_failure);
    /// the versions after it are not durable until the partition is
    /// restored. [`restore`](Self::restore), [`discard_after`](Self::discard_after),
    /// [`write`](Self::write) and dropping wait for the queue to drain.
    pub fn write_in_background(&mut self, file: CheckpointEncoder) -> Result<(), StateError> {
        let entries = file.entry_count();
        self.submit(file, entries, None)
    }

    /// Like [`write_in_background`](Self::write_in_background) for a file
    /// whose `entries` entries `fill` pushes into `file` on a writer
    /// thread. An error of `fill` counts as a failed write.
    pub fn fill_in_background(
        &mut self,
        file: CheckpointEncoder,
        entries: u64,
        fill: Fill,
    ) -> Result<(), StateError> {
        self.submit(file, entries, Some(fill))
    }

    fn submit(
        &mut self,
        file: CheckpointEncoder,
        entries: u64,
        fill: Option<Fill>,
    ) -> Result<(), StateError> {
        let name = encoded_name(&file);
        self.count_entries(name, entries);
        self.writer.submit(
            name,
            name.path_in(&self.dir),
            file,
            fill,
            self.tenure.clone(),
        )
    }

    /// The newest version that written files restore (0 before any): only
    /// moves forward while every background write succeeds.
    pub fn durable_version(&mut self) -> u64 {
        self.reap();
        self.durable
    }

    /// The first background write that failed since the last restore, if
    /// any. The partition's later checkpoints are not durable: restore it
    /// (from what the store holds) before it runs on.
    pub fn take_failure(&mut self) -> Option<StateError> {
        self.reap();
        self.failure.take()
    }

    fn count_entries(&mut self, name: CheckpointFileName, entries: u64) {
        match name.kind {
            CheckpointKind::Delta => self.delta_entries += entries,
            CheckpointKind::Snapshot => self.delta_entries = 0,
        }
    }

    fn written(&mut self, name: CheckpointFileName) {
        self.files.insert(name);
        if self.failure.is_none() {
            self.durable = self.durable.max(name.version);
        }
    }

    /// Records the outcomes of background writes, in the order written.
    fn record(&mut self, outcomes: Vec<Done>) {
        for (name, outcome) in outcomes {
            match outcome {
                Ok(()) => self.written(name),
                Err(e) => {
                    tracing::warn!(dir = %self.dir, file = %name, error = %e, "background checkpoint write failed");
                    self.failure.get_or_insert(e);
                }
            }
        }
    }

    /// Waits for the background writes and records them.
    pub(crate) fn settle(&mut self) {
        let outcomes = self.writer.wait_all();
        self.record(outcomes);
    }

    /// Records the background writes that ended, without waiting.
    fn reap(&mut self) {
        let outcomes = self.writer.finished();
        self.record(outcomes);
    }

    /// Writes the delta at `version` holding `changes` (`None` = tombstone)
    /// since the checkpoint at `base_version` (0 if there is none).
    pub fn write_delta(
        &mut self,
        version: u64,
        base_version: u64,
        changes: &[Entry],
    ) -> Result<(), StateError> {
        let name = CheckpointFileName::delta(version);
        let mut file = self.encoder(name, base_version, format::encoded_len(changes))?;
        for (key, value) in changes {
            file.push(key, value.as_deref())?;
        }
        self.write(file)
    }

    /// Writes the snapshot at `version` holding the full state `entries`.
    pub fn write_snapshot<'a, I>(&mut self, version: u64, entries: I) -> Result<(), StateError>
    where
        I: IntoIterator<Item = (&'a [u8], &'a [u8])>,
    {
        let mut file = self.encoder(CheckpointFileName::snapshot(version), version, 0)?;
        for (key, value) in entries {
            file.push(key, Some(value))?;
        }
        self.write(file)
    }

    /// Whether the checkpoint at `version` should be a snapshot: true once
    /// `snapshot_every` deltas below `version` exist since the newest snapshot
    /// below `version` (or since the beginning if there is none). Files
    /// queued for the background count as written.
    ///
    /// A snapshot is due sooner once the deltas since the newest snapshot
    /// hold at least `state_len` entries (the keys the partition holds now):
    /// from then on a restore reads more from the deltas than from a
    /// snapshot, so restores never read more than about twice the state.
    /// With `state_len` 0 only the number of deltas counts.
    pub fn should_snapshot(&mut self, version: u64, state_len: usize) -> bool {
        if state_len > 0 && self.delta_entries >= state_len as u64 {
            return true;
        }
        self.reap();
        let known: BTreeSet<CheckpointFileName> = self
            .files
            .iter()
            .copied()
            .chain(self.writer.queued())
            .filter(|f| f.version < version)
            .collect();
        let last_snapshot = known
            .iter()
            .filter(|f| f.kind == CheckpointKind::Snapshot)
            .map(|f| f.version)
            .max()
            .unwrap_or(0);
        let deltas_since = known
            .range(CheckpointFileName::snapshot(last_snapshot)..)
            .filter(|f| f.kind == CheckpointKind::Delta)
            .count();
        deltas_since >= self.snapshot_every as usize
    }

    /// Restores the newest version ≤ `target` the readable files reach (see
    /// [`recovery::restore`]) and refreshes the known file set.
    pub fn restore(&mut self, target: u64) -> Result<Restored, StateError> {
        let mut entries = HashMap::new();
        let RestoreOutcome {
            version, skipped, ..
        } = self.restore_into(target, &mut entries)?;
        Ok(Restored {
            version,
            entries,
            skipped,
        })
    }

    /// Restores like [`restore`](Self::restore), into `into` (see
    /// [`recovery::restore_into`]).
    pub fn restore_into(
        &mut self,
        target: u64,
        into: &mut dyn RestoreTarget,
    ) -> Result<RestoreOutcome, StateError> {
        self.settle();
        self.sweep_temp();
        let listed = self.refresh()?;
        let outcome =
            recovery::restore_listed(self.backend.as_ref(), &self.dir, &listed, target, into)?;
        self.delta_entries = outcome.delta_entries;
        self.durable = outcome.version;
        self.failure = None;
        self.pruned_at = None;
        Ok(outcome)
    }

    /// Deletes the temporary files that interrupted writes left in the
    /// partition's directory (a crashed owner's, or a replaced one's still
    /// writing: its rename then fails). This process writes nothing there
    /// meanwhile: the writer has settled. A failure only leaves garbage,
    /// hidden from listings, for the next restore.
    fn sweep_temp(&self) {
        let swept = self
            .tenure
            .check("delete temporary files in", &self.dir)
            .and_then(|()| self.backend.sweep_temp(&self.dir));
        match swept {
            Ok(0) => {}
            Ok(swept) => {
                tracing::info!(dir = %self.dir, swept, "deleted temporary files of interrupted checkpoint writes")
            }
            Err(e) => {
                tracing::warn!(dir = %self.dir, error = %e, "cannot delete temporary files of interrupted checkpoint writes; retried at the next restore")
            }
        }
    }

    /// Deletes every checkpoint above `version`. Call it after
    /// [`restore`](Self::restore) with the version actually restored: files
    /// above it are either from batches that never committed or unusable
    /// (corrupt, or chained to a corrupt file), and left in place they could
    /// interleave with the checkpoints written while replaying. Returns the
    /// number of files deleted.
    pub fn discard_after(&mut self, version: u64) -> Result<usize, StateError> {
        self.settle();
        self.durable = self.durable.min(version);
        self.pruned_at = None;
        // Listed again even right after a restore: this owner may have
        // been paused since, and the files another owner wrote meanwhile
        // must meet the tenure check of their deletion.
        self.refresh()?;
        let doomed: Vec<_> = self
            .files
            .iter()
            .copied()
            .filter(|f| f.version > version)
            .collect();
        // Now, not in the background: the replay writes these names again.
        for name in &doomed {
            let path = name.path_in(&self.dir);
            self.tenure.check("delete", &path)?;
            self.backend.delete(&path)?;
            self.files.remove(name);
        }
        Ok(doomed.len())
    }

    /// Deletes the files no recovery to a version ≥ `durable_version` can
    /// need: keeps the newest `retain_snapshots` snapshots ≤ `durable_version`
    /// and every delta newer than the oldest of them, and never deletes
    /// anything above `durable_version`. Does nothing while there is no
    /// snapshot ≤ `durable_version`. Returns the number of files deleted.
    ///
    /// Lists the store only once a snapshot newer than the one kept by the
    /// last prune is durable (before, it would find nothing to delete): a
    /// namenode RPC saved on most checkpoint batches. A delete that failed
    /// is retried at the next listing.
    pub fn prune(&mut self, durable_version: u64) -> Result<usize, StateError> {
        self.reap();
        let newest_known = self
            .files
            .iter()
            .rev()
            .find(|f| f.kind == CheckpointKind::Snapshot && f.version <= durable_version)
            .map(|f| f.version);
        if newest_known == self.pruned_at {
            return Ok(0);
        }
        self.refresh()?;
        let kept_snapshots: Vec<u64> = self
            .files
            .iter()
            .rev()
            .filter(|f| f.kind == CheckpointKind::Snapshot && f.version <= durable_version)
            .map(|f| f.version)
            .take(self.retain_snapshots as usize)
            .collect();
        let Some(&oldest_kept) = kept_snapshots.last() else {
            return Ok(0);
        };
        self.pruned_at = kept_snapshots.first().copied();
        let doomed: Vec<_> = self
            .files
            .iter()
            .copied()
            .filter(|f| match f.kind {
                CheckpointKind::Snapshot => f.version < oldest_kept,
                CheckpointKind::Delta => f.version <= oldest_kept,
            })
            .collect();
        // Off the batch's path: no later write reuses these names.
        for name in &doomed {
            self.files.remove(name);
        }
        self.writer.delete_in_background(
            doomed.iter().map(|n| n.path_in(&self.dir)).collect(),
            &self.tenure,
        );
        if !doomed.is_empty() {
            tracing::debug!(dir = %self.dir, deleted = doomed.len(), "deleted state checkpoints");
        }
        Ok(doomed.len())
    }

    /// Learns the files from a listing, less those being deleted; returns
    /// the checkpoint files listed.
    fn refresh(&mut self) -> Result<Vec<CheckpointFileName>, StateError> {
        let listed = CheckpointFileName::parse_listing(&self.backend.list(&self.dir)?);
        self.files = (listed.iter().copied())
            .filter(|name| !self.writer.doomed(&name.path_in(&self.dir)))
            .collect();
        Ok(listed)
    }
}

fn encoded_name(file: &CheckpointEncoder) -> CheckpointFileName {
    CheckpointFileName {
        version: file.version(),
        kind: file.kind(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::LocalBackend;
    use std::collections::{BTreeMap, HashMap};

    fn open(root: &std::path::Path, options: PartitionOptions) -> PartitionCheckpoints {
        let backend: Arc<dyn StateBackend> = Arc::new(LocalBackend::new(root.to_path_buf()));
        PartitionCheckpoints::new(
            backend,
            crate::state::test_writers(),
            "job",
            "agg",
            7,
            options,
        )
        .unwrap()
    }

    /// Drives a partition like an executor would: every version is a
    /// checkpoint batch changing a few keys; prunes with durable = version.
    struct Driver {
        parts: PartitionCheckpoints,
        state: BTreeMap<Vec<u8>, Vec<u8>>,
        last: u64,
    }

    impl Driver {
        fn step(&mut self, v: u64, prune: bool) {
            let mut changes: Vec<Entry> = vec![
                (
                    format!("k{}", v % 37).into_bytes(),
                    Some(v.to_le_bytes().to_vec()),
                ),
                (format!("k{}", v % 11).into_bytes(), Some(vec![v as u8; 3])),
            ];
            if v % 5 == 0 {
                changes.push((format!("k{}", (v / 5) % 37).into_bytes(), None));
            }
            for (k, val) in &changes {
                match val {
                    Some(val) => self.state.insert(k.clone(), val.clone()),
                    None => self.state.remove(k),
                };
            }
            if self.parts.should_snapshot(v, 0) {
                self.parts.write_delta(v, self.last, &changes).unwrap();
                self.parts
                    .write_snapshot(v, self.state.iter().map(|(k, v)| (&k[..], &v[..])))
                    .unwrap();
            } else {
                self.parts.write_delta(v, self.last, &changes).unwrap();
            }
            self.last = v;
            if prune {
                self.parts.prune(v).unwrap();
            }
        }

        fn expected(&self) -> HashMap<Vec<u8>, Vec<u8>> {
            self.state.clone().into_iter().collect()
        }
    }

    #[test]
    fn dir_layout() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = open(tmp.path(), PartitionOptions::default());
        assert_eq!(p.dir(), "job/agg/part-00007");
        p.write_delta(3, 0, &[(b"k".to_vec(), Some(b"v".to_vec()))])
            .unwrap();
        p.write_snapshot(3, [(&b"k"[..], &b"v"[..])]).unwrap();
        let dir = tmp.path().join("job/agg/part-00007");
        assert!(dir.join("00000000000000000003.delta").is_file());
        assert!(dir.join("00000000000000000003.snapshot").is_file());
    }

    #[test]
    fn should_snapshot_counts_deltas_and_survives_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let options = PartitionOptions {
            snapshot_every: 3,
            retain_snapshots: 2,
        };
        let mut p = open(tmp.path(), options);
        assert!(!p.should_snapshot(1, 0));
        for v in 1..=3 {
            p.write_delta(v, v - 1, &[]).unwrap();
        }
        assert!(p.should_snapshot(4, 0));
        // A new instance learns the same from the listing.
        let mut p = open(tmp.path(), options);
        assert!(p.should_snapshot(4, 0));
        p.write_snapshot(4, std::iter::empty()).unwrap();
        assert!(!p.should_snapshot(5, 0));
        for v in 5..=7 {
            p.write_delta(v, v - 1, &[]).unwrap();
        }
        assert!(p.should_snapshot(8, 0));
        // Asking about an earlier version only counts what lies below it.
        assert!(!p.should_snapshot(6, 0));

        let every = PartitionOptions {
            snapshot_every: 0,
            retain_snapshots: 2,
        };
        assert!(open(tmp.path(), every).should_snapshot(8, 0));
    }

    #[test]
    fn a_restore_deletes_the_temp_files_of_interrupted_writes() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = open(tmp.path(), PartitionOptions::default());
        p.write_delta(1, 0, &[(b"a".to_vec(), Some(b"1".to_vec()))])
            .unwrap();
        let dir = tmp.path().join(p.dir());
        std::fs::write(dir.join(".00000000000000000002.delta.tmp-9-9"), b"cut").unwrap();
        let mut reopened = open(tmp.path(), PartitionOptions::default());
        let restored = reopened.restore(1).unwrap();
        assert_eq!(restored.version, 1);
        let names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["00000000000000000001.delta"]);
    }

    /// Queues the checkpoint of version `v` setting key `k` to `v`: the
    /// delta on top of `v - 1`, and a snapshot too if `snapshot`.
    fn queue_checkpoint(p: &mut PartitionCheckpoints, v: u64, snapshot: bool) {
        let mut delta = p.encoder(CheckpointFileName::delta(v), v - 1, 0).unwrap();
        delta.push(b"k", Some(&v.to_le_bytes())).unwrap();
        p.write_in_background(delta).unwrap();
        if snapshot {
            let mut file = p.encoder(CheckpointFileName::snapshot(v), 0, 0).unwrap();
            file.push(b"k", Some(&v.to_le_bytes())).unwrap();
            p.write_in_background(file).unwrap();
        }
    }

    #[test]
    fn pruned_files_are_deleted_by_the_writer_and_a_restore_finds_them_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let options = PartitionOptions {
            snapshot_every: 2,
            retain_snapshots: 1,
        };
        let mut p = open(tmp.path(), options);
        let on_disk = |p: &PartitionCheckpoints| p.backend.list(p.dir()).unwrap().len();
        // Snapshots at 1 and 4, deltas at 2 and 3 (and beside each snapshot).
        for v in 1..=4u64 {
            queue_checkpoint(&mut p, v, v == 1 || v == 4);
        }
        p.settle();
        assert_eq!(on_disk(&p), 6);
        // Everything below the snapshot at 4 goes: gone from the known
        // files at once, from the store once the writer got to it.
        assert_eq!(p.prune(4).unwrap(), 5);
        assert_eq!(
            p.files().collect::<Vec<_>>(),
            [CheckpointFileName::snapshot(4)]
        );
        assert_eq!(p.prune(4).unwrap(), 0, "a second prune finds nothing new");
        let restored = p.restore(4).unwrap();
        assert_eq!(restored.version, 4);
        assert_eq!(on_disk(&p), 1);
    }

    #[test]
    fn an_owner_whose_tenure_ended_changes_no_file() {
        use crate::state::tenure::tests::TestLease;
        use crate::state::Tenure;
        let tmp = tempfile::tempdir().unwrap();
        let options = PartitionOptions {
            snapshot_every: 1,
            retain_snapshots: 1,
        };
        let lease = Arc::new(TestLease::default());
        lease.set(1);
        let mut p = open(tmp.path(), options);
        p.set_tenure(Tenure::new(lease.clone(), 1));
        let on_disk = |p: &PartitionCheckpoints| p.backend.list(p.dir()).unwrap();
        for v in 1..=3 {
            queue_checkpoint(&mut p, v, true);
        }
        p.settle();
        assert_eq!(p.durable_version(), 3);
        let before = on_disk(&p);
        assert_eq!(before.len(), 6);
        // The leader gave the partition to another executor (epoch 2 is
        // this process's next registration): no write, prune, discard or
        // sweep of the old tenure reaches the store.
        lease.set(2);
        queue_checkpoint(&mut p, 4, true);
        p.settle();
        let failed = p.take_failure().expect("the late write failed");
        assert!(
            matches!(failed, StateError::Fenced { epoch: 1, .. }),
            "{failed}"
        );
        assert_eq!(p.durable_version(), 3);
        assert_eq!(
            p.prune(3).unwrap(),
            5,
            "all but the snapshot at 3 are prunable"
        );
        p.settle();
        let refused = p.discard_after(1).unwrap_err();
        assert!(matches!(refused, StateError::Fenced { .. }), "{refused}");
        let mut state = HashMap::new();
        assert_eq!(p.restore_into(3, &mut state).unwrap().version, 3);
        assert_eq!(on_disk(&p), before, "the store is as the tenure left it");
        // A task of the current epoch brings its own tenure.
        p.set_tenure(Tenure::new(lease.clone(), 2));
        assert_eq!(p.discard_after(2).unwrap(), 2);
        assert_eq!(on_disk(&p).len(), 4);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn files_are_encoded_and_written_below_the_batches_priority() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = open(tmp.path(), PartitionOptions::default());
        // SAFETY: reads the calling thread's nice value.
        let nice = || unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let (seen, writer_nice) = std::sync::mpsc::channel();
        let delta = p.encoder(CheckpointFileName::delta(1), 0, 16).unwrap();
        let fill: Fill = Box::new(move |file: &mut CheckpointEncoder| {
            seen.send(nice()).unwrap();
            file.push(b"a", Some(b"1"))
        });
        p.fill_in_background(delta, 1, fill).unwrap();
        p.settle();
        assert_eq!(p.durable_version(), 1);
        assert_eq!(
            writer_nice.recv().unwrap(),
            (nice() + super::super::writer::NICENESS).min(19)
        );
    }

    #[test]
    fn encoders_reuse_the_buffers_of_written_files() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = open(tmp.path(), PartitionOptions::default());
        let mut snapshot = p
            .encoder(CheckpointFileName::snapshot(1), 0, 1 << 20)
            .unwrap();
        snapshot.push(b"a", Some(b"1")).unwrap();
        p.write_in_background(snapshot).unwrap();
        p.settle();
        assert_eq!(p.durable_version(), 1);
        // The next encoder fills the snapshot's buffer: the file it writes
        // holds its own entries only.
        let mut delta = p.encoder(CheckpointFileName::delta(2), 1, 16).unwrap();
        assert!(delta.capacity() >= 1 << 20, "{}", delta.capacity());
        delta.push(b"b", Some(b"2")).unwrap();
        p.write_in_background(delta).unwrap();
        drop(p);
        let mut reopened = open(tmp.path(), PartitionOptions::default());
        let mut state = HashMap::new();
        assert_eq!(reopened.restore_into(2, &mut state).unwrap().version, 2);
        assert_eq!(
            state,
            HashMap::from([
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"2".to_vec())
            ])
        );
    }

    #[test]
    fn a_snapshot_is_due_once_the_deltas_hold_as_many_entries_as_the_state() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = open(tmp.path(), PartitionOptions::default());
        let entries = |n: usize| -> Vec<Entry> {
            (0..n)
                .map(|i| (format!("k{i}").into_bytes(), Some(vec![1])))
                .collect()
        };
        p.write_delta(1, 0, &entries(40)).unwrap();
        p.write_delta(2, 1, &entries(40)).unwrap();
        // 80 delta entries for a state of 100 keys: not yet.
        assert!(!p.should_snapshot(3, 100));
        p.write_delta(3, 2, &entries(40)).unwrap();
        assert!(p.should_snapshot(4, 100));
        assert!(!p.should_snapshot(4, 0), "0: only the count of deltas");
        // A snapshot (in the background too) starts the count again.
        p.write_delta(4, 3, &entries(40)).unwrap();
        let snapshot = p.encoder(CheckpointFileName::snapshot(4), 0, 0).unwrap();
        p.write_in_background(snapshot).unwrap();
        assert!(!p.should_snapshot(5, 100));
        p.write_delta(5, 4, &entries(60)).unwrap();
        assert!(!p.should_snapshot(6, 100));
        // A restarted executor learns the count from its restore.
        let mut reopened = open(tmp.path(), PartitionOptions::default());
        let outcome = reopened.restore_into(5, &mut HashMap::new()).unwrap();
        assert_eq!((outcome.version, outcome.delta_entries), (5, 60));
        assert!(!reopened.should_snapshot(6, 100));
        reopened.write_delta(6, 5, &entries(40)).unwrap();
        assert!(reopened.should_snapshot(7, 100));
    }

    #[test]
    fn thousand_versions_keep_the_file_count_bounded_and_restore() {
        let tmp = tempfile::tempdir().unwrap();
        let options = PartitionOptions {
            snapshot_every: 10,
            retain_snapshots: 2,
        };
        let mut d = Driver {
            parts: open(tmp.path(), options),
            state: BTreeMap::new(),
            last: 0,
        };
        let bound = (options.retain_snapshots * (options.snapshot_every + 2) + 2) as usize;
        let mut max_files = 0;
        for v in 1..=1000 {
            d.step(v, true);
            let on_disk = d.parts.backend.list(d.parts.dir()).unwrap().len();
            assert_eq!(on_disk, d.parts.files().count());
            max_files = max_files.max(on_disk);
        }
        assert!(max_files <= bound, "{max_files} files > bound {bound}");

        let r = d.parts.restore(1000).unwrap();
        assert_eq!(r.version, 1000);
        assert_eq!(r.entries, d.expected());
        assert!(r.skipped.is_empty());
        let snapshots = d
            .parts
            .files()
            .filter(|f| f.kind == CheckpointKind::Snapshot)
            .count();
        assert_eq!(snapshots, 2);
    }

    /// A local backend counting its listings.
    #[derive(Debug)]
    struct Counting {
        inner: LocalBackend,
        lists: std::sync::atomic::AtomicUsize,
    }

    impl StateBackend for Counting {
        fn put_atomic(&self, path: &str, bytes: &[u8]) -> Result<(), StateError> {
            self.inner.put_atomic(path, bytes)
        }
        fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StateError> {
            self.inner.get(path)
        }
        fn list(&self, dir: &str) -> Result<Vec<String>, StateError> {
            self.lists.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.list(dir)
        }
        fn delete(&self, path: &str) -> Result<(), StateError> {
            self.inner.delete(path)
        }
        fn sweep_temp(&self, dir: &str) -> Result<usize, StateError> {
            self.inner.sweep_temp(dir)
        }
        fn describe(&self) -> String {
            self.inner.describe()
        }
    }

    impl Counting {
        /// A counting backend over a local directory.
        fn new(root: &std::path::Path) -> Arc<Counting> {
            Arc::new(Counting {
                inner: LocalBackend::new(root.to_path_buf()),
                lists: Default::default(),
            })
        }

        /// The listings so far.
        fn lists(&self) -> usize {
            self.lists.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[test]
    fn prune_lists_the_store_only_once_a_newer_snapshot_is_durable() {
        let tmp = tempfile::tempdir().unwrap();
        let backend = Counting::new(tmp.path());
        let options = PartitionOptions {
            snapshot_every: 4,
            retain_snapshots: 2,
        };
        let parts = PartitionCheckpoints::new(
            backend.clone(),
            crate::state::test_writers(),
            "job",
            "agg",
            7,
            options,
        )
        .unwrap();
        let mut d = Driver {
            parts,
            state: BTreeMap::new(),
            last: 0,
        };
        let bound = (options.retain_snapshots * (options.snapshot_every + 2) + 2) as usize;
        let opened = backend.lists();
        for v in 1..=100 {
            d.step(v, true);
            assert!(backend.inner.list(d.parts.dir()).unwrap().len() <= bound);
        }
        // Snapshots at 5, 10, ..., 100: one listing per snapshot, not one
        // per batch.
        let snapshots = 100 / 5;
        assert_eq!(
            backend.lists() - opened,
            snapshots,
            "listings by 100 prunes"
        );
        let r = d.parts.restore(100).unwrap();
        assert_eq!(r.version, 100);
        assert_eq!(r.entries, d.expected());
    }

    #[test]
    fn a_restore_lists_the_store_once() {
        let tmp = tempfile::tempdir().unwrap();
        let backend = Counting::new(tmp.path());
        let options = PartitionOptions::default();
        let mut d = Driver {
            parts: PartitionCheckpoints::new(
                backend.clone(),
                crate::state::test_writers(),
                "job",
                "agg",
                7,
                options,
            )
            .unwrap(),
            state: BTreeMap::new(),
            last: 0,
        };
        for v in 1..=12 {
            d.step(v, true);
        }
        // Files of batches 13 and 14, which never committed.
        queue_checkpoint(&mut d.parts, 13, false);
        queue_checkpoint(&mut d.parts, 14, false);
        d.parts.settle();

        let mut parts = PartitionCheckpoints::new(
            backend.clone(),
            crate::state::test_writers(),
            "job",
            "agg",
            7,
            options,
        )
        .unwrap();
        let opened = backend.lists();
        let r = parts.restore(12).unwrap();
        assert_eq!((r.version, &r.entries), (12, &d.expected()));
        assert_eq!(backend.lists() - opened, 1, "listings by the restore");
        assert_eq!(parts.discard_after(12).unwrap(), 2);
        let on_disk = parts.backend.list(parts.dir()).unwrap();
        for gone in [CheckpointFileName::delta(13), CheckpointFileName::delta(14)] {
            assert!(!on_disk.contains(&gone.to_string()), "{on_disk:?}");
        }
    }

    #[test]
    fn prune_never_deletes_above_durable_version_and_keeps_recovery_possible() {
        let tmp = tempfile::tempdir().unwrap();
        let options = PartitionOptions {
            snapshot_every: 4,
            retain_snapshots: 2,
        };
        let mut d = Driver {
            parts: open(tmp.path(), options),
            state: BTreeMap::new(),
            last: 0,
        };
        for v in 1..=50 {
            d.step(v, false);
        }
        let before: Vec<_> = d.parts.files().collect();
        let deleted = d.parts.prune(30).unwrap();
        assert!(deleted > 0);
        let after: Vec<_> = d.parts.files().collect();
        for f in before.iter().filter(|f| f.version > 30) {
            assert!(
                after.contains(f),
                "{f} above the durable version was deleted"
            );
        }
        // Snapshots are at 5, 10, ..., so the two kept ≤ 30 are 25 and 30.
        let snapshots: Vec<u64> = after
            .iter()
            .filter(|f| f.kind == CheckpointKind::Snapshot && f.version <= 30)
            .map(|f| f.version)
            .collect();
        assert_eq!(snapshots, [25, 30]);
        assert!(after
            .iter()
            .all(|f| f.version > 25 || *f == CheckpointFileName::snapshot(25)));

        // Pruning is idempotent.
        assert_eq!(d.parts.prune(30).unwrap(), 0);

        // A restore below the pruned history comes from metadata that is
        // behind: refused, and nothing is read or deleted.
        let err = d.parts.restore(24).unwrap_err();
        assert!(
            matches!(
                err,
                StateError::BehindRetained {
                    target: 24,
                    oldest: 25,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(d.parts.files().collect::<Vec<_>>(), after);
        assert_eq!(d.parts.restore(25).unwrap().version, 25);

        let r = d.parts.restore(50).unwrap();
        assert_eq!(r.version, 50);
        assert_eq!(r.entries, d.expected());

        // With the newest snapshot ≤ 33 corrupt, recovery to 33 still works
        // from the older kept snapshot.
        let intact = d.parts.restore(33).unwrap();
        assert_eq!(intact.version, 33);
        let newest = CheckpointFileName::snapshot(30).path_in(d.parts.dir());
        d.parts.backend.put_atomic(&newest, b"garbage").unwrap();
        let r = d.parts.restore(33).unwrap();
        assert_eq!(r.version, 33);
        assert_eq!(r.entries, intact.entries);
        assert_eq!(r.skipped.len(), 1);
    }

    #[test]
    fn prune_without_snapshot_deletes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = open(tmp.path(), PartitionOptions::default());
        for v in 1..=5 {
            p.write_delta(v, v - 1, &[]).unwrap();
        }
        p.write_snapshot(6, std::iter::empty()).unwrap();
        assert_eq!(p.prune(5).unwrap(), 0);
        assert_eq!(p.files().count(), 6);
        // Once the snapshot is durable, the deltas before it can go.
        assert_eq!(p.prune(6).unwrap(), 5);
    }

    #[test]
    fn restore_then_discard_after_then_continue() {
        let tmp = tempfile::tempdir().unwrap();
        let options = PartitionOptions {
            snapshot_every: 3,
            retain_snapshots: 2,
        };
        let mut d = Driver {
            parts: open(tmp.path(), options),
            state: BTreeMap::new(),
            last: 0,
        };
        for v in 1..=12 {
            d.step(v, false);
        }
        let expected_at_9 = {
            let r = d.parts.restore(9).unwrap();
            assert_eq!(r.version, 9);
            r.entries
        };
        // Batches 10..12 never committed: restore 9 and drop their files.
        let r = d.parts.restore(9).unwrap();
        assert_eq!(r.entries, expected_at_9);
        assert_eq!(d.parts.discard_after(r.version).unwrap(), 4); // d10 d11 d12 s12
        assert!(d.parts.files().all(|f| f.version <= 9));
        // Reopening sees the same files.
        assert_eq!(
            open(tmp.path(), options).files().collect::<Vec<_>>(),
            d.parts.files().collect::<Vec<_>>()
        );
    }

    #[test]
    fn invalid_names_are_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        let backend: Arc<dyn StateBackend> = Arc::new(LocalBackend::new(tmp.path().to_path_buf()));
        let err = PartitionCheckpoints::new(
            backend.clone(),
            crate::state::test_writers(),
            "a/b",
            "op",
            0,
            PartitionOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(err, StateError::InvalidPath { .. }), "{err}");
        let mut p = PartitionCheckpoints::new(
            backend,
            crate::state::test_writers(),
            "j",
            "o",
            0,
            PartitionOptions::default(),
        )
        .unwrap();
        let err = p.write_delta(5, 5, &[]).unwrap_err();
        assert!(matches!(err, StateError::InvalidRequest { .. }), "{err}");
        assert!(err.path().ends_with("00000000000000000005.delta"));
    }
}
