//! Lookup steps as the executor runs them (docs/sinks-and-lookups.md).
//!
//! For each chunk of records a step takes the chunk's distinct keys
//! ([`LookupPlan::keys`]), answers what it can from its cache, reads the
//! rest from Redis in pipelined requests of at most
//! [`MAX_KEYS_PER_REQUEST`] keys, keeps them in the cache, and adds the
//! columns ([`LookupPlan::assemble`]). One [`StepLookup`] per step of a
//! deployed job: its connections and its cache live as long as the job's
//! deployment on this executor.
//!
//! Failures are classified for the batch policy: Redis unreachable or not
//! ready is [`FailureClass::External`] (the batch is retried with backoff,
//! the job shows `degraded`); a refused password, a key of another type or
//! a missing key under `on_missing: fail` is [`FailureClass::User`].

pub mod cache;
pub mod redis;

use self::cache::{Cached, LookupCache, MAX_CACHE_BYTES};
use self::redis::{RedisStore, StoreError};
use crate::metrics::{LookupMetrics, StepLookupMetrics};
use arrow_array::RecordBatch;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_plan::expr::ExprError;
use weir_plan::lookup::LookupPlan;
use weir_proto::pb::LookupCounts;
use weir_proto::spec::secrets::{self, ProcessLookup};
use weir_proto::FailureClass;

/// Keys read from Redis in one pipelined request: bounds the request and
/// its reply, and the time one request may take.
pub const MAX_KEYS_PER_REQUEST: usize = 500;

/// A lookup step's failure on a chunk.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The key expression failed on the chunk (under `on_error: skip`,
    /// the chunk is retried record by record).
    #[error("{step}.redis.key: {source}")]
    Key {
        /// Step path.
        step: String,
        /// The expression's error.
        #[source]
        source: ExprError,
    },
    /// Redis cannot be reached or is not ready: an outage.
    #[error("{step}: Redis at {address} is unavailable: {message}")]
    Unavailable {
        /// Step path.
        step: String,
        /// `host:port`.
        address: String,
        /// What failed.
        message: String,
    },
    /// Redis refused the client (password, user, permission, database).
    #[error("{step}: Redis at {address} refused the client: {message}")]
    Refused {
        /// Step path.
        step: String,
        /// `host:port`.
        address: String,
        /// Redis's reply.
        message: String,
    },
    /// The data does not fit the step, or a key is missing under
    /// `on_missing: fail`.
    #[error("{step}: {message}")]
    Data {
        /// Step path.
        step: String,
        /// What is wrong, naming the key.
        message: String,
    },
}

impl LookupError {
    /// The failure's class: an outage is external, anything else is the
    /// job's to fix.
    pub fn class(&self) -> FailureClass {
        match self {
            LookupError::Unavailable { .. } => FailureClass::External,
            _ => FailureClass::User,
        }
    }
}

/// A chunk with a step's columns added.
#[derive(Debug)]
pub struct Looked {
    /// The records kept.
    pub batch: RecordBatch,
    /// Records dropped: missing keys under `on_missing: skip`, and values
    /// that do not read as their type when bad records are skipped.
    pub skipped: u64,
    /// What the step did for this chunk.
    pub counts: LookupCounts,
}

/// What lookup steps did, by step path, over the chunks of one task.
#[derive(Debug, Default)]
pub struct LookupTally(BTreeMap<String, LookupCounts>);

impl LookupTally {
    /// Adds `counts` of step `step`.
    pub fn add(&mut self, step: &str, counts: &LookupCounts) {
        let t = self
            .0
            .entry(step.to_string())
            .or_insert_with(|| LookupCounts {
                step: step.to_string(),
                ..Default::default()
            });
        t.hits += counts.hits;
        t.misses += counts.misses;
        t.requests += counts.requests;
        t.request_us += counts.request_us;
    }

    /// The counts, one per step, for a task's result.
    pub fn into_counts(self) -> Vec<LookupCounts> {
        self.0.into_values().collect()
    }
}

/// One lookup step of a deployed job.
pub struct StepLookup {
    plan: Arc<LookupPlan>,
    fields: Vec<String>,
    store: RedisStore,
    cache: Option<Mutex<LookupCache>>,
    metrics: StepLookupMetrics,
}

impl std::fmt::Debug for StepLookup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepLookup")
            .field("step", &self.plan.path())
            .field("store", &self.store)
            .finish()
    }
}

impl StepLookup {
    /// The step of `plan`, its URL's secret references resolved from this
    /// process's environment and files; nothing is connected yet. The
    /// error names the step and never shows a resolved value.
    pub fn new(plan: Arc<LookupPlan>, metrics: StepLookupMetrics) -> Result<Self, String> {
        let at = format!("{}.redis.url", plan.path());
        let url = secrets::resolve(&at, plan.url(), "executor", &ProcessLookup)
            .map_err(|e| e.to_string())?;
        let store = RedisStore::open(&url).map_err(|m| format!("{at}: {m}"))?;
        let cache = plan.cache().map(|c| {
            Mutex::new(LookupCache::new(
                Duration::from_millis(c.ttl_ms),
                usize::try_from(c.max_entries).unwrap_or(usize::MAX),
                MAX_CACHE_BYTES,
            ))
        });
        Ok(StepLookup {
            fields: plan.field_names().map(String::from).collect(),
            plan,
            store,
            cache,
            metrics,
        })
    }

    /// Adds the step's columns to `batch`. With `skip_bad_values`, records
    /// whose values do not read as their types are dropped and counted.
    pub fn run(&self, batch: &RecordBatch, skip_bad_values: bool) -> Result<Looked, LookupError> {
        let step = self.plan.path();
        let keys = self.plan.keys(batch).map_err(|source| LookupError::Key {
            step: step.to_string(),
            source,
        })?;
        let mut found: Vec<Cached> = vec![None; keys.distinct.len()];
        let mut wanted: Vec<usize> = Vec::with_capacity(keys.distinct.len());
        match &self.cache {
            Some(cache) => {
                let now = Instant::now();
                let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
                for (i, key) in keys.distinct.iter().enumerate() {
                    match cache.get(key, now) {
                        Some(hit) => found[i] = hit,
                        None => wanted.push(i),
                    }
                }
            }
            None => wanted.extend(0..keys.distinct.len()),
        }
        let hits = (keys.distinct.len() - wanted.len()) as u64;
        self.metrics.hits.inc_by(hits);
        self.metrics.misses.inc_by(wanted.len() as u64);
        let mut counts = LookupCounts {
            hits,
            misses: wanted.len() as u64,
            ..Default::default()
        };
        for part in wanted.chunks(MAX_KEYS_PER_REQUEST) {
            let names: Vec<&str> = part.iter().map(|&i| keys.distinct[i].as_str()).collect();
            let started = Instant::now();
            let fetched = self.store.fetch(self.plan.layout(), &self.fields, &names);
            let took = started.elapsed();
            self.metrics.seconds.observe(took.as_secs_f64());
            counts.requests += 1;
            counts.request_us += took.as_micros() as u64;
            let fetched = fetched.map_err(|e| {
                self.metrics.errors.inc();
                self.error(e)
            })?;
            let fetched: Vec<Cached> = fetched.into_iter().map(|v| v.map(Arc::new)).collect();
            if let Some(cache) = &self.cache {
                let now = Instant::now();
                let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
                for (&i, value) in part.iter().zip(&fetched) {
                    cache.put(&keys.distinct[i], value.clone(), now);
                }
            }
            for (&i, value) in part.iter().zip(fetched) {
                found[i] = value;
            }
        }
        let assembled = self
            .plan
            .assemble(batch, &keys, &found, skip_bad_values)
            .map_err(|e| LookupError::Data {
                step: step.to_string(),
                message: e.to_string(),
            })?;
        Ok(Looked {
            batch: assembled.batch,
            skipped: assembled.skipped_missing + assembled.skipped_bad,
            counts,
        })
    }

    fn error(&self, e: StoreError) -> LookupError {
        let step = self.plan.path().to_string();
        let address = self.store.address().to_string();
        match e {
            StoreError::Unavailable(message) => LookupError::Unavailable {
                step,
                address,
                message,
            },
            StoreError::Refused(message) => LookupError::Refused {
                step,
                address,
                message,
            },
            StoreError::Data(message) => LookupError::Data { step, message },
        }
    }
}

/// The lookup steps of one deployed job, by step path.
#[derive(Debug, Default)]
pub struct Lookups {
    steps: HashMap<String, StepLookup>,
}

impl Lookups {
    /// The lookups of the steps in `plans`, counted in `metrics` under
    /// `job`. The error names the step.
    pub fn new<'a>(
        job: &str,
        plans: impl IntoIterator<Item = &'a Arc<LookupPlan>>,
        metrics: &LookupMetrics,
    ) -> Result<Self, String> {
        let mut steps = HashMap::new();
        for plan in plans {
            let m = metrics.step(job, plan.path());
            steps.insert(plan.path().to_string(), StepLookup::new(plan.clone(), m)?);
        }
        Ok(Lookups { steps })
    }

    /// The step at `path`.
    pub fn get(&self, path: &str) -> Option<&StepLookup> {
        self.steps.get(path)
    }
}
