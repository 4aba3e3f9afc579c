//! This executor's epoch, and the lease that keeps it valid.
//!
//! Every request carries the epoch the leader knows this executor by; a
//! request from any other epoch is refused. The epoch is also refused once
//! no heartbeat has been acknowledged for the leader's heartbeat timeout:
//! by then the leader has declared this executor dead and handed its work
//! to others, so an executor that was paused (SIGSTOP, a long GC-like stall,
//! a partition) and wakes up with requests queued does not act on them or
//! return their results. The lease runs from when the acknowledged
//! heartbeat was *sent*, which is no later than when the leader received
//! it, so it ends before the leader's own deadline.

use std::sync::Mutex;
use std::time::{Duration, Instant};
use tonic::Status;

use super::status::stale_epoch;
use crate::state::Lease;

#[derive(Debug, Default)]
struct State {
    /// 0 while not registered.
    epoch: u64,
    lease_until: Option<Instant>,
    timeout: Duration,
}

/// The current epoch and its lease.
#[derive(Debug, Default)]
pub struct Fence {
    state: Mutex<State>,
}

impl Fence {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A registration sent at `sent_at` was answered with `epoch`.
    pub fn registered(&self, epoch: u64, timeout: Duration, sent_at: Instant) {
        let mut s = self.lock();
        s.epoch = epoch;
        s.timeout = timeout;
        s.lease_until = Some(sent_at + timeout);
    }

    /// A heartbeat of `epoch` sent at `sent_at` was acknowledged.
    pub fn renewed(&self, epoch: u64, sent_at: Instant) {
        let mut s = self.lock();
        if s.epoch == epoch {
            s.lease_until = Some(sent_at + s.timeout);
        }
    }

    /// The leader refused the epoch: stop accepting it.
    pub fn revoke(&self) {
        let mut s = self.lock();
        s.lease_until = None;
    }

    /// The current epoch while its lease holds.
    pub fn current(&self, now: Instant) -> Option<u64> {
        let s = self.lock();
        match s.lease_until {
            Some(until) if s.epoch != 0 && now < until => Some(s.epoch),
            _ => None,
        }
    }

    /// Accepts a request (or a result about to be returned) of `epoch`.
    pub fn check(&self, epoch: u64) -> Result<(), Status> {
        match self.current(Instant::now()) {
            Some(c) if c == epoch => Ok(()),
            current => Err(stale_epoch(epoch, current)),
        }
    }
}

impl Lease for Fence {
    /// The same test as [`Fence::check`], for changes to the state store.
    fn holds(&self, epoch: u64) -> bool {
        self.current(Instant::now()) == Some(epoch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_hold_only_while_the_lease_does() {
        let f = Fence::default();
        let t0 = Instant::now();
        assert_eq!(f.current(t0), None);
        f.registered(4, Duration::from_secs(3), t0);
        assert_eq!(f.current(t0 + Duration::from_secs(2)), Some(4));
        assert_eq!(f.current(t0 + Duration::from_secs(3)), None);
        f.renewed(4, t0 + Duration::from_secs(2));
        assert_eq!(f.current(t0 + Duration::from_secs(4)), Some(4));
        // a late acknowledgement of an old epoch does not renew the new one
        f.registered(5, Duration::from_secs(3), t0 + Duration::from_secs(4));
        f.renewed(4, t0 + Duration::from_secs(6));
        assert_eq!(f.current(t0 + Duration::from_secs(7)), None);
        f.revoke();
        assert_eq!(f.current(t0 + Duration::from_secs(4)), None);
        assert!(f.check(5).unwrap_err().message().contains("stale epoch 5"));
    }
}
