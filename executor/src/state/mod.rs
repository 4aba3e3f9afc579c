//! State checkpoints: file format, storage backends, recovery.
