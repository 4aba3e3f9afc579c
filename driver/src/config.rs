//! Driver settings: defaults, then a YAML file, then `WEIR_*` environment
//! variables, then command-line flags; parsed strictly and validated.

use clap::Parser;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// `weir-driver` command line (every flag also reads a `WEIR_*` variable).
#[derive(Debug, Parser, Default)]
#[command(name = "weir-driver", version, about = "A Weir driver replica")]
pub struct DriverArgs {
    /// A YAML file with any of the settings below (flags and env override it).
    #[arg(long, env = "WEIR_CONFIG")]
    pub config: Option<PathBuf>,
    /// This replica's id (a positive integer, unique in the cluster).
    #[arg(long, env = "WEIR_DRIVER_ID")]
    pub id: Option<u64>,
    /// Address to listen on for clients, executors and peers (host:port).
    #[arg(long, env = "WEIR_LISTEN")]
    pub listen: Option<String>,
    /// Address others reach this replica at (default: --listen).
    #[arg(long, env = "WEIR_ADVERTISE")]
    pub advertise: Option<String>,
    /// Every replica at bootstrap, this one included: id=host:port,...
    #[arg(long, env = "WEIR_PEERS")]
    pub peers: Option<String>,
    /// Directory of the Raft log and the metadata checkpoint.
    #[arg(long, env = "WEIR_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Cluster id fixed at bootstrap; replicas of other clusters are refused.
    #[arg(long, env = "WEIR_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// Join an existing cluster (added with `weir cluster add-driver`)
    /// instead of bootstrapping with --peers.
    #[arg(long, env = "WEIR_JOIN")]
    pub join: bool,
    /// Raft tick interval in milliseconds.
    #[arg(long, env = "WEIR_TICK_MS")]
    pub tick_ms: Option<u64>,
    /// Ticks without a leader before an election.
    #[arg(long, env = "WEIR_ELECTION_TICKS")]
    pub election_ticks: Option<usize>,
    /// Ticks between leader heartbeats.
    #[arg(long, env = "WEIR_HEARTBEAT_TICKS")]
    pub heartbeat_ticks: Option<usize>,
    /// Applied entries kept in the log before it is compacted into a snapshot.
    #[arg(long, env = "WEIR_SNAPSHOT_THRESHOLD")]
    pub snapshot_threshold: Option<u64>,
    /// How long a metadata proposal may wait for a quorum, in milliseconds.
    #[arg(long, env = "WEIR_PROPOSAL_TIMEOUT_MS")]
    pub proposal_timeout_ms: Option<u64>,
    /// Log format: human or json.
    #[arg(long, env = "WEIR_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// This replica's certificate (PEM), naming `weir://driver/<id>`.
    #[arg(long, env = "WEIR_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "WEIR_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The CA that signs every certificate of the cluster (PEM).
    #[arg(long, env = "WEIR_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Serve plaintext without authentication (tests and development only).
    #[arg(long, env = "WEIR_INSECURE")]
    pub insecure: bool,
    /// Clients' tokens and roles: a YAML list of { name, role, sha256 }.
    #[arg(long, env = "WEIR_TOKENS")]
    pub tokens: Option<PathBuf>,
    /// Address of the HTTP port (metrics, health, web UI), host:port; none
    /// when unset.
    #[arg(long, env = "WEIR_HTTP_LISTEN")]
    pub http_listen: Option<String>,
}

/// The same settings in a config file.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DriverFile {
    id: Option<u64>,
    listen: Option<String>,
    advertise: Option<String>,
    peers: Option<BTreeMap<u64, String>>,
    data_dir: Option<PathBuf>,
    cluster_id: Option<String>,
    join: Option<bool>,
    tick_ms: Option<u64>,
    election_ticks: Option<usize>,
    heartbeat_ticks: Option<usize>,
    snapshot_threshold: Option<u64>,
    proposal_timeout_ms: Option<u64>,
    log_format: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
    insecure: Option<bool>,
    tokens: Option<PathBuf>,
    http_listen: Option<String>,
}

/// Validated driver settings.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// This replica's id.
    pub id: u64,
    /// Listen address.
    pub listen: String,
    /// Address others use.
    pub advertise: String,
    /// Replicas at bootstrap (id → address), this one included.
    pub peers: BTreeMap<u64, String>,
    /// Data directory.
    pub data_dir: PathBuf,
    /// Cluster id.
    pub cluster_id: String,
    /// Join instead of bootstrapping.
    pub join: bool,
    /// Raft tick.
    pub tick: Duration,
    /// Election timeout in ticks.
    pub election_ticks: usize,
    /// Heartbeat interval in ticks.
    pub heartbeat_ticks: usize,
    /// Log entries before compaction.
    pub snapshot_threshold: u64,
    /// Proposal timeout.
    pub proposal_timeout: Duration,
    /// `human` or `json`.
    pub log_format: String,
    /// TLS files; `None` serves plaintext (`--insecure`).
    pub tls: Option<weir_security::TlsFiles>,
    /// The tokens file, if any.
    pub tokens: Option<PathBuf>,
    /// The HTTP port's address, if any.
    pub http_listen: Option<String>,
}

/// A setting that is missing or wrong.
#[derive(Debug, thiserror::Error)]
#[error("driver setting {setting}: {message}")]
pub struct ConfigError {
    /// The setting (flag name).
    pub setting: String,
    /// What is wrong and what to write.
    pub message: String,
}

fn err(setting: &str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        setting: setting.to_string(),
        message: message.into(),
    }
}

/// Parses `id=host:port,...`.
pub fn parse_peers(text: &str) -> Result<BTreeMap<u64, String>, ConfigError> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item
            .split_once('=')
            .ok_or_else(|| err("--peers", format!("expected id=host:port, got {item:?}")))?;
        let id: u64 = id.trim().parse().map_err(|_| {
            err(
                "--peers",
                format!("replica id must be a positive integer, got {id:?}"),
            )
        })?;
        if peers.insert(id, addr.trim().to_string()).is_some() {
            return Err(err("--peers", format!("replica id {id} appears twice")));
        }
    }
    Ok(peers)
}

/// Cluster id of `weir local` metadata directories.
pub const LOCAL_CLUSTER_ID: &str = "weir-local";

impl DriverConfig {
    /// Replica `id` keeping its data in `data_dir`, every other setting at
    /// its default: what [`load`](Self::load) gives without a file, an
    /// environment or other flags.
    pub fn with_defaults(id: u64, data_dir: PathBuf) -> DriverConfig {
        let listen = "127.0.0.1:7070".to_string();
        DriverConfig {
            id,
            advertise: listen.clone(),
            listen,
            peers: BTreeMap::new(),
            data_dir,
            cluster_id: "weir".to_string(),
            join: false,
            tick: Duration::from_millis(100),
            election_ticks: 6,
            heartbeat_ticks: 2,
            snapshot_threshold: 1_000,
            proposal_timeout: Duration::from_secs(5),
            log_format: "human".to_string(),
            tls: None,
            tokens: None,
            http_listen: None,
        }
    }

    /// The one replica of a `weir local` metadata directory, `data_dir`:
    /// the defaults, but for what a group of one in a local directory
    /// must change. Its Raft timings are a cluster replica's: a group of
    /// one campaigns at once (no election timeout), and a proposal commits
    /// on the local write alone.
    pub fn local(data_dir: PathBuf) -> DriverConfig {
        DriverConfig {
            // A directory of `weir local` and a cluster replica's data
            // directory cannot be mistaken for each other: `check_data_dir`
            // refuses a directory of another cluster id.
            cluster_id: LOCAL_CLUSTER_ID.to_string(),
            // Nothing listens: `weir local` serves no gRPC. This is only
            // the address its one replica records for itself.
            advertise: "local".to_string(),
            ..DriverConfig::with_defaults(1, data_dir)
        }
    }

    /// Layers the defaults, the file named by `--config`, the environment
    /// (already folded into `args` by clap) and the flags, then validates.
    pub fn load(args: DriverArgs) -> Result<DriverConfig, ConfigError> {
        let file: DriverFile = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| err("--config", format!("cannot read {}: {e}", path.display())))?;
                serde_yaml_ng::from_str(&text)
                    .map_err(|e| err("--config", format!("{}: {e}", path.display())))?
            }
            None => DriverFile::default(),
        };
        let peers = match &args.peers {
            Some(text) => parse_peers(text)?,
            None => file.peers.unwrap_or_default(),
        };
        let d = DriverConfig::with_defaults(
            args.id
                .or(file.id)
                .ok_or_else(|| err("--id", "required: this replica's id"))?,
            args.data_dir.or(file.data_dir).ok_or_else(|| {
                err(
                    "--data-dir",
                    "required: where the Raft log and metadata live",
                )
            })?,
        );
        let listen = args.listen.or(file.listen).unwrap_or(d.listen);
        let config = DriverConfig {
            advertise: args
                .advertise
                .or(file.advertise)
                .unwrap_or_else(|| listen.clone()),
            listen,
            peers,
            cluster_id: args.cluster_id.or(file.cluster_id).unwrap_or(d.cluster_id),
            join: args.join || file.join.unwrap_or(d.join),
            tick: args
                .tick_ms
                .or(file.tick_ms)
                .map_or(d.tick, Duration::from_millis),
            election_ticks: args
                .election_ticks
                .or(file.election_ticks)
                .unwrap_or(d.election_ticks),
            heartbeat_ticks: args
                .heartbeat_ticks
                .or(file.heartbeat_ticks)
                .unwrap_or(d.heartbeat_ticks),
            snapshot_threshold: args
                .snapshot_threshold
                .or(file.snapshot_threshold)
                .unwrap_or(d.snapshot_threshold),
            proposal_timeout: args
                .proposal_timeout_ms
                .or(file.proposal_timeout_ms)
                .map_or(d.proposal_timeout, Duration::from_millis),
            log_format: args.log_format.or(file.log_format).unwrap_or(d.log_format),
            tls: weir_security::tls_files(
                args.tls_cert.or(file.tls_cert),
                args.tls_key.or(file.tls_key),
                args.tls_ca.or(file.tls_ca),
                args.insecure || file.insecure.unwrap_or(false),
            )
            .map_err(|e| err(e.setting, e.message))?,
            tokens: args.tokens.or(file.tokens),
            http_listen: args.http_listen.or(file.http_listen),
            ..d
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks the settings against each other (like raft's `Config::validate`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.id == 0 {
            return Err(err(
                "--id",
                "must be a positive integer (0 is reserved by Raft)",
            ));
        }
        if !self.join {
            match self.peers.get(&self.id) {
                None if self.peers.is_empty() => {}
                None => {
                    return Err(err(
                        "--peers",
                        format!("must include this replica ({}={})", self.id, self.advertise),
                    ))
                }
                Some(_) => {}
            }
        }
        if self.peers.contains_key(&0) {
            return Err(err("--peers", "replica ids must be positive"));
        }
        if self.tick.is_zero() {
            return Err(err("--tick-ms", "must be positive"));
        }
        if self.heartbeat_ticks == 0 || self.election_ticks <= self.heartbeat_ticks {
            return Err(err(
                "--election-ticks",
                format!(
                    "must be greater than --heartbeat-ticks ({}), got {}",
                    self.heartbeat_ticks, self.election_ticks
                ),
            ));
        }
        if self.snapshot_threshold == 0 {
            return Err(err("--snapshot-threshold", "must be positive"));
        }
        if !matches!(self.log_format.as_str(), "human" | "json") {
            return Err(err(
                "--log-format",
                format!("human or json, got {:?}", self.log_format),
            ));
        }
        Ok(())
    }

    /// The bootstrap peers, with this replica added when `--peers` was empty
    /// (a single-replica cluster).
    pub fn bootstrap_peers(&self) -> BTreeMap<u64, String> {
        let mut peers = self.peers.clone();
        peers
            .entry(self.id)
            .or_insert_with(|| self.advertise.clone());
        peers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> DriverArgs {
        DriverArgs {
            id: Some(1),
            data_dir: Some("/tmp/x".into()),
            insecure: true,
            ..Default::default()
        }
    }

    #[test]
    fn flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("driver.yaml");
        std::fs::write(
            &file,
            "id: 3\nlisten: 127.0.0.1:9000\npeers: { 1: 'a:1', 3: 'c:3' }\ntick_ms: 50\n",
        )
        .unwrap();
        let config = DriverConfig::load(DriverArgs {
            config: Some(file.clone()),
            id: Some(1),
            data_dir: Some("/d".into()),
            insecure: true,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(config.id, 1);
        assert_eq!(config.listen, "127.0.0.1:9000");
        assert_eq!(config.advertise, "127.0.0.1:9000");
        assert_eq!(config.tick, Duration::from_millis(50));
        assert_eq!(config.peers.len(), 2);
        std::fs::write(&file, "id: 3\nlisten_on: x\n").unwrap();
        let e = DriverConfig::load(DriverArgs {
            config: Some(file),
            ..args()
        })
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `listen_on`"), "{e}");
    }

    /// `load` with only the required settings gives the defaults, and
    /// `weir local`'s replica differs from them only where it must.
    #[test]
    fn defaults_are_written_once() {
        let loaded = DriverConfig::load(args()).unwrap();
        let defaults = DriverConfig::with_defaults(1, "/tmp/x".into());
        assert_eq!(format!("{loaded:?}"), format!("{defaults:?}"));
        assert_eq!(loaded.listen, "127.0.0.1:7070");
        assert_eq!(loaded.election_ticks, 6);
        assert_eq!(loaded.proposal_timeout, Duration::from_secs(5));

        let local = DriverConfig::local("/tmp/x".into());
        local.validate().unwrap();
        assert_eq!(local.cluster_id, LOCAL_CLUSTER_ID);
        assert_eq!(local.advertise, "local");
        assert_eq!(
            format!(
                "{:?}",
                DriverConfig {
                    cluster_id: defaults.cluster_id.clone(),
                    advertise: defaults.advertise.clone(),
                    ..local
                }
            ),
            format!("{defaults:?}")
        );
    }

    #[test]
    fn invalid_settings_name_the_flag() {
        let e = DriverConfig::load(DriverArgs {
            peers: Some("2=b:2,3=c:3".into()),
            ..args()
        })
        .unwrap_err();
        assert_eq!(e.setting, "--peers");
        let e = DriverConfig::load(DriverArgs {
            election_ticks: Some(2),
            ..args()
        })
        .unwrap_err();
        assert_eq!(e.setting, "--election-ticks");
        assert!(parse_peers("1=a:1,x=b").is_err());
        assert!(parse_peers("1=a:1,1=b:2")
            .unwrap_err()
            .message
            .contains("twice"));
        assert_eq!(
            DriverConfig::load(DriverArgs { id: None, ..args() })
                .unwrap_err()
                .setting,
            "--id"
        );
        let e = DriverConfig::load(DriverArgs {
            insecure: false,
            ..args()
        })
        .unwrap_err();
        assert_eq!(e.setting, "--tls-cert");
        assert!(e.message.contains("--insecure"), "{e}");
        let e = DriverConfig::load(DriverArgs {
            tls_cert: Some("c.pem".into()),
            tls_ca: Some("ca.pem".into()),
            insecure: false,
            ..args()
        })
        .unwrap_err();
        assert_eq!(e.setting, "--tls-key");
    }
}
