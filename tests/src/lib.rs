//! Helpers for Weir integration tests.
