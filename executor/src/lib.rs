//! The Weir executor library: runs stage-A and stage-B tasks of micro-batches,
//! owns state partitions and persists them to a state store.
#![warn(missing_docs)]

pub mod allocator;
pub mod config;
pub mod custom;
pub mod error;
pub mod hbase_thrift;
pub mod json;
pub mod keys;
pub mod lookup;
pub mod metrics;
pub mod operators;
pub mod plan;
pub mod process;
pub mod runtime;
pub mod service;
pub mod shuffle;
pub mod sinks;
pub mod sources;
pub mod state;

pub use error::ExecError;
pub use process::main_with;
pub use runtime::{Executor, ExecutorConfig};
pub use weir_proto::FailureClass;
