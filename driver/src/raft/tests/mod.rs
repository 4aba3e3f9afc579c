//! Tests of the Raft core: storage contract, codec and log bridge, and
//! clusters on a simulated network.

// Protobuf 2 messages are built field by field, as raft-rs's own code does.
#![allow(clippy::field_reassign_with_default)]

mod cluster;
mod misc;
mod network;
mod storage;
