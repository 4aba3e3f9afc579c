//! The Weir driver library: the metadata checkpoint, batch planning and the
//! commit protocol that makes a job's output exactly-once.
#![warn(missing_docs)]

pub mod executors;
pub mod metadata;
pub mod planner;
pub mod runner;
pub mod scheduler;

pub use metadata::{MetadataStore, SledMetadata};
pub use runner::{FailureKind, TaskFailure, TaskRunner};
pub use scheduler::{submit, BatchReport, DriverError, DriverOptions, JobDriver, Outcome};
