//! The driver's gRPC services: Raft transport between replicas and the
//! client service of the `weir` CLI. Handlers stay thin: check leadership,
//! validate, then hand to the replica or the metadata store.

mod client;
pub(crate) mod raft;
mod status;
pub mod views;

pub use client::{ClientService, ExecutorView, LeaderExecutors};
pub use raft::RaftService;
pub use status::LEADER_METADATA_KEY;
