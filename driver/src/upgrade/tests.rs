//! Diff rules, change by change.

use super::*;
use weir_proto::spec::parse_spec;
use ChangeClass::*;

const BASE: &str = "name: j
batch_interval: 100ms
checkpoint_every: 10
state_partitions: 4
source:
  generator: { partitions: 3, keys: 37, rate: 0, total: 1000, max_records_per_partition: 100, event_time_rate: 1000 }
pipeline:
  - filter: value > 1
  - key_by: key
  - aggregate: { count: {}, total: { sum: value } }
sink:
  file: { path: /tmp/out }
";

fn spec(text: &str) -> pb::JobSpec {
    parse_spec(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn changed(from: &str, to: &str) -> PlanDiff {
    let new = BASE.replace(from, to);
    assert_ne!(new, BASE, "{from} not in the base spec");
    diff(&spec(BASE), &spec(&new))
}

fn one(d: &PlanDiff) -> &Change {
    assert_eq!(d.changes.len(), 1, "{d:?}");
    &d.changes[0]
}

#[test]
fn same_spec_is_unchanged() {
    let d = diff(&spec(BASE), &spec(BASE));
    assert!(d.changes.is_empty());
    assert_eq!(d.verdict(), Verdict::Unchanged);
    assert!(d.table().contains("verdict: unchanged"));
}

#[test]
fn compatible_settings() {
    for (from, to, path) in [
        (
            "batch_interval: 100ms",
            "batch_interval: 2s",
            "batch_interval",
        ),
        (
            "checkpoint_every: 10",
            "checkpoint_every: 5",
            "checkpoint_every",
        ),
        (
            "max_records_per_partition: 100",
            "max_records_per_partition: 50",
            "source.generator.max_records_per_partition",
        ),
        ("rate: 0", "rate: 500", "source.generator.rate"),
        ("path: /tmp/out", "path: /tmp/other", "sink.file.path"),
        (
            "state_partitions: 4\n",
            "state_partitions: 4\non_error: skip\n",
            "on_error",
        ),
    ] {
        let d = changed(from, to);
        let c = one(&d);
        assert_eq!(c.path, path);
        assert_eq!(c.class, Compatible, "{path}");
        assert_eq!(d.verdict(), Verdict::Compatible);
        assert!(d.refused(false, false).is_empty());
    }
    let d = changed("batch_interval: 100ms", "batch_interval: 2s");
    assert_eq!(
        (one(&d).before.as_str(), one(&d).after.as_str()),
        ("100ms", "2s")
    );
}

#[test]
fn stateless_steps_are_compatible() {
    let d = changed("value > 1", "value > 2");
    let c = one(&d);
    assert_eq!(c.path, "pipeline[0]");
    assert_eq!(c.before, "filter: value > 1");
    assert_eq!(c.after, "filter: value > 2");
    assert_eq!(c.class, Compatible);

    // Added before and after the stateful operator.
    let d = changed(
        "  - filter: value > 1\n",
        "  - filter: value > 1\n  - map: { v2: value * 2 }\n",
    );
    assert_eq!(one(&d).path, "pipeline[1]");
    assert_eq!(one(&d).before, "");
    assert_eq!(d.verdict(), Verdict::Compatible);
    let d = changed(
        "total: { sum: value } }\n",
        "total: { sum: value } }\n  - filter: count > 1\n",
    );
    assert_eq!(one(&d).path, "pipeline[3]");
    assert_eq!(one(&d).class, Compatible);

    // Removed.
    let d = changed("  - filter: value > 1\n", "");
    assert_eq!(one(&d).path, "pipeline[0]");
    assert_eq!(one(&d).after, "");
    assert_eq!(one(&d).class, Compatible);
}

#[test]
fn lookup_steps_are_stateless_steps() {
    let lookup = "  - lookup: { redis: { url: \"redis://:hunter2@127.0.0.1:6379/0\", key: key, fields: { name: string } } }\n";
    let with = BASE.replace("  - filter: value > 1\n", lookup);
    let d = diff(&spec(BASE), &spec(&with));
    let c = one(&d);
    assert_eq!(c.path, "pipeline[0]");
    assert_eq!(c.class, Compatible);
    assert_eq!(
        c.after,
        "lookup: redis redis://:***@127.0.0.1:6379/0 key key fields name string (hash) on_missing null",
        "a literal password is never shown"
    );
    // Every part of the step, the key and the columns included, is a
    // compatible change, as a map's expressions are.
    for (from, to) in [
        ("key: key", "key: \"'u:' || key\""),
        ("name: string", "name: string, age: bigint"),
        ("hunter2", "other"),
        (
            "name: string } }",
            "name: string } }, cache: { ttl: 5s }, on_missing: skip",
        ),
        (
            "fields: { name: string }",
            "fields: { name: string }, hash: false",
        ),
    ] {
        let after = with.replace(from, to);
        let d = diff(&spec(&with), &spec(&after));
        assert_eq!(one(&d).path, "pipeline[0]", "{to}");
        assert_eq!(one(&d).class, Compatible, "{to}");
        assert!(!one(&d).after.contains("hunter2"), "{:?}", one(&d));
    }
}

#[test]
fn custom_steps_are_stateless_steps() {
    // Added before the stateful operator and after it.
    let d = changed(
        "  - filter: value > 1\n",
        "  - filter: value > 1\n  - custom: { name: redact, version: 1, config: { column: user } }\n",
    );
    let c = one(&d);
    assert_eq!(c.path, "pipeline[1]");
    assert_eq!(c.after, "custom: redact@1 {column=user}");
    assert_eq!(c.class, Compatible);
    let with = BASE.replace(
        "  - filter: value > 1\n",
        "  - custom: { name: redact, version: 1, config: { column: user } }\n",
    );
    // A new operator version and a new config are compatible changes.
    for to in [
        "custom: { name: redact, version: 2, config: { column: user } }",
        "custom: { name: redact, version: 1, config: { column: user, keep: 2 } }",
        "custom: { name: mask, version: 1 }",
    ] {
        let after = with.replace(
            "custom: { name: redact, version: 1, config: { column: user } }",
            to,
        );
        let d = diff(&spec(&with), &spec(&after));
        assert_eq!(one(&d).path, "pipeline[0]");
        assert_eq!(one(&d).class, Compatible, "{to}");
        assert_eq!(d.verdict(), Verdict::Compatible);
    }
    // Moved across the stateful operator, then removed.
    let moved = with
        .replace(
            "  - custom: { name: redact, version: 1, config: { column: user } }\n",
            "",
        )
        .replace(
            "total: { sum: value } }\n",
            "total: { sum: value } }\n  - custom: { name: redact, version: 1, config: { column: user } }\n",
        );
    let d = diff(&spec(&with), &spec(&moved));
    assert_eq!(d.verdict(), Verdict::Compatible);
    assert_eq!(d.changes.len(), 2);
    let d = diff(&spec(&with), &spec(BASE));
    assert_eq!(one(&d).before, "custom: redact@1 {column=user}");
    assert_eq!(one(&d).class, Compatible);
}

#[test]
fn state_changes_need_a_state_decision() {
    for (from, to, path) in [
        ("key_by: key", "key_by: value % 7", "pipeline[1].key_by"),
        (
            "total: { sum: value }",
            "total: { max: value }",
            "pipeline[2].aggregate",
        ),
        ("count: {}, ", "", "pipeline[2].aggregate"),
        (
            "state_partitions: 4",
            "state_partitions: 8",
            "state_partitions",
        ),
    ] {
        let d = changed(from, to);
        let c = one(&d);
        assert_eq!(c.path, path);
        assert_eq!(c.class, NeedsStateDecision, "{path}");
        assert_eq!(d.verdict(), Verdict::NeedsStateDecision);
        assert_eq!(d.refused(false, false).len(), 1);
        assert!(d.refused(true, false).is_empty());
        assert!(d.refused(false, true).is_empty());
    }
}

#[test]
fn operator_order_around_state() {
    // A stateful operator removed.
    let d = changed(
        "  - key_by: key\n  - aggregate: { count: {}, total: { sum: value } }\n",
        "",
    );
    let c = one(&d);
    assert_eq!(c.path, "pipeline");
    assert_eq!(c.before, "filter -> key_by -> aggregate");
    assert_eq!(c.after, "filter");
    assert_eq!(c.class, NeedsStateDecision);
    // A window added in front of the aggregate.
    let d = changed(
        "  - aggregate",
        "  - window: { size: 10s, time: ts }\n  - aggregate",
    );
    assert_eq!(one(&d).class, NeedsStateDecision);
    // A stateless step moved across the stateful operator: the steps on
    // each side changed, which is compatible.
    let d = changed(
        "  - filter: value > 1\n  - key_by: key\n",
        "  - key_by: key\n  - filter: value > 1\n",
    );
    assert_eq!(d.verdict(), Verdict::Compatible);
}

#[test]
fn window_changes_need_a_state_decision() {
    let windowed = BASE.replace(
        "  - aggregate",
        "  - window: { size: 10s, slide: 5s, time: ts, watermark: 1s }\n  - aggregate",
    );
    let stored = spec(&windowed);
    for (from, to, path) in [
        ("size: 10s", "size: 20s", "pipeline[2].window.size"),
        ("slide: 5s", "slide: 2s", "pipeline[2].window.slide"),
        (
            "watermark: 1s",
            "watermark: 2s",
            "pipeline[2].window.watermark",
        ),
        (
            "event_time_rate: 1000",
            "event_time_rate: 7",
            "source.generator.event_time_rate",
        ),
    ] {
        let new = spec(&windowed.replace(from, to));
        let d = diff(&stored, &new);
        let c = one(&d);
        assert_eq!(c.path, path);
        assert_eq!(c.class, NeedsStateDecision, "{path}");
    }
    // Without a window the event time rate is compatible.
    let d = changed("event_time_rate: 1000", "event_time_rate: 7");
    assert_eq!(one(&d).class, Compatible);
}

#[test]
fn source_identity_needs_an_offset_decision() {
    for (from, to, path) in [
        (
            "partitions: 3",
            "partitions: 4",
            "source.generator.partitions",
        ),
        ("keys: 37", "keys: 38", "source.generator.keys"),
        ("total: 1000", "total: 2000", "source.generator.total"),
        ("rate: 0,", "rate: 0, seed: 9,", "source.generator.seed"),
    ] {
        let d = changed(from, to);
        let c = one(&d);
        assert_eq!(c.path, path);
        assert_eq!(c.class, NeedsOffsetDecision, "{path}");
        assert_eq!(d.verdict(), Verdict::NeedsOffsetDecision);
        assert_eq!(d.refused(true, false).len(), 1);
        assert!(d.refused(false, true).is_empty());
    }
}

#[test]
fn verdict_is_the_most_demanding_class() {
    let new = BASE
        .replace("batch_interval: 100ms", "batch_interval: 1s")
        .replace("key_by: key", "key_by: value")
        .replace("keys: 37", "keys: 5");
    let d = diff(&spec(BASE), &spec(&new));
    assert_eq!(d.changes.len(), 3);
    assert_eq!(d.verdict(), Verdict::NeedsOffsetDecision);
    assert_eq!(d.refused(false, false).len(), 2);
    assert_eq!(d.refused(true, false).len(), 1);
    let msg = refusal_message("j", &d.refused(false, false));
    assert!(
        msg.contains(
            "pipeline[1].key_by: key -> value (needs-state-decision; allowed with --reset-state"
        ),
        "{msg}"
    );
    assert!(
        msg.contains("source.generator.keys: 37 -> 5 (needs-offset-decision; allowed with --from"),
        "{msg}"
    );
    let table = d.table();
    assert!(table.starts_with("PATH"), "{table}");
    assert!(table.contains("verdict: needs-offset-decision"), "{table}");
}

/// Changes a resubmitted spec used to lose: each is reported, compatible,
/// and so stored and applied at the next batch boundary.
#[test]
fn kafka_settings_and_dead_letters_are_compatible_changes() {
    let kafka = "name: j
batch_interval: 1s
on_error: dead_letter
dead_letter: { topic: bad }
source:
  kafka: { brokers: 127.0.0.1:9092, topic: in, format: text, properties: { fetch.max.bytes: 1000 } }
sink:
  kafka: { brokers: 127.0.0.1:9092, topic: out, properties: { linger.ms: 5 } }
";
    let changed = |from: &str, to: &str| {
        let new = kafka.replace(from, to);
        assert_ne!(new, kafka, "{from} not in the spec");
        diff(&spec(kafka), &spec(&new))
    };
    for (from, to, path, before, after) in [
        (
            "topic: out",
            "topic: out2",
            "sink.kafka.topic",
            "out",
            "out2",
        ),
        (
            "linger.ms: 5",
            "linger.ms: 6",
            "sink.kafka.properties",
            "linger.ms=5",
            "linger.ms=6",
        ),
        (
            "fetch.max.bytes: 1000",
            "fetch.max.bytes: 2000",
            "source.kafka.properties",
            "fetch.max.bytes=1000",
            "fetch.max.bytes=2000",
        ),
        (
            "format: text",
            "format: text, on_missing: skip_to_earliest",
            "source.kafka.on_missing",
            "fail",
            "skip_to_earliest",
        ),
        (
            "topic: bad",
            "topic: worse",
            "dead_letter.topic",
            "bad",
            "worse",
        ),
    ] {
        let d = changed(from, to);
        let c = one(&d);
        assert_eq!(
            (
                c.path.as_str(),
                c.before.as_str(),
                c.after.as_str(),
                c.class
            ),
            (path, before, after, Compatible),
            "{from} -> {to}"
        );
    }
    let d = changed(
        "on_error: dead_letter\ndead_letter: { topic: bad }\n",
        "on_error: skip\n",
    );
    let paths: Vec<(&str, &str, &str)> = d
        .changes
        .iter()
        .map(|c| (c.path.as_str(), c.before.as_str(), c.after.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            ("on_error", "dead_letter", "skip"),
            ("dead_letter.topic", "bad", "")
        ]
    );
    assert_eq!(d.verdict(), Verdict::Compatible);
}
