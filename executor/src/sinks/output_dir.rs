//! Where the file sink writes: a local directory or a directory on HDFS.
//! The sink's commit protocol (hidden temp file, rename on commit) is the
//! same for both; this trait holds the few filesystem operations it needs.

use crate::state::{HdfsBackend, StateError};
use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::PathBuf;

/// The directory a file sink writes into. Names are plain file names
/// directly inside it; names starting with `.` are hidden from readers.
pub(super) trait OutputDir: Send + Sync + std::fmt::Debug {
    /// Writes `bytes` durably to `name`, replacing any existing file. Not
    /// atomic: used for hidden names only.
    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), String>;

    /// Renames `from` onto `to` atomically and durably, replacing `to`.
    /// `Ok(false)` when `from` does not exist.
    fn rename(&self, from: &str, to: &str) -> Result<bool, String>;

    /// Deletes `name`; a missing file is not an error.
    fn remove(&self, name: &str) -> Result<(), String>;

    /// The directory, for error messages (`file /out`, `file hdfs://nn/out`).
    fn describe(&self) -> String;
}

/// Opens the output directory `path`: `hdfs://…`/`viewfs://…` URLs on HDFS,
/// anything else a local directory (created if missing).
pub(super) fn open(path: &str) -> Result<Box<dyn OutputDir>, String> {
    if path.contains("://") {
        let backend = HdfsBackend::new(path, HashMap::new()).map_err(|e| e.to_string())?;
        return Ok(Box::new(HdfsDir(backend)));
    }
    let dir = PathBuf::from(path);
    fs::create_dir_all(&dir).map_err(|e| {
        format!(
            "cannot create the output directory {}: {e}; check that its parent exists and is \
             writable",
            dir.display()
        )
    })?;
    Ok(Box::new(LocalDir(dir)))
}

/// A local directory; files and renames are fsynced.
#[derive(Debug)]
struct LocalDir(PathBuf);

impl LocalDir {
    fn error(&self, action: &str, name: &str, e: std::io::Error) -> String {
        format!(
            "cannot {action} {}: {e}; check that the directory exists and is writable",
            self.0.join(name).display()
        )
    }
}

impl OutputDir for LocalDir {
    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), String> {
        let path = self.0.join(name);
        let mut f = fs::File::create(&path).map_err(|e| self.error("create", name, e))?;
        f.write_all(bytes)
            .and_then(|_| f.sync_all())
            .map_err(|e| self.error("write", name, e))
    }

    fn rename(&self, from: &str, to: &str) -> Result<bool, String> {
        let renamed = match fs::rename(self.0.join(from), self.0.join(to)) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(self.error("publish", from, e)),
        };
        // The rename is durable before the batch counts as committed, also
        // when an earlier attempt renamed and then failed here; and a
        // directory that is gone is an error, not an earlier commit.
        fs::File::open(&self.0)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.error("sync the directory of", to, e))?;
        Ok(renamed)
    }

    fn remove(&self, name: &str) -> Result<(), String> {
        match fs::remove_file(self.0.join(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(self.error("delete", name, e))
            }
            _ => Ok(()),
        }
    }

    fn describe(&self) -> String {
        format!("file {}", self.0.display())
    }
}

/// A directory on HDFS: the state backend's client, retries and error
/// mapping (see docs/hdfs.md), rooted at the sink's directory.
#[derive(Debug)]
struct HdfsDir(HdfsBackend);

impl OutputDir for HdfsDir {
    fn write(&self, name: &str, bytes: &[u8]) -> Result<(), String> {
        self.0.write_file(name, bytes).map_err(hdfs_error)
    }

    fn rename(&self, from: &str, to: &str) -> Result<bool, String> {
        self.0.rename(from, to).map_err(hdfs_error)
    }

    fn remove(&self, name: &str) -> Result<(), String> {
        self.0.remove_file(name).map_err(hdfs_error)
    }

    fn describe(&self) -> String {
        format!("file {}", self.0.url())
    }
}

/// The backend's errors already name the URL, the path and what to do.
fn hdfs_error(e: StateError) -> String {
    e.to_string()
}
