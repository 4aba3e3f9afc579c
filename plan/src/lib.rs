//! What a job's spec compiles to, shared by the driver and the executor:
//! SQL expressions ([`expr`]), the stateless steps ([`step`]) and the
//! lookup step's plan ([`lookup`]), the stateful
//! operator's plan ([`aggregate`], [`accumulator`], [`window`]), the
//! sources' schemas ([`source`]) and the pipeline that ties them together
//! ([`pipeline`]).
//!
//! The executor compiles a deployed job with [`Pipeline::compile`] and runs
//! it; the driver (at submit) and the CLI (`weir validate`) call
//! [`check_spec`], the same compilation without an executor, so a spec
//! that does not type-check is refused before it is stored. Nothing here
//! reads a source or touches state.
#![warn(missing_docs)]

pub mod accumulator;
pub mod aggregate;
mod check;
mod error;
pub mod expr;
pub mod lookup;
pub mod pipeline;
pub mod source;
pub mod step;
pub mod window;

pub use check::{check_spec, Checked};
pub use error::PlanError;
pub use pipeline::Pipeline;
