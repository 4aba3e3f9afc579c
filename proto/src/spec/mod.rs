//! Job specs: parsing the YAML form, converting it into the protobuf
//! [`JobSpec`](crate::pb::JobSpec), and validating it with errors that name
//! the field path and the problem.

mod bytes;
mod duration;
pub mod lookup;
mod render;
pub mod secrets;
mod validate;
mod yaml;

#[cfg(test)]
mod tests;

pub use bytes::{format_bytes, parse_bytes};
pub use duration::{format_duration_ms, parse_duration_ms};
pub use render::to_yaml;
pub use validate::limits;
pub use validate::{
    bytes_per_partition, check_job_name, check_operator_name, check_operator_version,
    custom_operators, fingerprint, is_sql_identifier, operator_id, parse_spec, validate,
    COMMITS_TOPIC, KAFKA_METADATA_COLUMNS, MAX_JOB_NAME, SPEC_FORMAT_VERSION,
};

use std::fmt;

/// One problem in a job spec, at a field path such as `pipeline[2].window.size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecIssue {
    /// Dotted path of the offending field (`source.generator.keys`).
    pub path: String,
    /// What is wrong and, where it helps, what to write instead.
    pub message: String,
}

impl fmt::Display for SpecIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every problem found in a spec; a spec is accepted only without any.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecError {
    /// The problems, in spec order.
    pub issues: Vec<SpecIssue>,
}

impl SpecError {
    pub(crate) fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        SpecError {
            issues: vec![SpecIssue {
                path: path.into(),
                message: message.into(),
            }],
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.issues.iter().map(|i| i.to_string()).collect();
        write!(f, "{}", lines.join("\n"))
    }
}
