//! `weir-chaos`: kill, pause and restart real Weir processes on a seeded
//! schedule while stateful jobs run, then verify their output per key.
//! See docs/chaos.md.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use weir_tests::chaos::schedule::{Schedule, Shape, SCENARIOS};
use weir_tests::chaos::workload::ChaosJob;
use weir_tests::chaos::{run, verify_job, ChaosOptions};

#[derive(Parser)]
#[command(
    name = "weir-chaos",
    version,
    about = "Kill/restart chaos suite for a local Weir cluster of real processes",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<External>,
    /// Seed of the schedule: the same seed gives the same faults.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Every fault kind at every timing (24 faults, a few minutes).
    #[arg(long, conflicts_with_all = ["long", "scenario", "faults"])]
    short: bool,
    /// Every fault kind at every timing nine times (216 faults, about 45 minutes).
    #[arg(long, conflicts_with_all = ["scenario", "faults"])]
    long: bool,
    /// A named list of faults (see --list-scenarios).
    #[arg(long, conflicts_with = "faults")]
    scenario: Option<String>,
    /// This many faults of random kinds and timings (the first eight cover every kind).
    #[arg(long)]
    faults: Option<usize>,
    /// Spread the faults over about this many seconds (longer gaps).
    #[arg(long)]
    duration: Option<u64>,
    /// Write the JSON report here.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Input records per second of each job.
    #[arg(long, default_value_t = 1_500)]
    rate: u64,
    /// Longest input of one round of jobs, in seconds (a new round starts
    /// when the jobs finish before the schedule does).
    #[arg(long, default_value_t = 180)]
    max_round_secs: u64,
    /// Kafka bootstrap servers (host:port,...): each round also runs a
    /// running count from a Kafka topic to a Kafka topic, its input
    /// produced while it runs and its output read with read_committed.
    #[arg(long, env = "WEIR_KAFKA_BROKERS", value_name = "BROKERS")]
    kafka: Option<String>,
    /// Run the cluster plaintext (`--insecure`) instead of with TLS,
    /// certificates and tokens on every port.
    #[arg(long)]
    insecure: bool,
    /// Executors' state root: a directory or hdfs://namenode:port/path
    /// (default: a directory under the work directory).
    #[arg(long)]
    state_root: Option<String>,
    /// Directory for the cluster's data, logs and output (default: a new
    /// temporary directory, kept when the run fails).
    #[arg(long)]
    work_dir: Option<PathBuf>,
    /// Keep the temporary work directory after a clean run.
    #[arg(long)]
    keep: bool,
    /// Directory of weir, weir-driver and weir-executor (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Print the schedule and exit.
    #[arg(long)]
    dry_run: bool,
    /// List the named scenarios and exit.
    #[arg(long)]
    list_scenarios: bool,
}

/// A chaos job for a cluster this tool does not run (e.g. Kubernetes): the
/// faults are applied by hand or by another tool, the checks are these.
#[derive(clap::Args, Clone)]
struct JobArgs {
    /// `count` (running count) or `window` (sliding windowed count).
    #[arg(long)]
    workload: String,
    /// Job name.
    #[arg(long)]
    name: String,
    /// Input records per second.
    #[arg(long, default_value_t = 1_500)]
    rate: u64,
    /// Seconds of input (the job finishes after `rate * seconds` records).
    #[arg(long, default_value_t = 600)]
    seconds: u64,
    /// The file sink directory, as the executors see it (`spec`) or as a
    /// copy on this machine (`verify`).
    #[arg(long)]
    output: PathBuf,
}

impl JobArgs {
    fn job(&self) -> Result<ChaosJob, String> {
        let w = ChaosJob::workload(&self.workload)
            .ok_or_else(|| format!("unknown workload {:?}: count or window", self.workload))?;
        Ok(
            ChaosJob::generator(w, 0, self.rate, self.seconds, &self.output)
                .with_output(&self.name, &self.output),
        )
    }
}

#[derive(Subcommand)]
enum External {
    /// Print the spec of a chaos job, to submit to any cluster with `weir submit`.
    Spec(JobArgs),
    /// Check a finished chaos job of any cluster: its status and recent
    /// batches (through `weir`) and its output per key.
    Verify {
        #[command(flatten)]
        job: JobArgs,
        /// Drivers of the cluster (host:port,...), passed to `weir`.
        #[arg(long, env = "WEIR_DRIVERS", default_value = "127.0.0.1:7070")]
        drivers: String,
        /// The `weir` CLI to use.
        #[arg(long, default_value = "weir")]
        weir: PathBuf,
    },
}

fn weir_json(weir: &PathBuf, drivers: &str, args: &[&str]) -> Result<serde_json::Value, String> {
    let out = Command::new(weir)
        .args(args)
        .args(["--json", "--drivers", drivers])
        .output()
        .map_err(|e| format!("{}: {e}", weir.display()))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

fn external(command: External) -> Result<bool, String> {
    match command {
        External::Spec(args) => {
            print!("{}", args.job()?.spec_yaml());
            Ok(true)
        }
        External::Verify { job, drivers, weir } => {
            let job = job.job()?;
            let status = weir_json(&weir, &drivers, &["status", &job.name])?;
            let batches = weir_json(&weir, &drivers, &["batches", &job.name, "--limit", "100"])?;
            let units = job.output.read().map_err(|e| format!("{e:#}"))?;
            // only the driver's last 100 commits are listed
            let problems = verify_job(&job, &status, &batches, &units, false);
            for p in &problems {
                println!("{p}");
            }
            println!(
                "job {}: {} records, {} output files: {}",
                job.name,
                job.input.total(),
                units.len(),
                if problems.is_empty() {
                    "exact"
                } else {
                    "FAILED"
                }
            );
            Ok(problems.is_empty())
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(command) = args.command {
        return match external(command) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::FAILURE,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    if args.list_scenarios {
        for (name, about, faults) in SCENARIOS {
            println!("{name:<10} {:>2} faults  {about}", faults.len());
        }
        return ExitCode::SUCCESS;
    }
    let shape = if args.long {
        Shape::Long
    } else if let Some(name) = &args.scenario {
        Shape::Scenario(name.clone())
    } else if let Some(n) = args.faults {
        Shape::Random(n)
    } else {
        Shape::Short
    };
    let schedule = match Schedule::generate(&shape, args.seed, args.duration.map(|s| s * 1_000)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.dry_run {
        print!("{}", schedule.table());
        return ExitCode::SUCCESS;
    }
    let mut options = ChaosOptions::new(schedule);
    options.work_dir = args.work_dir;
    options.keep = args.keep;
    options.bin_dir = args.bin_dir;
    options.state_root = args.state_root;
    options.report = args.report;
    options.rate = args.rate;
    options.max_round_secs = args.max_round_secs;
    options.kafka = args.kafka.filter(|b| !b.is_empty());
    options.tls = !args.insecure;
    match run(options) {
        Ok(report) if report.passed => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
