//! State checkpoints: file format, storage backends, recovery.
//!
//! Executors keep each state partition in memory (key bytes → value bytes) and
//! persist it at checkpoint batches. The files of one `(job, operator,
//! partition)` live in one directory of a [`StateBackend`]:
//!
//! ```text
//! <job>/<operator>/part-<partition:05>/<version:020>.delta     changes since the previous checkpoint
//! <job>/<operator>/part-<partition:05>/<version:020>.snapshot  the full state
//! ```
//!
//! Versions are batch ids, zero-padded so that listing order is numeric.
//! Version 0 means "no state"; checkpoints have versions ≥ 1.
//!
//! * [`format`]: encoding/decoding of one checkpoint file.
//! * [`StateBackend`] / [`LocalBackend`]: where the files are stored.
//! * [`recovery`]: choosing and reading the files to restore a version, with
//!   fallback past corrupt files.
//! * [`PartitionCheckpoints`]: writing, restoring and pruning one partition.
//! * [`WriterPool`]: the threads that write every partition's files in the
//!   background.

use std::fmt;

mod backend;
#[cfg(test)]
pub(crate) mod conformance;
mod error;
pub mod format;
pub mod hdfs;
mod local;
mod partition;
pub mod recovery;
pub(crate) mod tenure;
mod writer;

pub use backend::StateBackend;
pub use error::StateError;
pub use format::CheckpointKind;
pub use hdfs::HdfsBackend;
pub use local::LocalBackend;
pub use partition::{
    PartitionCheckpoints, PartitionOptions, MAX_RETAIN_SNAPSHOTS, MAX_SNAPSHOT_EVERY,
};
pub use recovery::{
    plan_restore, restore, restore_into, RestoreOutcome, RestorePlan, RestoreTarget, Restored,
};
pub use tenure::{Lease, Tenure};
#[cfg(test)]
pub(crate) use writer::test_writers;
pub use writer::{default_writer_threads, Fill, WriterPool, MAX_WRITER_THREADS};

/// The name of one checkpoint file: its version and kind.
///
/// Ordered by version, then delta before snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CheckpointFileName {
    /// The batch id the checkpoint is for.
    pub version: u64,
    /// Delta or snapshot.
    pub kind: CheckpointKind,
}

impl CheckpointFileName {
    /// The delta file name for `version`.
    pub fn delta(version: u64) -> Self {
        CheckpointFileName {
            version,
            kind: CheckpointKind::Delta,
        }
    }

    /// The snapshot file name for `version`.
    pub fn snapshot(version: u64) -> Self {
        CheckpointFileName {
            version,
            kind: CheckpointKind::Snapshot,
        }
    }

    /// Parses `<version:020>.delta` or `<version:020>.snapshot`; `None` for
    /// any other name (which checkpoint code ignores).
    pub fn parse(name: &str) -> Option<Self> {
        let (digits, ext) = name.split_once('.')?;
        let kind = match ext {
            "delta" => CheckpointKind::Delta,
            "snapshot" => CheckpointKind::Snapshot,
            _ => return None,
        };
        if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(CheckpointFileName {
            version: digits.parse().ok()?,
            kind,
        })
    }

    /// Parses every checkpoint name in a directory listing, skipping others.
    pub fn parse_listing(names: &[String]) -> Vec<Self> {
        names.iter().filter_map(|n| Self::parse(n)).collect()
    }

    /// The path of this file inside directory `dir`.
    pub fn path_in(&self, dir: &str) -> String {
        format!("{dir}/{self}")
    }
}

impl fmt::Display for CheckpointFileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:020}.{}", self.version, self.kind.extension())
    }
}

/// The directory of one state partition: `<job>/<operator>/part-<partition:05>`.
///
/// `job` and `operator` must each be a single valid path component (no `/`,
/// not empty, not `.`/`..`, not starting with `.`).
pub fn partition_dir(job: &str, operator: &str, partition: u32) -> Result<String, StateError> {
    // The job name comes from the wire: checked again where it names a
    // directory.
    let invalid = |reason| StateError::InvalidPath {
        path: format!("{job}/{operator}"),
        reason,
    };
    weir_proto::spec::check_job_name(job)
        .map_err(|_| invalid("the job name is not a valid job name (see weir validate)"))?;
    if operator.contains('/') || operator.starts_with('.') || operator.is_empty() {
        return Err(invalid(
            "operator names must be single path components not starting with '.'",
        ));
    }
    let dir = format!("{job}/{operator}/part-{partition:05}");
    backend::path_components(&dir, false)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip_and_sort_numerically() {
        let d = CheckpointFileName::delta(42);
        assert_eq!(d.to_string(), "00000000000000000042.delta");
        assert_eq!(CheckpointFileName::parse(&d.to_string()), Some(d));
        let s = CheckpointFileName::snapshot(u64::MAX);
        assert_eq!(s.to_string(), "18446744073709551615.snapshot");
        assert_eq!(CheckpointFileName::parse(&s.to_string()), Some(s));
        for bad in [
            "42.delta",
            "0000000000000000004x.delta",
            "00000000000000000042.snap",
            "00000000000000000042",
            ".00000000000000000042.delta.tmp-1-2",
            "99999999999999999999.delta", // overflows u64
        ] {
            assert_eq!(CheckpointFileName::parse(bad), None, "{bad}");
        }
        let mut names: Vec<String> = [9u64, 10, 100, 2]
            .iter()
            .map(|v| CheckpointFileName::delta(*v).to_string())
            .collect();
        names.sort();
        let versions: Vec<u64> = CheckpointFileName::parse_listing(&names)
            .iter()
            .map(|f| f.version)
            .collect();
        assert_eq!(versions, [2, 9, 10, 100]);
        assert!(CheckpointFileName::delta(5) < CheckpointFileName::snapshot(5));
    }

    #[test]
    fn partition_dirs() {
        assert_eq!(
            partition_dir("job1", "agg", 3).unwrap(),
            "job1/agg/part-00003"
        );
        assert_eq!(partition_dir("j", "o", 123_456).unwrap(), "j/o/part-123456");
        for (job, op) in [("a/b", "o"), ("j", ".."), ("", "o"), ("j", ".x")] {
            assert!(partition_dir(job, op, 0).is_err(), "{job:?} {op:?}");
        }
    }
}
