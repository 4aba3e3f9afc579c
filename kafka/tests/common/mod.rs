//! What the broker tests of this crate share.

/// `name` made unique to this process and moment, for topics and jobs
/// that must not meet those of an earlier run on the same broker.
pub fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}
