//! Named connection settings, like a kubeconfig: a YAML file of contexts,
//! each with the drivers of a cluster and how to authenticate to them,
//! chosen with `weir --context NAME` or the file's `current_context`.
//! Flags and `WEIR_*` variables override the context's settings.
//!
//! ```yaml
//! current_context: prod
//! contexts:
//!   prod:
//!     drivers: weir-0.example.com:7070,weir-1.example.com:7070
//!     tls_ca: /etc/weir/ca.pem
//!     token_file: ~/.config/weir/prod.token
//!   dev:
//!     drivers: 127.0.0.1:7070
//! ```
//!
//! The file is `$WEIR_CLIENT_CONFIG`, else `$XDG_CONFIG_HOME/weir/config.yaml`,
//! else `~/.config/weir/config.yaml`.

use crate::remote::Access;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use weir_security::{Reloading, TlsFiles, Transport};

/// The drivers used when neither a flag nor a context names any.
pub const DEFAULT_DRIVERS: &str = "127.0.0.1:7070";
/// The largest client config or token file read.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The client config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The context used without `--context`.
    pub current_context: Option<String>,
    /// Contexts by name.
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// How to reach one cluster. Every field is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// Drivers, `host:port,...`.
    pub drivers: Option<String>,
    /// The CA that signed the drivers' certificates: TLS is on when set.
    pub tls_ca: Option<PathBuf>,
    /// A client certificate naming `weir://client/<name>`.
    pub tls_cert: Option<PathBuf>,
    /// Its key.
    pub tls_key: Option<PathBuf>,
    /// A bearer token.
    pub token: Option<String>,
    /// A file holding a bearer token (its first line).
    pub token_file: Option<PathBuf>,
}

/// The connection flags of the command line (and their `WEIR_*` variables).
#[derive(Debug, Default, Clone)]
pub struct Flags {
    /// `--context`.
    pub context: Option<String>,
    /// `--drivers`.
    pub drivers: Option<String>,
    /// `--tls-ca`.
    pub tls_ca: Option<PathBuf>,
    /// `--tls-cert`.
    pub tls_cert: Option<PathBuf>,
    /// `--tls-key`.
    pub tls_key: Option<PathBuf>,
    /// `--token`.
    pub token: Option<String>,
}

/// Why the connection settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The config file cannot be read or parsed.
    #[error("client config {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// `--context` names no context.
    #[error("no context {name:?} in {path} (contexts: {known})")]
    UnknownContext {
        /// The name asked for.
        name: String,
        /// The file.
        path: PathBuf,
        /// The names it has.
        known: String,
    },
    /// Settings that do not go together, or a file that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// The TLS files cannot be used.
    #[error(transparent)]
    Tls(#[from] weir_security::TlsError),
}

/// Where the client config file is.
pub fn config_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("WEIR_CLIENT_CONFIG") {
        return Some(PathBuf::from(p));
    }
    if let Some(xdg) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(xdg).join("weir/config.yaml"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/weir/config.yaml"))
}

fn read_small(path: &Path) -> Result<String, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_FILE_BYTES {
        return Err(format!("{len} bytes; at most {MAX_FILE_BYTES}"));
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// Expands a leading `~/` to the home directory.
fn expand(path: PathBuf) -> PathBuf {
    match (path.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => path,
    }
}

impl ClientConfig {
    /// Reads `path`; a missing file is an empty config.
    pub fn read(path: &Path) -> Result<ClientConfig, ContextError> {
        if !path.exists() {
            return Ok(ClientConfig::default());
        }
        let fail = |message: String| ContextError::File {
            path: path.to_path_buf(),
            message,
        };
        let text = read_small(path).map_err(fail)?;
        if text.trim().is_empty() {
            return Ok(ClientConfig::default());
        }
        serde_yaml_ng::from_str(&text).map_err(|e| fail(e.to_string()))
    }
}

/// The drivers and access that `flags` and the client config give.
pub fn resolve(flags: Flags) -> Result<(String, Access), ContextError> {
    let path = config_path();
    let config = match &path {
        Some(p) => ClientConfig::read(p)?,
        None => ClientConfig::default(),
    };
    let context = match flags.context.as_ref().or(config.current_context.as_ref()) {
        None => Context::default(),
        Some(name) => {
            config
                .contexts
                .get(name)
                .cloned()
                .ok_or_else(|| ContextError::UnknownContext {
                    name: name.clone(),
                    path: path.clone().unwrap_or_default(),
                    known: if config.contexts.is_empty() {
                        "none".into()
                    } else {
                        config
                            .contexts
                            .keys()
                            .cloned()
                            .collect::<Vec<_>>()
                            .join(", ")
                    },
                })?
        }
    };
    let drivers = flags
        .drivers
        .or(context.drivers)
        .unwrap_or_else(|| DEFAULT_DRIVERS.to_string());
    let token = match (flags.token, context.token, context.token_file) {
        (Some(t), _, _) | (None, Some(t), _) => Some(t),
        (None, None, Some(file)) => {
            let file = expand(file);
            let text = read_small(&file).map_err(|e| {
                ContextError::Invalid(format!("token_file {}: {e}", file.display()))
            })?;
            Some(text.lines().next().unwrap_or_default().trim().to_string())
        }
        (None, None, None) => None,
    }
    .filter(|t| !t.is_empty());
    let ca = flags.tls_ca.or(context.tls_ca).map(expand);
    let cert = flags.tls_cert.or(context.tls_cert).map(expand);
    let key = flags.tls_key.or(context.tls_key).map(expand);
    let transport = match (ca, cert, key) {
        (None, None, None) => Transport::Insecure,
        (Some(ca), None, None) => Transport::ca_only(&ca)?,
        (Some(ca), Some(cert), Some(key)) => Transport::mutual(Arc::new(Reloading::load(
            TlsFiles { cert, key, ca },
            None,
        )?)),
        (None, _, _) => {
            return Err(ContextError::Invalid(
                "--tls-cert/--tls-key need --tls-ca (WEIR_TLS_CA): the CA that signed the drivers' certificates".into(),
            ))
        }
        _ => {
            return Err(ContextError::Invalid(
                "a client certificate needs both --tls-cert and --tls-key".into(),
            ))
        }
    };
    Ok((drivers, Access { transport, token }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_parses_strictly() {
        let config: ClientConfig = serde_yaml_ng::from_str(
            "current_context: a\ncontexts:\n  a: { drivers: 'x:1', token: t }\n  b: { tls_ca: /ca.pem }\n",
        )
        .unwrap();
        assert_eq!(config.current_context.as_deref(), Some("a"));
        assert_eq!(config.contexts["a"].token.as_deref(), Some("t"));
        assert!(
            serde_yaml_ng::from_str::<ClientConfig>("contexts: { a: { password: x } }").is_err()
        );
    }

    #[test]
    fn home_is_expanded() {
        if let Some(home) = std::env::var_os("HOME") {
            assert_eq!(expand("~/x".into()), PathBuf::from(home).join("x"));
        }
        assert_eq!(expand("/x".into()), PathBuf::from("/x"));
    }
}
