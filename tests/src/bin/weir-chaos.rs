//! `weir-chaos`: kill, pause and restart real Weir processes on a seeded
//! schedule while stateful jobs run, then verify their output per key.
//! See docs/chaos.md.

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use weir_tests::chaos::schedule::{Schedule, Shape, SCENARIOS};
use weir_tests::chaos::{run, ChaosOptions};

#[derive(Parser)]
#[command(
    name = "weir-chaos",
    version,
    about = "Kill/restart chaos suite for a local Weir cluster of real processes"
)]
struct Args {
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

fn main() -> ExitCode {
    let args = Args::parse();
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
    match run(options) {
        Ok(report) if report.passed => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
