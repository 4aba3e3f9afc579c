//! The one place where executor errors become gRPC statuses.
//!
//! The status code is for humans and generic tooling; the driver decides
//! what to do from the failure class in the `weir-error-domain` metadata
//! (see [`weir_proto::wire`]). A status without a class is not a task
//! error: a transport failure or an epoch rejection.

use crate::error::ExecError;
use tonic::{Code, Status};
use weir_proto::wire;
use weir_proto::FailureClass;

/// A task error as a status carrying its failure class.
impl From<&ExecError> for Status {
    fn from(e: &ExecError) -> Status {
        to_status(e)
    }
}

impl From<ExecError> for Status {
    fn from(e: ExecError) -> Status {
        to_status(&e)
    }
}

fn to_status(e: &ExecError) -> Status {
    let code = match e {
        ExecError::Plan { .. } | ExecError::Expr { .. } => Code::InvalidArgument,
        ExecError::State { .. } | ExecError::OutputFenced { .. } | ExecError::Sink { .. } => {
            Code::Unavailable
        }
        ExecError::UnknownJob(_) => Code::NotFound,
        ExecError::StateGap { .. } => Code::Aborted,
        ExecError::MissingShuffle { .. } => Code::NotFound,
        ExecError::OutputLost { .. } => Code::DataLoss,
        ExecError::Source {
            transient: true, ..
        } => Code::Unavailable,
        ExecError::Source { .. } => Code::FailedPrecondition,
        ExecError::BatchTooLarge { .. } => Code::ResourceExhausted,
        ExecError::Lookup { source, .. } => match source.class() {
            FailureClass::External => Code::Unavailable,
            _ => Code::FailedPrecondition,
        },
    };
    let status = wire::with_class(Status::new(code, e.to_string()), e.class());
    match e {
        ExecError::MissingShuffle {
            source_partition, ..
        } => wire::with_missing_shuffle(status, *source_partition),
        _ => status,
    }
}

/// Shuffle output of `source_partition` could not be fetched for a stage-B
/// task: internal, naming the source partition so only its stage-A task is
/// re-run.
pub fn missing_shuffle(job: &str, batch: u64, source_partition: u32, detail: &str) -> Status {
    let e = ExecError::MissingShuffle {
        job: job.to_string(),
        batch,
        source_partition,
    };
    let status = Status::from(&e);
    let mut out = Status::new(status.code(), format!("{e} ({detail})"));
    *out.metadata_mut() = status.metadata().clone();
    out
}

/// A task that panicked or could not be scheduled on the blocking pool.
pub fn task_panicked(what: &str, e: tokio::task::JoinError) -> Status {
    wire::with_class(
        Status::internal(format!("{what} did not complete: {e}")),
        FailureClass::Internal,
    )
}

/// A request from an epoch other than this executor's current one.
pub fn stale_epoch(request: u64, current: Option<u64>) -> Status {
    Status::failed_precondition(match current {
        Some(c) => format!("stale epoch {request}, current {c}"),
        None => format!(
            "stale epoch {request}: this executor's epoch lease expired or it is not registered; it is re-registering"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateError;

    #[test]
    fn every_error_round_trips_its_class() {
        let errors = vec![
            ExecError::Plan {
                job: "j".into(),
                message: "m".into(),
            },
            ExecError::State {
                job: "j".into(),
                partition: 1,
                source: StateError::InvalidPath {
                    path: "p".into(),
                    reason: "r",
                },
            },
            ExecError::Sink {
                job: "j".into(),
                sink: "file".into(),
                message: "m".into(),
            },
            ExecError::UnknownJob("j".into()),
            ExecError::StateGap {
                job: "j".into(),
                partition: 0,
                have: 1,
                need: 2,
                batch: 3,
            },
            ExecError::MissingShuffle {
                job: "j".into(),
                batch: 3,
                source_partition: 2,
            },
            ExecError::OutputLost {
                job: "j".into(),
                sink: "kafka".into(),
                batch: 3,
                partition: 1,
            },
            ExecError::Source {
                job: "j".into(),
                source_name: "kafka".into(),
                message: "m".into(),
                transient: false,
            },
            ExecError::BatchTooLarge {
                job: "j".into(),
                source_kind: "kafka",
                batch: 3,
                partition: 1,
                start: 0,
                end: 10,
                limit: 1024,
            },
        ];
        for e in &errors {
            let s = Status::from(e);
            assert_eq!(wire::class(&s), Some(e.class()), "{e}");
            assert_eq!(s.message(), e.to_string());
        }
        let s = Status::from(&errors[5]);
        assert_eq!(wire::missing_shuffle(&s), Some(2));
        let s = missing_shuffle("j", 3, 4, "connection refused");
        assert_eq!(wire::class(&s), Some(FailureClass::Internal));
        assert_eq!(wire::missing_shuffle(&s), Some(4));
        assert!(s.message().contains("source partition 4") && s.message().contains("refused"));
        // epoch rejections are not task errors
        let s = stale_epoch(3, Some(4));
        assert_eq!(
            (s.code(), wire::class(&s)),
            (Code::FailedPrecondition, None)
        );
        assert_eq!(s.message(), "stale epoch 3, current 4");
    }
}
