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

/// The metadata checkpoint in a local sled database.
pub struct SledMetadata {
    db: sled::Db,
    path: String,
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

impl SledMetadata {
    /// Opens (or creates) the store in `dir`.
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
        Ok(SledMetadata {
            db,
            path,
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
}

impl MetadataStore for SledMetadata {
    fn apply(&self, command: pb::MetaCommand) -> Result<(), MetaError> {
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let job = match command.kind.as_ref() {
            Some(Kind::PutJob(r)) => r.spec.as_ref().map(|s| s.name.clone()).unwrap_or_default(),
            Some(Kind::BatchPlanned(p)) => p.job.clone(),
            Some(Kind::BatchCommitting(c)) => c.job.clone(),
            Some(Kind::BatchCommitted(r)) => r.job.clone(),
            None => String::new(),
        };
        let exists = self
            .db
            .contains_key(key("job", &job))
            .map_err(|e| self.storage(e))?;
        let progress = self.progress(&job)?;
        check_command(&command, exists, &progress)?;
        let mut batch = sled::Batch::default();
        match command.kind {
            Some(Kind::PutJob(record)) => batch.insert(key("job", &job), record.encode_to_vec()),
            Some(Kind::BatchPlanned(plan)) => {
                batch.insert(plan_key(&job, plan.batch_id), plan.encode_to_vec());
                batch.insert(key("pending", &job), plan.encode_to_vec());
            }
            Some(Kind::BatchCommitting(commit)) => {
                batch.insert(key("committing", &job), commit.encode_to_vec())
            }
            Some(Kind::BatchCommitted(r)) => {
                let pending = progress
                    .pending
                    .ok_or_else(|| MetaError::Rejected("nothing pending".into()))?;
                let commit = pending
                    .committing
                    .ok_or_else(|| MetaError::Rejected("no decision".into()))?;
                batch.insert(key("last_plan", &job), pending.plan.encode_to_vec());
                batch.insert(key("last_commit", &job), commit.encode_to_vec());
                batch.remove(key("pending", &job));
                batch.remove(key("committing", &job));
                // Keep the plans a state recovery may replay: those after
                // the oldest durable state version.
                let oldest_durable = commit
                    .durable_versions
                    .iter()
                    .copied()
                    .min()
                    .unwrap_or(r.batch_id);
                let keep_from = oldest_durable.saturating_sub(KEEP_PLANS).max(1);
                for old in self
                    .db
                    .range(plan_key(&job, 0)..plan_key(&job, keep_from))
                    .keys()
                {
                    batch.remove(old.map_err(|e| self.storage(e))?);
                }
            }
            None => {}
        }
        self.db.apply_batch(batch).map_err(|e| self.storage(e))?;
        self.db.flush().map_err(|e| self.storage(e))?;
        Ok(())
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
}
