//! `weir`: run and inspect Weir jobs.

use weir::exit::{classified, ExitClass};
use weir::output::Output;
use weir::{commands, context, local, remote, status};

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use weir_driver::{submit_with, DriverOptions, FromOffsets, MetadataStore, Outcome, SubmitOptions};
use weir_executor::state::{PartitionOptions, MAX_RETAIN_SNAPSHOTS, MAX_SNAPSHOT_EVERY};
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
    /// Drivers of the cluster (host:port,...); the leader is found from any
    /// of them. Default: the context's, else 127.0.0.1:7070.
    #[arg(long, global = true, env = "WEIR_DRIVERS")]
    drivers: Option<String>,
    /// A context of ~/.config/weir/config.yaml (drivers, CA, certificate or
    /// token); default: its current_context.
    #[arg(long, global = true, env = "WEIR_CONTEXT")]
    context: Option<String>,
    /// The CA that signed the drivers' certificates: connect with TLS.
    #[arg(long, global = true, env = "WEIR_TLS_CA")]
    tls_ca: Option<PathBuf>,
    /// A client certificate naming weir://client/<name> (with --tls-key).
    #[arg(long, global = true, env = "WEIR_TLS_CERT")]
    tls_cert: Option<PathBuf>,
    /// The client certificate's key.
    #[arg(long, global = true, env = "WEIR_TLS_KEY")]
    tls_key: Option<PathBuf>,
    /// A bearer token from the drivers' tokens file.
    #[arg(long, global = true, env = "WEIR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Output format: a table for people, JSON or YAML for scripts (errors
    /// too, on stderr).
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Same as `-o json`.
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
        /// Deltas per state partition between two snapshots (0: every
        /// checkpoint is a snapshot); the executors' setting of that name.
        #[arg(
            long,
            env = "WEIR_STATE_SNAPSHOT_EVERY",
            default_value_t = PartitionOptions::default().snapshot_every,
            value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_SNAPSHOT_EVERY))
        )]
        state_snapshot_every: u32,
        /// State snapshots kept per partition; the executors' setting of
        /// that name.
        #[arg(
            long,
            env = "WEIR_STATE_RETAIN_SNAPSHOTS",
            default_value_t = PartitionOptions::default().retain_snapshots,
            value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_RETAIN_SNAPSHOTS))
        )]
        state_retain_snapshots: u32,
        /// Address of the web UI and /metrics. The default, 127.0.0.1:4040,
        /// moves to the next free port when taken; an address given here
        /// must be free.
        #[arg(long, env = "WEIR_HTTP_LISTEN")]
        http_listen: Option<String>,
        /// Serve no web UI or metrics.
        #[arg(long, conflicts_with = "http_listen")]
        no_http: bool,
        #[command(flatten)]
        upgrade: UpgradeArgs,
    },
    /// Check a job spec without running it.
    Validate {
        /// The job spec (YAML; `-` reads standard input).
        spec: PathBuf,
    },
    /// Submit a job to the cluster (an existing job of the same spec resumes;
    /// compatible changes are applied at the next batch boundary).
    Submit {
        /// The job spec (YAML; `-` reads standard input).
        spec: PathBuf,
        #[command(flatten)]
        upgrade: UpgradeArgs,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Show what submitting a spec would change for the existing job, and
    /// whether it would be applied or refused.
    Diff {
        /// The job spec (YAML).
        spec: PathBuf,
        /// A `weir local` state directory instead of the cluster.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        #[command(flatten)]
        upgrade: UpgradeArgs,
    },
    /// Show a job's spec versions with the time and diff of each.
    History {
        /// Job name.
        job: String,
        /// A `weir local` state directory instead of the cluster.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Show a job's status.
    Status {
        /// Job name.
        job: String,
        /// Show the status again every --interval until interrupted.
        #[arg(long, short = 'w')]
        watch: bool,
        /// Time between two statuses of --watch (e.g. 500ms, 2s).
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        interval: std::time::Duration,
    },
    /// Print a job's current spec as YAML (the stored one, as the cluster
    /// runs it).
    Spec {
        /// Job name.
        job: String,
        /// A `weir local` state directory instead of the cluster.
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    /// on standard output.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
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
    /// Stop a job after its current batch, keeping its checkpoint (or with
    /// --purge, deleting it).
    Stop {
        /// Job name.
        job: String,
        /// Also delete the job's metadata (spec, history, progress); with
        /// --state-dir also its state. Asks for confirmation unless --yes.
        #[arg(long)]
        purge: bool,
        /// Confirm --purge without a prompt.
        #[arg(long)]
        yes: bool,
        /// A `weir local` state directory instead of the cluster.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Show the driver replicas and executors, or change membership.
    Cluster {
        #[command(subcommand)]
        change: Option<ClusterChange>,
    },
}

/// `--wait` of `submit` and `stop`.
#[derive(clap::Args, Clone, Default)]
struct WaitArgs {
    /// Wait until the job runs the submitted spec (a batch committed after
    /// the submit, or the job finished), or until it is stopped with no
    /// batch in flight; exit 8 if the job fails meanwhile.
    #[arg(long)]
    wait: bool,
    /// The longest wait of --wait (e.g. 90s, 5m).
    #[arg(long, default_value = "5m", value_parser = parse_duration, requires = "wait")]
    timeout: std::time::Duration,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    spec::parse_duration_ms(s)
        .map(std::time::Duration::from_millis)
        .map_err(|e| e.to_string())
}

/// Options for a changed spec of an existing job.
#[derive(clap::Args, Clone, Default)]
struct UpgradeArgs {
    /// Allow changes to keys, aggregates, windows or state partitions:
    /// start with empty state while the offsets continue.
    #[arg(long)]
    reset_state: bool,
    /// Restart from offsets (earliest, latest or partition:offset,...) with
    /// empty state: allows changing the source.
    #[arg(long, value_name = "earliest|latest|P:O,...")]
    from: Option<String>,
}

impl UpgradeArgs {
    fn flags(&self) -> commands::UpgradeFlags {
        commands::UpgradeFlags {
            reset_state: self.reset_state,
            from: self.from.clone(),
        }
    }

    fn options(&self, dry_run: bool) -> anyhow::Result<SubmitOptions> {
        Ok(SubmitOptions {
            reset_state: self.reset_state,
            from: self
                .from
                .as_deref()
                .map(FromOffsets::parse)
                .transpose()
                .map_err(|e| classified(ExitClass::Usage, e.to_string()))?,
            dry_run,
        })
    }
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
    init_logging(cli.log_format, matches!(cli.command, Command::Local { .. }));
    let output = if cli.json { Output::Json } else { cli.output };
    let flags = context::Flags {
        context: cli.context,
        drivers: cli.drivers,
        tls_ca: cli.tls_ca,
        tls_cert: cli.tls_cert,
        tls_key: cli.tls_key,
        token: cli.token,
    };
    match run(cli.command, flags, output) {
        Ok(code) => code,
        Err(e) => {
            let class = ExitClass::of(&e);
            if output.structured() {
                eprintln!(
                    "{}",
                    output.render(&serde_json::json!({"error": format!("{e:#}"), "class": class.as_str(), "exit_code": class.code()}))
                );
            } else {
                eprintln!("error: {e:#}");
            }
            class.into()
        }
    }
}

/// The log filter unless `WEIR_LOG` sets one. `weir local` shows the job
/// (its start, batches and end) and every warning, not the machinery a
/// cluster logs at INFO: the one-replica metadata group's start and
/// leadership, deploys and per-partition restores (`WEIR_LOG=info` shows
/// them).
const DEFAULT_LOG: &str = "info,sled=warn";
const LOCAL_LOG: &str =
    "info,sled=warn,weir_driver::cluster=warn,weir_driver::raft=warn,weir_executor::runtime=warn";

fn init_logging(format: LogFormat, local: bool) {
    let default = if local { LOCAL_LOG } else { DEFAULT_LOG };
    weir_proto::process::init_logging(default, matches!(format, LogFormat::Json));
}

fn run(command: Command, flags: context::Flags, out: Output) -> anyhow::Result<ExitCode> {
    match command {
        Command::Validate { spec } => {
            let spec = load_spec(&spec)?;
            check_plan(&spec)?;
            let custom = spec::custom_operators(&spec);
            if out.structured() {
                out.print(&serde_json::json!({"job": spec.name, "valid": true, "custom_operators": custom}));
            } else if custom.is_empty() {
                println!("{}: ok", spec.name);
            } else {
                println!(
                    "{}: ok (custom operators {} are checked by the executors when the job is deployed)",
                    spec.name,
                    custom.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Local {
            spec,
            state_dir,
            exit_when_idle,
            state_snapshot_every,
            state_retain_snapshots,
            http_listen,
            no_http,
            upgrade,
        } => {
            // The job's executor runs in this process.
            let allocator = weir_executor::allocator::keep_freed_memory();
            tracing::debug!(?allocator, "allocator");
            let checkpoints = PartitionOptions {
                snapshot_every: state_snapshot_every,
                retain_snapshots: state_retain_snapshots,
            };
            let http = match (no_http, http_listen) {
                (true, _) => local::HttpPort::Off,
                (false, Some(address)) => local::HttpPort::At(address),
                (false, None) => local::HttpPort::Default,
            };
            let options = LocalRun {
                exit_when_idle,
                checkpoints,
                http,
            };
            run_local(&spec, state_dir, options, &upgrade, out)
        }
        Command::Diff {
            spec,
            state_dir: Some(dir),
            upgrade,
        } => {
            let spec = load_spec(&spec)?;
            check_plan(&spec)?;
            let options = upgrade.options(true)?;
            local::with_local_meta(&dir, |meta| {
                let s = submit_with(meta.as_ref(), spec.clone(), &options)?;
                commands::print_diff(&spec.name, &s.diff, s.verdict(), out);
                Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Stop {
            job,
            purge,
            yes,
            state_dir: Some(dir),
            ..
        } => {
            if !purge {
                return Err(classified(
                    ExitClass::Usage,
                    "a `weir local` job stops with Ctrl-C; `weir stop --state-dir` only purges (--purge)",
                ));
            }
            spec::check_job_name(&job)
                .map_err(|e| classified(ExitClass::Usage, format!("job name: {e}")))?;
            confirm_purge(&job, yes)?;
            local::with_local_meta(&dir, |meta| {
                if meta.job(&job)?.is_none() {
                    return Err(classified(
                        ExitClass::NotFound,
                        format!("job {job} does not exist in {}", dir.display()),
                    ));
                }
                meta.apply(weir_driver::metadata::command::delete_job(&job))?;
                Ok(())
            })?;
            // A checked job name is one normal path component: the purge
            // stays inside the job's own state directory.
            let state = local::LocalDirs::under(&dir).state.join(&job);
            if state.exists() {
                std::fs::remove_dir_all(&state)
                    .with_context(|| format!("cannot delete {}", state.display()))?;
            }
            if out.structured() {
                out.print(
                    &serde_json::json!({"job": job, "purged": true, "remains": "sink output"}),
                );
            } else {
                println!("job {job} purged: metadata and state deleted from {}; the sink's output is kept", dir.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::History {
            job,
            state_dir: Some(dir),
        } => {
            let versions = local_versions(&dir, &job)?;
            commands::print_history(&job, &versions, out);
            Ok(ExitCode::SUCCESS)
        }
        Command::Spec {
            job,
            state_dir: Some(dir),
        } => {
            let versions = local_versions(&dir, &job)?;
            commands::print_spec(&job, &versions, out);
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "weir", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        remote => run_remote(remote, flags, out),
    }
}

/// A `weir local` job's spec versions, oldest first, the current one last.
fn local_versions(dir: &Path, job: &str) -> anyhow::Result<Vec<pb::JobRecord>> {
    local::with_local_meta(dir, |meta| {
        let current = meta.job(job)?.ok_or_else(|| {
            classified(
                ExitClass::NotFound,
                format!("job {job} does not exist in {}", dir.display()),
            )
        })?;
        let mut versions = meta.history(job)?;
        versions.push(current);
        Ok(versions)
    })
}

/// Runs a cluster command on a small runtime.
fn run_remote(command: Command, flags: context::Flags, out: Output) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (drivers, access) = context::resolve(flags)?;
    let cluster = remote::Cluster::new(&drivers, access)?;
    let result = runtime.block_on(async {
        match command {
            Command::Submit {
                spec,
                upgrade,
                wait,
            } => {
                let spec = load_spec(&spec)?;
                check_plan(&spec)?;
                upgrade.options(false)?;
                let job = spec.name.clone();
                commands::submit(&cluster, spec, &upgrade.flags(), out).await?;
                if wait.wait {
                    commands::wait_running(&cluster, &job, wait.timeout, out).await?
                }
            }
            Command::Diff { spec, upgrade, .. } => {
                let spec = load_spec(&spec)?;
                check_plan(&spec)?;
                upgrade.options(true)?;
                commands::diff(&cluster, spec, &upgrade.flags(), out).await?
            }
            Command::History { job, .. } => commands::history(&cluster, &job, out).await?,
            Command::Spec { job, .. } => commands::spec(&cluster, &job, out).await?,
            Command::Status {
                job,
                watch: true,
                interval,
            } => commands::watch(&cluster, &job, interval, out).await?,
            Command::Status { job, .. } => commands::status(&cluster, &job, out).await?,
            Command::List => commands::list(&cluster, out).await?,
            Command::Batches { job, limit } => {
                commands::batches(&cluster, &job, limit, out).await?
            }
            Command::Stop {
                job,
                purge,
                yes,
                wait,
                ..
            } => {
                if purge {
                    confirm_purge(&job, yes)?;
                }
                commands::stop(&cluster, &job, purge, out).await?;
                if wait.wait && !purge {
                    commands::wait_stopped(&cluster, &job, wait.timeout, out).await?
                }
            }
            Command::Cluster { change: None } => commands::cluster(&cluster, out).await?,
            Command::Cluster {
                change: Some(ClusterChange::AddDriver { id, address }),
            } => commands::membership(&cluster, Some((id, address)), None, out).await?,
            Command::Cluster {
                change: Some(ClusterChange::RemoveDriver { id }),
            } => commands::membership(&cluster, None, Some(id), out).await?,
            Command::Local { .. } | Command::Validate { .. } | Command::Completions { .. } => {
                anyhow::bail!("not a cluster command")
            }
        }
        anyhow::Ok(())
    });
    result.map(|()| ExitCode::SUCCESS)
}

/// `--purge` deletes what cannot be rebuilt: it needs `--yes`, or the job
/// name typed at a prompt on a terminal.
fn confirm_purge(job: &str, yes: bool) -> anyhow::Result<()> {
    use std::io::{BufRead, IsTerminal, Write};
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(classified(
            ExitClass::Usage,
            format!("--purge deletes job {job}'s spec, history and progress (a resubmit starts from scratch); pass --yes to confirm"),
        ));
    }
    eprint!("This deletes job {job}'s spec, history and progress; type the job name to confirm: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    if line.trim() != job {
        return Err(classified(
            ExitClass::Usage,
            "not confirmed: nothing deleted",
        ));
    }
    Ok(())
}

/// Reads and parses a spec file, or standard input for `-`.
fn load_spec(path: &Path) -> anyhow::Result<pb::JobSpec> {
    let read = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())
    } else {
        std::fs::read_to_string(path)
    };
    let text = read.map_err(|e| {
        classified(
            ExitClass::Usage,
            format!("cannot read job spec {}: {e}", path.display()),
        )
    })?;
    spec::parse_spec(&text).map_err(|e| {
        classified(
            ExitClass::InvalidSpec,
            format!("invalid job spec {}:\n{e}", path.display()),
        )
    })
}

/// Type-checks the whole spec (expressions, types, columns) without running
/// it: `weir_plan::check_spec`, the check drivers run at submit. A spec with
/// custom steps is compiled by the executors that have its operators, when
/// the job is deployed. Kafka `properties` are checked against librdkafka
/// (`weir_kafka::check_properties`, which drivers run at submit too);
/// their secret references are resolved only where clients are created.
fn check_plan(spec: &pb::JobSpec) -> anyhow::Result<()> {
    weir_plan::check_spec(spec).map(|_| ()).map_err(|e| {
        classified(
            ExitClass::InvalidSpec,
            format!("invalid job spec {}: {e}", spec.name),
        )
    })?;
    weir_kafka::check_properties(spec).map_err(|e| {
        classified(
            ExitClass::InvalidSpec,
            format!("invalid job spec {}:\n{e}", spec.name),
        )
    })
}

/// How `weir local` runs, beside its spec and state directory.
struct LocalRun {
    exit_when_idle: bool,
    checkpoints: PartitionOptions,
    http: local::HttpPort,
}

fn run_local(
    spec_path: &Path,
    state_dir: Option<PathBuf>,
    run: LocalRun,
    upgrade: &UpgradeArgs,
    out: Output,
) -> anyhow::Result<ExitCode> {
    let LocalRun {
        exit_when_idle,
        checkpoints,
        http,
    } = run;
    let submit_options = upgrade.options(false)?;
    let spec = load_spec(spec_path)?;
    let custom = spec::custom_operators(&spec);
    if !custom.is_empty() {
        return Err(classified(
            ExitClass::InvalidSpec,
            format!(
                "job {} uses custom operators ({}); `weir local` runs only Weir's built-in steps. \
                 Run the job on a cluster whose executors are built with these operators (weir submit; see docs/custom-operators.md)",
                spec.name,
                custom.join(", ")
            ),
        ));
    }
    check_plan(&spec)?;
    let root = state_dir.unwrap_or_else(|| PathBuf::from(".weir").join(&spec.name));
    let name = spec.name.clone();
    let options = DriverOptions {
        exit_when_idle,
        ..Default::default()
    };
    let shutdown = local::shutdown_on_signals()?;
    let mut line = status::StatusLine::new();
    let local = local::LocalOptions {
        submit: submit_options,
        checkpoints,
        http,
    };
    let outcome = local::run_job_with(spec, &root, &local, options, &shutdown, &mut |r| {
        line.batch(r)
    });
    line.finish();
    let outcome = outcome?;
    match outcome {
        Outcome::Finished => {
            tracing::info!(job = %name, "source exhausted and every batch committed");
        }
        Outcome::Stopped => {
            tracing::info!(job = %name, "stopped; restart with the same --state-dir to resume");
        }
    }
    if out.structured() {
        let outcome = match outcome {
            Outcome::Finished => "finished",
            Outcome::Stopped => "stopped",
        };
        out.print(&serde_json::json!({"job": name, "outcome": outcome, "state_dir": root}));
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod doc_examples;
