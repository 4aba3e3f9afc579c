//! Planning the next batch: pure functions over the job's spec, its last
//! committed batch and the source's available offsets. A Kafka source's
//! offsets come from an [`OffsetsLister`], which tests replace.

use std::collections::BTreeMap;
use weir_kafka::{KafkaError, Watermarks};
use weir_proto::generator;
use weir_proto::pb::{self, step::Kind};

/// Lists a Kafka source's partitions and offsets.
pub trait OffsetsLister {
    /// Low and high (last stable) offsets of every partition of the topic.
    fn watermarks(&self, source: &pb::KafkaSource) -> Result<Vec<Watermarks>, KafkaError>;
    /// The first offset at or after `timestamp_ms` of each partition
    /// (`None`: no such record yet).
    fn offsets_for_timestamp(
        &self,
        source: &pb::KafkaSource,
        partitions: &[u32],
        timestamp_ms: i64,
    ) -> Result<Vec<(u32, Option<u64>)>, KafkaError>;
}

/// Why no batch could be planned.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PlanError {
    /// The source could not be listed: retry with backoff.
    #[error("source.kafka: cannot list offsets: {0}; retrying")]
    Unavailable(KafkaError),
    /// The cluster refused the driver's client, or its properties cannot
    /// be used (failed authentication, a TLS certificate that does not
    /// verify, no ACL, an unresolvable secret reference): a user error, the
    /// job fails with the broker's message.
    #[error("source.kafka: cannot list offsets: {0}")]
    Refused(KafkaError),
    /// Offsets the job had not read yet were deleted (`on_missing: fail`).
    #[error("source.kafka: offsets [{from}, {to}) of topic {topic} partition {partition} were deleted (retention) before the job read them: {} records lost; set on_missing: skip_to_earliest to skip such gaps (they are then counted as lost)", to - from)]
    DataLost {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// First lost offset.
        from: u64,
        /// The partition's low watermark.
        to: u64,
    },
    /// A partition's offsets went backwards (the topic was recreated).
    #[error("source.kafka: topic {topic} partition {partition} ends at offset {high} but the job already read up to {position}; was the topic deleted and recreated? Restart the job under a new name to read it again")]
    OffsetsReset {
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// Where the job is.
        position: u64,
        /// The partition's high watermark.
        high: u64,
    },
}

impl PlanError {
    /// A listing failure: [`Refused`](Self::Refused) when the job's
    /// configuration is at fault, else [`Unavailable`](Self::Unavailable).
    pub fn from_kafka(e: KafkaError) -> PlanError {
        if e.is_refused() {
            PlanError::Refused(e)
        } else {
            PlanError::Unavailable(e)
        }
    }
}

/// The ranges of a plan that read something (a Kafka plan also records the
/// position of idle partitions as empty ranges).
pub fn active_ranges(plan: &pb::BatchPlan) -> impl Iterator<Item = &pb::OffsetRange> {
    plan.ranges.iter().filter(|r| r.end > r.start)
}

/// What the planner decided.
#[derive(Debug, Clone, PartialEq)]
pub enum NextBatch {
    /// Run this batch.
    Run(pb::BatchPlan),
    /// Nothing new to read yet: wait for the next interval.
    Wait,
    /// The source is exhausted and every result is out.
    Finished,
}

/// The job's event-time window, if it has one: `(slide-independent) watermark delay`.
fn watermark_delay(spec: &pb::JobSpec) -> Option<i64> {
    spec.pipeline.iter().find_map(|s| match &s.kind {
        Some(Kind::Window(w)) => Some(w.watermark_ms as i64),
        _ => None,
    })
}

/// Plans batch `last_committed + 1`.
///
/// Each source partition's range starts where the previous batch ended and
/// ends at the newest available offset, capped at
/// `max_records_per_partition`. A job with a window gets a final batch with
/// no input and an infinite watermark once a finite source is exhausted,
/// which emits every open window.
pub fn plan_next(
    spec: &pb::JobSpec,
    last_plan: Option<&pb::BatchPlan>,
    last_commit: Option<&pb::BatchCommit>,
    elapsed_ms: u64,
    now_ms: i64,
    lister: Option<&dyn OffsetsLister>,
) -> Result<NextBatch, PlanError> {
    let g = match spec.source.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(pb::source::Kind::Generator(g)) => g,
        Some(pb::source::Kind::Kafka(k)) => {
            return match lister {
                Some(l) => plan_kafka(spec, k, last_plan, last_commit, now_ms, l),
                None => Ok(NextBatch::Wait),
            }
        }
        None => return Ok(NextBatch::Wait),
    };
    Ok(plan_generator(
        spec,
        g,
        last_plan,
        last_commit,
        elapsed_ms,
        now_ms,
    ))
}

/// The next batch's watermark: the largest event time committed so far
/// minus the window's delay, never going back, and never more than
/// [`MAX_WATERMARK_AHEAD_MS`] ahead of the planning clock `now_ms`: one
/// record with a far-future event time (a bad clock, a corrupt field)
/// cannot make every later record late.
fn next_watermark(
    spec: &pb::JobSpec,
    last_plan: Option<&pb::BatchPlan>,
    last_commit: Option<&pb::BatchCommit>,
    now_ms: i64,
) -> i64 {
    let delay = watermark_delay(spec);
    let previous_watermark = last_plan.map_or(i64::MIN, |p| p.watermark_ms);
    match (delay, last_commit) {
        (Some(d), Some(c)) if c.max_event_time_ms != i64::MIN => {
            let ceiling = now_ms.saturating_add(MAX_WATERMARK_AHEAD_MS);
            previous_watermark.max(c.max_event_time_ms.saturating_sub(d).min(ceiling))
        }
        _ => previous_watermark,
    }
}

/// How far ahead of the driver's clock an event time may move the
/// watermark (one day).
pub const MAX_WATERMARK_AHEAD_MS: i64 = 24 * 60 * 60 * 1000;

/// Plans a Kafka batch: per partition `[previous end, min(high, previous
/// end + max_records_per_partition))`. Partitions the job has no position
/// for start per `start` in the first batch and at their earliest offset
/// later (they were created after the job started). Every partition's
/// position is in every plan (empty ranges for idle ones), so the plan
/// alone says where the next batch starts.
fn plan_kafka(
    spec: &pb::JobSpec,
    k: &pb::KafkaSource,
    last_plan: Option<&pb::BatchPlan>,
    last_commit: Option<&pb::BatchCommit>,
    now_ms: i64,
    lister: &dyn OffsetsLister,
) -> Result<NextBatch, PlanError> {
    use pb::kafka_start::Kind as Start;
    let watermarks = lister.watermarks(k).map_err(PlanError::from_kafka)?;
    let previous: BTreeMap<u32, u64> = last_plan
        .map(|p| p.ranges.iter().map(|r| (r.partition, r.end)).collect())
        .unwrap_or_default();
    let fresh: Vec<u32> = watermarks
        .iter()
        .map(|w| w.partition)
        .filter(|p| !previous.contains_key(p))
        .collect();
    let mut starts: BTreeMap<u32, u64> = BTreeMap::new();
    if last_plan.is_none() {
        match k.start.as_ref().and_then(|s| s.kind.as_ref()) {
            Some(Start::Latest(_)) | None => {
                starts.extend(watermarks.iter().map(|w| (w.partition, w.high)));
            }
            Some(Start::Offsets(o)) => {
                starts.extend(o.offsets.iter().map(|p| (p.partition, p.offset)));
            }
            Some(Start::TimestampMs(t)) => {
                let found = lister
                    .offsets_for_timestamp(k, &fresh, *t)
                    .map_err(PlanError::from_kafka)?;
                for (p, o) in found {
                    let high = watermarks.iter().find(|w| w.partition == p).map(|w| w.high);
                    if let Some(o) = o.or(high) {
                        starts.insert(p, o);
                    }
                }
            }
            Some(Start::Earliest(_)) => {}
        }
    }
    let skip = k.on_missing == pb::OnMissing::SkipToEarliest as i32;
    let mut ranges = Vec::new();
    let mut lost = Vec::new();
    for w in &watermarks {
        let from_plan = previous.get(&w.partition).copied();
        let mut start = from_plan
            .or_else(|| starts.get(&w.partition).copied())
            .unwrap_or(w.low);
        if start > w.high {
            if let Some(position) = from_plan {
                return Err(PlanError::OffsetsReset {
                    topic: k.topic.clone(),
                    partition: w.partition,
                    position,
                    high: w.high,
                });
            }
            // A start offset beyond the end: wait there.
        }
        if start < w.low {
            if !skip {
                return Err(PlanError::DataLost {
                    topic: k.topic.clone(),
                    partition: w.partition,
                    from: start,
                    to: w.low,
                });
            }
            lost.push(pb::OffsetRange {
                partition: w.partition,
                start,
                end: w.low,
            });
            start = w.low;
        }
        let end = w
            .high
            .min(start.saturating_add(k.max_records_per_partition))
            .max(start);
        ranges.push(pb::OffsetRange {
            partition: w.partition,
            start,
            end,
        });
    }
    // Partitions no longer listed keep their position.
    for (p, end) in &previous {
        if !watermarks.iter().any(|w| w.partition == *p) {
            ranges.push(pb::OffsetRange {
                partition: *p,
                start: *end,
                end: *end,
            });
        }
    }
    ranges.sort_by_key(|r| r.partition);
    let reads = ranges.iter().any(|r| r.end > r.start);
    if !reads && lost.is_empty() && fresh.is_empty() {
        return Ok(NextBatch::Wait);
    }
    let batch_id = last_commit.map_or(0, |c| c.batch_id) + 1;
    Ok(NextBatch::Run(pb::BatchPlan {
        job: spec.name.clone(),
        batch_id,
        ranges,
        watermark_ms: next_watermark(spec, last_plan, last_commit, now_ms),
        r#final: false,
        checkpoint: batch_id % u64::from(spec.checkpoint_every.max(1)) == 0,
        planned_at_ms: now_ms,
        lost,
    }))
}

fn plan_generator(
    spec: &pb::JobSpec,
    g: &pb::GeneratorSource,
    last_plan: Option<&pb::BatchPlan>,
    last_commit: Option<&pb::BatchCommit>,
    elapsed_ms: u64,
    now_ms: i64,
) -> NextBatch {
    if last_plan.is_some_and(|p| p.r#final) {
        return NextBatch::Finished;
    }
    let batch_id = last_commit.map_or(0, |c| c.batch_id) + 1;
    let start_of = |p: u32| -> u64 {
        last_plan
            .and_then(|plan| plan.ranges.iter().find(|r| r.partition == p))
            .map_or(0, |r| r.end)
    };
    let mut ranges = Vec::new();
    for p in 0..g.partitions {
        let start = start_of(p);
        let cap = start.saturating_add(g.max_records_per_partition);
        let end = generator::available(g, p, elapsed_ms)
            .map_or(cap, |a| a.min(cap))
            .max(start);
        // Every partition is recorded, empty ranges included: the next
        // batch starts each partition where this one ended.
        ranges.push(pb::OffsetRange {
            partition: p,
            start,
            end,
        });
    }
    let has_input = ranges.iter().any(|r| r.end > r.start);
    let delay = watermark_delay(spec);
    let watermark = next_watermark(spec, last_plan, last_commit, now_ms);
    let checkpoint = batch_id % u64::from(spec.checkpoint_every.max(1)) == 0;
    let plan = |ranges, watermark_ms, is_final: bool| pb::BatchPlan {
        job: spec.name.clone(),
        batch_id,
        ranges,
        watermark_ms,
        r#final: is_final,
        checkpoint: checkpoint || is_final,
        planned_at_ms: now_ms,
        lost: Vec::new(),
    };
    if has_input {
        return NextBatch::Run(plan(ranges, watermark, false));
    }
    if generator::exhausted(g, start_of) {
        if delay.is_some() {
            return NextBatch::Run(plan(ranges, i64::MAX, true));
        }
        return NextBatch::Finished;
    }
    NextBatch::Wait
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(total: Option<u64>, window: bool) -> pb::JobSpec {
        let mut pipeline = vec![];
        if window {
            pipeline.push(pb::Step {
                kind: Some(Kind::Window(pb::WindowStep {
                    size_ms: 10_000,
                    slide_ms: 5_000,
                    time: "ts".into(),
                    watermark_ms: 2_000,
                })),
            });
        }
        pb::JobSpec {
            name: "j".into(),
            checkpoint_every: 2,
            source: Some(pb::Source {
                kind: Some(pb::source::Kind::Generator(pb::GeneratorSource {
                    partitions: 2,
                    keys: 10,
                    rate: 1_000,
                    total,
                    max_records_per_partition: 300,
                    event_time_rate: 1_000,
                    ..Default::default()
                })),
            }),
            pipeline,
            ..Default::default()
        }
    }

    fn run(n: NextBatch) -> pb::BatchPlan {
        match n {
            NextBatch::Run(p) => p,
            other => panic!("expected a batch, got {other:?}"),
        }
    }

    #[test]
    fn ranges_continue_and_are_capped() {
        let s = spec(None, false);
        let first = run(plan_next(&s, None, None, 1_000, 0, None).unwrap());
        assert_eq!(first.batch_id, 1);
        assert!(!first.checkpoint);
        assert_eq!(
            first.ranges,
            vec![
                pb::OffsetRange {
                    partition: 0,
                    start: 0,
                    end: 300
                },
                pb::OffsetRange {
                    partition: 1,
                    start: 0,
                    end: 300
                }
            ]
        );
        let commit = pb::BatchCommit {
            batch_id: 1,
            max_event_time_ms: i64::MIN,
            ..Default::default()
        };
        let second = run(plan_next(&s, Some(&first), Some(&commit), 1_000, 0, None).unwrap());
        assert_eq!(second.batch_id, 2);
        assert!(second.checkpoint);
        assert_eq!(
            second.ranges[0],
            pb::OffsetRange {
                partition: 0,
                start: 300,
                end: 500
            }
        );
        let commit2 = pb::BatchCommit {
            batch_id: 2,
            ..Default::default()
        };
        assert_eq!(
            plan_next(&s, Some(&second), Some(&commit2), 1_000, 0, None).unwrap(),
            NextBatch::Wait
        );
    }

    #[test]
    fn finite_sources_finish_and_windows_flush() {
        let s = spec(Some(100), true);
        let first = run(plan_next(&s, None, None, 60_000, 0, None).unwrap());
        assert_eq!(
            first.ranges.iter().map(|r| r.end - r.start).sum::<u64>(),
            100
        );
        let commit = pb::BatchCommit {
            batch_id: 1,
            max_event_time_ms: 50_000,
            ..Default::default()
        };
        let flush = run(plan_next(&s, Some(&first), Some(&commit), 60_000, 0, None).unwrap());
        assert!(flush.r#final && flush.checkpoint);
        assert!(
            flush.ranges.iter().all(|r| r.start == r.end),
            "a flush reads nothing"
        );
        assert_eq!(flush.watermark_ms, i64::MAX);
        let c2 = pb::BatchCommit {
            batch_id: 2,
            ..Default::default()
        };
        assert_eq!(
            plan_next(&s, Some(&flush), Some(&c2), 60_000, 0, None).unwrap(),
            NextBatch::Finished
        );
        let plain = spec(Some(100), false);
        assert_eq!(
            plan_next(&plain, Some(&first), Some(&commit), 60_000, 0, None).unwrap(),
            NextBatch::Finished
        );
    }

    use std::cell::RefCell;

    /// A topic whose offsets a test sets.
    struct FakeTopic {
        watermarks: RefCell<Result<Vec<Watermarks>, KafkaError>>,
    }

    impl FakeTopic {
        fn new(w: &[(u64, u64)]) -> Self {
            let t = FakeTopic {
                watermarks: RefCell::new(Ok(Vec::new())),
            };
            t.set(w);
            t
        }

        fn set(&self, w: &[(u64, u64)]) {
            *self.watermarks.borrow_mut() = Ok(w
                .iter()
                .enumerate()
                .map(|(p, (low, high))| Watermarks {
                    partition: p as u32,
                    low: *low,
                    high: *high,
                })
                .collect());
        }
    }

    impl OffsetsLister for FakeTopic {
        fn watermarks(&self, _: &pb::KafkaSource) -> Result<Vec<Watermarks>, KafkaError> {
            self.watermarks.borrow().clone()
        }

        fn offsets_for_timestamp(
            &self,
            _: &pb::KafkaSource,
            partitions: &[u32],
            timestamp_ms: i64,
        ) -> Result<Vec<(u32, Option<u64>)>, KafkaError> {
            // offset = timestamp / 10 on partition 0, nothing that late elsewhere
            Ok(partitions
                .iter()
                .map(|p| (*p, (*p == 0).then_some(timestamp_ms as u64 / 10)))
                .collect())
        }
    }

    fn kafka(start: pb::kafka_start::Kind, on_missing: pb::OnMissing) -> pb::JobSpec {
        pb::JobSpec {
            name: "k".into(),
            checkpoint_every: 1,
            source: Some(pb::Source {
                kind: Some(pb::source::Kind::Kafka(pb::KafkaSource {
                    brokers: "b".into(),
                    topic: "t".into(),
                    start: Some(pb::KafkaStart { kind: Some(start) }),
                    max_records_per_partition: 100,
                    on_missing: on_missing as i32,
                    ..Default::default()
                })),
            }),
            ..Default::default()
        }
    }

    fn ranges(plan: &pb::BatchPlan) -> Vec<(u32, u64, u64)> {
        plan.ranges
            .iter()
            .map(|r| (r.partition, r.start, r.end))
            .collect()
    }

    fn commit(batch_id: u64) -> pb::BatchCommit {
        pb::BatchCommit {
            batch_id,
            max_event_time_ms: i64::MIN,
            ..Default::default()
        }
    }

    fn kplan(
        s: &pb::JobSpec,
        last: Option<&pb::BatchPlan>,
        topic: &FakeTopic,
    ) -> Result<NextBatch, PlanError> {
        let c = last.map(|p| commit(p.batch_id));
        plan_next(s, last, c.as_ref(), 0, 0, Some(topic))
    }

    #[test]
    fn kafka_ranges_are_capped_and_positions_are_kept() {
        use pb::kafka_start::Kind as Start;
        let s = kafka(Start::Earliest(true), pb::OnMissing::Fail);
        let topic = FakeTopic::new(&[(0, 250), (5, 5)]);
        let first = run(kplan(&s, None, &topic).unwrap());
        assert_eq!(ranges(&first), [(0, 0, 100), (1, 5, 5)]);
        let second = run(kplan(&s, Some(&first), &topic).unwrap());
        assert_eq!(ranges(&second), [(0, 100, 200), (1, 5, 5)]);
        assert_eq!(active_ranges(&second).count(), 1);
        let third = run(kplan(&s, Some(&second), &topic).unwrap());
        assert_eq!(ranges(&third), [(0, 200, 250), (1, 5, 5)]);
        assert_eq!(kplan(&s, Some(&third), &topic).unwrap(), NextBatch::Wait);
        // a new partition starts at its earliest offset
        topic.set(&[(0, 250), (5, 5), (3, 10)]);
        let fourth = run(kplan(&s, Some(&third), &topic).unwrap());
        assert_eq!(ranges(&fourth), [(0, 250, 250), (1, 5, 5), (2, 3, 10)]);
    }

    #[test]
    fn kafka_start_positions() {
        use pb::kafka_start::Kind as Start;
        let topic = FakeTopic::new(&[(0, 50), (10, 70)]);
        let latest = kafka(Start::Latest(true), pb::OnMissing::Fail);
        let first = run(kplan(&latest, None, &topic).unwrap());
        assert_eq!(
            ranges(&first),
            [(0, 50, 50), (1, 70, 70)],
            "positions recorded"
        );
        assert_eq!(
            kplan(&latest, Some(&first), &topic).unwrap(),
            NextBatch::Wait
        );
        let offsets = kafka(
            Start::Offsets(pb::StartOffsets {
                offsets: vec![pb::PartitionOffset {
                    partition: 1,
                    offset: 60,
                }],
            }),
            pb::OnMissing::Fail,
        );
        let first = run(kplan(&offsets, None, &topic).unwrap());
        assert_eq!(ranges(&first), [(0, 0, 50), (1, 60, 70)]);
        let at = kafka(Start::TimestampMs(200), pb::OnMissing::Fail);
        let first = run(kplan(&at, None, &topic).unwrap());
        assert_eq!(ranges(&first), [(0, 20, 50), (1, 70, 70)]);
    }

    #[test]
    fn deleted_offsets_fail_or_are_skipped_and_reported() {
        use pb::kafka_start::Kind as Start;
        let topic = FakeTopic::new(&[(0, 100)]);
        let fail = kafka(Start::Earliest(true), pb::OnMissing::Fail);
        let first = run(kplan(&fail, None, &topic).unwrap());
        topic.set(&[(150, 300)]);
        let e = kplan(&fail, Some(&first), &topic).unwrap_err();
        assert!(matches!(
            e,
            PlanError::DataLost {
                partition: 0,
                from: 100,
                to: 150,
                ..
            }
        ));
        assert!(e.to_string().contains("50 records lost"), "{e}");
        let skip = kafka(Start::Earliest(true), pb::OnMissing::SkipToEarliest);
        let second = run(kplan(&skip, Some(&first), &topic).unwrap());
        assert_eq!(ranges(&second), [(0, 150, 250)]);
        assert_eq!(
            second.lost,
            [pb::OffsetRange {
                partition: 0,
                start: 100,
                end: 150
            }]
        );
        // a recreated topic is not silently read from the start
        topic.set(&[(0, 20)]);
        assert!(matches!(
            kplan(&skip, Some(&second), &topic),
            Err(PlanError::OffsetsReset { .. })
        ));
        *topic.watermarks.borrow_mut() = Err(KafkaError::Unreachable {
            brokers: "b".into(),
            message: "down".into(),
        });
        assert!(matches!(
            kplan(&skip, Some(&second), &topic),
            Err(PlanError::Unavailable(_))
        ));
        // a refused client fails the job instead of being retried
        *topic.watermarks.borrow_mut() = Err(KafkaError::Refused {
            brokers: "b".into(),
            message: "SASL authentication error: Authentication failed".into(),
        });
        let e = kplan(&skip, Some(&second), &topic).unwrap_err();
        assert!(matches!(e, PlanError::Refused(_)), "{e}");
        assert!(e.to_string().contains("Authentication failed"), "{e}");
    }

    #[test]
    fn watermark_trails_the_largest_event_time() {
        let s = spec(None, true);
        let first = run(plan_next(&s, None, None, 1_000, 0, None).unwrap());
        assert_eq!(first.watermark_ms, i64::MIN);
        let commit = pb::BatchCommit {
            batch_id: 1,
            max_event_time_ms: 9_000,
            ..Default::default()
        };
        let second = run(plan_next(&s, Some(&first), Some(&commit), 2_000, 0, None).unwrap());
        assert_eq!(second.watermark_ms, 7_000);
    }

    #[test]
    fn a_far_future_event_time_moves_the_watermark_one_day_at_most() {
        let s = spec(None, true);
        let now = 1_700_000_000_000;
        let first = run(plan_next(&s, None, None, 1_000, now, None).unwrap());
        let commit = pb::BatchCommit {
            batch_id: 1,
            max_event_time_ms: i64::MAX - 5,
            ..Default::default()
        };
        let second = run(plan_next(&s, Some(&first), Some(&commit), 2_000, now, None).unwrap());
        assert_eq!(second.watermark_ms, now + MAX_WATERMARK_AHEAD_MS);
        // A day later the ceiling moved with the clock; the watermark never
        // goes back when the clock does.
        let third =
            run(plan_next(&s, Some(&second), Some(&commit), 3_000, now + 1_000, None).unwrap());
        assert_eq!(third.watermark_ms, now + 1_000 + MAX_WATERMARK_AHEAD_MS);
        let fourth =
            run(plan_next(&s, Some(&third), Some(&commit), 4_000, now - 60_000, None).unwrap());
        assert_eq!(fourth.watermark_ms, third.watermark_ms);
    }

    #[test]
    fn a_partition_without_new_records_keeps_its_position() {
        // 3 partitions at 1000 records/s: after 4 ms only partition 0 has
        // a new record; the others must not restart at 0 afterwards.
        let mut s = spec(None, false);
        let Some(pb::source::Kind::Generator(g)) = s.source.as_mut().and_then(|x| x.kind.as_mut())
        else {
            panic!("generator")
        };
        g.partitions = 3;
        let first = run(plan_next(&s, None, None, 3, 0, None).unwrap());
        let ends: Vec<u64> = first.ranges.iter().map(|r| r.end).collect();
        assert_eq!(ends, vec![1, 1, 1]);
        let c1 = pb::BatchCommit {
            batch_id: 1,
            ..Default::default()
        };
        let second = run(plan_next(&s, Some(&first), Some(&c1), 4, 0, None).unwrap());
        assert_eq!(second.ranges.len(), 3, "every partition is recorded");
        assert_eq!(
            second.ranges[1],
            pb::OffsetRange {
                partition: 1,
                start: 1,
                end: 1
            }
        );
        let c2 = pb::BatchCommit {
            batch_id: 2,
            ..Default::default()
        };
        let third = run(plan_next(&s, Some(&second), Some(&c2), 9, 0, None).unwrap());
        for r in &third.ranges {
            assert!(
                r.start >= 1,
                "partition {} restarted at {}",
                r.partition,
                r.start
            );
        }
    }
}
