//! The executor's Prometheus metrics (docs/metrics.md): task times, shuffle
//! fetches, checkpoint writes and lookups, observed as they happen, and its
//! registration, read at scrape time.

use crate::service::fence::Fence;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weir_web::metrics::{gauges, seconds, Labels};

type Histograms = Family<Labels, Histogram, fn() -> Histogram>;
type Counters = Family<Labels, Counter>;

/// The kinds of task whose times are kept, by the name the service gives
/// them and their label.
const TASKS: [(&str, &str); 4] = [
    ("stage a", "stage_a"),
    ("stage b", "stage_b"),
    ("restore", "restore"),
    ("commit", "commit"),
];

/// Metrics of checkpoint files, shared with the writer threads.
#[derive(Debug, Clone)]
pub struct CheckpointMetrics {
    /// `weir_checkpoint_write_seconds`: encoding and writing one file.
    pub seconds: Histogram,
    /// `weir_checkpoint_bytes_total`: bytes of the files written.
    pub bytes: Counter,
}

impl Default for CheckpointMetrics {
    fn default() -> Self {
        CheckpointMetrics {
            seconds: seconds(),
            bytes: Counter::default(),
        }
    }
}

/// Metrics of lookup steps, by job and step path (a bounded set: the
/// steps of the jobs deployed). Cloning shares them.
#[derive(Debug, Clone)]
pub struct LookupMetrics {
    /// `weir_lookup_cache_hits_total{job,step}`: keys answered by the cache.
    pub hits: Counters,
    /// `weir_lookup_cache_misses_total{job,step}`: keys read from the store.
    pub misses: Counters,
    /// `weir_lookup_request_seconds{job,step}`: one pipelined request.
    pub requests: Histograms,
    /// `weir_lookup_errors_total{job,step}`: requests that failed.
    pub errors: Counters,
    /// The `(job, step)` series created, so that [`forget`](Self::forget)
    /// can drop a job's.
    series: Arc<Mutex<BTreeSet<(String, String)>>>,
}

impl Default for LookupMetrics {
    fn default() -> Self {
        LookupMetrics {
            hits: Counters::default(),
            misses: Counters::default(),
            requests: Family::new_with_constructor(seconds),
            errors: Counters::default(),
            series: Arc::default(),
        }
    }
}

/// One lookup step's series.
#[derive(Debug, Clone)]
pub struct StepLookupMetrics {
    /// Keys answered by the cache.
    pub hits: Counter,
    /// Keys read from the store.
    pub misses: Counter,
    /// Seconds per request.
    pub seconds: Histogram,
    /// Failed requests.
    pub errors: Counter,
}

impl LookupMetrics {
    /// The series of `step` of `job`.
    pub fn step(&self, job: &str, step: &str) -> StepLookupMetrics {
        let labels = lookup_labels(job, step);
        self.series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((job.to_string(), step.to_string()));
        StepLookupMetrics {
            hits: self.hits.get_or_create(&labels).clone(),
            misses: self.misses.get_or_create(&labels).clone(),
            seconds: self.requests.get_or_create(&labels).clone(),
            errors: self.errors.get_or_create(&labels).clone(),
        }
    }

    /// Drops `job`'s series.
    pub fn forget(&self, job: &str) {
        let mut series = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let steps: Vec<String> = series
            .iter()
            .filter(|(j, _)| j == job)
            .map(|(_, s)| s.clone())
            .collect();
        for step in steps {
            let labels = lookup_labels(job, &step);
            self.hits.remove(&labels);
            self.misses.remove(&labels);
            self.requests.remove(&labels);
            self.errors.remove(&labels);
            series.remove(&(job.to_string(), step));
        }
    }
}

fn lookup_labels(job: &str, step: &str) -> Labels {
    vec![("job", job.to_string()), ("step", step.to_string())]
}

/// Every metric an executor observes. Cloning shares them.
#[derive(Debug, Clone)]
pub struct ExecutorMetrics {
    /// `weir_task_seconds{job,task}`.
    pub tasks: Histograms,
    /// `weir_shuffle_fetch_seconds{job}`: fetching a stage-B task's blocks.
    pub shuffle_fetch: Histograms,
    /// Checkpoint files.
    pub checkpoints: CheckpointMetrics,
    /// Lookup steps.
    pub lookups: LookupMetrics,
}

impl Default for ExecutorMetrics {
    fn default() -> Self {
        ExecutorMetrics {
            tasks: Family::new_with_constructor(seconds),
            shuffle_fetch: Family::new_with_constructor(seconds),
            checkpoints: CheckpointMetrics::default(),
            lookups: LookupMetrics::default(),
        }
    }
}

impl ExecutorMetrics {
    /// Registers every metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "weir_task_seconds",
            "Time tasks took on this executor, by kind",
            self.tasks.clone(),
        );
        registry.register(
            "weir_shuffle_fetch_seconds",
            "Time stage-B tasks took to fetch their shuffle blocks",
            self.shuffle_fetch.clone(),
        );
        registry.register(
            "weir_checkpoint_write_seconds",
            "Time to encode and write one checkpoint file",
            self.checkpoints.seconds.clone(),
        );
        registry.register(
            "weir_checkpoint_bytes",
            "Bytes of the checkpoint files written",
            self.checkpoints.bytes.clone(),
        );
        registry.register(
            "weir_lookup_cache_hits",
            "Keys of lookup steps answered by the executor's cache",
            self.lookups.hits.clone(),
        );
        registry.register(
            "weir_lookup_cache_misses",
            "Keys of lookup steps read from the store",
            self.lookups.misses.clone(),
        );
        registry.register(
            "weir_lookup_request_seconds",
            "Time one pipelined request of a lookup step took",
            self.lookups.requests.clone(),
        );
        registry.register(
            "weir_lookup_errors",
            "Requests of lookup steps that failed",
            self.lookups.errors.clone(),
        );
    }

    /// Records a task of service name `what` for `job` that started at
    /// `started` (only the kinds in [`TASKS`]).
    pub fn task(&self, job: &str, what: &str, started: Instant) {
        if let Some((_, task)) = TASKS.iter().find(|(w, _)| *w == what) {
            let labels = vec![("job", job.to_string()), ("task", task.to_string())];
            self.tasks
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64());
        }
    }

    /// Records a stage-B task's shuffle fetch.
    pub fn fetched(&self, job: &str, took: Duration) {
        self.shuffle_fetch
            .get_or_create(&vec![("job", job.to_string())])
            .observe(took.as_secs_f64());
    }

    /// Drops `job`'s series (it was undeployed here).
    pub fn forget(&self, job: &str) {
        for (_, task) in TASKS {
            self.tasks
                .remove(&vec![("job", job.to_string()), ("task", task.to_string())]);
        }
        self.shuffle_fetch.remove(&vec![("job", job.to_string())]);
        self.lookups.forget(job);
    }
}

/// Reads the executor's registration at scrape time.
#[derive(Debug)]
pub struct RegistrationCollector(pub Arc<Fence>);

impl Collector for RegistrationCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> fmt::Result {
        let epoch = self.0.current(Instant::now());
        gauges(
            &mut e,
            "weir_executor_registered",
            "1 while this executor holds a lease from the leader",
            [(vec![], f64::from(u8::from(epoch.is_some())))],
        )?;
        gauges(
            &mut e,
            "weir_executor_epoch",
            "The epoch the leader gave this executor (0: none)",
            [(vec![], epoch.unwrap_or(0) as f64)],
        )
    }
}
