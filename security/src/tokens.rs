//! Roles, and the tokens file that gives them to clients: a YAML list of
//! `{ name, role, sha256 }`, where `sha256` is the hex SHA-256 of a bearer
//! token (only hashes are on disk). An entry without `sha256` gives a role
//! to the client certificate `weir://client/<name>`. The file is read
//! again when it changes.

use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};
use std::time::{Instant, SystemTime};

/// The largest tokens file read.
pub const MAX_TOKENS_FILE_BYTES: u64 = 1 << 20;

/// What a client may do. Each role may do what the one before it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// status, list, batches, history, cluster, diff.
    Viewer,
    /// viewer, and submit and stop.
    Operator,
    /// operator, and `stop --purge`, `cluster add-driver`, `cluster remove-driver`.
    Admin,
}

impl Role {
    /// The role's name as written in the tokens file.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Parses a role's name.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "operator" => Some(Role::Operator),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the tokens file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    role: Role,
    #[serde(default)]
    sha256: Option<String>,
}

/// Why the tokens file cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("--tokens {path}: {message}")]
pub struct TokensError {
    /// The file.
    pub path: PathBuf,
    /// What is wrong and what to write.
    pub message: String,
}

/// The parsed file: token hashes and certificate names to (name, role).
#[derive(Debug, Default)]
struct Table {
    by_hash: HashMap<[u8; 32], (String, Role)>,
    by_name: HashMap<String, Role>,
}

fn parse(path: &Path) -> Result<Table, TokensError> {
    let fail = |message: String| TokensError {
        path: path.to_path_buf(),
        message,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| fail(e.to_string()))?
        .len();
    if len > MAX_TOKENS_FILE_BYTES {
        return Err(fail(format!(
            "{len} bytes; the file is at most {MAX_TOKENS_FILE_BYTES}"
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
    let entries: Vec<Entry> = if text.trim().is_empty() {
        Vec::new()
    } else {
        serde_yaml_ng::from_str(&text).map_err(|e| {
            fail(format!(
                "{e} (expected a list of {{ name, role, sha256 }}, role one of viewer, operator, admin)"
            ))
        })?
    };
    let mut table = Table::default();
    for (i, entry) in entries.into_iter().enumerate() {
        if crate::Identity::from_uri(&format!("weir://client/{}", entry.name)).is_none() {
            return Err(fail(format!(
                "entry {i}: name {:?} must be 1–{} letters, digits, '-', '_', '.' or '@'",
                entry.name,
                crate::identity::MAX_NAME_BYTES
            )));
        }
        if table
            .by_name
            .insert(entry.name.clone(), entry.role)
            .is_some()
        {
            return Err(fail(format!(
                "entry {i}: name {:?} appears twice",
                entry.name
            )));
        }
        if let Some(hex) = entry.sha256 {
            let hash = decode_hex(&hex).ok_or_else(|| {
                fail(format!(
                    "entry {i} ({}): sha256 must be 64 hex digits (printf %s TOKEN | sha256sum)",
                    entry.name
                ))
            })?;
            table.by_hash.insert(hash, (entry.name, entry.role));
        }
    }
    Ok(table)
}

fn decode_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.trim().as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in hex.chunks(2).enumerate() {
        let digit = |b: u8| (b as char).to_digit(16);
        out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
    }
    Some(out)
}

/// The hex SHA-256 of `token`, as written in the tokens file.
pub fn token_hash(token: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The tokens file, read again when it changes.
#[derive(Debug)]
pub struct Tokens {
    path: PathBuf,
    current: RwLock<(Option<(SystemTime, u64)>, Table)>,
    checked: Mutex<Instant>,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl Tokens {
    /// Reads the file at `path`.
    pub fn load(path: &Path) -> Result<Tokens, TokensError> {
        let seen = stamp(path);
        let table = parse(path)?;
        Ok(Tokens {
            path: path.to_path_buf(),
            current: RwLock::new((seen, table)),
            checked: Mutex::new(Instant::now()),
        })
    }

    fn refresh(&self) {
        {
            let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            if checked.elapsed() < crate::material::RELOAD_CHECK {
                return;
            }
            *checked = Instant::now();
        }
        let seen = stamp(&self.path);
        if self.current.read().unwrap_or_else(|p| p.into_inner()).0 == seen {
            return;
        }
        match parse(&self.path) {
            Ok(table) => {
                tracing::info!(path = %self.path.display(), tokens = table.by_hash.len(), names = table.by_name.len(), "tokens file reloaded");
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = (seen, table);
            }
            Err(e) => {
                tracing::warn!(error = %e, "tokens file changed but cannot be used; keeping the previous one")
            }
        }
    }

    /// The name and role of the client presenting `token`.
    pub fn by_token(&self, token: &str) -> Option<(String, Role)> {
        self.refresh();
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest.as_ref());
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .by_hash
            .get(&hash)
            .cloned()
    }

    /// The role of the client certificate `weir://client/<name>`.
    pub fn by_name(&self, name: &str) -> Option<Role> {
        self.refresh();
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .1
            .by_name
            .get(name)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_matched_by_hash_and_names_by_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        std::fs::write(
            &path,
            format!(
                "- {{ name: alice, role: admin, sha256: {} }}\n- {{ name: ci, role: operator }}\n",
                token_hash("s3cret")
            ),
        )
        .unwrap();
        let tokens = Tokens::load(&path).unwrap();
        assert_eq!(
            tokens.by_token("s3cret"),
            Some(("alice".into(), Role::Admin))
        );
        assert_eq!(tokens.by_token("s3cre"), None);
        assert_eq!(tokens.by_name("ci"), Some(Role::Operator));
        assert_eq!(tokens.by_name("bob"), None);
        assert!(std::fs::read_to_string(&path)
            .unwrap()
            .find("s3cret")
            .is_none());
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        let write = |text: String| {
            let tmp = dir.path().join("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
        };
        write(format!(
            "- {{ name: a, role: viewer, sha256: {} }}\n",
            token_hash("one")
        ));
        let tokens = Tokens::load(&path).unwrap();
        assert!(tokens.by_token("one").is_some());
        std::thread::sleep(crate::material::RELOAD_CHECK);
        write(format!(
            "- {{ name: a, role: viewer, sha256: {} }}\n- {{ name: b, role: admin, sha256: {} }}\n",
            token_hash("one"),
            token_hash("two")
        ));
        assert_eq!(tokens.by_token("two"), Some(("b".into(), Role::Admin)));
        std::thread::sleep(crate::material::RELOAD_CHECK);
        write("- { name: a, role: root }\n".into());
        assert_eq!(tokens.by_token("two"), Some(("b".into(), Role::Admin)));
    }

    #[test]
    fn bad_files_are_refused_with_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens.yaml");
        for (text, expect) in [
            ("- { name: a, role: root }", "role"),
            ("- { name: a, role: admin, sha256: abc }", "64 hex digits"),
            ("- { name: 'a/b', role: admin }", "entry 0"),
            (
                "- { name: a, role: admin }\n- { name: a, role: viewer }",
                "twice",
            ),
            ("- { name: a, role: admin, password: x }", "unknown field"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = Tokens::load(&path).unwrap_err().to_string();
            assert!(e.contains(expect), "{text}: {e}");
        }
    }
}
