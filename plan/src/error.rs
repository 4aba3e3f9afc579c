//! The crate's one error: where in the spec, and what is wrong there.

use crate::expr::ExprError;

/// A part of a job's spec that does not compile, or a compiled step that
/// failed on a batch: its path in the spec (`pipeline[0].filter`,
/// `pipeline[2].aggregate.total`, `source.generator.keys`) and the problem.
/// Displays as `path: message`.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct PlanError {
    /// The path in the spec.
    pub path: String,
    /// What is wrong, in words for the job's owner.
    pub message: String,
    /// The expression error, when an expression failed to compile or to
    /// evaluate (the executor classifies evaluation failures by it).
    #[source]
    pub expr: Option<ExprError>,
}

impl PlanError {
    /// An error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        PlanError {
            path: path.into(),
            message: message.into(),
            expr: None,
        }
    }

    /// An expression's error at `path`.
    pub fn expr(path: impl Into<String>, e: ExprError) -> Self {
        PlanError {
            path: path.into(),
            message: e.to_string(),
            expr: Some(e),
        }
    }
}
