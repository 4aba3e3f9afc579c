//! Errors to gRPC status codes, in one place.

use crate::metadata::MetaError;
use tonic::{Code, Status};

/// gRPC metadata key carrying the leader's address on `UNAVAILABLE`.
pub const LEADER_METADATA_KEY: &str = "weir-leader";

/// `UNAVAILABLE` with the leader's address when known.
pub fn not_leader(leader: Option<&str>) -> Status {
    let message = match leader {
        Some(a) => format!("this driver is not the leader; the leader is at {a}"),
        None => {
            "this driver is not the leader and no leader is known yet (election in progress); retry"
                .into()
        }
    };
    let mut status = Status::unavailable(message);
    if let Some(a) = leader {
        if let Ok(v) = a.parse() {
            status.metadata_mut().insert(LEADER_METADATA_KEY, v);
        }
    }
    status
}

/// Maps a metadata error to a status.
pub fn meta_status(e: MetaError) -> Status {
    match e {
        MetaError::NotLeader { leader } => not_leader(leader.as_deref()),
        MetaError::NoQuorum(_) => Status::new(Code::Unavailable, e.to_string()),
        MetaError::Rejected(_) => Status::failed_precondition(e.to_string()),
        MetaError::Storage { .. } | MetaError::Corrupt { .. } => Status::internal(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leader_hint_travels_in_metadata() {
        let s = meta_status(MetaError::NotLeader {
            leader: Some("127.0.0.1:7071".into()),
        });
        assert_eq!(s.code(), Code::Unavailable);
        assert_eq!(
            s.metadata().get(LEADER_METADATA_KEY).unwrap(),
            "127.0.0.1:7071"
        );
        assert_eq!(
            meta_status(MetaError::NoQuorum("x".into())).code(),
            Code::Unavailable
        );
        assert_eq!(
            meta_status(MetaError::Rejected("x".into())).code(),
            Code::FailedPrecondition
        );
    }
}
