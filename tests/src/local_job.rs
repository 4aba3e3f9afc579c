//! `weir local` on one spec, run again and again in one state directory:
//! the harness of the sink tests that kill it at crash points.

use crate::{binary, Proc};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A job run by `weir local --exit-when-idle --no-http` under `dir`.
pub struct LocalJob {
    dir: PathBuf,
    spec: PathBuf,
    runs: u32,
}

impl LocalJob {
    /// Writes `yaml` as the spec `name` under `dir`.
    pub fn new(dir: &Path, name: &str, yaml: &str) -> LocalJob {
        let spec = dir.join(format!("{name}.yaml"));
        fs::write(&spec, yaml).unwrap();
        LocalJob::with_spec(dir, &spec)
    }

    /// The job of the spec file `spec`, run under `dir`.
    pub fn with_spec(dir: &Path, spec: &Path) -> LocalJob {
        LocalJob {
            dir: dir.to_path_buf(),
            spec: spec.to_path_buf(),
            runs: 0,
        }
    }

    /// Runs the job once with extra environment (within 180 s); whether it
    /// exited 0, and its log's tail.
    pub fn run(&mut self, env: &[(&str, &str)]) -> (bool, String) {
        self.runs += 1;
        let log = self.dir.join(format!("run-{}.log", self.runs));
        let state = self.dir.join("state");
        let mut p = Proc::start(
            &format!("weir local (run {})", self.runs),
            &binary("weir"),
            &[
                "local",
                &self.spec.to_string_lossy(),
                "--state-dir",
                &state.to_string_lossy(),
                "--exit-when-idle",
                "--no-http",
            ],
            env,
            &log,
        )
        .unwrap();
        let status = p.wait_timeout(Duration::from_secs(180)).unwrap();
        (status.success(), p.log_tail(40))
    }

    /// Every run's whole log.
    pub fn logs(&self) -> String {
        (1..=self.runs)
            .map(|r| fs::read_to_string(self.dir.join(format!("run-{r}.log"))).unwrap_or_default())
            .collect()
    }

    /// Killed at each crash point (`WEIR_CRASH_AT`), then run once more to
    /// the end; panics unless each run stopped where it should. Returns the
    /// last run's log tail.
    pub fn run_with_crashes(&mut self, points: &[&str]) -> String {
        for point in points {
            let (ok, log) = self.run(&[("WEIR_CRASH_AT", point)]);
            assert!(!ok, "finished before crash point {point}\n{log}");
            assert!(
                log.contains(&format!("crash point {point}")),
                "{point}: {log}"
            );
        }
        let (ok, log) = self.run(&[]);
        assert!(ok, "final run failed\n{log}");
        log
    }
}
