//! The Weir executor library: runs stage-A and stage-B tasks of micro-batches,
//! owns state partitions and persists them to a state store.
#![warn(missing_docs)]

pub mod expr;
pub mod state;
