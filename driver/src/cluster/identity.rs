//! The data directory's identity: which cluster and replica it belongs to.

use serde::{Deserialize, Serialize};
use std::path::Path;

const MARKER: &str = "weir-driver.json";

#[derive(Serialize, Deserialize)]
struct Identity {
    cluster_id: String,
    id: u64,
}

/// Checks that `dir` belongs to `cluster_id` and replica `id`, claiming an
/// empty (or new) directory. Returns whether the replica is new (nothing
/// stored yet). Refuses, saying why, a directory of another cluster or
/// replica, or one holding files that are not Weir's.
pub fn check_data_dir(dir: &Path, cluster_id: &str, id: u64) -> Result<bool, String> {
    std::fs::create_dir_all(dir)
        .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
    let marker = dir.join(MARKER);
    match std::fs::read_to_string(&marker) {
        Ok(text) => {
            let found: Identity = serde_json_like(&text).ok_or_else(|| {
                format!(
                    "{} is not a Weir driver marker; remove it only if the directory is unused",
                    marker.display()
                )
            })?;
            if found.cluster_id != cluster_id {
                return Err(format!(
                    "data directory {} belongs to cluster {:?}, not {cluster_id:?}; point --data-dir at this cluster's directory or use --cluster-id {:?}",
                    dir.display(),
                    found.cluster_id,
                    found.cluster_id
                ));
            }
            if found.id != id {
                return Err(format!(
                    "data directory {} belongs to driver {}, not {id}; each replica needs its own directory",
                    dir.display(),
                    found.id
                ));
            }
            Ok(false)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let foreign = std::fs::read_dir(dir)
                .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
                .next()
                .is_some();
            if foreign {
                return Err(format!(
                    "data directory {} is not empty and is not a Weir driver directory; use an empty directory",
                    dir.display()
                ));
            }
            let text = format!("{{\"cluster_id\":{:?},\"id\":{id}}}\n", cluster_id);
            std::fs::write(&marker, text)
                .map_err(|e| format!("cannot write {}: {e}", marker.display()))?;
            Ok(true)
        }
        Err(e) => Err(format!("cannot read {}: {e}", marker.display())),
    }
}

/// The marker is JSON; YAML is a superset of JSON, so the YAML parser reads it.
fn serde_json_like(text: &str) -> Option<Identity> {
    serde_yaml_ng::from_str(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_claimed_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d1");
        assert_eq!(check_data_dir(&d, "c", 1), Ok(true));
        assert_eq!(check_data_dir(&d, "c", 1), Ok(false));
        assert!(check_data_dir(&d, "other", 1)
            .unwrap_err()
            .contains("belongs to cluster \"c\""));
        assert!(check_data_dir(&d, "c", 2)
            .unwrap_err()
            .contains("belongs to driver 1"));
        std::fs::write(dir.path().join("stray"), "x").unwrap();
        assert!(check_data_dir(dir.path(), "c", 1)
            .unwrap_err()
            .contains("is not empty"));
    }
}
