//! [`StateBackend`] on the local filesystem.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::backend::{file_components, is_temp_name, path_components};
use super::{StateBackend, StateError};

/// Distinguishes temporary files of concurrent writes within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A [`StateBackend`] storing files under a root directory of the local
/// filesystem. Writes go to `.<name>.tmp-<pid>-<counter>` in the target
/// directory, are fsynced, renamed into place, and the directory is fsynced.
#[derive(Debug, Clone)]
pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    /// A backend rooted at `root`. The directory is created on first write.
    pub fn new(root: PathBuf) -> Self {
        LocalBackend { root }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn resolve(&self, parts: &[&str]) -> PathBuf {
        let mut p = self.root.clone();
        p.extend(parts);
        p
    }

    fn io_err<'a>(op: &'static str, path: &'a str) -> impl FnOnce(io::Error) -> StateError + 'a {
        move |source| StateError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }

    /// Names of the files directly inside `dir`, temporary ones included,
    /// unsorted.
    fn file_names(&self, dir: &str) -> Result<Vec<String>, StateError> {
        let parts = path_components(dir, true)?;
        let read = match fs::read_dir(self.resolve(&parts)) {
            Ok(read) => read,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(StateError::Io {
                    op: "list",
                    path: dir.to_owned(),
                    source: e,
                })
            }
        };
        let mut names = Vec::new();
        for entry in read {
            let entry = entry.map_err(Self::io_err("list", dir))?;
            let is_file = entry
                .file_type()
                .map_err(Self::io_err("list", dir))?
                .is_file();
            // Names that are not UTF-8 cannot have been written through this API.
            if let (true, Ok(name)) = (is_file, entry.file_name().into_string()) {
                names.push(name);
            }
        }
        Ok(names)
    }

    /// Creates `dir` and missing ancestors, fsyncing the parent of each
    /// directory created so the new names are durable.
    fn create_dirs(&self, dir: &Path, path: &str) -> Result<(), StateError> {
        if dir.is_dir() {
            return Ok(());
        }
        let mut missing = Vec::new();
        let mut cur = dir;
        while !cur.exists() {
            missing.push(cur.to_path_buf());
            match cur.parent() {
                Some(parent) => cur = parent,
                None => break,
            }
        }
        fs::create_dir_all(dir).map_err(Self::io_err("create directory for", path))?;
        for created in missing.iter().rev() {
            if let Some(parent) = created.parent() {
                sync_dir(parent).map_err(Self::io_err("fsync directory of", path))?;
            }
        }
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    // An empty parent means the current directory (relative root).
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

impl StateBackend for LocalBackend {
    fn put_atomic(&self, path: &str, bytes: &[u8]) -> Result<(), StateError> {
        let parts = file_components(path)?;
        let (name, dir_parts) = parts.split_last().expect("file path has a name");
        let dir = self.resolve(dir_parts);
        self.create_dirs(&dir, path)?;

        let temp = dir.join(format!(
            ".{name}.tmp-{}-{}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let write = || -> io::Result<()> {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&temp)?;
            f.write_all(bytes)?;
            f.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&temp);
            return Err(StateError::Io {
                op: "write temporary file for",
                path: path.to_owned(),
                source: e,
            });
        }
        if let Err(e) = fs::rename(&temp, dir.join(name)) {
            let _ = fs::remove_file(&temp);
            return Err(StateError::Io {
                op: "rename into place",
                path: path.to_owned(),
                source: e,
            });
        }
        sync_dir(&dir).map_err(Self::io_err("fsync directory of", path))
    }

    fn get(&self, path: &str) -> Result<Option<Vec<u8>>, StateError> {
        let parts = file_components(path)?;
        match fs::read(self.resolve(&parts)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StateError::Io {
                op: "read",
                path: path.to_owned(),
                source: e,
            }),
        }
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, StateError> {
        let mut names = self.file_names(dir)?;
        names.retain(|name| !is_temp_name(name));
        names.sort_unstable();
        Ok(names)
    }

    fn sweep_temp(&self, dir: &str) -> Result<usize, StateError> {
        let root = self.resolve(&path_components(dir, true)?);
        let mut swept = 0;
        for name in self.file_names(dir)? {
            if !is_temp_name(&name) {
                continue;
            }
            match fs::remove_file(root.join(&name)) {
                Ok(()) => swept += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(StateError::Io {
                        op: "delete a leftover temporary file in",
                        path: dir.to_owned(),
                        source: e,
                    })
                }
            }
        }
        Ok(swept)
    }

    fn delete(&self, path: &str) -> Result<(), StateError> {
        let parts = file_components(path)?;
        match fs::remove_file(self.resolve(&parts)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StateError::Io {
                op: "delete",
                path: path.to_owned(),
                source: e,
            }),
        }
    }

    fn describe(&self) -> String {
        format!("local filesystem at {}", self.root.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_backend_conforms() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path().join("state-root"));
        crate::state::conformance::backend_conformance(&backend);
    }

    #[test]
    fn leftover_temp_files_are_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path().to_path_buf());
        backend.put_atomic("d/real", b"x").unwrap();
        // Simulate a writer that crashed before its rename.
        fs::write(dir.path().join("d/.real.tmp-1-1"), b"partial").unwrap();
        fs::create_dir(dir.path().join("d/subdir")).unwrap();
        assert_eq!(backend.list("d").unwrap(), ["real"]);
        assert_eq!(backend.get("d/real").unwrap().unwrap(), b"x");
    }

    #[test]
    fn sweeping_deletes_leftover_temp_files_only() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path().to_path_buf());
        backend.put_atomic("d/real", b"x").unwrap();
        fs::write(dir.path().join("d/.real.tmp-1-1"), b"partial").unwrap();
        fs::write(dir.path().join("d/.other.tmp-2-7"), b"partial").unwrap();
        fs::create_dir(dir.path().join("d/.hidden-dir")).unwrap();
        assert_eq!(backend.sweep_temp("d").unwrap(), 2);
        let mut left: Vec<String> = fs::read_dir(dir.path().join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, [".hidden-dir", "real"]);
        assert_eq!(backend.sweep_temp("d").unwrap(), 0);
        assert_eq!(backend.sweep_temp("missing").unwrap(), 0);
    }

    #[test]
    fn io_errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let backend = LocalBackend::new(dir.path().to_path_buf());
        // A file where a directory is needed.
        backend.put_atomic("blocker", b"x").unwrap();
        let err = backend.put_atomic("blocker/child", b"y").unwrap_err();
        assert!(matches!(err, StateError::Io { .. }), "{err}");
        assert_eq!(err.path(), "blocker/child");
        assert!(backend
            .describe()
            .contains(&dir.path().display().to_string()));
    }
}
