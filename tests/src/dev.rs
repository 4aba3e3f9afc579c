//! The shared dev services of `deploy/dev/`, stopped and started again by
//! the tests that take one away mid-run.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};

fn dev_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/dev")
        .join(name)
}

/// Runs `deploy/dev/NAME COMMAND`; panics with its output if it fails. Its
/// output goes to a file, not a pipe: the service it starts keeps its
/// inherited descriptors open.
fn run_script(name: &str, command: &str) {
    let log = std::env::temp_dir().join(format!("weir-dev-{name}-{command}.log"));
    let file = fs::File::create(&log).unwrap();
    let status = Command::new("bash")
        .arg(dev_script(name))
        .arg(command)
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .status()
        .unwrap_or_else(|e| panic!("{name} {command}: {e}"));
    assert!(
        status.success(),
        "{name} {command} failed:\n{}",
        fs::read_to_string(&log).unwrap_or_default()
    );
}

/// A dev service stopped by a test (its data is kept); started again on
/// drop if the test panics first, so later tests find it running.
pub struct Stopped {
    script: &'static str,
    down: bool,
}

impl Stopped {
    /// Stops the service of `script` (e.g. `postgres.sh`).
    pub fn stop(script: &'static str) -> Self {
        run_script(script, "stop");
        Stopped { script, down: true }
    }

    /// Starts it again.
    pub fn start(&mut self) {
        run_script(self.script, "start");
        self.down = false;
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        if self.down {
            let _ = Command::new("bash")
                .arg(dev_script(self.script))
                .arg("start")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}
