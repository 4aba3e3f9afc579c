//! The driver's errors as gRPC statuses, in one place. Clients (the `weir`
//! CLI's exit codes among them) act on the code: `Unavailable` means try
//! another driver or later, `FailedPrecondition` a refused change,
//! `InvalidArgument` a bad request.

use crate::error::DriverError;
use crate::executors::registry::RegistryError;
use crate::metadata::MetaError;
use tonic::{Code, Status};

pub use weir_proto::wire::{not_leader, LEADER_KEY as LEADER_METADATA_KEY};

impl From<MetaError> for Status {
    fn from(e: MetaError) -> Status {
        match e {
            MetaError::NotLeader { leader } => not_leader(leader.as_deref()),
            MetaError::NoQuorum(_) => Status::new(Code::Unavailable, e.to_string()),
            MetaError::Rejected(_) => Status::failed_precondition(e.to_string()),
            MetaError::Storage { .. } | MetaError::Corrupt { .. } => {
                Status::internal(e.to_string())
            }
        }
    }
}

impl From<DriverError> for Status {
    fn from(e: DriverError) -> Status {
        match e {
            DriverError::Meta(e) => e.into(),
            DriverError::UpgradeRefused(_) | DriverError::UnsupportedFormat { .. } => {
                Status::failed_precondition(e.to_string())
            }
            DriverError::BadFrom { .. } | DriverError::InvalidSpec { .. } => {
                Status::invalid_argument(e.to_string())
            }
            DriverError::UnknownJob(_) => Status::not_found(e.to_string()),
            DriverError::JobFailed { .. }
            | DriverError::Interrupted { .. }
            | DriverError::MissingPlan { .. }
            | DriverError::Source { .. }
            | DriverError::Restart => Status::internal(e.to_string()),
        }
    }
}

/// A refused registration or heartbeat: the executor re-registers on
/// `FailedPrecondition`.
impl From<&RegistryError> for Status {
    fn from(e: &RegistryError) -> Status {
        match e {
            RegistryError::StaleEpoch { .. }
            | RegistryError::Unknown(_)
            | RegistryError::IncompatibleBuild { .. } => Status::failed_precondition(e.to_string()),
            RegistryError::Invalid(_) => Status::invalid_argument(e.to_string()),
            RegistryError::Full { .. } => Status::resource_exhausted(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_hint_travels_in_metadata() {
        let s = Status::from(MetaError::NotLeader {
            leader: Some("127.0.0.1:7071".into()),
        });
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(
            s.metadata().get(LEADER_METADATA_KEY).unwrap(),
            "127.0.0.1:7071"
        );
        assert_eq!(
            Status::from(MetaError::NoQuorum("x".into())).code(),
            Code::Unavailable
        );
        assert_eq!(
            Status::from(MetaError::Rejected("x".into())).code(),
            Code::FailedPrecondition
        );
    }

    /// Each driver error reaches clients with the code they act on.
    #[test]
    fn driver_errors_map_to_the_codes_clients_act_on() {
        use crate::runner::TaskFailure;
        let failure = TaskFailure {
            class: weir_proto::FailureClass::User,
            message: "m".into(),
        };
        for (e, code) in [
            (
                DriverError::UpgradeRefused("r".into()),
                Code::FailedPrecondition,
            ),
            (
                DriverError::UnsupportedFormat {
                    job: "j".into(),
                    what: "the submitted",
                    found: 9,
                    supported: 1,
                },
                Code::FailedPrecondition,
            ),
            (
                DriverError::BadFrom {
                    value: "x".into(),
                    message: "m".into(),
                },
                Code::InvalidArgument,
            ),
            (
                DriverError::InvalidSpec {
                    job: "j".into(),
                    error: Box::new(weir_plan::PlanError::new("pipeline[0].filter", "m")),
                },
                Code::InvalidArgument,
            ),
            (DriverError::UnknownJob("j".into()), Code::NotFound),
            (
                DriverError::Meta(MetaError::NoQuorum("q".into())),
                Code::Unavailable,
            ),
            (
                DriverError::JobFailed {
                    job: "j".into(),
                    batch_id: 1,
                    failure,
                },
                Code::Internal,
            ),
        ] {
            let message = e.to_string();
            let s = Status::from(e);
            assert_eq!((s.code(), s.message()), (code, message.as_str()));
        }
    }
}
