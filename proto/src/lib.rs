//! Weir's wire types (generated from `proto/`), identifiers and job specs,
//! and what every Weir process shares: crash points, logging set-up and
//! shutdown signals (`process`).
//!
//! Codegen policy: code is generated into `OUT_DIR` at build time by
//! `build.rs` with a vendored `protoc`; nothing generated is checked in.
#![warn(missing_docs)]

/// Generated protobuf and gRPC types of the `weir.v1` package.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("weir.v1");
}

/// The encoded `FileDescriptorSet` of every `weir.v1` message and service,
/// for code that walks their fields and methods.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/weir_descriptor.bin"));

pub mod failpoint;
pub mod failure;
pub mod generator;
pub mod json;
pub mod process;
pub mod spec;
pub mod time;
pub mod wire;

pub use failure::FailureClass;
