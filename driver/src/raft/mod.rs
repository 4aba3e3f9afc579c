//! The Raft core that replicates the driver's metadata commands: a raft-rs
//! (`raft` 0.7, protobuf codec) [`RaftNode`] whose log, hard state, conf
//! state and snapshots live in sled ([`SledRaftStorage`]), with raft-rs's
//! slog output routed into `tracing` ([`TracingDrain`]).
//!
//! Raft's own message type ([`Message`]) is kept out of Weir's protos: a
//! transport carries it as bytes encoded with raft-rs's codec
//! ([`encode_message`], [`decode_message`]).

mod config;
mod error;
mod log;
mod node;
mod storage;

#[cfg(test)]
mod tests;

pub use self::config::RaftConfig;
pub use self::error::{RaftNodeError, RaftStoreError};
pub use self::log::{tracing_logger, TracingDrain};
pub use self::node::{RaftNode, StateMachine};
pub use self::storage::SledRaftStorage;
pub use ::raft::prelude::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, Message, MessageType, Snapshot,
};
pub use ::raft::SnapshotStatus;

/// Encodes a Raft message for the wire with raft-rs's protobuf 2 codec.
pub fn encode_message(msg: &Message) -> Result<Vec<u8>, RaftNodeError> {
    use protobuf::Message as _;
    msg.write_to_bytes()
        .map_err(|e| RaftNodeError::Raft(::raft::Error::CodecError(e)))
}

/// Decodes a Raft message received from a peer.
pub fn decode_message(bytes: &[u8]) -> Result<Message, RaftNodeError> {
    use protobuf::Message as _;
    Message::parse_from_bytes(bytes).map_err(|e| RaftNodeError::Raft(::raft::Error::CodecError(e)))
}
