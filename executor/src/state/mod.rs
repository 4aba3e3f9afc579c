//! State checkpoints: file format, storage backends, recovery.

mod error;
pub mod format;

pub use error::StateError;
pub use format::CheckpointKind;
