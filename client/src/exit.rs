//! `weir`'s exit statuses: one per class of error, so scripts can tell a
//! bad spec from an unreachable cluster without reading the message. The
//! table is documented in docs/cli.md; the values never change meaning.

use crate::commands::WaitError;
use crate::remote::ClientError;
use std::fmt;
use std::process::ExitCode;
use tonic::Code;
use weir_driver::DriverError;

/// Why `weir` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitClass {
    /// Any other error (an I/O error, a bug).
    Failure = 1,
    /// The command line is wrong (clap exits with this code too).
    Usage = 2,
    /// The job spec does not parse, validate or type-check.
    InvalidSpec = 3,
    /// The cluster refused the change: an upgrade that needs
    /// `--reset-state` or `--from`, a membership change it cannot make.
    Refused = 4,
    /// No driver answered, or no leader within the client's patience.
    Unreachable = 5,
    /// The job (or driver) named does not exist.
    NotFound = 6,
    /// No credentials, or credentials without the role the call needs.
    Permission = 7,
    /// The job failed (`weir local`).
    JobFailed = 8,
}

impl ExitClass {
    /// Every class, in code order.
    pub const ALL: [ExitClass; 8] = [
        ExitClass::Failure,
        ExitClass::Usage,
        ExitClass::InvalidSpec,
        ExitClass::Refused,
        ExitClass::Unreachable,
        ExitClass::NotFound,
        ExitClass::Permission,
        ExitClass::JobFailed,
    ];

    /// The process exit status.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The class's name in JSON errors.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitClass::Failure => "failure",
            ExitClass::Usage => "usage",
            ExitClass::InvalidSpec => "invalid-spec",
            ExitClass::Refused => "refused",
            ExitClass::Unreachable => "unreachable",
            ExitClass::NotFound => "not-found",
            ExitClass::Permission => "permission",
            ExitClass::JobFailed => "job-failed",
        }
    }

    /// The class of a gRPC status from a driver.
    pub fn of_code(code: Code) -> ExitClass {
        match code {
            Code::InvalidArgument | Code::OutOfRange => ExitClass::InvalidSpec,
            Code::FailedPrecondition | Code::AlreadyExists | Code::Aborted => ExitClass::Refused,
            Code::Unavailable | Code::DeadlineExceeded => ExitClass::Unreachable,
            Code::NotFound => ExitClass::NotFound,
            Code::PermissionDenied | Code::Unauthenticated => ExitClass::Permission,
            _ => ExitClass::Failure,
        }
    }

    /// The class of an error: the first error in its chain that has one.
    pub fn of(error: &anyhow::Error) -> ExitClass {
        error
            .chain()
            .find_map(|e| {
                if let Some(c) = e.downcast_ref::<Classified>() {
                    Some(c.class)
                } else if let Some(c) = e.downcast_ref::<ClientError>() {
                    Some(client_class(c))
                } else if let Some(w) = e.downcast_ref::<WaitError>() {
                    Some(match w {
                        WaitError::Client(c) => client_class(c),
                        WaitError::JobFailed { .. } => ExitClass::JobFailed,
                        WaitError::TimedOut { .. } => ExitClass::Failure,
                    })
                } else if let Some(s) = e.downcast_ref::<tonic::Status>() {
                    Some(ExitClass::of_code(s.code()))
                } else {
                    e.downcast_ref::<DriverError>().map(driver_class)
                }
            })
            .unwrap_or(ExitClass::Failure)
    }
}

impl From<ExitClass> for ExitCode {
    fn from(class: ExitClass) -> ExitCode {
        ExitCode::from(class.code())
    }
}

fn client_class(e: &ClientError) -> ExitClass {
    match e {
        ClientError::NoDrivers => ExitClass::Usage,
        ClientError::NoLeader { .. } => ExitClass::Unreachable,
        ClientError::Status(s) => ExitClass::of_code(s.code()),
    }
}

fn driver_class(e: &DriverError) -> ExitClass {
    match e {
        DriverError::JobFailed { .. } | DriverError::Source { .. } => ExitClass::JobFailed,
        DriverError::UpgradeRefused(_) => ExitClass::Refused,
        DriverError::UnsupportedFormat { .. } | DriverError::InvalidSpec { .. } => {
            ExitClass::InvalidSpec
        }
        DriverError::UnknownJob(_) => ExitClass::NotFound,
        DriverError::BadFrom { .. } => ExitClass::Usage,
        DriverError::Meta(_)
        | DriverError::Interrupted { .. }
        | DriverError::MissingPlan { .. }
        | DriverError::Restart => ExitClass::Failure,
    }
}

/// An error whose class the CLI decided where it arose.
#[derive(Debug)]
pub struct Classified {
    /// The class.
    pub class: ExitClass,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Classified {}

/// An error of `class` with `message`.
pub fn classified(class: ExitClass, message: impl Into<String>) -> anyhow::Error {
    Classified {
        class,
        message: message.into(),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;
    use tonic::Status;

    #[test]
    fn codes_are_distinct_and_stable() {
        let codes: Vec<u8> = ExitClass::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes, [1, 2, 3, 4, 5, 6, 7, 8]);
        let names: std::collections::BTreeSet<_> =
            ExitClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ExitClass::ALL.len());
    }

    #[test]
    fn errors_are_classified_through_their_context() {
        let status = |code: Code| {
            anyhow::Error::from(ClientError::Status(Status::new(code, "x"))).context("calling")
        };
        for (code, class) in [
            (Code::InvalidArgument, ExitClass::InvalidSpec),
            (Code::FailedPrecondition, ExitClass::Refused),
            (Code::Unavailable, ExitClass::Unreachable),
            (Code::NotFound, ExitClass::NotFound),
            (Code::PermissionDenied, ExitClass::Permission),
            (Code::Unauthenticated, ExitClass::Permission),
            (Code::Internal, ExitClass::Failure),
        ] {
            assert_eq!(ExitClass::of(&status(code)), class, "{code:?}");
        }
        let no_leader = anyhow::Error::from(ClientError::NoLeader {
            patience: std::time::Duration::from_secs(1),
            drivers: "127.0.0.1:1".into(),
            last: "refused".into(),
        });
        assert_eq!(ExitClass::of(&no_leader), ExitClass::Unreachable);
        let refused = anyhow::Error::from(DriverError::UpgradeRefused("no".into()));
        assert_eq!(ExitClass::of(&refused), ExitClass::Refused);
        let spec: anyhow::Result<()> =
            Err(classified(ExitClass::InvalidSpec, "bad")).context("loading");
        assert_eq!(ExitClass::of(&spec.unwrap_err()), ExitClass::InvalidSpec);
        assert_eq!(
            ExitClass::of(&anyhow::anyhow!("anything else")),
            ExitClass::Failure
        );
    }
}
