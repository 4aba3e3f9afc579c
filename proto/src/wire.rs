//! Conventions of Weir's gRPC calls that are not in the message types:
//! metadata keys carried on `tonic::Status` and requests. Both the driver
//! and the executor read and write them through this module, so the keys
//! and their values are spelled in one place.

use tonic::metadata::MetadataValue;
use tonic::Status;

use crate::FailureClass;

/// The largest message a driver's `WeirClient` service decodes: a spec is
/// at most `spec::limits::MAX_SPEC_BYTES` (1 MiB, refused by name above
/// that), the rest of a request is small.
pub const MAX_CLIENT_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
/// The largest message of `ExecutorControl` (registration, heartbeats).
pub const MAX_CONTROL_MESSAGE_BYTES: usize = 1024 * 1024;
/// The largest task message between a driver and an executor, either way
/// (a deploy carries a spec; stage results carry counts and offsets).
pub const MAX_TASK_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Metadata key of a follower's answer naming the leader's address
/// (`host:port`), on an `UNAVAILABLE` status.
pub const LEADER_KEY: &str = "weir-leader";

/// Metadata key marking a client call that a follower forwarded to the
/// leader: the receiver answers it or refuses it, never forwards it again.
pub const FORWARDED_KEY: &str = "weir-forwarded";

/// Metadata key carrying a failed task's [`FailureClass`]
/// (`user`, `external`, `internal` or `output-lost`).
pub const ERROR_DOMAIN_KEY: &str = "weir-error-domain";

/// Metadata key naming the source partition whose shuffle output a stage-B
/// task could not get, so the driver can re-run just that stage-A task.
pub const MISSING_SHUFFLE_KEY: &str = "weir-missing-shuffle";

/// Marks `status` with a failed task's class.
pub fn with_class(mut status: Status, class: FailureClass) -> Status {
    status
        .metadata_mut()
        .insert(ERROR_DOMAIN_KEY, MetadataValue::from_static(class.as_str()));
    status
}

/// The failure class a status carries: `None` when it is not a task's
/// failure (a transport error or an epoch rejection).
pub fn class(status: &Status) -> Option<FailureClass> {
    status
        .metadata()
        .get(ERROR_DOMAIN_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(FailureClass::parse)
}

/// Marks `status` with the source partition whose shuffle output is missing.
pub fn with_missing_shuffle(mut status: Status, source_partition: u32) -> Status {
    status
        .metadata_mut()
        .insert(MISSING_SHUFFLE_KEY, MetadataValue::from(source_partition));
    status
}

/// The source partition whose shuffle output a status reports missing.
pub fn missing_shuffle(status: &Status) -> Option<u32> {
    status
        .metadata()
        .get(MISSING_SHUFFLE_KEY)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// An `UNAVAILABLE` answer of a driver that is not the leader, with the
/// leader's address when it knows it.
pub fn not_leader(leader: Option<&str>) -> Status {
    let mut status = Status::unavailable(match leader {
        Some(l) => format!("not the leader; the leader is {l}"),
        None => "not the leader; no leader is known yet".to_string(),
    });
    if let Some(value) = leader.and_then(|l| MetadataValue::try_from(l).ok()) {
        status.metadata_mut().insert(LEADER_KEY, value);
    }
    status
}

/// The leader address an `UNAVAILABLE` answer names, if any.
pub fn leader_hint(status: &Status) -> Option<String> {
    status
        .metadata()
        .get(LEADER_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips() {
        for c in FailureClass::ALL {
            let s = with_class(Status::internal("x"), c);
            assert_eq!(class(&s), Some(c));
        }
        assert_eq!(class(&Status::internal("x")), None);
        let s = with_missing_shuffle(Status::not_found("gone"), 7);
        assert_eq!(missing_shuffle(&s), Some(7));
        let s = not_leader(Some("10.0.0.2:7000"));
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert_eq!(leader_hint(&s).as_deref(), Some("10.0.0.2:7000"));
        assert_eq!(leader_hint(&not_leader(None)), None);
    }
}
