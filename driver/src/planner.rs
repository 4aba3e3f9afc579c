//! Planning the next batch: pure functions over the job's spec, its last
//! committed batch and the source's available offsets.

use weir_proto::generator;
use weir_proto::pb::{self, step::Kind};

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
) -> NextBatch {
    let Some(pb::source::Kind::Generator(g)) = spec.source.as_ref().and_then(|s| s.kind.as_ref())
    else {
        return NextBatch::Wait;
    };
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
    let previous_watermark = last_plan.map_or(i64::MIN, |p| p.watermark_ms);
    let watermark = match (delay, last_commit) {
        (Some(d), Some(c)) if c.max_event_time_ms != i64::MIN => {
            previous_watermark.max(c.max_event_time_ms.saturating_sub(d))
        }
        _ => previous_watermark,
    };
    let checkpoint = batch_id % u64::from(spec.checkpoint_every.max(1)) == 0;
    let plan = |ranges, watermark_ms, is_final: bool| pb::BatchPlan {
        job: spec.name.clone(),
        batch_id,
        ranges,
        watermark_ms,
        r#final: is_final,
        checkpoint: checkpoint || is_final,
        planned_at_ms: now_ms,
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
        let first = run(plan_next(&s, None, None, 1_000, 0));
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
        let second = run(plan_next(&s, Some(&first), Some(&commit), 1_000, 0));
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
            plan_next(&s, Some(&second), Some(&commit2), 1_000, 0),
            NextBatch::Wait
        );
    }

    #[test]
    fn finite_sources_finish_and_windows_flush() {
        let s = spec(Some(100), true);
        let first = run(plan_next(&s, None, None, 60_000, 0));
        assert_eq!(
            first.ranges.iter().map(|r| r.end - r.start).sum::<u64>(),
            100
        );
        let commit = pb::BatchCommit {
            batch_id: 1,
            max_event_time_ms: 50_000,
            ..Default::default()
        };
        let flush = run(plan_next(&s, Some(&first), Some(&commit), 60_000, 0));
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
            plan_next(&s, Some(&flush), Some(&c2), 60_000, 0),
            NextBatch::Finished
        );
        let plain = spec(Some(100), false);
        assert_eq!(
            plan_next(&plain, Some(&first), Some(&commit), 60_000, 0),
            NextBatch::Finished
        );
    }

    #[test]
    fn watermark_trails_the_largest_event_time() {
        let s = spec(None, true);
        let first = run(plan_next(&s, None, None, 1_000, 0));
        assert_eq!(first.watermark_ms, i64::MIN);
        let commit = pb::BatchCommit {
            batch_id: 1,
            max_event_time_ms: 9_000,
            ..Default::default()
        };
        let second = run(plan_next(&s, Some(&first), Some(&commit), 2_000, 0));
        assert_eq!(second.watermark_ms, 7_000);
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
        let first = run(plan_next(&s, None, None, 3, 0));
        let ends: Vec<u64> = first.ranges.iter().map(|r| r.end).collect();
        assert_eq!(ends, vec![1, 1, 1]);
        let c1 = pb::BatchCommit {
            batch_id: 1,
            ..Default::default()
        };
        let second = run(plan_next(&s, Some(&first), Some(&c1), 4, 0));
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
        let third = run(plan_next(&s, Some(&second), Some(&c2), 9, 0));
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
