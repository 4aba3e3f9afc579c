//! Errors to gRPC status codes, in one place.

use crate::metadata::MetaError;
use tonic::{Code, Status};

pub use weir_proto::wire::{not_leader, LEADER_KEY as LEADER_METADATA_KEY};

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
