//! The storage backend trait checkpoint files are written through.

use super::StateError;

/// A minimal, synchronous blob store holding checkpoint files.
///
/// Paths are relative to the backend's root and '/'-separated
/// (`job/operator/part-00003/00000000000000000042.delta`). A path must not be
/// empty, absolute, or contain empty, `.` or `..` components; names starting
/// with `.` are reserved for the backend's temporary files. Violations are
/// reported as [`StateError::InvalidPath`].
///
/// # Contract
///
/// Every implementation must pass the crate's backend conformance suite and
/// guarantee:
///
/// * **Atomic visibility**: after [`put_atomic`](Self::put_atomic) returns
///   `Ok`, readers see the complete new contents; before that they see the
///   complete previous contents (or nothing). A reader never observes a
///   partially written file, even if the writer crashes mid-way.
/// * **Durability**: when `put_atomic` returns `Ok` the file (and its name in
///   its directory) survives a crash of the process or machine.
/// * **Read-after-write**: once `put_atomic` or [`delete`](Self::delete)
///   returned, [`get`](Self::get) and [`list`](Self::list) from any thread of
///   any process reflect it.
/// * **No temporary files in listings**: `list` never shows the names used
///   while writing, nor files left behind by an interrupted write.
/// * **Idempotent delete**: deleting a missing file succeeds.
///
/// A single writer per directory is assumed; concurrent writers of the same
/// path get last-writer-wins semantics.
pub trait StateBackend: Send + Sync + std::fmt::Debug {
    /// Writes `bytes` to `path`, replacing any existing file atomically:
    /// writes a hidden temporary file in the same directory, makes it durable,
    /// then renames it into place. Creates missing parent directories.
    fn put_atomic(&self, path: &str, bytes: &[u8]) -> Result<(), StateError>;

    /// Reads the whole file at `path`; `Ok(None)` if it does not exist.
    fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StateError>;

    /// Names (not paths) of the files directly inside `dir`, sorted
    /// ascending, excluding subdirectories and temporary files. A missing
    /// directory lists as empty. `dir` may be `""` for the root.
    fn list(&self, dir: &str) -> Result<Vec<String>, StateError>;

    /// Deletes the file at `path`; a missing file is not an error.
    fn delete(&self, path: &str) -> Result<(), StateError>;

    /// Deletes the temporary files that writes left directly inside `dir`
    /// (interrupted by a crash, or still going on in a process that no
    /// longer owns `dir`, whose rename then fails); returns how many. Call
    /// it only while this process writes nothing into `dir`.
    fn sweep_temp(&self, dir: &str) -> Result<usize, StateError>;

    /// A human-readable description (kind and root) for logs and errors.
    fn describe(&self) -> String;
}

/// Splits a backend path into validated components.
///
/// With `allow_empty`, `""` is accepted and yields no components (used for
/// listing the root).
pub(crate) fn path_components(path: &str, allow_empty: bool) -> Result<Vec<&str>, StateError> {
    let invalid = |reason| StateError::InvalidPath {
        path: path.to_owned(),
        reason,
    };
    if path.is_empty() {
        return if allow_empty {
            Ok(Vec::new())
        } else {
            Err(invalid("the path is empty"))
        };
    }
    if path.starts_with('/') {
        return Err(invalid("the path is absolute"));
    }
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts {
        match *part {
            "" => return Err(invalid("the path has an empty component")),
            "." | ".." => return Err(invalid("the path has a '.' or '..' component")),
            p if p.contains('\\') || p.contains('\0') => {
                return Err(invalid("the path contains a backslash or NUL byte"))
            }
            _ => {}
        }
    }
    Ok(parts)
}

/// Validates a path that names a file to be written: like
/// [`path_components`], and the file name must not start with `.`.
pub(crate) fn file_components(path: &str) -> Result<Vec<&str>, StateError> {
    let parts = path_components(path, false)?;
    if parts.last().is_some_and(|name| name.starts_with('.')) {
        return Err(StateError::InvalidPath {
            path: path.to_owned(),
            reason: "file names starting with '.' are reserved for temporary files",
        });
    }
    Ok(parts)
}

/// Whether a directory entry name is one of the backend's temporary names
/// (all names starting with `.` are reserved for them).
pub(crate) fn is_temp_name(name: &str) -> bool {
    name.starts_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_validation() {
        assert_eq!(path_components("a/b/c", false).unwrap(), ["a", "b", "c"]);
        assert!(path_components("", true).unwrap().is_empty());
        for bad in ["", "/a", "a//b", "a/", "a/./b", "../a", "a/..", "a\\b"] {
            assert!(
                matches!(
                    path_components(bad, false),
                    Err(StateError::InvalidPath { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(file_components("a/.hidden").is_err());
        assert!(file_components(".a/b").is_ok());
    }
}
