//! The `weir` client library: local mode (a driver and an executor in one
//! process) and the progress reporting of the CLI.
#![warn(missing_docs)]

pub mod commands;
pub mod context;
pub mod exit;
pub mod local;
pub mod output;
pub mod remote;
pub mod status;
