//! Crash points for recovery tests.
//!
//! `WEIR_CRASH_AT=name` (or `name@N` for the N-th time the point is reached)
//! makes the process abort at that point, as abruptly as `kill -9`: no
//! destructor runs and nothing is flushed. Tests use it to kill a process at
//! the worst moments of the commit protocol. Unset, a point costs one
//! relaxed atomic load.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// Environment variable naming the crash point.
pub const ENV: &str = "WEIR_CRASH_AT";

fn target() -> Option<&'static (String, u64)> {
    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    TARGET
        .get_or_init(|| {
            let value = std::env::var(ENV).ok()?;
            let (name, nth) = match value.split_once('@') {
                Some((n, k)) => (n.to_string(), k.parse().unwrap_or(1)),
                None => (value, 1),
            };
            Some((name, nth.max(1)))
        })
        .as_ref()
}

/// Aborts the process if `name` is the configured crash point and this is
/// its configured occurrence.
pub fn hit(name: &str) {
    static HITS: AtomicU64 = AtomicU64::new(0);
    if let Some((target, nth)) = target() {
        if target == name && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth {
            eprintln!("crash point {name}@{nth} reached: aborting");
            std::process::abort();
        }
    }
}
