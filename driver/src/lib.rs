//! The Weir driver library: the metadata checkpoint, batch planning and the
//! commit protocol that makes a job's output exactly-once.
#![warn(missing_docs)]

pub mod batch;
pub mod cluster;
pub mod config;
pub mod error;
pub mod executors;
pub mod http;
pub mod job_health;
pub mod kafka;
pub mod lag;
pub mod metadata;
pub mod metrics;
pub mod planner;
pub mod raft;
pub mod report_group;
pub mod runner;
pub mod server;
pub mod service;
pub mod submit;
pub mod ui;
pub mod upgrade;

pub use batch::{BatchReport, DriverOptions, JobDriver, Outcome};
pub use error::DriverError;
pub use metadata::{MetadataStore, SledMetadata};
pub use runner::{TaskFailure, TaskRunner};
pub use submit::{submit, submit_with, FromOffsets, SubmitOptions, Submitted};
pub use weir_proto::FailureClass;
