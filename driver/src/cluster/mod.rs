//! A driver replica in a Raft group: the metadata checkpoint replicated to
//! every driver, the leader's job supervision, and the peer transport.

mod epochs;
mod identity;
mod metadata;
mod replica;
mod supervisor;
mod transport;

pub use epochs::TermEpochs;
pub use identity::check_data_dir;
pub use metadata::RaftMetadata;
pub use replica::{Proposal, Replica, ReplicaHandle, ReplicaStatus};
pub use supervisor::Supervisor;
