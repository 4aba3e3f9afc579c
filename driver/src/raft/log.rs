//! A slog [`Drain`] that forwards raft-rs's log records to `tracing`, so one
//! log stream (and one filter: target `raft`) shows the Raft core next to
//! the rest of the driver.

use std::fmt::{self, Write as _};

use slog::{Drain, Key, Level, OwnedKVList, Record, Serializer, KV};

/// Forwards every slog record to a `tracing` event with target `raft`,
/// mapping levels (critical and error → `ERROR`, warning → `WARN`, info and
/// debug → `DEBUG`, trace → `TRACE`). raft-rs logs every election step and
/// configuration at info: internals an operator needs only when debugging;
/// the node logs each leadership change at INFO itself. The record's key-values
/// (raft-rs puts `raft_id`, `term` and the like there) become one `kv`
/// field; they are only formatted when the event is enabled.
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingDrain;

/// A slog logger whose records go to `tracing` through [`TracingDrain`].
pub fn tracing_logger() -> slog::Logger {
    slog::Logger::root(TracingDrain, slog::o!())
}

struct KvString(String);

impl Serializer for KvString {
    fn emit_arguments(&mut self, key: Key, val: &fmt::Arguments) -> slog::Result {
        if !self.0.is_empty() {
            self.0.push(' ');
        }
        // Writing into a String cannot fail.
        let _ = write!(self.0, "{key}={val}");
        Ok(())
    }
}

fn kv_string(record: &Record, values: &OwnedKVList) -> String {
    let mut s = KvString(String::new());
    // Serializing into a String cannot fail; a failing KV impl only loses fields.
    let _ = record.kv().serialize(record, &mut s);
    let _ = values.serialize(record, &mut s);
    s.0
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), slog::Never> {
        let msg = record.msg();
        let module = record.module();
        // tracing needs the level at compile time, hence one arm per level;
        // field expressions run only when the event is enabled.
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(
                target: "raft", module, kv = %kv_string(record, values), "{msg}"
            ),
            Level::Warning => tracing::warn!(
                target: "raft", module, kv = %kv_string(record, values), "{msg}"
            ),
            Level::Info | Level::Debug => tracing::debug!(
                target: "raft", module, kv = %kv_string(record, values), "{msg}"
            ),
            Level::Trace => tracing::trace!(
                target: "raft", module, kv = %kv_string(record, values), "{msg}"
            ),
        }
        Ok(())
    }
}
