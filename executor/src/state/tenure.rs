//! Fencing a partition's files against an executor that lost the partition.
//!
//! The leader gives a state partition to an executor under the executor's
//! epoch, and gives it to another once it declares the executor dead. A
//! paused executor that wakes up may still be in the middle of a task, or
//! have checkpoint files queued: left alone, a late prune or discard would
//! delete files the new owner restored from, and a late write would replace
//! one it wrote. So every change to a partition's files (a write, a delete)
//! is made under the [`Tenure`] of the task that asked for it and is refused
//! once that task's epoch no longer holds its lease, which ends before the
//! leader's own failure timeout does. Reads are never fenced.

use std::fmt;
use std::sync::Arc;

use super::StateError;

/// Whether an epoch of this process still holds: it is the current one and
/// its lease has not run out.
pub trait Lease: Send + Sync + fmt::Debug {
    /// Whether `epoch` still holds.
    fn holds(&self, epoch: u64) -> bool;
}

/// The right to change a partition's files that a task was given: its
/// epoch, checked against the process's lease before every change.
#[derive(Clone, Debug, Default)]
pub struct Tenure {
    /// `None`: the process is the only one writing the store (`weir local`,
    /// tests), every change is allowed.
    lease: Option<Arc<dyn Lease>>,
    epoch: u64,
}

impl Tenure {
    /// For a process that is the only writer of its store: never fenced.
    pub fn unfenced() -> Self {
        Tenure::default()
    }

    /// The tenure of a task sent under `epoch`, valid while `lease` holds it.
    pub fn new(lease: Arc<dyn Lease>, epoch: u64) -> Self {
        Tenure {
            lease: Some(lease),
            epoch,
        }
    }

    /// `Ok` if the file at `path` may still be changed (`op`: what the
    /// change is, for the error).
    pub fn check(&self, op: &'static str, path: &str) -> Result<(), StateError> {
        match &self.lease {
            Some(lease) if !lease.holds(self.epoch) => Err(StateError::Fenced {
                op,
                path: path.to_owned(),
                epoch: self.epoch,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// A lease whose current epoch a test sets (0: none holds).
    #[derive(Debug, Default)]
    pub(crate) struct TestLease(pub(crate) AtomicU64);

    impl TestLease {
        pub(crate) fn set(&self, epoch: u64) {
            self.0.store(epoch, Ordering::SeqCst);
        }
    }

    impl Lease for TestLease {
        fn holds(&self, epoch: u64) -> bool {
            self.0.load(Ordering::SeqCst) == epoch
        }
    }

    #[test]
    fn a_tenure_holds_only_while_its_epoch_does() {
        let lease = Arc::new(TestLease::default());
        lease.set(4);
        let tenure = Tenure::new(lease.clone(), 4);
        assert!(tenure.check("write", "j/op/part-00000/x").is_ok());
        lease.set(5);
        let e = tenure.check("delete", "j/op/part-00000/x").unwrap_err();
        assert!(matches!(e, StateError::Fenced { epoch: 4, .. }), "{e}");
        let message = e.to_string();
        assert!(
            message.contains("j/op/part-00000/x") && message.contains("epoch 4"),
            "{message}"
        );
        assert!(Tenure::unfenced().check("delete", "x").is_ok());
    }
}
