//! Crash points for recovery tests.
//!
//! `WEIR_CRASH_AT=name` (or `name@N` for the N-th time the point is reached)
//! makes the process abort at that point, as abruptly as `kill -9`: no
//! destructor runs and nothing is flushed. Tests use it to kill a process at
//! the worst moments of the commit protocol.
//!
//! `WEIR_PAUSE_AT=name` (or `name@N`) makes the process stop itself there
//! with SIGSTOP, as a long stall (a frozen VM, a swapped-out process) would
//! stop it; the test sends SIGCONT when it wants it to wake up late.
//!
//! Unset, a point costs two relaxed atomic loads.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Environment variable naming the crash point.
pub const ENV: &str = "WEIR_CRASH_AT";

/// Environment variable naming the pause point.
pub const PAUSE_ENV: &str = "WEIR_PAUSE_AT";

/// A configured point: its name, the occurrence that triggers, and how
/// often it was reached.
struct Point {
    name: String,
    nth: u64,
    hits: AtomicU64,
}

impl Point {
    fn from_env(var: &str) -> Option<Point> {
        let value = std::env::var(var).ok()?;
        let (name, nth) = match value.split_once('@') {
            Some((n, k)) => (n.to_string(), k.parse().unwrap_or(1)),
            None => (value, 1),
        };
        Some(Point {
            name,
            nth: nth.max(1),
            hits: AtomicU64::new(0),
        })
    }

    /// Whether reaching `name` now triggers the point.
    fn reached(&self, name: &str) -> bool {
        self.name == name && self.hits.fetch_add(1, Ordering::SeqCst) + 1 == self.nth
    }
}

/// Aborts the process if `name` is the configured crash point and this is
/// its configured occurrence; stops it (SIGSTOP) if it is the configured
/// pause point and occurrence.
pub fn hit(name: &str) {
    static CRASH: OnceLock<Option<Point>> = OnceLock::new();
    static PAUSE: OnceLock<Option<Point>> = OnceLock::new();
    if let Some(point) = CRASH.get_or_init(|| Point::from_env(ENV)) {
        if point.reached(name) {
            eprintln!("crash point {name}@{} reached: aborting", point.nth);
            std::process::abort();
        }
    }
    if let Some(point) = PAUSE.get_or_init(|| Point::from_env(PAUSE_ENV)) {
        if point.reached(name) {
            eprintln!("pause point {name}@{} reached: stopping", point.nth);
            // SAFETY: raise only sends a signal to this process.
            unsafe {
                libc::raise(libc::SIGSTOP);
            }
            eprintln!("pause point {name}@{}: continued", point.nth);
        }
    }
}
