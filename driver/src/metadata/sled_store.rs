//! A single-node metadata store on `sled`: every command is validated,
//! written atomically and flushed to disk before `apply` returns.

use super::machine::{check_command, JobProgress, PendingBatch};
use super::{MetaError, MetadataStore};
use prost::Message;
use std::path::Path;
use std::sync::Mutex;
use weir_proto::pb::{self, meta_command::Kind};

/// sled's page cache; its default (1 GiB) is far more than metadata needs.
const CACHE_BYTES: u64 = 16 * 1024 * 1024;
/// Plans of committed batches kept for replay, beyond the oldest one a
/// state recovery could still need.
const KEEP_PLANS: u64 = 16;
/// Committed batches kept for `weir batches`.
const KEEP_COMMITS: u64 = 100;

/// The metadata checkpoint in a sled tree.
pub struct SledMetadata {
    db: sled::Tree,
    path: String,
    flush_each: bool,
    /// Serializes check-then-apply.
    write: Mutex<()>,
}

impl std::fmt::Debug for SledMetadata {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledMetadata")
            .field("path", &self.path)
            .finish()
    }
}

fn key(kind: &str, job: &str) -> Vec<u8> {
    format!("{kind}/{job}").into_bytes()
}

fn plan_key(job: &str, batch_id: u64) -> Vec<u8> {
    format!("plan/{job}/{batch_id:020}").into_bytes()
}

fn commit_key(job: &str, batch_id: u64) -> Vec<u8> {
    format!("commit/{job}/{batch_id:020}").into_bytes()
}

fn history_key(job: &str, version: u32) -> Vec<u8> {
    format!("history/{job}/{version:010}").into_bytes()
}

fn peer_key(id: u64) -> Vec<u8> {
    format!("peer/{id:020}").into_bytes()
}

/// Where the applied index of the replicated log is kept.
const APPLIED_KEY: &[u8] = b"raft/applied";

impl SledMetadata {
    /// Opens (or creates) a single-node store in `dir`.
    pub fn open(dir: &Path) -> Result<Self, MetaError> {
        let path = dir.display().to_string();
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|e| MetaError::Storage {
                path: path.clone(),
                message: format!(
                    "cannot open: {e}; check that the directory is writable and not used by another Weir process"
                ),
            })?;
        Self::in_db(&db, &path, true)
    }

    /// The store in the `meta` tree of an open database (a driver replica
    /// keeps its Raft log in the same database). With `flush_each` unset,
    /// applying does not flush: the replicated log is the durable record
    /// and the applied index is written atomically with the state.
    pub fn in_db(db: &sled::Db, path: &str, flush_each: bool) -> Result<Self, MetaError> {
        let tree = db.open_tree("meta").map_err(|e| MetaError::Storage {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        Ok(SledMetadata {
            db: tree,
            path: path.to_string(),
            flush_each,
            write: Mutex::new(()),
        })
    }

    fn storage(&self, e: sled::Error) -> MetaError {
        MetaError::Storage {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    fn get<M: Message + Default>(&self, key: &[u8]) -> Result<Option<M>, MetaError> {
        match self.db.get(key).map_err(|e| self.storage(e))? {
            None => Ok(None),
            Some(bytes) => M::decode(bytes.as_ref())
                .map(Some)
                .map_err(|e| MetaError::Corrupt {
                    path: self.path.clone(),
                    key: String::from_utf8_lossy(key).into_owned(),
                    message: e.to_string(),
                }),
        }
    }

    /// Index of the last replicated log entry applied (0 when none).
    pub fn applied_index(&self) -> Result<u64, MetaError> {
        Ok(self
            .db
            .get(APPLIED_KEY)
            .map_err(|e| self.storage(e))?
            .and_then(|v| v.as_ref().try_into().ok().map(u64::from_be_bytes))
            .unwrap_or(0))
    }

    /// Validates and applies `command`; with `index`, the replicated log
    /// index it came from is recorded atomically with the change, and also
    /// when the command is rejected (every replica rejects it alike).
    pub fn apply_at(&self, command: pb::MetaCommand, index: Option<u64>) -> Result<(), MetaError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let job = match command.kind.as_ref() {
            Some(Kind::PutJob(r)) => r.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
            Some(Kind::BatchPlanned(p)) => p.job.clone(),
            Some(Kind::BatchCommitting(c)) => c.job.clone(),
            Some(Kind::BatchCommitted(r)) => r.job.clone(),
            Some(Kind::JobState(c)) => c.job.clone(),
            Some(Kind::DeleteJob(r)) => r.job.clone(),
            Some(Kind::PeerAddress(_)) | None => String::new(),
        };
        let exists = self
            .db
            .contains_key(key("job", &job))
            .map_err(|e| self.storage(e))?;
        let progress = self.progress(&job)?;
        let mut batch = sled::Batch::default();
        if let Some(i) = index {
            batch.insert(APPLIED_KEY, &i.to_be_bytes());
        }
        let outcome = check_command(&command, exists, &progress)
            .and_then(|()| self.changes(command, &job, progress, &mut batch));
        self.db.apply_batch(batch).map_err(|e| self.storage(e))?;
        if self.flush_each {
            self.db.flush().map_err(|e| self.storage(e))?;
        }
        outcome
    }

    fn changes(
        &self,
        command: pb::MetaCommand,
        job: &str,
        progress: JobProgress,
        batch: &mut sled::Batch,
    ) -> Result<(), MetaError> {
        match command.kind {
            Some(Kind::PutJob(record)) => {
                // An upgrade keeps the replaced version as history.
                if let Some(old) = self.get::<pb::JobRecord>(&key("job", job))? {
                    if old.version != record.version {
                        batch.insert(history_key(job, old.version), old.encode_to_vec());
                    }
                }
                batch.insert(key("job", job), record.encode_to_vec())
            }
            Some(Kind::PeerAddress(p)) => batch.insert(peer_key(p.id), p.address.into_bytes()),
            Some(Kind::DeleteJob(_)) => {
                for kind in ["job", "pending", "committing", "last_plan", "last_commit"] {
                    batch.remove(key(kind, job));
                }
                for prefix in ["plan", "commit", "history"] {
                    for k in self.db.scan_prefix(format!("{prefix}/{job}/")).keys() {
                        batch.remove(k.map_err(|e| self.storage(e))?);
                    }
                }
            }
            Some(Kind::JobState(change)) => {
                let mut record: pb::JobRecord = self
                    .get(&key("job", job))?
                    .ok_or_else(|| MetaError::Rejected(format!("unknown job {job}")))?;
                record.state = change.state;
                record.error = change.error;
                batch.insert(key("job", job), record.encode_to_vec());
            }
            Some(Kind::BatchPlanned(plan)) => {
                batch.insert(plan_key(job, plan.batch_id), plan.encode_to_vec());
                batch.insert(key("pending", job), plan.encode_to_vec());
            }
            Some(Kind::BatchCommitting(commit)) => {
                batch.insert(key("committing", job), commit.encode_to_vec())
            }
            Some(Kind::BatchCommitted(r)) => {
                let pending = progress
                    .pending
                    .ok_or_else(|| MetaError::Rejected("nothing pending".into()))?;
                let mut commit = pending
                    .committing
                    .ok_or_else(|| MetaError::Rejected("no decision".into()))?;
                if let Some(times) = commit.times.as_mut() {
                    times.commit_us += r.commit_us;
                }
                batch.insert(key("last_plan", job), pending.plan.encode_to_vec());
                batch.insert(key("last_commit", job), commit.encode_to_vec());
                batch.insert(commit_key(job, r.batch_id), commit.encode_to_vec());
                batch.remove(key("pending", job));
                batch.remove(key("committing", job));
                // Keep the plans a state recovery may replay (those after the
                // oldest durable state version) and a short commit history.
                let oldest_durable = commit
                    .durable_versions
                    .iter()
                    .copied()
                    .min()
                    .unwrap_or(r.batch_id);
                let keep_plans_from = oldest_durable.saturating_sub(KEEP_PLANS).max(1);
                for old in self
                    .db
                    .range(plan_key(job, 0)..plan_key(job, keep_plans_from))
                    .keys()
                {
                    batch.remove(old.map_err(|e| self.storage(e))?);
                }
                let keep_commits_from = r.batch_id.saturating_sub(KEEP_COMMITS).max(1);
                for old in self
                    .db
                    .range(commit_key(job, 0)..commit_key(job, keep_commits_from))
                    .keys()
                {
                    batch.remove(old.map_err(|e| self.storage(e))?);
                }
            }
            None => {}
        }
        Ok(())
    }

    /// Driver replica addresses recorded through the replicated log.
    pub fn peer_addresses(&self) -> Result<std::collections::BTreeMap<u64, String>, MetaError> {
        let mut out = std::collections::BTreeMap::new();
        for item in self.db.scan_prefix(b"peer/") {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            let id = std::str::from_utf8(&k[5..])
                .ok()
                .and_then(|s| s.parse().ok());
            if let Some(id) = id {
                out.insert(id, String::from_utf8_lossy(&v).into_owned());
            }
        }
        Ok(out)
    }

    /// Every entry of the store, for a replicated-log snapshot.
    pub fn export(&self) -> Result<Vec<u8>, MetaError> {
        let mut out = pb::MetaSnapshot::default();
        for item in self.db.iter() {
            let (k, v) = item.map_err(|e| self.storage(e))?;
            out.entries.push(pb::MetaEntry {
                key: k.to_vec(),
                value: v.to_vec(),
            });
        }
        Ok(out.encode_to_vec())
    }

    /// Replaces every entry with those of a snapshot made by [`export`](Self::export).
    pub fn import(&self, snapshot: &[u8]) -> Result<(), MetaError> {
        let snapshot = pb::MetaSnapshot::decode(snapshot).map_err(|e| MetaError::Corrupt {
            path: self.path.clone(),
            key: "<snapshot>".into(),
            message: e.to_string(),
        })?;
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut batch = sled::Batch::default();
        for k in self.db.iter().keys() {
            batch.remove(k.map_err(|e| self.storage(e))?);
        }
        for e in snapshot.entries {
            batch.insert(e.key, e.value);
        }
        self.db.apply_batch(batch).map_err(|e| self.storage(e))?;
        self.db.flush().map_err(|e| self.storage(e))?;
        Ok(())
    }
}

impl MetadataStore for SledMetadata {
    fn apply(&self, command: pb::MetaCommand) -> Result<(), MetaError> {
        self.apply_at(command, None)
    }

    fn job(&self, name: &str) -> Result<Option<pb::JobRecord>, MetaError> {
        self.get(&key("job", name))
    }

    fn jobs(&self) -> Result<Vec<pb::JobRecord>, MetaError> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(b"job/") {
            let (k, _) = item.map_err(|e| self.storage(e))?;
            if let Some(r) = self.get(&k)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn progress(&self, name: &str) -> Result<JobProgress, MetaError> {
        let pending = self
            .get::<pb::BatchPlan>(&key("pending", name))?
            .map(|plan| -> Result<PendingBatch, MetaError> {
                Ok(PendingBatch {
                    plan,
                    committing: self.get(&key("committing", name))?,
                })
            })
            .transpose()?;
        Ok(JobProgress {
            last_plan: self.get(&key("last_plan", name))?,
            last_commit: self.get(&key("last_commit", name))?,
            pending,
        })
    }

    fn plan(&self, name: &str, batch_id: u64) -> Result<Option<pb::BatchPlan>, MetaError> {
        self.get(&plan_key(name, batch_id))
    }

    fn history(&self, name: &str) -> Result<Vec<pb::JobRecord>, MetaError> {
        let mut out = Vec::new();
        for item in self
            .db
            .range(history_key(name, 0)..=history_key(name, u32::MAX))
        {
            let (k, _) = item.map_err(|e| self.storage(e))?;
            out.extend(self.get::<pb::JobRecord>(&k)?);
        }
        Ok(out)
    }

    fn batches(&self, name: &str, limit: usize) -> Result<Vec<pb::BatchCommit>, MetaError> {
        let mut out = Vec::new();
        for item in self
            .db
            .range(commit_key(name, 0)..=commit_key(name, u64::MAX))
            .rev()
            .take(limit)
        {
            let (_, v) = item.map_err(|e| self.storage(e))?;
            out.push(
                pb::BatchCommit::decode(v.as_ref()).map_err(|e| MetaError::Corrupt {
                    path: self.path.clone(),
                    key: format!("commit/{name}"),
                    message: e.to_string(),
                })?,
            );
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::command;

    fn record() -> pb::JobRecord {
        pb::JobRecord {
            spec: Some(pb::JobSpec {
                name: "j".into(),
                ..Default::default()
            }),
            fingerprint: "f".into(),
            created_at_ms: 5,
            ..Default::default()
        }
    }

    #[test]
    fn progress_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let m = SledMetadata::open(dir.path()).unwrap();
            m.apply(command::put_job(record())).unwrap();
            let plan = pb::BatchPlan {
                job: "j".into(),
                batch_id: 1,
                ranges: vec![pb::OffsetRange {
                    partition: 0,
                    start: 0,
                    end: 10,
                }],
                ..Default::default()
            };
            m.apply(command::planned(plan.clone())).unwrap();
            m.apply(command::committing(pb::BatchCommit {
                job: "j".into(),
                batch_id: 1,
                records_in: 10,
                ..Default::default()
            }))
            .unwrap();
            m.apply(command::committed("j", 1)).unwrap();
            m.apply(command::planned(pb::BatchPlan {
                job: "j".into(),
                batch_id: 2,
                ..Default::default()
            }))
            .unwrap();
            // a stale proposer cannot commit a batch that is not in flight
            assert!(matches!(
                m.apply(command::committed("j", 1)),
                Err(MetaError::Rejected(_))
            ));
        }
        let m = SledMetadata::open(dir.path()).unwrap();
        let p = m.progress("j").unwrap();
        assert_eq!(p.last_committed(), 1);
        assert_eq!(p.last_plan.unwrap().ranges[0].end, 10);
        assert_eq!(p.pending.unwrap().plan.batch_id, 2);
        assert_eq!(m.plan("j", 1).unwrap().unwrap().batch_id, 1);
        assert_eq!(m.jobs().unwrap().len(), 1);
    }

    #[test]
    fn snapshots_history_and_job_state() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let m = SledMetadata::open(a.path()).unwrap();
        m.apply_at(command::put_job(record()), Some(1)).unwrap();
        for batch_id in 1..=3 {
            m.apply(command::planned(pb::BatchPlan {
                job: "j".into(),
                batch_id,
                ..Default::default()
            }))
            .unwrap();
            m.apply(command::committing(pb::BatchCommit {
                job: "j".into(),
                batch_id,
                ..Default::default()
            }))
            .unwrap();
            m.apply(command::committed("j", batch_id)).unwrap();
        }
        let ids: Vec<u64> = m
            .batches("j", 2)
            .unwrap()
            .iter()
            .map(|c| c.batch_id)
            .collect();
        assert_eq!(ids, vec![3, 2]);
        // a rejected command still advances the applied index
        assert!(m.apply_at(command::committed("j", 9), Some(7)).is_err());
        assert_eq!(m.applied_index().unwrap(), 7);
        m.apply(command::job_state("j", pb::JobState::Stopped, ""))
            .unwrap();
        assert!(m
            .apply(command::job_state("nope", pb::JobState::Stopped, ""))
            .is_err());

        let copy = SledMetadata::open(b.path()).unwrap();
        copy.apply(command::put_job(pb::JobRecord {
            spec: Some(pb::JobSpec {
                name: "other".into(),
                ..Default::default()
            }),
            ..Default::default()
        }))
        .unwrap();
        copy.import(&m.export().unwrap()).unwrap();
        assert!(copy.job("other").unwrap().is_none());
        assert_eq!(
            copy.job("j").unwrap().unwrap().state,
            pb::JobState::Stopped as i32
        );
        assert_eq!(copy.progress("j").unwrap().last_committed(), 3);
        assert_eq!(copy.applied_index().unwrap(), 7);
    }

    #[test]
    fn upgrades_keep_history_and_delete_removes_everything() {
        let dir = tempfile::tempdir().unwrap();
        let m = SledMetadata::open(dir.path()).unwrap();
        let mut r = record();
        r.version = 1;
        m.apply(command::put_job(r.clone())).unwrap();
        let name = r.spec.as_ref().unwrap().name.clone();
        let mut v2 = r.clone();
        v2.version = 2;
        v2.fingerprint = "changed".into();
        m.apply(command::put_job(v2)).unwrap();
        let history = m.history(&name).unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].version, 1);
        m.apply(command::planned(pb::BatchPlan {
            job: name.clone(),
            batch_id: 1,
            ..Default::default()
        }))
        .unwrap();
        m.apply(command::delete_job(&name)).unwrap();
        assert!(m.job(&name).unwrap().is_none());
        assert!(m.history(&name).unwrap().is_empty());
        assert!(m.plan(&name, 1).unwrap().is_none());
        assert_eq!(m.progress(&name).unwrap(), JobProgress::default());
        assert!(m.apply(command::delete_job(&name)).is_err());
    }
}
