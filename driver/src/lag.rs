//! Source lag: how many records each source partition holds that no
//! committed batch has read. The leader lists every job's source about
//! once a second (stopped jobs too, so lag shows what a stopped job falls
//! behind by) and keeps the result for `weir status`, `/metrics` and the
//! UI.

use crate::cluster::ReplicaHandle;
use crate::kafka::KafkaLister;
use crate::metadata::{JobProgress, MetadataStore};
use crate::planner::OffsetsLister;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::debug;
use weir_proto::{generator, pb};

/// How often the leader lists the sources.
pub const LAG_EVERY: Duration = Duration::from_secs(1);

/// One job's lag as last listed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobLag {
    /// When the source was listed (ms since the Unix epoch).
    pub listed_at_ms: i64,
    /// Per source partition, in partition order.
    pub partitions: Vec<pb::SourceLag>,
}

impl JobLag {
    /// The lag summed over partitions.
    pub fn total(&self) -> u64 {
        self.partitions.iter().map(|p| p.lag).sum()
    }
}

/// The lag of every job, shared by the poller (which writes it) and the
/// readers.
#[derive(Debug, Clone, Default)]
pub struct LagBoard {
    jobs: Arc<Mutex<HashMap<String, JobLag>>>,
}

impl LagBoard {
    /// Records `job`'s lag.
    pub fn set(&self, job: &str, lag: JobLag) {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(job.to_string(), lag);
    }

    /// `job`'s lag, once listed.
    pub fn get(&self, job: &str) -> Option<JobLag> {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(job)
            .cloned()
    }

    /// Keeps only the jobs in `names` (the others were deleted).
    fn retain(&self, names: &[String]) {
        self.jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|k, _| names.contains(k));
    }
}

/// Where each partition's committed position is: the end of its range in
/// the last committed batch; before the first batch, where the job
/// starts when that is known without listing (earliest: the low offset).
fn committed(progress: &JobProgress, partition: u32, low: Option<u64>) -> Option<u64> {
    match &progress.last_plan {
        Some(plan) => plan
            .ranges
            .iter()
            .find(|r| r.partition == partition)
            .map(|r| r.end)
            .or(low),
        None => low,
    }
}

fn lag(partition: u32, committed: u64, available: u64) -> pb::SourceLag {
    pb::SourceLag {
        partition,
        committed,
        available,
        lag: available.saturating_sub(committed),
    }
}

/// The lag of one job's source now, or `None` when it cannot be told (an
/// unbounded generator without a rate, a Kafka source that cannot be
/// listed).
pub fn job_lag(
    record: &pb::JobRecord,
    progress: &JobProgress,
    lister: &dyn OffsetsLister,
    now_ms: i64,
) -> Option<JobLag> {
    let spec = record.spec.as_ref()?;
    let partitions = match spec.source.as_ref()?.kind.as_ref()? {
        pb::source::Kind::Generator(g) => {
            let elapsed = u64::try_from(now_ms - record.created_at_ms).unwrap_or(0);
            (0..g.partitions)
                .map(|p| {
                    let available = generator::available(g, p, elapsed)?;
                    Some(lag(p, committed(progress, p, Some(0))?, available))
                })
                .collect::<Option<Vec<_>>>()?
        }
        pb::source::Kind::Kafka(k) => {
            let marks = match lister.watermarks(k) {
                Ok(marks) => marks,
                Err(e) => {
                    debug!(job = %spec.name, error = %e, "cannot list the source for its lag");
                    return None;
                }
            };
            let earliest = matches!(
                k.start.as_ref().and_then(|s| s.kind.as_ref()),
                Some(pb::kafka_start::Kind::Earliest(_))
            );
            marks
                .iter()
                .filter_map(|m| {
                    let start = (earliest || progress.last_plan.is_some()).then_some(m.low);
                    committed(progress, m.partition, start).map(|c| lag(m.partition, c, m.high))
                })
                .collect()
        }
    };
    Some(JobLag {
        listed_at_ms: now_ms,
        partitions,
    })
}

/// Lists every job's source every [`LAG_EVERY`] while `replica` leads,
/// until `stop` is set.
pub fn run_poller(replica: ReplicaHandle, board: LagBoard, stop: Arc<AtomicBool>) {
    let mut listers: HashMap<String, KafkaLister> = HashMap::new();
    while !stop.load(Ordering::SeqCst) {
        if replica.is_leader() {
            let meta = replica.metadata();
            let records = meta.jobs().unwrap_or_default();
            let names: Vec<String> = records
                .iter()
                .filter_map(|r| r.spec.as_ref().map(|s| s.name.clone()))
                .collect();
            listers.retain(|k, _| names.contains(k));
            board.retain(&names);
            for (record, name) in records.iter().zip(&names) {
                let Ok(progress) = meta.progress(name) else {
                    continue;
                };
                let lister = listers.entry(name.clone()).or_default();
                if let Some(lag) = job_lag(record, &progress, lister, crate::batch::now_ms()) {
                    board.set(name, lag);
                }
            }
        } else {
            listers.clear();
        }
        std::thread::sleep(LAG_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_kafka::{KafkaError, Watermarks};

    struct Marks(Vec<Watermarks>);

    impl OffsetsLister for Marks {
        fn watermarks(&self, _: &pb::KafkaSource) -> Result<Vec<Watermarks>, KafkaError> {
            Ok(self.0.clone())
        }
        fn offsets_for_timestamp(
            &self,
            _: &pb::KafkaSource,
            _: &[u32],
            _: i64,
        ) -> Result<Vec<(u32, Option<u64>)>, KafkaError> {
            Ok(Vec::new())
        }
    }

    fn record(yaml: &str) -> pb::JobRecord {
        pb::JobRecord {
            spec: Some(weir_proto::spec::parse_spec(yaml).unwrap()),
            created_at_ms: 1_000,
            ..Default::default()
        }
    }

    fn plan(ends: &[(u32, u64)]) -> pb::BatchPlan {
        pb::BatchPlan {
            ranges: ends
                .iter()
                .map(|&(partition, end)| pb::OffsetRange {
                    partition,
                    start: 0,
                    end,
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn generator_lag_is_what_was_generated_past_the_committed_end() {
        let r = record(
            "name: g\nsource:\n  generator: { partitions: 2, rate: 100 }\nsink:\n  noop: {}\n",
        );
        let none = Marks(Vec::new());
        // 10 s after creation: 1000 records, 500 per partition.
        let fresh = job_lag(&r, &JobProgress::default(), &none, 11_000).unwrap();
        assert_eq!(fresh.total(), 1_000);
        let progress = JobProgress {
            last_plan: Some(plan(&[(0, 400), (1, 500)])),
            ..Default::default()
        };
        let lag = job_lag(&r, &progress, &none, 11_000).unwrap();
        assert_eq!(
            lag.partitions
                .iter()
                .map(|p| (p.committed, p.available, p.lag))
                .collect::<Vec<_>>(),
            [(400, 500, 100), (500, 500, 0)]
        );
        assert_eq!(lag.listed_at_ms, 11_000);
        // As fast as possible and unbounded: no lag can be told.
        let r = record(
            "name: g\nsource:\n  generator: { partitions: 2, rate: 0 }\nsink:\n  noop: {}\n",
        );
        assert_eq!(job_lag(&r, &JobProgress::default(), &none, 11_000), None);
    }

    #[test]
    fn kafka_lag_is_the_last_stable_offset_past_the_committed_end() {
        let yaml = |start: &str| {
            format!("name: k\nsource:\n  kafka: {{ brokers: b:9092, topic: t, format: text, start: {start} }}\nsink:\n  noop: {{}}\n")
        };
        let marks = Marks(vec![
            Watermarks {
                partition: 0,
                low: 10,
                high: 100,
            },
            Watermarks {
                partition: 1,
                low: 0,
                high: 7,
            },
        ]);
        let progress = JobProgress {
            last_plan: Some(plan(&[(0, 60)])),
            ..Default::default()
        };
        // Partition 1 joined after the last plan: from its low offset.
        let lag = job_lag(&record(&yaml("latest")), &progress, &marks, 5).unwrap();
        assert_eq!(
            lag.partitions
                .iter()
                .map(|p| (p.partition, p.lag))
                .collect::<Vec<_>>(),
            [(0, 40), (1, 7)]
        );
        // Before the first batch: earliest counts from the low offset,
        // latest has nothing to tell yet.
        let lag = job_lag(
            &record(&yaml("earliest")),
            &JobProgress::default(),
            &marks,
            5,
        )
        .unwrap();
        assert_eq!(lag.total(), 90 + 7);
        let lag = job_lag(&record(&yaml("latest")), &JobProgress::default(), &marks, 5).unwrap();
        assert!(lag.partitions.is_empty());
    }
}
