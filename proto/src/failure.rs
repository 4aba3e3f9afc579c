//! The failure classes of a task, shared by the executor (which classifies
//! its errors), the wire (which carries the class on a failed call's
//! status) and the driver (whose batch policy acts on it). One enum, so the
//! three can never disagree.

use std::fmt;

/// Who is at fault for a failed task, which decides what the driver does
/// next (see the driver's batch policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureClass {
    /// The job's spec or data: retrying the same batch fails the same way,
    /// so the job fails.
    User,
    /// An outside system (source, state store, sink target): the batch is
    /// retried with backoff and the job shows as degraded meanwhile.
    External,
    /// Lost executor state or shuffle output, or a broken invariant: state
    /// is rebuilt and the batch retried, a bounded number of times.
    Internal,
    /// A commit found the batch's pre-committed sink output gone (a Kafka
    /// transaction aborted when its producer's process died) and not
    /// committed: the batch must be produced again before its commit can
    /// finish (same ranges; sinks skip the partitions that did commit).
    OutputLost,
}

impl FailureClass {
    /// Every class, in declaration order.
    pub const ALL: [FailureClass; 4] = [
        FailureClass::User,
        FailureClass::External,
        FailureClass::Internal,
        FailureClass::OutputLost,
    ];

    /// The name carried on the wire and shown in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::User => "user",
            FailureClass::External => "external",
            FailureClass::Internal => "internal",
            FailureClass::OutputLost => "output-lost",
        }
    }

    /// The class named by [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<FailureClass> {
        FailureClass::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for class in FailureClass::ALL {
            assert_eq!(FailureClass::parse(class.as_str()), Some(class));
            assert_eq!(class.to_string(), class.as_str());
        }
        assert_eq!(FailureClass::parse("User"), None);
        assert_eq!(FailureClass::parse(""), None);
    }
}
