//! Sinks with a two-step commit: `pre_commit` writes a batch's output for
//! one partition where readers cannot see it, `commit` makes it visible.
//! Both are idempotent per `(batch, partition)`, so a replayed batch and a
//! leader finishing another leader's commit are safe.

mod file;
mod hbase;
mod kafka;
mod output_dir;
mod postgres;

pub use file::FileSink;
pub use hbase::HbaseSink;
pub use kafka::KafkaSink;
pub use postgres::PostgresSink;

use crate::error::ExecError;
use crate::json::json_lines;
use arrow_array::RecordBatch;
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

/// A transactional sink.
pub trait Sink: Send + Sync + std::fmt::Debug {
    /// Writes the output of `(batch_id, partition)` invisibly, replacing any
    /// earlier pre-commit of the same pair. Returns the records written.
    fn pre_commit(
        &self,
        batch_id: u64,
        partition: u32,
        output: &[RecordBatch],
    ) -> Result<u64, ExecError>;

    /// Makes the pre-committed output visible. Succeeds when it is already
    /// visible or when nothing was pre-committed (an empty output).
    fn commit(&self, batch_id: u64, partition: u32) -> Result<(), ExecError>;

    /// `partition` is now held by this process: get ready to pre-commit its
    /// output (e.g. connect). Called on a thread of its own, may block;
    /// errors are left for the next pre-commit to report.
    fn prepare(&self, _partition: u32) {}
}

/// Discards output (for benchmarks).
#[derive(Debug, Default)]
pub struct NoopSink;

impl Sink for NoopSink {
    fn pre_commit(&self, _: u64, _: u32, output: &[RecordBatch]) -> Result<u64, ExecError> {
        Ok(output.iter().map(|b| b.num_rows() as u64).sum())
    }

    fn commit(&self, _: u64, _: u32) -> Result<(), ExecError> {
        Ok(())
    }
}

/// Prints JSON lines on commit. Output held in memory between pre-commit
/// and commit is lost if the process dies in between: stdout is for
/// watching a job, not for exactly-once delivery.
#[derive(Debug, Default)]
pub struct StdoutSink {
    pending: Mutex<HashMap<(u64, u32), String>>,
}

impl Sink for StdoutSink {
    fn pre_commit(
        &self,
        batch_id: u64,
        partition: u32,
        output: &[RecordBatch],
    ) -> Result<u64, ExecError> {
        let (text, rows) = json_lines(output);
        if !text.is_empty() {
            lock(&self.pending).insert((batch_id, partition), text);
        }
        Ok(rows)
    }

    fn commit(&self, batch_id: u64, partition: u32) -> Result<(), ExecError> {
        if let Some(text) = lock(&self.pending).remove(&(batch_id, partition)) {
            let mut out = std::io::stdout().lock();
            // A closed stdout (e.g. `| head`) must not fail the job.
            let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
        }
        Ok(())
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
