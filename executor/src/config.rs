//! Settings of a `weir-executor` process, layered: defaults, then a YAML
//! file (`--config`), then `WEIR_*` environment variables, then flags.
//! Unknown keys in the file are errors; [`Config::validate`] checks the
//! result before anything starts.

use crate::state::{
    default_writer_threads, PartitionOptions, MAX_RETAIN_SNAPSHOTS, MAX_SNAPSHOT_EVERY,
    MAX_WRITER_THREADS,
};
use clap::{Parser, ValueEnum};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// A valid executor configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Stable identity of this executor (a restart with the same id is a new
    /// incarnation of the same executor).
    pub id: String,
    /// Address to listen on for the executor service (`host:port`).
    pub listen: String,
    /// Address drivers and other executors reach this one at; default: the
    /// listener's local address.
    pub advertise: Option<String>,
    /// Driver addresses (`host:port`); any of them, the leader is found.
    pub drivers: Vec<String>,
    /// Root of the state store: a local directory or an `hdfs://`/`viewfs://` URL.
    pub state_root: String,
    /// The snapshot and retention policy of state checkpoints: settings
    /// `state_snapshot_every` (deltas per partition between two snapshots,
    /// or sooner, see docs/hdfs.md; 0 makes every checkpoint a snapshot) and
    /// `state_retain_snapshots` (snapshots kept per partition: how far
    /// recovery can fall back past corrupt files).
    pub checkpoints: PartitionOptions,
    /// Threads writing the checkpoint files of all the state partitions
    /// this executor holds, whatever their number (setting
    /// `state_writer_threads`, 1 to [`MAX_WRITER_THREADS`]; default
    /// [`default_writer_threads`]).
    pub writer_threads: usize,
    /// Tasks this executor runs at once.
    pub slots: u32,
    /// Time between heartbeats.
    pub heartbeat_interval: Duration,
    /// Log format of the binary.
    pub log_format: LogFormat,
    /// This executor's certificate (PEM), naming `weir://executor/<id>`.
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// The CA of the cluster (PEM).
    pub tls_ca: Option<PathBuf>,
    /// Serve and dial plaintext without authentication (tests and
    /// development only).
    pub insecure: bool,
    /// Address of the HTTP port (`/metrics`, `/healthz`, `/readyz`), if any.
    pub http_listen: Option<String>,
    /// Clients' tokens and roles for the HTTP port (the drivers' file).
    pub tokens: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            id: String::new(),
            listen: "0.0.0.0:7100".into(),
            advertise: None,
            drivers: Vec::new(),
            state_root: String::new(),
            checkpoints: PartitionOptions::default(),
            writer_threads: default_writer_threads(),
            slots: std::thread::available_parallelism().map_or(2, |n| n.get() as u32),
            heartbeat_interval: Duration::from_secs(1),
            log_format: LogFormat::Human,
            tls_cert: None,
            tls_key: None,
            tls_ca: None,
            insecure: false,
            http_listen: None,
            tokens: None,
        }
    }
}

/// A configuration error, naming the setting.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid YAML for this configuration.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong (names an unknown field).
        message: String,
    },
    /// A setting has an invalid value.
    #[error("invalid setting {field}: {message}")]
    Invalid {
        /// The setting's name in the file (and, as `--flag`, on the command line).
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// The config file: every key optional, unknown keys refused.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// See [`Config::id`].
    pub id: Option<String>,
    /// See [`Config::listen`].
    pub listen: Option<String>,
    /// See [`Config::advertise`].
    pub advertise: Option<String>,
    /// See [`Config::drivers`].
    pub drivers: Option<Vec<String>>,
    /// See [`Config::state_root`].
    pub state_root: Option<String>,
    /// See [`Config::checkpoints`].
    pub state_snapshot_every: Option<u32>,
    /// See [`Config::checkpoints`].
    pub state_retain_snapshots: Option<u32>,
    /// See [`Config::writer_threads`].
    pub state_writer_threads: Option<usize>,
    /// See [`Config::slots`].
    pub slots: Option<u32>,
    /// See [`Config::heartbeat_interval`], in milliseconds.
    pub heartbeat_interval_ms: Option<u64>,
    /// See [`Config::log_format`].
    pub log_format: Option<LogFormat>,
    /// See [`Config::tls_cert`].
    pub tls_cert: Option<PathBuf>,
    /// See [`Config::tls_key`].
    pub tls_key: Option<PathBuf>,
    /// See [`Config::tls_ca`].
    pub tls_ca: Option<PathBuf>,
    /// See [`Config::insecure`].
    pub insecure: Option<bool>,
    /// See [`Config::http_listen`].
    pub http_listen: Option<String>,
    /// See [`Config::tokens`].
    pub tokens: Option<PathBuf>,
}

/// Command line of `weir-executor`; every flag also reads a `WEIR_*`
/// variable (a flag wins over the variable, the variable over the file).
#[derive(Debug, Default, Parser)]
#[command(
    name = "weir-executor",
    version,
    about = "Weir executor: runs tasks, owns state partitions, serves shuffle blocks"
)]
pub struct Args {
    /// YAML config file.
    #[arg(long, env = "WEIR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Executor id (stable across restarts).
    #[arg(long, env = "WEIR_EXECUTOR_ID")]
    pub id: Option<String>,
    /// Listen address (host:port; port 0 picks a free one).
    #[arg(long, env = "WEIR_LISTEN")]
    pub listen: Option<String>,
    /// Address others reach this executor at (default: the listen address).
    #[arg(long, env = "WEIR_ADVERTISE")]
    pub advertise: Option<String>,
    /// Driver addresses, comma-separated.
    #[arg(long, env = "WEIR_DRIVERS", value_delimiter = ',')]
    pub drivers: Option<Vec<String>>,
    /// State store root (a local directory, hdfs://namenode:port/path or viewfs://).
    #[arg(long, env = "WEIR_STATE_ROOT")]
    pub state_root: Option<String>,
    /// Deltas per partition between two state snapshots (0: every checkpoint is a snapshot).
    #[arg(long, env = "WEIR_STATE_SNAPSHOT_EVERY")]
    pub state_snapshot_every: Option<u32>,
    /// State snapshots kept per partition (at least 1).
    #[arg(long, env = "WEIR_STATE_RETAIN_SNAPSHOTS")]
    pub state_retain_snapshots: Option<u32>,
    /// Threads writing state checkpoint files, shared by all partitions (default: the cores, at least 4, at most 16).
    #[arg(long, env = "WEIR_STATE_WRITER_THREADS")]
    pub state_writer_threads: Option<usize>,
    /// Tasks run at once.
    #[arg(long, env = "WEIR_SLOTS")]
    pub slots: Option<u32>,
    /// Milliseconds between heartbeats.
    #[arg(long, env = "WEIR_HEARTBEAT_INTERVAL_MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Log format on stderr.
    #[arg(long, value_enum, env = "WEIR_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// This executor's certificate (PEM), naming `weir://executor/<id>`.
    #[arg(long, env = "WEIR_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, env = "WEIR_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The CA that signs every certificate of the cluster (PEM).
    #[arg(long, env = "WEIR_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Serve and dial plaintext without authentication (tests and development only).
    #[arg(long, env = "WEIR_INSECURE")]
    pub insecure: bool,
    /// Address of the HTTP port (metrics, health), host:port; none when unset.
    #[arg(long, env = "WEIR_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// Clients' tokens and roles, for the HTTP port (the drivers' tokens file).
    #[arg(long, env = "WEIR_TOKENS")]
    pub tokens: Option<PathBuf>,
}

impl FileConfig {
    /// Reads and parses a config file.
    pub fn read(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        FileConfig::parse(&text).map_err(|message| ConfigError::Parse {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Parses config YAML (an empty document is an empty config).
    pub fn parse(text: &str) -> Result<FileConfig, String> {
        if text.trim().is_empty() {
            return Ok(FileConfig::default());
        }
        serde_yaml_ng::from_str(text).map_err(|e| e.to_string())
    }
}

impl Config {
    /// The TLS files, or `None` for plaintext (`--insecure`).
    pub fn tls_files(&self) -> Result<Option<weir_security::TlsFiles>, ConfigError> {
        weir_security::tls_files(
            self.tls_cert.clone(),
            self.tls_key.clone(),
            self.tls_ca.clone(),
            self.insecure,
        )
        .map_err(|e| ConfigError::Invalid {
            field: e.setting.trim_start_matches("--"),
            message: e.message,
        })
    }

    /// Defaults, then the file named by `args.config`, then `args` (flags
    /// and environment), validated.
    pub fn load(args: Args) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        let config = Config::layered(file, args);
        config.validate()?;
        Ok(config)
    }

    /// Applies the layers over the defaults, without validating.
    pub fn layered(file: FileConfig, args: Args) -> Config {
        let mut c = Config::default();
        macro_rules! layer {
            ($src:expr) => {
                let src = $src;
                if let Some(v) = src.id {
                    c.id = v;
                }
                if let Some(v) = src.listen {
                    c.listen = v;
                }
                if let Some(v) = src.advertise {
                    c.advertise = Some(v);
                }
                if let Some(v) = src.drivers {
                    c.drivers = v;
                }
                if let Some(v) = src.state_root {
                    c.state_root = v;
                }
                if let Some(v) = src.state_snapshot_every {
                    c.checkpoints.snapshot_every = v;
                }
                if let Some(v) = src.state_retain_snapshots {
                    c.checkpoints.retain_snapshots = v;
                }
                if let Some(v) = src.state_writer_threads {
                    c.writer_threads = v;
                }
                if let Some(v) = src.slots {
                    c.slots = v;
                }
                if let Some(v) = src.heartbeat_interval_ms {
                    c.heartbeat_interval = Duration::from_millis(v);
                }
                if let Some(v) = src.log_format {
                    c.log_format = v;
                }
                if let Some(v) = src.tls_cert {
                    c.tls_cert = Some(v);
                }
                if let Some(v) = src.tls_key {
                    c.tls_key = Some(v);
                }
                if let Some(v) = src.tls_ca {
                    c.tls_ca = Some(v);
                }
                if let Some(v) = src.http_listen {
                    c.http_listen = Some(v);
                }
                if let Some(v) = src.tokens {
                    c.tokens = Some(v);
                }
            };
        }
        c.insecure = file.insecure.unwrap_or(false) || args.insecure;
        layer!(file);
        layer!(args);
        c
    }

    /// Checks every setting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, message: &str| {
            Err(ConfigError::Invalid {
                field,
                message: message.to_string(),
            })
        };
        if self.id.trim().is_empty() {
            return invalid("id", "required (a stable name for this executor)");
        }
        self.tls_files()?;
        if !is_host_port(&self.listen) {
            return invalid("listen", "must be host:port");
        }
        if let Some(a) = &self.http_listen {
            if !is_host_port(a) {
                return invalid("http_listen", "must be host:port");
            }
        }
        if let Some(a) = &self.advertise {
            if !is_host_port(a) || a.ends_with(":0") {
                return invalid("advertise", "must be host:port with a fixed port");
            }
        }
        if self.drivers.is_empty() {
            return invalid("drivers", "at least one driver address is required");
        }
        if let Some(d) = self.drivers.iter().find(|d| !is_host_port(d)) {
            return Err(ConfigError::Invalid {
                field: "drivers",
                message: format!("{d:?} is not host:port"),
            });
        }
        if self.state_root.trim().is_empty() {
            return invalid(
                "state_root",
                "required (a local directory or hdfs://namenode:port/path)",
            );
        }
        if let Some((scheme, _)) = self.state_root.split_once("://") {
            if !matches!(scheme, "hdfs" | "viewfs") {
                return invalid(
                    "state_root",
                    "unsupported scheme: use a local directory, hdfs:// or viewfs://",
                );
            }
        }
        if self.checkpoints.snapshot_every > MAX_SNAPSHOT_EVERY {
            return invalid(
                "state_snapshot_every",
                &format!(
                    "must be at most {MAX_SNAPSHOT_EVERY} (0 makes every checkpoint a snapshot)"
                ),
            );
        }
        if !(1..=MAX_RETAIN_SNAPSHOTS).contains(&self.checkpoints.retain_snapshots) {
            return invalid(
                "state_retain_snapshots",
                &format!("must be between 1 and {MAX_RETAIN_SNAPSHOTS}"),
            );
        }
        if !(1..=MAX_WRITER_THREADS).contains(&self.writer_threads) {
            return invalid(
                "state_writer_threads",
                &format!("must be between 1 and {MAX_WRITER_THREADS}"),
            );
        }
        if self.slots == 0 {
            return invalid("slots", "must be at least 1");
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval > Duration::from_secs(60) {
            return invalid("heartbeat_interval_ms", "must be between 1 and 60000");
        }
        Ok(())
    }
}

fn is_host_port(s: &str) -> bool {
    s.rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layers_apply_in_order_and_unknown_keys_fail() {
        let file = FileConfig::parse(
            "id: from-file\nlisten: 127.0.0.1:1\ndrivers: [d1:1, d2:2]\nstate_root: /s\nslots: 3\n",
        )
        .unwrap();
        let args = Args {
            listen: Some("127.0.0.1:2".into()),
            slots: Some(5),
            insecure: true,
            ..Default::default()
        };
        let c = Config::layered(file, args);
        assert_eq!(c.id, "from-file");
        assert_eq!(c.checkpoints, PartitionOptions::default());
        assert_eq!(c.listen, "127.0.0.1:2");
        assert_eq!(c.drivers, vec!["d1:1", "d2:2"]);
        assert_eq!(c.slots, 5);
        assert_eq!(c.heartbeat_interval, Duration::from_secs(1));
        c.validate().unwrap();

        let e = FileConfig::parse("id: x\nslot: 3\n").unwrap_err();
        assert!(e.contains("unknown field `slot`"), "{e}");
    }

    #[test]
    fn flags_and_env_parse() {
        let args = Args::try_parse_from([
            "weir-executor",
            "--id",
            "e1",
            "--drivers",
            "a:1,b:2",
            "--state-root",
            "/tmp/s",
            "--listen",
            "127.0.0.1:0",
            "--state-snapshot-every",
            "0",
            "--state-retain-snapshots",
            "3",
            "--state-writer-threads",
            "3",
            "--insecure",
        ])
        .unwrap();
        let file = FileConfig::parse(
            "state_snapshot_every: 20\nstate_retain_snapshots: 5\nstate_writer_threads: 7\n",
        )
        .unwrap();
        let c = Config::layered(file, args);
        assert_eq!(c.drivers, vec!["a:1", "b:2"]);
        assert_eq!(c.writer_threads, 3);
        let from_file = FileConfig::parse("state_writer_threads: 7\n").unwrap();
        assert_eq!(
            Config::layered(from_file, Args::default()).writer_threads,
            7
        );
        assert_eq!(
            c.checkpoints,
            PartitionOptions {
                snapshot_every: 0,
                retain_snapshots: 3
            }
        );
        c.validate().unwrap();
    }

    #[test]
    fn validation_names_the_setting() {
        let ok = Config {
            id: "e".into(),
            drivers: vec!["d:1".into()],
            state_root: "/s".into(),
            insecure: true,
            ..Default::default()
        };
        ok.validate().unwrap();
        let field = |c: Config| match c.validate() {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            field(Config {
                insecure: false,
                ..ok.clone()
            }),
            "tls-cert"
        );
        assert_eq!(
            field(Config {
                tls_cert: Some("c.pem".into()),
                tls_key: Some("k.pem".into()),
                ..ok.clone()
            }),
            "tls-ca"
        );

        assert_eq!(
            field(Config {
                id: "".into(),
                ..ok.clone()
            }),
            "id"
        );
        assert_eq!(
            field(Config {
                slots: 0,
                ..ok.clone()
            }),
            "slots"
        );
        assert_eq!(
            field(Config {
                drivers: vec!["nope".into()],
                ..ok.clone()
            }),
            "drivers"
        );
        assert_eq!(
            field(Config {
                state_root: "s3://bucket/x".into(),
                ..ok.clone()
            }),
            "state_root"
        );
        assert_eq!(
            field(Config {
                checkpoints: PartitionOptions {
                    retain_snapshots: 0,
                    ..PartitionOptions::default()
                },
                ..ok.clone()
            }),
            "state_retain_snapshots"
        );
        assert_eq!(
            field(Config {
                checkpoints: PartitionOptions {
                    snapshot_every: 1_001,
                    ..PartitionOptions::default()
                },
                ..ok.clone()
            }),
            "state_snapshot_every"
        );
        for (threads, valid) in [
            (0, false),
            (1, true),
            (MAX_WRITER_THREADS, true),
            (MAX_WRITER_THREADS + 1, false),
        ] {
            let c = Config {
                writer_threads: threads,
                ..ok.clone()
            };
            match c.validate() {
                Ok(()) => assert!(valid, "{threads} threads accepted"),
                Err(e) => {
                    assert!(!valid, "{threads} threads refused: {e}");
                    assert!(e.to_string().contains("state_writer_threads"), "{e}");
                }
            }
        }
        assert_eq!(
            field(Config {
                listen: "x".into(),
                ..ok
            }),
            "listen"
        );
    }
}
