//! Operators: stateless steps over record batches and the stateful
//! aggregation (running or windowed) split into its stage-A and stage-B halves.

pub mod accumulator;
pub mod aggregate;
mod cow_chunks;
pub mod partition_state;
mod slot_codec;
pub mod stateless;
pub mod window;

#[cfg(test)]
mod tests;
