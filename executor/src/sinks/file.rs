//! The file sink: one JSON-lines file per committed batch and partition,
//! `batch-<id>-part-<p>.jsonl`. Pre-commit writes a hidden temp file
//! (`.batch-<id>-part-<p>.jsonl.tmp`), fsynced; commit renames it into place,
//! so a reader listing non-hidden files sees each committed batch exactly
//! once. A replayed batch rewrites identical bytes. The directory is local
//! or on HDFS ([`output_dir`]); the protocol is the same.

use super::output_dir::{self, OutputDir};
use super::Sink;
use crate::error::ExecError;
use crate::json::json_lines;
use arrow_array::RecordBatch;

/// Writes batch output as JSON lines into a local directory or a directory
/// on HDFS (`hdfs://namenode:port/path`).
#[derive(Debug)]
pub struct FileSink {
    job: String,
    dir: Box<dyn OutputDir>,
}

impl FileSink {
    /// A sink writing into `path`: a local directory (created if missing) or
    /// an `hdfs://`/`viewfs://` URL (created on the first write).
    pub fn new(job: &str, path: &str) -> Result<Self, ExecError> {
        let dir = output_dir::open(path).map_err(|message| ExecError::Sink {
            job: job.to_string(),
            sink: format!("file {path}"),
            message,
        })?;
        Ok(FileSink {
            job: job.to_string(),
            dir,
        })
    }

    /// Name of the visible file of `(batch_id, partition)`.
    pub fn file_name(batch_id: u64, partition: u32) -> String {
        format!("batch-{batch_id}-part-{partition}.jsonl")
    }

    /// Hidden and visible names of `(batch_id, partition)`.
    fn names(batch_id: u64, partition: u32) -> (String, String) {
        let name = Self::file_name(batch_id, partition);
        (format!(".{name}.tmp"), name)
    }

    fn error(&self, message: String) -> ExecError {
        ExecError::Sink {
            job: self.job.clone(),
            sink: self.dir.describe(),
            message,
        }
    }
}

impl Sink for FileSink {
    fn pre_commit(
        &self,
        batch_id: u64,
        partition: u32,
        output: &[RecordBatch],
    ) -> Result<u64, ExecError> {
        let (text, rows) = json_lines(output);
        let (tmp, _) = Self::names(batch_id, partition);
        if rows == 0 {
            // Nothing to publish; drop a stale temp file from an earlier
            // attempt, which the commit would otherwise publish.
            self.dir.remove(&tmp).map_err(|m| self.error(m))?;
            return Ok(0);
        }
        self.dir
            .write(&tmp, text.as_bytes())
            .map_err(|m| self.error(m))?;
        Ok(rows)
    }

    fn commit(&self, batch_id: u64, partition: u32) -> Result<(), ExecError> {
        let (tmp, visible) = Self::names(batch_id, partition);
        // A missing temp file means already committed, or no output: both
        // are success.
        self.dir
            .rename(&tmp, &visible)
            .map(|_| ())
            .map_err(|m| self.error(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int64Array};
    use std::fs;
    use std::path::Path;
    use std::sync::Arc;

    fn listing(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn output_is_visible_only_after_commit_and_commit_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::new("j", dir.path().to_str().unwrap()).unwrap();
        let batch = RecordBatch::try_from_iter(vec![(
            "count",
            Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
        )])
        .unwrap();
        assert_eq!(
            sink.pre_commit(3, 1, std::slice::from_ref(&batch)).unwrap(),
            2
        );
        assert_eq!(listing(dir.path()), vec![".batch-3-part-1.jsonl.tmp"]);
        // a replay rewrites the same temp file
        sink.pre_commit(3, 1, &[batch]).unwrap();
        sink.commit(3, 1).unwrap();
        sink.commit(3, 1).unwrap();
        sink.commit(4, 0).unwrap();
        assert_eq!(listing(dir.path()), vec!["batch-3-part-1.jsonl"]);
        let text = fs::read_to_string(dir.path().join("batch-3-part-1.jsonl")).unwrap();
        assert_eq!(text, "{\"count\":1}\n{\"count\":2}\n");
    }

    /// A stale temporary file that cannot be removed fails the pre-commit
    /// (the commit would publish it), and a commit whose directory is gone
    /// fails instead of counting as an earlier commit.
    #[test]
    fn failures_to_clean_up_or_to_sync_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let sink = FileSink::new("j", out.to_str().unwrap()).unwrap();
        // A stale temp "file" that is a non-empty directory cannot be removed.
        fs::create_dir_all(out.join(".batch-5-part-0.jsonl.tmp/x")).unwrap();
        let e = sink.pre_commit(5, 0, &[]).unwrap_err().to_string();
        assert!(e.contains(".batch-5-part-0.jsonl.tmp"), "{e}");
        // An empty output with no stale file is fine.
        assert_eq!(sink.pre_commit(6, 0, &[]).unwrap(), 0);

        let batch = RecordBatch::try_from_iter(vec![(
            "count",
            Arc::new(Int64Array::from(vec![1])) as ArrayRef,
        )])
        .unwrap();
        sink.pre_commit(7, 0, &[batch]).unwrap();
        fs::remove_dir_all(&out).unwrap();
        let e = sink.commit(7, 0).unwrap_err().to_string();
        assert!(e.contains("cannot sync the directory"), "{e}");
    }
}
