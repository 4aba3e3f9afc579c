//! Operators: stateless steps over record batches and the stateful
//! aggregation (running or windowed) split into its stage-A and stage-B halves.

pub mod aggregate;
mod cow_chunks;
pub mod partition_state;
mod slot_codec;
pub mod stateless;

#[cfg(test)]
mod tests;
