//! `weir-chaos`: kill and pause real Weir processes on a seeded schedule
//! while stateful jobs run, then check that their output is exactly what
//! their input defines.
//!
//! A run starts three driver replicas and three executors on loopback
//! ([`cluster`]), submits a running count and a sliding windowed count
//! ([`workload`]) — and with a broker, a running count from one Kafka topic
//! to another ([`kafka`]) — and applies the faults of a [`schedule::Schedule`] one
//! at a time: each fires at its timing (random, during stage work, during
//! commit, read from the job's own status), its processes come back after
//! its hold, and the run measures detection and the next committed batch
//! ([`observe`]) before the cluster is healthy again and the next fault
//! fires. Jobs have finite input and are replaced by a new round when they
//! finish before the schedule does. Every finished job is verified
//! ([`verify`]) and the run ends with a [`report::Report`].

pub mod cluster;
pub mod io;
pub mod kafka;
pub mod observe;
pub mod report;
mod runner;
pub mod schedule;
pub mod verify;
pub mod workload;

pub use runner::{run, verify_job, ChaosOptions};
