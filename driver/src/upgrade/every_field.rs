//! Every field of the `JobSpec` message has a diff rule: the test walks the
//! message's descriptor, changes each field of a set of specs that together
//! use every variant, and checks that [`diff`] reports the change. A field
//! added to `spec.proto` fails it until `diff` classifies the field (or
//! [`NO_RULE`] says why it needs none), so a resubmitted spec can never
//! change silently while the job keeps the old one.

use super::diff;
use prost::Message;
use prost_reflect::{
    DescriptorPool, DynamicMessage, Kind, MessageDescriptor, ReflectMessage, Value,
};
use std::collections::BTreeSet;
use weir_proto::pb;
use weir_proto::spec::parse_spec;

/// Fields without a diff rule, and why none is needed.
const NO_RULE: &[(&str, &str)] = &[(
    "weir.v1.JobSpec.name",
    "the job's identity: a spec with another name is another job, never diffed",
)];

/// Specs that together set every oneof variant and every optional message.
const BASES: &[&str] = &[
    "name: j
batch_interval: 100ms
checkpoint_every: 10
state_partitions: 4
source:
  generator: { partitions: 3, keys: 37, rate: 10, total: 1000, seed: 7, max_records_per_partition: 100, event_time_rate: 1000 }
pipeline:
  - filter: value > 1
  - map: { v2: value * 2 }
  - lookup: { redis: { url: \"redis://:${env:P}@127.0.0.1:6379/0\", key: key, fields: { name: string, age: bigint } }, cache: { ttl: 1m, max_entries: 10 }, on_missing: skip }
  - key_by: key
  - aggregate: { count: {}, total: { sum: value } }
sink:
  file: { path: /tmp/out, format: jsonl }
",
    "name: j
batch_interval: 1s
state_partitions: 2
on_error: dead_letter
dead_letter: { topic: bad, brokers: 127.0.0.1:9092 }
source:
  kafka:
    brokers: 127.0.0.1:9092
    topic: clicks
    start: { offsets: { 0: 42 } }
    max_records_per_partition: 1000
    format: json
    schema: { text: string, ts: bigint }
    on_missing: skip_to_earliest
    properties: { fetch.max.bytes: 52428800 }
pipeline:
  - flat_map: { field: text, separator: ' ', as: word }
  - custom: { name: redact, version: 1, config: { column: word } }
  - key_by: word
  - window: { size: 10s, slide: 5s, time: ts, watermark: 2s }
  - aggregate: { n: {}, low: { min: ts }, high: { max: ts }, mean: { avg: ts } }
sink:
  kafka: { brokers: 127.0.0.1:9092, topic: out, properties: { linger.ms: 5 } }
",
    "name: j
batch_interval: 1s
source:
  kafka: { brokers: 127.0.0.1:9092, topic: clicks, start: { timestamp_ms: 1700000000000 }, format: text }
pipeline:
  - filter: length(value) > 0
sink:
  stdout: {}
",
    "name: j
batch_interval: 1s
source:
  kafka: { brokers: 127.0.0.1:9092, topic: clicks, start: latest, format: raw }
sink:
  noop: {}
",    "name: j
batch_interval: 1s
source:
  generator: {}
sink:
  postgres: { url: \"postgres://weir:pw@127.0.0.1:5432/weir\", table: public.counts, key: [key, day], mode: append, columns: [key, day, n] }
",
    "name: j
batch_interval: 1s
source:
  generator: {}
sink:
  hbase: { thrift: 127.0.0.1:9090, table: \"weir:counts\", family: f, row_key: key }
",
];

/// One changed copy of a spec.
struct Mutation {
    /// Where, e.g. `source.kafka.properties[0].value`.
    path: String,
    /// The fields on the way, outermost first (full protobuf names).
    fields: Vec<String>,
    /// The changed message.
    message: DynamicMessage,
}

fn pool() -> DescriptorPool {
    DescriptorPool::decode(weir_proto::FILE_DESCRIPTOR_SET).expect("the generated descriptor set")
}

/// Every single-field change of `msg`: each scalar changed, each list
/// grown by one element and each of its elements changed, each message field
/// changed inside (set if it was not), and each unset oneof variant set.
fn mutations(msg: &DynamicMessage, prefix: &str) -> Vec<Mutation> {
    let mut out = Vec::new();
    for fd in msg.descriptor().fields() {
        let path = format!("{prefix}{}", fd.name());
        let in_oneof = fd.containing_oneof().is_some_and(|o| !o.is_synthetic());
        if in_oneof && !msg.has_field(&fd) {
            // Another variant of the oneof.
            let mut m = msg.clone();
            m.set_field(&fd, Value::default_value_for_field(&fd));
            out.push(Mutation {
                path: format!("{path} (variant)"),
                fields: vec![fd.full_name().to_string()],
                message: m,
            });
            continue;
        }
        let value = msg.get_field(&fd).into_owned();
        let with = |v: Value| {
            let mut m = msg.clone();
            m.set_field(&fd, v);
            m
        };
        if let Value::List(list) = &value {
            let element = match fd.kind() {
                Kind::Message(md) => Value::Message(DynamicMessage::new(md)),
                kind => Value::default_value(&kind),
            };
            let mut grown = list.clone();
            grown.push(element);
            out.push(Mutation {
                path: format!("{path}[+]"),
                fields: vec![fd.full_name().to_string()],
                message: with(Value::List(grown)),
            });
            for (i, element) in list.iter().enumerate() {
                for (p, fields, v) in changed(&fd, element, &format!("{path}[{i}]")) {
                    let mut l = list.clone();
                    l[i] = v;
                    out.push(Mutation {
                        path: p,
                        fields,
                        message: with(Value::List(l)),
                    });
                }
            }
        } else {
            for (p, fields, v) in changed(&fd, &value, &path) {
                out.push(Mutation {
                    path: p,
                    fields,
                    message: with(v),
                });
            }
        }
    }
    out
}

/// Changed versions of one value of `fd`: a message's own mutations, or a
/// scalar's other value.
fn changed(
    fd: &prost_reflect::FieldDescriptor,
    value: &Value,
    path: &str,
) -> Vec<(String, Vec<String>, Value)> {
    let name = fd.full_name().to_string();
    let other = match value {
        Value::Message(sub) => {
            return mutations(sub, &format!("{path}."))
                .into_iter()
                .map(|m| {
                    let mut fields = vec![name.clone()];
                    fields.extend(m.fields);
                    (m.path, fields, Value::Message(m.message))
                })
                .collect()
        }
        Value::Bool(b) => Value::Bool(!b),
        Value::I32(n) => Value::I32(n.wrapping_add(1)),
        Value::I64(n) => Value::I64(n.wrapping_add(1)),
        Value::U32(n) => Value::U32(n.wrapping_add(1)),
        Value::U64(n) => Value::U64(n.wrapping_add(1)),
        Value::F32(n) => Value::F32(n + 1.0),
        Value::F64(n) => Value::F64(n + 1.0),
        Value::String(s) => Value::String(format!("{s}x")),
        Value::Bytes(b) => Value::Bytes([b.as_ref(), b"x"].concat().into()),
        Value::EnumNumber(n) => {
            let Kind::Enum(e) = fd.kind() else {
                unreachable!("an enum value of a non-enum field")
            };
            let other = e
                .values()
                .map(|v| v.number())
                .find(|v| v != n)
                .expect("enums have two values or more");
            Value::EnumNumber(other)
        }
        Value::List(_) | Value::Map(_) => unreachable!("lists are walked by the caller"),
    };
    vec![(path.to_string(), vec![name], other)]
}

/// Every field reachable from `md`, by full name.
fn reachable(md: &MessageDescriptor, seen: &mut BTreeSet<String>) {
    for fd in md.fields() {
        if seen.insert(fd.full_name().to_string()) {
            if let Kind::Message(sub) = fd.kind() {
                reachable(&sub, seen);
            }
        }
    }
}

#[test]
fn every_field_of_a_job_spec_has_a_diff_rule() {
    let pool = pool();
    let job_spec = pool
        .get_message_by_name("weir.v1.JobSpec")
        .expect("weir.v1.JobSpec");
    let exempt: BTreeSet<&str> = NO_RULE.iter().map(|(f, _)| *f).collect();
    let mut covered = BTreeSet::new();
    let mut silent = Vec::new();
    for text in BASES {
        let base = parse_spec(text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let dynamic = DynamicMessage::decode(job_spec.clone(), base.encode_to_vec().as_slice())
            .expect("a JobSpec decodes as itself");
        for m in mutations(&dynamic, "") {
            if m.fields.iter().any(|f| exempt.contains(f.as_str())) {
                continue;
            }
            let new = pb::JobSpec::decode(m.message.encode_to_vec().as_slice())
                .expect("a changed JobSpec decodes");
            assert_ne!(new, base, "{} was not changed", m.path);
            if diff(&base, &new).changes.is_empty() {
                silent.push(m.path.clone());
            } else {
                covered.extend(m.fields);
            }
        }
    }
    assert!(
        silent.is_empty(),
        "spec changes the diff does not report (a resubmitted spec would keep the old job): {silent:#?}"
    );
    let mut all = BTreeSet::new();
    reachable(&job_spec, &mut all);
    let missing: Vec<&String> = all
        .iter()
        .filter(|f| !covered.contains(*f) && !exempt.contains(f.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "fields no base spec exercised: set them in BASES: {missing:#?}"
    );
    for f in &exempt {
        assert!(
            all.contains(*f),
            "NO_RULE names {f}, which JobSpec no longer has"
        );
    }
}
