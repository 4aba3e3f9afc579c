//! What the benches that run a whole job share.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use weir::local::run_job;
use weir_driver::{DriverOptions, Outcome};

/// Runs the job `yaml` with `weir local` in a fresh state directory until
/// its input is read; its wall time.
pub fn run_to_end(yaml: &str) -> anyhow::Result<Duration> {
    let spec = weir_proto::spec::parse_spec(yaml)?;
    let dir = tempfile::tempdir()?;
    let shutdown = AtomicBool::new(false);
    let options = DriverOptions {
        exit_when_idle: true,
        ..Default::default()
    };
    let started = Instant::now();
    let outcome = run_job(spec, dir.path(), options, &shutdown, &mut |_| {})?;
    let elapsed = started.elapsed();
    anyhow::ensure!(outcome == Outcome::Finished, "the job did not finish");
    Ok(elapsed)
}
