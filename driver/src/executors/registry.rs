//! The leader's view of its executors: who registered, under which epoch,
//! and who is alive.
//!
//! An epoch names one incarnation of an executor. Registering (first start,
//! restart with the same id, or re-registration after a refused heartbeat)
//! gets a new, higher epoch. An executor that misses heartbeats for the
//! timeout is declared dead and its epoch is bumped on the spot, so any
//! later heartbeat or result of the old incarnation is stale. Epochs come
//! from an [`EpochAllocator`]; the in-memory one lives on the leader only,
//! a replicated one makes them survive a failover.
//!
//! Time is passed in (`now`) so the liveness rules are testable without
//! sleeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Hands out epochs: strictly increasing per executor id.
pub trait EpochAllocator: Send + Sync {
    /// A new epoch for `executor_id`, higher than every epoch it handed out
    /// for that id before.
    fn next_epoch(&self, executor_id: &str) -> u64;
}

/// Epochs kept in the leader's memory.
#[derive(Debug, Default)]
pub struct MemoryEpochs {
    last: Mutex<HashMap<String, u64>>,
}

impl EpochAllocator for MemoryEpochs {
    fn next_epoch(&self, executor_id: &str) -> u64 {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let e = last.entry(executor_id.to_string()).or_insert(0);
        *e += 1;
        *e
    }
}

/// Settings of the registry.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// An executor is dead after this long without a heartbeat.
    pub heartbeat_timeout: Duration,
    /// The build version executors must report (`None`: any).
    pub build_version: Option<String>,
    /// A dead executor is forgotten (no longer listed by `weir cluster`)
    /// this long after its last heartbeat.
    pub forget_after: Duration,
    /// Executors registered at once; a new id beyond it is refused.
    pub max_executors: usize,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            heartbeat_timeout: Duration::from_secs(3),
            build_version: Some(env!("CARGO_PKG_VERSION").to_string()),
            forget_after: Duration::from_secs(600),
            max_executors: MAX_EXECUTORS,
        }
    }
}

/// The default of [`RegistryOptions::max_executors`].
pub const MAX_EXECUTORS: usize = 4096;
/// The most task slots one executor may offer.
pub const MAX_SLOTS: u32 = 1024;
/// The longest executor id, address or operator name.
const MAX_FIELD_BYTES: usize = 256;
/// The most custom operators one executor may report.
const MAX_OPERATORS: usize = 256;

/// What an executor says about itself when it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Executor id.
    pub id: String,
    /// Address of its `ExecutorService`.
    pub address: String,
    /// Tasks it runs at once.
    pub slots: u32,
    /// Its build version.
    pub build_version: String,
    /// Its custom operators (`name@version`).
    pub operators: Vec<String>,
}

/// A registered executor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutorInfo {
    /// Executor id.
    pub id: String,
    /// Address of its `ExecutorService`.
    pub address: String,
    /// Tasks it runs at once.
    pub slots: u32,
    /// Current epoch (after death: the bumped, never-issued one).
    pub epoch: u64,
    /// Its custom operators.
    pub operators: Vec<String>,
    /// When the last heartbeat (or the registration) arrived.
    pub last_heartbeat: Instant,
    /// Whether it is considered alive.
    pub alive: bool,
}

/// Why the registry refused a registration or heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// A heartbeat of an epoch that is no longer current.
    #[error("stale epoch {epoch}, current {current} (executor {id}): register again")]
    StaleEpoch {
        /// Executor id.
        id: String,
        /// The epoch in the heartbeat.
        epoch: u64,
        /// The executor's current epoch.
        current: u64,
    },
    /// A heartbeat from an executor this leader does not know (for example
    /// after a failover).
    #[error("executor {0} is not registered with this leader: register again")]
    Unknown(String),
    /// The executor's build differs from the driver's.
    #[error(
        "executor {id} runs build {version}, the driver requires {expected}: upgrade the executor"
    )]
    IncompatibleBuild {
        /// Executor id.
        id: String,
        /// Its build version.
        version: String,
        /// The required one.
        expected: String,
    },
    /// A registration without an id, address or slots, or with a value
    /// out of bounds.
    #[error("invalid registration: {0}")]
    Invalid(String),
    /// As many executors are registered as the leader keeps.
    #[error("executor {id} refused: {max} executors are registered already")]
    Full {
        /// The refused executor.
        id: String,
        /// The limit.
        max: usize,
    },
}

/// Bounds on what an executor may say about itself: it comes from the wire.
fn check_registration(r: &Registration) -> Result<(), RegistryError> {
    let invalid = |m: String| Err(RegistryError::Invalid(m));
    if r.id.len() > MAX_FIELD_BYTES
        || !r
            .id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
    {
        return invalid(format!(
            "executor id {:?}: 1 to {MAX_FIELD_BYTES} letters, digits, '-', '_', '.' or '@'",
            r.id.chars().take(64).collect::<String>()
        ));
    }
    let port_ok = r
        .address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if r.address.len() > MAX_FIELD_BYTES || !port_ok {
        return invalid(format!(
            "address {:?} of executor {}: host:port, at most {MAX_FIELD_BYTES} bytes",
            r.address.chars().take(64).collect::<String>(),
            r.id
        ));
    }
    if r.slots > MAX_SLOTS {
        return invalid(format!(
            "executor {} offers {} slots; at most {MAX_SLOTS}",
            r.id, r.slots
        ));
    }
    if r.operators.len() > MAX_OPERATORS || r.operators.iter().any(|o| o.len() > MAX_FIELD_BYTES) {
        return invalid(format!(
            "executor {} reports {} custom operators; at most {MAX_OPERATORS} of at most {MAX_FIELD_BYTES} bytes",
            r.id,
            r.operators.len()
        ));
    }
    Ok(())
}

/// Registered executors, their epochs and liveness.
pub struct ExecutorRegistry {
    options: RegistryOptions,
    epochs: Arc<dyn EpochAllocator>,
    executors: Mutex<HashMap<String, ExecutorInfo>>,
}

impl std::fmt::Debug for ExecutorRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutorRegistry")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl ExecutorRegistry {
    /// A registry with epochs in memory.
    pub fn new(options: RegistryOptions) -> Self {
        Self::with_epochs(options, Arc::new(MemoryEpochs::default()))
    }

    /// A registry taking epochs from `epochs`.
    pub fn with_epochs(options: RegistryOptions, epochs: Arc<dyn EpochAllocator>) -> Self {
        ExecutorRegistry {
            options,
            epochs,
            executors: Mutex::new(HashMap::new()),
        }
    }

    /// The heartbeat timeout.
    pub fn heartbeat_timeout(&self) -> Duration {
        self.options.heartbeat_timeout
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ExecutorInfo>> {
        self.executors.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers an incarnation of an executor; returns its new epoch.
    pub fn register(&self, r: Registration, now: Instant) -> Result<u64, RegistryError> {
        if r.id.is_empty() || r.address.is_empty() || r.slots == 0 {
            return Err(RegistryError::Invalid(format!(
                "id {:?}, address {:?} and slots {} must be set",
                r.id, r.address, r.slots
            )));
        }
        check_registration(&r)?;
        if let Some(expected) = &self.options.build_version {
            if *expected != r.build_version {
                return Err(RegistryError::IncompatibleBuild {
                    id: r.id,
                    version: r.build_version,
                    expected: expected.clone(),
                });
            }
        }
        self.reap(now);
        let full = {
            let executors = self.lock();
            !executors.contains_key(&r.id) && executors.len() >= self.options.max_executors
        };
        if full {
            return Err(RegistryError::Full {
                id: r.id,
                max: self.options.max_executors,
            });
        }
        let epoch = self.epochs.next_epoch(&r.id);
        let mut executors = self.lock();
        let previous = executors.insert(
            r.id.clone(),
            ExecutorInfo {
                id: r.id.clone(),
                address: r.address.clone(),
                slots: r.slots,
                epoch,
                operators: r.operators,
                last_heartbeat: now,
                alive: true,
            },
        );
        info!(executor_id = %r.id, epoch, address = %r.address, slots = r.slots, previous_epoch = previous.map(|p| p.epoch), "executor registered");
        Ok(epoch)
    }

    /// Records a heartbeat of `epoch`.
    pub fn heartbeat(&self, id: &str, epoch: u64, now: Instant) -> Result<(), RegistryError> {
        self.reap(now);
        let mut executors = self.lock();
        let e = executors
            .get_mut(id)
            .ok_or_else(|| RegistryError::Unknown(id.to_string()))?;
        if !e.alive || e.epoch != epoch {
            return Err(RegistryError::StaleEpoch {
                id: id.to_string(),
                epoch,
                current: e.epoch,
            });
        }
        e.last_heartbeat = now;
        Ok(())
    }

    /// Declares executors without a heartbeat for the timeout dead and
    /// bumps their epochs; returns `(id, old epoch)` of each.
    pub fn reap(&self, now: Instant) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        let mut executors = self.lock();
        for e in executors.values_mut() {
            if e.alive
                && now.saturating_duration_since(e.last_heartbeat) >= self.options.heartbeat_timeout
            {
                let old = e.epoch;
                e.epoch = self.epochs.next_epoch(&e.id);
                e.alive = false;
                warn!(executor_id = %e.id, old_epoch = old, new_epoch = e.epoch, "executor missed its heartbeats: declared dead, epoch bumped");
                out.push((e.id.clone(), old));
            }
        }
        executors.retain(|id, e| {
            let keep = e.alive
                || now.saturating_duration_since(e.last_heartbeat) < self.options.forget_after;
            if !keep {
                info!(executor_id = %id, "dead executor forgotten");
            }
            keep
        });
        out
    }

    /// Declares executor `id` dead in `epoch` at once, for `reason` (its
    /// port refuses connections: the process is gone), and bumps its
    /// epoch. Returns whether it was alive in that epoch.
    pub fn declare_dead(&self, id: &str, epoch: u64, reason: &str) -> bool {
        let mut executors = self.lock();
        let Some(e) = executors.get_mut(id) else {
            return false;
        };
        if !e.alive || e.epoch != epoch {
            return false;
        }
        e.epoch = self.epochs.next_epoch(&e.id);
        e.alive = false;
        warn!(executor_id = %id, old_epoch = epoch, new_epoch = e.epoch, reason, "executor declared dead, epoch bumped");
        true
    }

    /// Live executors, sorted by id.
    pub fn live(&self, now: Instant) -> Vec<ExecutorInfo> {
        self.reap(now);
        let mut v: Vec<ExecutorInfo> = self.lock().values().filter(|e| e.alive).cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Whether `id` is alive in `epoch`.
    pub fn is_current(&self, id: &str, epoch: u64, now: Instant) -> bool {
        self.reap(now);
        self.lock()
            .get(id)
            .is_some_and(|e| e.alive && e.epoch == epoch)
    }

    /// Every registered executor, dead ones included, sorted by id.
    pub fn all(&self) -> Vec<ExecutorInfo> {
        let mut v: Vec<ExecutorInfo> = self.lock().values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(id: &str) -> Registration {
        Registration {
            id: id.into(),
            address: format!("{id}:1"),
            slots: 2,
            build_version: env!("CARGO_PKG_VERSION").into(),
            operators: vec![],
        }
    }

    #[test]
    fn registrations_are_bounded_and_the_dead_are_forgotten() {
        let r = ExecutorRegistry::new(RegistryOptions {
            max_executors: 2,
            ..RegistryOptions::default()
        });
        let t0 = Instant::now();
        r.register(reg("a"), t0).unwrap();
        r.register(reg("b"), t0).unwrap();
        // A third id is refused; the known ones may register again.
        assert!(matches!(
            r.register(reg("c"), t0),
            Err(RegistryError::Full { max: 2, .. })
        ));
        r.register(reg("a"), t0).unwrap();
        // Values from the wire are bounded.
        for bad in [
            Registration {
                id: "x/y".into(),
                ..reg("x")
            },
            Registration {
                id: "x".repeat(300),
                ..reg("x")
            },
            Registration {
                address: "nowhere".into(),
                ..reg("x")
            },
            Registration {
                address: "h:0".into(),
                ..reg("x")
            },
            Registration {
                slots: MAX_SLOTS + 1,
                ..reg("x")
            },
            Registration {
                operators: vec!["o@1".into(); 300],
                ..reg("x")
            },
        ] {
            assert!(matches!(
                r.register(bad, t0),
                Err(RegistryError::Invalid(_))
            ));
        }
        // Dead for longer than forget_after: forgotten, and its place free.
        let later = t0 + RegistryOptions::default().forget_after + Duration::from_secs(5);
        r.heartbeat("b", r.all()[1].epoch, t0 + Duration::from_secs(1))
            .unwrap();
        r.reap(later);
        assert!(r.all().is_empty(), "{:?}", r.all());
        r.register(reg("c"), later).unwrap();
    }

    #[test]
    fn epochs_grow_per_executor_across_restarts_and_deaths() {
        let r = ExecutorRegistry::new(RegistryOptions::default());
        let t0 = Instant::now();
        let a1 = r.register(reg("a"), t0).unwrap();
        let b1 = r.register(reg("b"), t0).unwrap();
        let a2 = r.register(reg("a"), t0).unwrap();
        assert!(a2 > a1);
        assert!(!r.is_current("a", a1, t0));
        assert!(r.is_current("a", a2, t0) && r.is_current("b", b1, t0));
        // a heartbeat of the old incarnation is stale
        assert!(matches!(
            r.heartbeat("a", a1, t0),
            Err(RegistryError::StaleEpoch { .. })
        ));
        r.heartbeat("a", a2, t0 + Duration::from_secs(2)).unwrap();
        // b misses its heartbeats: dead, epoch bumped, its heartbeat refused
        let t = t0 + Duration::from_secs(3);
        assert_eq!(r.reap(t), vec![("b".to_string(), b1)]);
        assert_eq!(
            r.live(t).iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            vec!["a"]
        );
        match r.heartbeat("b", b1, t) {
            Err(RegistryError::StaleEpoch { epoch, current, .. }) => {
                assert_eq!(epoch, b1);
                assert!(current > b1);
            }
            other => panic!("{other:?}"),
        }
        let b2 = r.register(reg("b"), t).unwrap();
        assert!(b2 > b1 + 1, "the bump consumed an epoch");
        assert!(r.is_current("b", b2, t));
        assert!(matches!(
            r.heartbeat("c", 1, t),
            Err(RegistryError::Unknown(_))
        ));
    }

    #[test]
    fn registrations_are_checked() {
        let r = ExecutorRegistry::new(RegistryOptions::default());
        let t = Instant::now();
        let mut bad = reg("a");
        bad.build_version = "0.0.0-other".into();
        assert!(matches!(
            r.register(bad, t),
            Err(RegistryError::IncompatibleBuild { .. })
        ));
        let mut bad = reg("a");
        bad.slots = 0;
        assert!(matches!(r.register(bad, t), Err(RegistryError::Invalid(_))));
    }
}
