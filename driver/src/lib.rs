//! The Weir driver library.
