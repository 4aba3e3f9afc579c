//! `weir`: run and inspect Weir jobs.

use weir::{commands, local, remote, status};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use weir_driver::{DriverOptions, Outcome};
use weir_executor::plan::JobPlan;
use weir_proto::{pb, spec};

#[derive(Parser)]
#[command(
    name = "weir",
    version,
    about = "Exactly-once micro-batch stream processing"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "WEIR_LOG_FORMAT")]
    log_format: LogFormat,
    /// Drivers of the cluster (host:port,...); the leader is found from any of them.
    #[arg(
        long,
        global = true,
        env = "WEIR_DRIVERS",
        default_value = "127.0.0.1:7070"
    )]
    drivers: String,
    /// Print JSON instead of tables (for scripts).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a job in this process: driver, executor and state in a local directory.
    Local {
        /// The job spec (YAML).
        spec: PathBuf,
        /// Where the metadata checkpoint and state live; restarting with the
        /// same directory resumes the job. Default: .weir/<job name>.
        #[arg(long, env = "WEIR_STATE_DIR")]
        state_dir: Option<PathBuf>,
        /// Exit 0 once a finite source is exhausted and every batch committed.
        #[arg(long)]
        exit_when_idle: bool,
    },
    /// Check a job spec without running it.
    Validate {
        /// The job spec (YAML).
        spec: PathBuf,
    },
    /// Submit a job to the cluster (an existing job of the same spec resumes).
    Submit {
        /// The job spec (YAML).
        spec: PathBuf,
    },
    /// Show a job's status.
    Status {
        /// Job name.
        job: String,
    },
    /// List the jobs.
    List,
    /// Show a job's recent committed batches.
    Batches {
        /// Job name.
        job: String,
        /// How many batches.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Stop a job after its current batch, keeping its checkpoint.
    Stop {
        /// Job name.
        job: String,
    },
    /// Show the driver replicas and executors, or change membership.
    Cluster {
        #[command(subcommand)]
        change: Option<ClusterChange>,
    },
}

#[derive(Subcommand)]
enum ClusterChange {
    /// Add a driver replica (then start it with --join).
    AddDriver {
        /// The new replica's id.
        id: u64,
        /// Its address (host:port).
        address: String,
    },
    /// Remove a driver replica.
    RemoveDriver {
        /// The replica's id.
        id: u64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match run(cli.command, &cli.drivers, cli.json) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sled=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(command: Command, drivers: &str, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        Command::Validate { spec } => {
            let spec = load_spec(&spec)?;
            check_plan(&spec)?;
            println!("{}: ok", spec.name);
            Ok(ExitCode::SUCCESS)
        }
        Command::Local {
            spec,
            state_dir,
            exit_when_idle,
        } => run_local(&spec, state_dir, exit_when_idle),
        remote => run_remote(remote, drivers, json),
    }
}

/// Runs a cluster command on a small runtime.
fn run_remote(command: Command, drivers: &str, json: bool) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let cluster = remote::Cluster::new(drivers)?;
    let result = runtime.block_on(async {
        match command {
            Command::Submit { spec } => {
                let spec = load_spec(&spec)?;
                check_plan(&spec)?;
                commands::submit(&cluster, spec, json).await?
            }
            Command::Status { job } => commands::status(&cluster, &job, json).await?,
            Command::List => commands::list(&cluster, json).await?,
            Command::Batches { job, limit } => {
                commands::batches(&cluster, &job, limit, json).await?
            }
            Command::Stop { job } => commands::stop(&cluster, &job, json).await?,
            Command::Cluster { change: None } => commands::cluster(&cluster, json).await?,
            Command::Cluster {
                change: Some(ClusterChange::AddDriver { id, address }),
            } => commands::membership(&cluster, Some((id, address)), None, json).await?,
            Command::Cluster {
                change: Some(ClusterChange::RemoveDriver { id }),
            } => commands::membership(&cluster, None, Some(id), json).await?,
            Command::Local { .. } | Command::Validate { .. } => {
                anyhow::bail!("not a cluster command")
            }
        }
        anyhow::Ok(())
    });
    result.map(|()| ExitCode::SUCCESS)
}

fn load_spec(path: &Path) -> anyhow::Result<pb::JobSpec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read job spec {}", path.display()))?;
    spec::parse_spec(&text)
        .map_err(|e| anyhow::anyhow!("invalid job spec {}:\n{e}", path.display()))
}

/// Compiles the spec's plan (expressions, types, columns) without running it.
fn check_plan(spec: &pb::JobSpec) -> anyhow::Result<()> {
    let record = pb::JobRecord {
        spec: Some(spec.clone()),
        fingerprint: spec::fingerprint(spec),
        created_at_ms: 0,
        ..Default::default()
    };
    JobPlan::compile(&record)
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("invalid job spec {}: {e}", spec.name))
}

fn run_local(
    spec_path: &Path,
    state_dir: Option<PathBuf>,
    exit_when_idle: bool,
) -> anyhow::Result<ExitCode> {
    let spec = load_spec(spec_path)?;
    check_plan(&spec)?;
    let root = state_dir.unwrap_or_else(|| PathBuf::from(".weir").join(&spec.name));
    let name = spec.name.clone();
    let options = DriverOptions {
        exit_when_idle,
        ..Default::default()
    };
    let shutdown = local::shutdown_on_signals()?;
    let mut line = status::StatusLine::new();
    let outcome = local::run_job(spec, &root, options, &shutdown, &mut |r| line.batch(r));
    line.finish();
    match outcome? {
        Outcome::Finished => {
            tracing::info!(job = %name, "source exhausted and every batch committed");
        }
        Outcome::Stopped => {
            tracing::info!(job = %name, "stopped; restart with the same --state-dir to resume");
        }
    }
    Ok(ExitCode::SUCCESS)
}
