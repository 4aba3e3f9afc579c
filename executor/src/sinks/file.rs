//! The file sink: one JSON-lines file per committed batch and partition,
//! `batch-<id>-part-<p>.jsonl`. Pre-commit writes a hidden temp file
//! (`.batch-<id>-part-<p>.jsonl.tmp`), fsynced; commit renames it into place,
//! so a reader listing non-hidden files sees each committed batch exactly
//! once. A replayed batch rewrites identical bytes.

use super::Sink;
use crate::error::ExecError;
use crate::json::json_lines;
use arrow_array::RecordBatch;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes batch output as JSON lines into a local directory.
#[derive(Debug)]
pub struct FileSink {
    job: String,
    dir: PathBuf,
}

impl FileSink {
    /// A sink writing into `dir` (created if missing).
    pub fn new(job: &str, dir: impl Into<PathBuf>) -> Result<Self, ExecError> {
        let sink = FileSink {
            job: job.to_string(),
            dir: dir.into(),
        };
        fs::create_dir_all(&sink.dir)
            .map_err(|e| sink.error(&sink.dir, "create the output directory", e))?;
        Ok(sink)
    }

    /// Name of the visible file of `(batch_id, partition)`.
    pub fn file_name(batch_id: u64, partition: u32) -> String {
        format!("batch-{batch_id}-part-{partition}.jsonl")
    }

    fn paths(&self, batch_id: u64, partition: u32) -> (PathBuf, PathBuf) {
        let name = Self::file_name(batch_id, partition);
        (self.dir.join(format!(".{name}.tmp")), self.dir.join(name))
    }

    fn error(&self, path: &Path, action: &str, e: std::io::Error) -> ExecError {
        ExecError::Sink {
            job: self.job.clone(),
            sink: format!("file {}", self.dir.display()),
            message: format!(
                "cannot {action} {}: {e}; check that the directory exists and is writable",
                path.display()
            ),
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
        let (tmp, _) = self.paths(batch_id, partition);
        if rows == 0 {
            // Nothing to publish; drop a stale temp file from an earlier attempt.
            let _ = fs::remove_file(&tmp);
            return Ok(0);
        }
        let mut f = fs::File::create(&tmp).map_err(|e| self.error(&tmp, "create", e))?;
        f.write_all(text.as_bytes())
            .and_then(|_| f.sync_all())
            .map_err(|e| self.error(&tmp, "write", e))?;
        Ok(rows)
    }

    fn commit(&self, batch_id: u64, partition: u32) -> Result<(), ExecError> {
        let (tmp, visible) = self.paths(batch_id, partition);
        match fs::rename(&tmp, &visible) {
            Ok(()) => {
                // Make the rename durable before the batch counts as committed.
                if let Ok(d) = fs::File::open(&self.dir) {
                    let _ = d.sync_all();
                }
                Ok(())
            }
            // Already committed, or no output: both are success.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.error(&tmp, "publish", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Int64Array};
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
        let sink = FileSink::new("j", dir.path()).unwrap();
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
}
