//! The single error type of the state checkpoint module.

use thiserror::Error;

/// Everything that can go wrong while writing, reading, listing or pruning
/// state checkpoints. Every variant names the path it concerns (relative to
/// the backend root) and its message says what to do about it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum StateError {
    /// The storage backend failed an operation.
    #[error(
        "state store I/O error during {op} of `{path}`: {source}; check that the state root \
         is reachable, writable and not full, then retry (if one checkpoint file is \
         permanently unreadable, move it aside and recovery falls back to an older checkpoint)"
    )]
    Io {
        /// The backend operation that failed (`put`, `get`, `list`, `delete`, ...).
        op: &'static str,
        /// The path the operation was working on.
        path: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A path or path component handed to the state module is not acceptable.
    #[error(
        "invalid state path `{path}`: {reason}; paths are relative to the state root, \
         '/'-separated, without empty, '.' or '..' components, and file names must not \
         start with '.' (reserved for temporary files)"
    )]
    InvalidPath {
        /// The rejected path.
        path: String,
        /// Why it was rejected.
        reason: &'static str,
    },

    /// The file does not start with the checkpoint magic bytes.
    #[error(
        "`{path}` is not a Weir state checkpoint (bad magic bytes); it is a stray or \
         overwritten file: move it out of the state directory"
    )]
    BadMagic {
        /// The offending file.
        path: String,
    },

    /// The file was written by a newer (or unknown) checkpoint format.
    #[error(
        "`{path}` uses checkpoint format version {found}, but this build reads \
         versions 1 to {supported}; run a Weir version that supports it"
    )]
    UnsupportedFormatVersion {
        /// The offending file.
        path: String,
        /// The format version stored in the file.
        found: u16,
        /// The newest format version this build reads.
        supported: u16,
    },

    /// The file ends before the structure it declares.
    #[error(
        "`{path}` is truncated: {detail}; the file is incomplete (interrupted copy or \
         disk problem), recovery skips it and falls back to an older checkpoint"
    )]
    Truncated {
        /// The offending file.
        path: String,
        /// What was being read when the data ran out.
        detail: String,
    },

    /// The trailing CRC32C does not match the contents.
    #[error(
        "`{path}` failed its checksum (stored {expected:#010x}, computed {actual:#010x}); \
         the file is corrupt, recovery skips it and falls back to an older checkpoint"
    )]
    ChecksumMismatch {
        /// The offending file.
        path: String,
        /// The CRC32C stored in the file.
        expected: u32,
        /// The CRC32C computed over the file contents.
        actual: u32,
    },

    /// The file passed its checksum but its contents are inconsistent
    /// (unknown kind or tag, trailing bytes, header not matching the file name).
    #[error(
        "`{path}` is malformed: {detail}; the file was not written by a compatible Weir \
         writer, recovery skips it and falls back to an older checkpoint"
    )]
    Malformed {
        /// The offending file.
        path: String,
        /// What is inconsistent.
        detail: String,
    },

    /// The remote state store (the HDFS namenode) could not be reached, or
    /// did not answer in time, after the backend's retries.
    #[error(
        "state store {url} is unavailable (`{path}`): {detail}; check the \
         namenode address (host:port) in the state root URL and that HDFS is up and \
         reachable from this host; Weir retries the batch once it is back"
    )]
    Unavailable {
        /// The state root URL.
        url: String,
        /// The path the operation was working on.
        path: String,
        /// The failed operation and what the client reported.
        detail: String,
    },

    /// The store refused the operation for lack of permissions.
    #[error(
        "permission denied on `{path}` for user `{user}`: {detail}; \
         give that user read/write/execute access to the state root (hdfs dfs -chown or \
         -chmod), or run Weir as a user that has it (HADOOP_USER_NAME, or a Kerberos principal)"
    )]
    PermissionDenied {
        /// The path the operation was working on.
        path: String,
        /// The user the store saw (as far as the client knows it).
        user: String,
        /// The failed operation and what the store reported.
        detail: String,
    },

    /// The store is read-only for now (the HDFS namenode is in safe mode).
    #[error(
        "state store {url} is in safe mode (`{path}`): {detail}; wait for the \
         namenode to leave safe mode (it does once enough datanodes report their blocks; \
         `hdfs dfsadmin -safemode get`), or, if the datanodes are healthy, leave it with \
         `hdfs dfsadmin -safemode leave`"
    )]
    SafeMode {
        /// The state root URL.
        url: String,
        /// The path the operation was working on.
        path: String,
        /// The failed operation and what the store reported.
        detail: String,
    },

    /// A directory on the path does not exist (any more) or is a file.
    #[error(
        "the parent directory of `{path}` under {url} is missing or not a directory: \
         {detail}; something else deleted or replaced a directory under the state root \
         (only Weir may write there): remove the offending file and retry"
    )]
    ParentMissing {
        /// The state root URL.
        url: String,
        /// The path the operation was working on.
        path: String,
        /// The failed operation and what the store reported.
        detail: String,
    },

    /// A state store could not be set up from its URL and options.
    #[error("invalid state store configuration `{url}`: {detail}")]
    InvalidConfig {
        /// The state root URL as given.
        url: String,
        /// What is wrong and how to fix it.
        detail: String,
    },

    /// This executor may no longer change the partition's files: the epoch
    /// its task was sent under lost its lease (the executor was paused or cut
    /// off past the leader's failure timeout), so the leader may have given
    /// the partition to another executor.
    #[error(
        "not allowed to {op} `{path}`: this executor's epoch {epoch} lost its lease, and the \
         leader may have given the partition to another executor; nothing was changed, the \
         task fails and the leader re-runs it where the partition is now"
    )]
    Fenced {
        /// The change refused (`write`, `delete`, ...).
        op: &'static str,
        /// The file it concerned.
        path: String,
        /// The epoch the task was sent under.
        epoch: u64,
    },

    /// A restore asked for a version older than every checkpoint kept: the
    /// older files were pruned because a newer version had committed, so
    /// the request comes from metadata that is behind (a driver acting on
    /// a stale copy). Restoring "nothing" instead would discard the newer
    /// checkpoints, which are the job's state.
    #[error(
        "restore of `{path}` to version {target} refused: its oldest checkpoint is the \
         snapshot of version {oldest}, kept after a newer version committed, so the request \
         is behind the job's progress; nothing was read or deleted, and the task is retried \
         with the leader's current metadata"
    )]
    BehindRetained {
        /// The partition's directory.
        path: String,
        /// The version asked for.
        target: u64,
        /// The oldest snapshot kept.
        oldest: u64,
    },

    /// A caller asked for something the checkpoint format cannot represent or
    /// that breaks the checkpoint chain (a bug in the caller).
    #[error("cannot write `{path}`: {detail}; this is a bug in the caller of the state module")]
    InvalidRequest {
        /// The file that was to be written.
        path: String,
        /// What is wrong with the request.
        detail: String,
    },
}

impl StateError {
    /// The path (relative to the backend root) this error concerns; empty for
    /// [`StateError::InvalidConfig`].
    pub fn path(&self) -> &str {
        match self {
            StateError::Io { path, .. }
            | StateError::InvalidPath { path, .. }
            | StateError::BadMagic { path }
            | StateError::UnsupportedFormatVersion { path, .. }
            | StateError::Truncated { path, .. }
            | StateError::ChecksumMismatch { path, .. }
            | StateError::Malformed { path, .. }
            | StateError::InvalidRequest { path, .. }
            | StateError::Unavailable { path, .. }
            | StateError::PermissionDenied { path, .. }
            | StateError::SafeMode { path, .. }
            | StateError::ParentMissing { path, .. }
            | StateError::Fenced { path, .. }
            | StateError::BehindRetained { path, .. } => path,
            StateError::InvalidConfig { .. } => "",
        }
    }

    /// Whether the store is temporarily unable to serve requests (unreachable
    /// or in safe mode): retrying later, with backoff, may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            StateError::Unavailable { .. } | StateError::SafeMode { .. }
        )
    }

    /// Whether this error means the file's contents are unusable (as opposed to
    /// the store being unreachable or the request being wrong). Recovery skips
    /// such files and falls back to older checkpoints.
    pub fn is_corrupt_file(&self) -> bool {
        matches!(
            self,
            StateError::BadMagic { .. }
                | StateError::UnsupportedFormatVersion { .. }
                | StateError::Truncated { .. }
                | StateError::ChecksumMismatch { .. }
                | StateError::Malformed { .. }
        )
    }
}
