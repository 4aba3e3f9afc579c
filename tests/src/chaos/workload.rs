//! The stateful jobs a chaos run submits: a running count and a sliding
//! windowed count, each over its own input and output (the generator and
//! the file sink, or Kafka topics).

use super::io::{FileSinkOutput, GeneratorInput, InputProducer, OutputReader};
use super::kafka::{KafkaInput, KafkaOutput};
use std::path::Path;

/// State partitions of every chaos job (also the partitions of the Kafka
/// job's topics: its reader relies on sink partition = state partition).
pub const STATE_PARTITIONS: u32 = 4;

/// Batch interval of every chaos job.
pub const BATCH_INTERVAL_MS: u64 = 200;
/// Window size of the windowed job (2x its slide: every record is in
/// exactly two windows).
pub const WINDOW_SIZE_MS: i64 = 2_000;
/// Window slide.
pub const WINDOW_SLIDE_MS: i64 = 1_000;
/// Watermark delay. Partitions advance in lockstep (the generator makes
/// the same prefix of records available to each), so a batch's records are
/// at most a few ms of event time behind the previous batch's newest one:
/// a 1 s delay leaves nothing late, and windows still close during the run.
pub const WATERMARK_MS: i64 = 1_000;
/// Event-time records per second of the windowed job's input: 1 record
/// per ms, so the window check can recover the generator's origin exactly.
pub const EVENT_TIME_RATE: u64 = 1_000;

/// Which computation a job runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workload {
    /// `key_by: key` + `aggregate: {count, total: sum(value)}`: running
    /// state, updated every batch.
    RunningCount,
    /// `key_by: key` + a 2 s window sliding by 1 s on `ts` +
    /// `aggregate: {count, total: sum(value), first: min(value)}`.
    WindowedCount,
}

impl Workload {
    /// Both workloads, in job order.
    pub const ALL: [Workload; 2] = [Workload::RunningCount, Workload::WindowedCount];

    /// Short name, the prefix of job names.
    pub fn name(self) -> &'static str {
        match self {
            Workload::RunningCount => "count",
            Workload::WindowedCount => "window",
        }
    }

    fn pipeline(self) -> String {
        match self {
            Workload::RunningCount => {
                "  - key_by: key\n  - aggregate: { count: {}, total: { sum: value } }\n".into()
            }
            Workload::WindowedCount => format!(
                "  - key_by: key\n  - window: {{ size: {WINDOW_SIZE_MS}ms, slide: {WINDOW_SLIDE_MS}ms, time: ts, watermark: {WATERMARK_MS}ms }}\n  \
                 - aggregate: {{ count: {{}}, total: {{ sum: value }}, first: {{ min: value }} }}\n"
            ),
        }
    }
}

/// A job of a chaos run: its spec and both ends.
pub struct ChaosJob {
    /// Job name (unique per run: workload and round).
    pub name: String,
    /// What it computes.
    pub workload: Workload,
    /// Its input.
    pub input: Box<dyn InputProducer>,
    /// Its output.
    pub output: Box<dyn OutputReader>,
}

impl ChaosJob {
    /// A job over the generator and the file sink under `dir`, reading
    /// `rate` records/s for `seconds` (so it keeps running while faults
    /// happen, and then finishes).
    pub fn generator(
        workload: Workload,
        round: usize,
        rate: u64,
        seconds: u64,
        dir: &Path,
    ) -> ChaosJob {
        let name = format!("{}-r{round}", workload.name());
        let keys = match workload {
            Workload::RunningCount => 53,
            Workload::WindowedCount => 47,
        };
        let input = GeneratorInput {
            partitions: 2,
            keys,
            rate,
            total: rate * seconds,
            event_time_rate: match workload {
                Workload::RunningCount => rate,
                Workload::WindowedCount => EVENT_TIME_RATE,
            },
            // catch-up batches after an outage read at most this per
            // partition: several seconds of input
            max_records_per_partition: (rate * 2).max(1_000),
        };
        let output = FileSinkOutput {
            dir: dir.join(format!("{name}-out")),
        };
        ChaosJob {
            name,
            workload,
            input: Box::new(input),
            output: Box::new(output),
        }
    }

    /// A running count from a fresh Kafka topic to another one at
    /// `brokers`: `rate` records/s produced for `seconds` while the job
    /// runs, keys and values from `seed`, output read back with
    /// `read_committed`. The job reads until stopped (`weir stop`, once it
    /// has read every record).
    pub fn kafka(round: usize, rate: u64, seconds: u64, brokers: &str, seed: u64) -> ChaosJob {
        let name = format!("kafka-count-r{round}");
        let topic = |side: &str| crate::kafka::unique_topic(&format!("chaos-{name}-{side}"));
        let output = KafkaOutput {
            brokers: brokers.to_string(),
            topic: topic("out"),
            job: name.clone(),
            partitions: STATE_PARTITIONS,
        };
        ChaosJob {
            input: Box::new(KafkaInput::new(
                brokers,
                &topic("in"),
                seed.wrapping_add(round as u64),
                53,
                rate,
                rate * seconds,
            )),
            output: Box::new(output),
            name,
            workload: Workload::RunningCount,
        }
    }

    /// The same job writing its file sink to `dir` (a path every executor
    /// sees, e.g. a shared volume in Kubernetes), under `name`.
    pub fn with_output(mut self, name: &str, dir: &Path) -> ChaosJob {
        self.name = name.to_string();
        self.output = Box::new(FileSinkOutput {
            dir: dir.to_path_buf(),
        });
        self
    }

    /// The workload named `name` (`count` or `window`).
    pub fn workload(name: &str) -> Option<Workload> {
        Workload::ALL.into_iter().find(|w| w.name() == name)
    }

    /// The job spec (YAML).
    pub fn spec_yaml(&self) -> String {
        format!(
            "name: {}\nbatch_interval: {BATCH_INTERVAL_MS}ms\ncheckpoint_every: 2\nstate_partitions: {STATE_PARTITIONS}\n\
             source: {}\npipeline:\n{}sink: {}\n",
            self.name,
            self.input.source_yaml(),
            self.workload.pipeline(),
            self.output.sink_yaml()
        )
    }
}
