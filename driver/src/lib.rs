//! The Weir driver library: the metadata checkpoint, batch planning and the
//! commit protocol that makes a job's output exactly-once.
#![warn(missing_docs)]

pub mod cluster;
pub mod config;
pub mod executors;
pub mod job_health;
pub mod kafka;
pub mod metadata;
pub mod planner;
pub mod raft;
pub mod runner;
pub mod scheduler;
pub mod service;
pub mod upgrade;

pub use metadata::{MetadataStore, SledMetadata};
pub use runner::{FailureKind, TaskFailure, TaskRunner};
pub use scheduler::{
    submit, submit_with, BatchReport, DriverError, DriverOptions, FromOffsets, JobDriver, Outcome,
    SubmitOptions, Submitted,
};
