//! Spec parsing and validation: each error names its field path.

use super::{check_job_name, parse_spec, MAX_JOB_NAME};
use crate::pb::{self, step::Kind};

const BASE: &str =
    "name: j\nsource:\n  generator: { partitions: 2, keys: 10 }\nsink:\n  stdout: {}\n";

fn with_pipeline(pipeline: &str) -> String {
    format!("{BASE}pipeline:\n{pipeline}")
}

fn errors(yaml: &str) -> String {
    parse_spec(yaml)
        .expect_err("spec must be rejected")
        .to_string()
}

#[test]
fn a_full_spec_parses_with_defaults() {
    let spec = parse_spec(&with_pipeline(
        "  - filter: \"value % 2 = 0\"\n  - map: { doubled: \"value * 2\", n: 5 }\n  - key_by: key\n  \
         - window: { size: 10s, slide: 5s, time: ts, watermark: 2s }\n  - aggregate: { count: {}, total: { sum: value } }\n",
    ))
    .unwrap();
    assert_eq!(spec.batch_interval_ms, 1_000);
    assert_eq!(spec.checkpoint_every, 1);
    assert_eq!(spec.state_partitions, 8);
    let Some(pb::source::Kind::Generator(g)) = spec.source.unwrap().kind else {
        panic!("generator")
    };
    assert_eq!(
        (g.partitions, g.keys, g.rate, g.event_time_rate),
        (2, 10, 1_000, 1_000)
    );
    assert_eq!(spec.pipeline.len(), 5);
    let Some(Kind::Map(m)) = &spec.pipeline[1].kind else {
        panic!("map")
    };
    assert_eq!(m.fields[1].name, "n");
    assert_eq!(m.fields[1].expr, "5");
    let Some(Kind::Window(w)) = &spec.pipeline[3].kind else {
        panic!("window")
    };
    assert_eq!(
        (w.size_ms, w.slide_ms, w.watermark_ms),
        (10_000, 5_000, 2_000)
    );
    let Some(Kind::Aggregate(a)) = &spec.pipeline[4].kind else {
        panic!("aggregate")
    };
    assert_eq!(
        a.aggregates[0].function,
        pb::AggregateFunction::Count as i32
    );
    assert_eq!(a.aggregates[1].function, pb::AggregateFunction::Sum as i32);
    assert_eq!(a.aggregates[1].expr, "value");
}

#[test]
fn a_window_alone_counts() {
    let spec = parse_spec(&with_pipeline(
        "  - key_by: key\n  - window: { size: 2s, time: ts }\n",
    ))
    .unwrap();
    let Some(Kind::Aggregate(a)) = &spec.pipeline[2].kind else {
        panic!("implicit aggregate")
    };
    assert_eq!(a.aggregates[0].name, "count");
}

#[test]
fn unknown_fields_are_errors() {
    assert!(errors(&format!("{BASE}colour: blue\n")).contains("unknown field `colour`"));
    let e = errors("name: j\nsource:\n  generator: { partitons: 2 }\nsink:\n  stdout: {}\n");
    assert!(e.contains("unknown field `partitons`"), "{e}");
    let e = errors(&with_pipeline("  - fliter: \"x\"\n"));
    assert!(e.contains("unknown variant `fliter`"), "{e}");
    assert!(
        errors("name: j\nsource:\n  kafka: {}\nsink:\n  stdout: {}\n")
            .contains("missing field `brokers`")
    );
}

#[test]
fn window_sizes_must_fit_the_batch_interval() {
    let e = errors(&with_pipeline(
        "  - key_by: key\n  - window: { size: 1500ms, time: ts }\n  - aggregate: { count: {} }\n",
    ));
    assert!(
        e.contains(
            "pipeline[1].window.size: must be a multiple of batch_interval (1s), got 1500ms"
        ),
        "{e}"
    );
    let e = errors(&with_pipeline(
        "  - key_by: key\n  - window: { size: 10s, slide: 20s, time: ts }\n  - aggregate: { count: {} }\n",
    ));
    assert!(
        e.contains("pipeline[1].window.slide: must not exceed size (10s), got 20s"),
        "{e}"
    );
    let e = errors(&with_pipeline(
        "  - key_by: key\n  - window: { size: 10s, slide: 4s, time: ts }\n  - aggregate: { count: {} }\n",
    ));
    assert!(
        e.contains("pipeline[1].window.size: must be a multiple of slide (4s), got 10s"),
        "{e}"
    );
    assert!(errors(&with_pipeline(
        "  - key_by: key\n  - window: { size: 10, time: ts }\n"
    ))
    .contains("pipeline[1].window.size: duration \"10\" needs a unit"));
}

#[test]
fn pipeline_structure_is_checked() {
    assert!(errors(&with_pipeline("  - aggregate: { count: {} }\n"))
        .contains("pipeline[0].aggregate: needs a key_by step before it"));
    assert!(errors(&with_pipeline("  - key_by: key\n"))
        .contains("pipeline[0].key_by: must be followed by an aggregate or window step"));
    assert!(errors(&with_pipeline(
        "  - key_by: key\n  - aggregate: { count: {} }\n  - flat_map: { field: key }\n"
    ))
    .contains("pipeline[2].flat_map: only filter and map may follow aggregate"));
    assert!(errors(&with_pipeline(
        "  - key_by: key\n  - aggregate: { key: {} }\n"
    ))
    .contains("pipeline[1].aggregate.key: this output name is reserved"));
    assert!(errors(&with_pipeline(
        "  - key_by: key\n  - aggregate: { s: { sum: {} } }\n"
    ))
    .contains("pipeline[1].aggregate.s: sum needs an expression"));
    assert!(errors(&with_pipeline(
        "  - key_by: key\n  - aggregate: { s: { median: value } }\n"
    ))
    .contains("pipeline[1].aggregate.s: unknown aggregate function"));
    assert!(errors(&with_pipeline("  - filter: \"  \"\n"))
        .contains("pipeline[0]: expression must not be empty"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let e = errors(
        "name: \"bad name!\"\ncheckpoint_every: 0\nstate_partitions: 0\n\
         source:\n  generator: { partitions: 0, keys: 0 }\nsink:\n  file: { path: \"\", format: csv }\n",
    );
    for expected in [
        "name: must be 1-128 characters",
        "checkpoint_every: must be at least 1",
        "state_partitions: must be between 1 and 4096, got 0",
        "source.generator.partitions: must be between 1 and 1024, got 0",
        "source.generator.keys: must be at least 1",
        "sink.file.path: must not be empty",
        "sink.file.format: only jsonl is supported, got \"csv\"",
    ] {
        assert!(e.contains(expected), "missing {expected:?} in:\n{e}");
    }
}

#[test]
fn fingerprints_follow_the_content() {
    let a = parse_spec(BASE).unwrap();
    let b = parse_spec(&BASE.replace("keys: 10", "keys: 11")).unwrap();
    assert_eq!(
        super::fingerprint(&a),
        super::fingerprint(&parse_spec(BASE).unwrap())
    );
    assert_ne!(super::fingerprint(&a), super::fingerprint(&b));
}

const KAFKA: &str = "name: j\nsource:\n  kafka: { brokers: \"b:9092\", topic: in, start: earliest, schema: { user: string, n: bigint } }\n\
                     pipeline:\n  - key_by: user\n  - aggregate: { c: {} }\n";

#[test]
fn kafka_source_and_sink_parse() {
    let spec = parse_spec(&format!(
        "{KAFKA}sink:\n  kafka: {{ brokers: \"b:9092\", topic: out }}\n"
    ))
    .unwrap();
    let Some(pb::source::Kind::Kafka(k)) = spec.source.unwrap().kind else {
        panic!("kafka")
    };
    assert_eq!(k.format, pb::KafkaFormat::Json as i32);
    assert_eq!(k.on_missing, pb::OnMissing::Fail as i32);
    assert_eq!(
        k.schema.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["user", "n"]
    );
    assert_eq!(
        k.start.unwrap().kind,
        Some(pb::kafka_start::Kind::Earliest(true))
    );
    let Some(pb::sink::Kind::Kafka(s)) = spec.sink.unwrap().kind else {
        panic!("kafka sink")
    };
    assert_eq!(s.topic, "out");
}

#[test]
fn secret_references_are_checked_not_resolved() {
    // Well-formed references pass validation whether or not they resolve
    // here: the driver and the executors resolve them.
    let ok = parse_spec(
        "name: j\nsource:\n  kafka: { brokers: b, topic: t, format: text, properties: { sasl.password: '${env:WEIR_NOT_SET_ANYWHERE}' } }\n\
         sink:\n  kafka: { brokers: b, topic: o, properties: { ssl.key.password: '${file:/nonexistent/pw}', sasl.username: 'a$${b}' } }\n",
    )
    .unwrap();
    let Some(pb::source::Kind::Kafka(k)) = ok.source.unwrap().kind else {
        panic!("kafka source")
    };
    // The spec keeps the reference itself.
    assert_eq!(k.properties[0].value, "${env:WEIR_NOT_SET_ANYWHERE}");
    let e = errors(
        "name: j\nsource:\n  kafka: { brokers: b, topic: t, format: text, properties: { sasl.password: '${env:A-B}' } }\n\
         sink:\n  kafka: { brokers: b, topic: o, properties: { sasl.password: '${vault:x}', ssl.key.password: '${file:pw}' } }\n",
    );
    for needle in [
        "source.kafka.properties.sasl.password: ${env:A-B}: an environment variable name",
        "sink.kafka.properties.sasl.password: ${vault:x} is not a reference",
        "sink.kafka.properties.ssl.key.password: ${file:pw}: the path must be absolute",
    ] {
        assert!(e.contains(needle), "missing {needle:?} in:\n{e}");
    }
}

#[test]
fn kafka_errors_name_their_field() {
    let e = errors(
        "name: j\nsource:\n  kafka: { brokers: \"\", topic: \"bad topic\", max_records_per_partition: 0, format: text, schema: { a: string } }\n\
         sink:\n  kafka: { brokers: b, topic: weir-commits, properties: { transactional.id: x } }\n",
    );
    for needle in [
        "source.kafka.brokers: must not be empty",
        "source.kafka.topic: must be a Kafka topic name",
        "source.kafka.max_records_per_partition: must be at least 1",
        "source.kafka.schema: only formats json and csv take a schema",
        "sink.kafka.topic: weir-commits is Weir's commit-marker topic",
        "sink.kafka.properties.transactional.id: is set by Weir",
    ] {
        assert!(e.contains(needle), "missing {needle:?} in:\n{e}");
    }
    let e = errors(
        "name: j\nsource:\n  kafka: { brokers: b, topic: t, start: { offsets: {} } }\nsink:\n  stdout: {}\n",
    );
    assert!(e.contains("source.kafka.schema: format json needs"), "{e}");
    assert!(e.contains("source.kafka.start.offsets"), "{e}");
    let e = errors("name: j\nsource:\n  kafka: { brokers: b, topic: t, schema: { a: int } }\nsink:\n  stdout: {}\n");
    assert!(e.contains("source.kafka.schema.a: unknown type"), "{e}");
    let e = errors("name: j\nsource:\n  kafka: { brokers: b, topic: t, start: sometime, format: text }\nsink:\n  stdout: {}\n");
    assert!(e.contains("sometime"), "{e}");
    let e = errors(&format!(
        "{KAFKA}on_error: dead_letter\nsink:\n  stdout: {{}}\n"
    ));
    assert!(
        e.contains("dead_letter: on_error: dead_letter needs"),
        "{e}"
    );
    let e = errors(&format!(
        "{BASE}on_error: dead_letter\ndead_letter: {{ topic: dlq }}\n"
    ));
    assert!(
        e.contains("on_error: dead_letter needs a kafka source"),
        "{e}"
    );
    let e = errors(&format!(
        "{KAFKA}sink:\n  kafka: {{ brokers: \"b:9092\", topic: in }}\n"
    ));
    assert!(e.contains("sink.kafka.topic: is the source topic"), "{e}");
}

#[test]
fn custom_steps_parse_before_and_after_state() {
    let spec = parse_spec(&with_pipeline(
        "  - custom: { name: redact, version: 1, config: { column: user, keep: 2 } }\n  - key_by: key\n  \
         - aggregate: { n: {} }\n  - custom: { name: enrich, version: \"2.1\" }\n",
    ))
    .unwrap();
    let Some(Kind::Custom(c)) = &spec.pipeline[0].kind else {
        panic!("custom")
    };
    assert_eq!((c.name.as_str(), c.version.as_str()), ("redact", "1"));
    let config: Vec<(&str, &str)> = c
        .config
        .iter()
        .map(|p| (p.key.as_str(), p.value.as_str()))
        .collect();
    assert_eq!(config, vec![("column", "user"), ("keep", "2")]);
    assert_eq!(
        super::custom_operators(&spec),
        vec!["enrich@2.1".to_string(), "redact@1".to_string()]
    );
    let rendered = super::to_yaml(&spec);
    assert_eq!(parse_spec(&rendered).unwrap(), spec, "{rendered}");
}

#[test]
fn custom_step_errors_name_their_field() {
    let e = errors(&with_pipeline(
        "  - custom: { name: \"red act\", version: \"1@2\" }\n",
    ));
    assert!(
        e.contains("pipeline[0].custom.name: must be 1-128 characters"),
        "{e}"
    );
    assert!(
        e.contains("pipeline[0].custom.version: must be 1-128 characters"),
        "{e}"
    );
    let e = errors(&with_pipeline(
        "  - custom: { name: redact, version: 1, config: { k: [1] } }\n",
    ));
    assert!(
        e.contains("pipeline[0].custom.config.k: must be a string, number or boolean"),
        "{e}"
    );
    let e = errors(&with_pipeline(
        "  - key_by: key\n  - custom: { name: redact, version: 1 }\n  - aggregate: { n: {} }\n",
    ));
    assert!(
        e.contains("pipeline[1].custom: a custom step goes before key_by or after aggregate"),
        "{e}"
    );
    let e = errors(&with_pipeline("  - custom: { name: redact }\n"));
    assert!(e.contains("missing field `version`"), "{e}");
}

/// A spec with one lookup step adding `fields`, with `more` after them.
fn lookup(fields: &str, more: &str) -> String {
    with_pipeline(&format!(
        "  - lookup: {{ redis: {{ url: \"redis://127.0.0.1:6379\", key: key, fields: {{ {fields} }} }}{more} }}\n"
    ))
}

/// `n` lookup fields `f0: string, f1: string, ...`.
fn lookup_fields(n: usize) -> String {
    (0..n)
        .map(|i| format!("f{i}: string"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn lookup_steps_parse_with_defaults() {
    let spec = parse_spec(&with_pipeline(
        "  - lookup:\n      redis: { url: \"redis://:${env:REDIS_PASSWORD}@127.0.0.1:6379/0\", key: \"'user:' || key\", fields: { name: string, age: bigint, score: double, vip: boolean } }\n  \
         - key_by: key\n  - aggregate: { n: {} }\n  \
         - lookup: { redis: { url: \"redis://h\", key: key, fields: { label: string }, hash: false }, cache: {}, on_missing: skip }\n  \
         - lookup: { redis: { url: \"redis://h\", key: key, fields: { other: string } }, cache: { ttl: 5s, max_entries: 10 }, on_missing: fail }\n  \
         - lookup: { redis: { url: \"redis://h\", key: key, fields: { third: string } }, on_missing: null }\n",
    ))
    .unwrap();
    let Some(Kind::Lookup(l)) = &spec.pipeline[0].kind else {
        panic!("lookup")
    };
    let r = l.redis.as_ref().unwrap();
    assert_eq!(r.key, "'user:' || key");
    assert_eq!(r.layout, pb::RedisLayout::Hash as i32);
    let fields: Vec<(&str, i32)> = r
        .fields
        .iter()
        .map(|f| (f.name.as_str(), f.r#type))
        .collect();
    assert_eq!(
        fields,
        [
            ("name", pb::FieldType::String as i32),
            ("age", pb::FieldType::Bigint as i32),
            ("score", pb::FieldType::Double as i32),
            ("vip", pb::FieldType::Boolean as i32)
        ]
    );
    assert_eq!(l.cache, None, "no cache unless asked for");
    assert_eq!(l.on_missing, pb::LookupOnMissing::Null as i32);
    assert!(!l.snapshot);
    let Some(Kind::Lookup(l)) = &spec.pipeline[3].kind else {
        panic!("lookup")
    };
    assert_eq!(
        l.redis.as_ref().unwrap().layout,
        pb::RedisLayout::Json as i32
    );
    let cache = l.cache.unwrap();
    assert_eq!((cache.ttl_ms, cache.max_entries), (60_000, 100_000));
    assert_eq!(l.on_missing, pb::LookupOnMissing::Skip as i32);
    let Some(Kind::Lookup(l)) = &spec.pipeline[4].kind else {
        panic!("lookup")
    };
    let cache = l.cache.unwrap();
    assert_eq!((cache.ttl_ms, cache.max_entries), (5_000, 10));
    assert_eq!(l.on_missing, pb::LookupOnMissing::Fail as i32);
    let Some(Kind::Lookup(l)) = &spec.pipeline[5].kind else {
        panic!("lookup")
    };
    assert_eq!(l.on_missing, pb::LookupOnMissing::Null as i32);
    let rendered = super::to_yaml(&spec);
    assert_eq!(parse_spec(&rendered).unwrap(), spec, "{rendered}");
}

#[test]
fn lookup_errors_name_their_field() {
    let e = errors(&lookup("", ""));
    assert!(
        e.contains("pipeline[0].lookup.redis.fields: must name at least one field"),
        "{e}"
    );
    let e = errors(&lookup("a: text, b: [1]", ""));
    assert!(
        e.contains("pipeline[0].lookup.redis.fields.a: unknown type"),
        "{e}"
    );
    assert!(e.contains("pipeline[0].lookup.redis.fields.b"), "{e}");
    let e = errors(&lookup("a: string", ", cache: { ttl: 0s, max_entries: 0 }"));
    assert!(
        e.contains("pipeline[0].lookup.cache.ttl: must be positive"),
        "{e}"
    );
    assert!(
        e.contains("pipeline[0].lookup.cache.max_entries: must be at least 1"),
        "{e}"
    );
    let e = errors(&lookup("a: string", ", cache: { ttl: soon }"));
    assert!(e.contains("pipeline[0].lookup.cache.ttl"), "{e}");
    let e = errors(&lookup("a: string", ", on_missing: maybe"));
    assert!(e.contains("unknown variant `maybe`"), "{e}");
    let e = errors(&lookup("a: string", ", colour: red"));
    assert!(e.contains("unknown field `colour`"), "{e}");
    let e = errors(&lookup("a: string", ", snapshot: true"));
    assert!(
        e.contains("pipeline[0].lookup.snapshot: not supported yet"),
        "{e}"
    );
    let e = errors(&with_pipeline(
        "  - lookup: { redis: { url: \"http://h\", key: \" \", fields: { a: string } } }\n",
    ));
    assert!(
        e.contains("pipeline[0].lookup.redis.url: must start with redis://"),
        "{e}"
    );
    assert!(
        e.contains("pipeline[0].lookup.redis.key: must be an SQL expression"),
        "{e}"
    );
    let e = errors(&with_pipeline(
        "  - lookup: { redis: { url: \"redis://:${env:X@h\", key: k, fields: { a: string } } }\n",
    ));
    assert!(
        e.contains("pipeline[0].lookup.redis.url: unclosed reference"),
        "{e}"
    );
    let e = errors(&with_pipeline(
        "  - key_by: key\n  - lookup: { redis: { url: \"redis://h\", key: key, fields: { a: string } } }\n  - aggregate: { n: {} }\n",
    ));
    assert!(
        e.contains("pipeline[1].lookup: a lookup step goes before key_by or after aggregate"),
        "{e}"
    );
    // Duplicates arrive only from the wire: a YAML mapping has unique keys.
    let mut spec = parse_spec(&lookup("a: string", "")).unwrap();
    let Some(Kind::Lookup(l)) = &mut spec.pipeline[0].kind else {
        panic!("lookup")
    };
    let r = l.redis.as_mut().unwrap();
    r.fields.push(r.fields[0].clone());
    r.layout = 7;
    l.on_missing = 9;
    let e = super::validate(&spec).unwrap_err().to_string();
    assert!(
        e.contains("pipeline[0].lookup.redis.fields.a: duplicate field"),
        "{e}"
    );
    assert!(
        e.contains("pipeline[0].lookup.redis.hash: unknown value layout"),
        "{e}"
    );
    assert!(
        e.contains("pipeline[0].lookup.on_missing: must be null, skip or fail"),
        "{e}"
    );
    spec.pipeline[0].kind = Some(Kind::Lookup(pb::LookupStep::default()));
    let e = super::validate(&spec).unwrap_err().to_string();
    assert!(
        e.contains("pipeline[0].lookup: missing: give the store"),
        "{e}"
    );
}

/// One rule for job names: a name is always a single visible path
/// component, so no job can name `.`, `..`, a hidden directory or a path.
#[test]
fn job_names_are_single_visible_path_components() {
    for ok in [
        "a",
        "clicks-per-user",
        "job_1.v2",
        "9",
        &"x".repeat(MAX_JOB_NAME),
    ] {
        assert_eq!(check_job_name(ok), Ok(()), "{ok:?}");
    }
    for bad in [
        "",
        ".",
        "..",
        ".hidden",
        "-flag",
        "_x",
        "a/b",
        "../etc",
        "a\\b",
        "a b",
        "é",
        &"x".repeat(MAX_JOB_NAME + 1),
    ] {
        let e = check_job_name(bad).unwrap_err();
        assert!(
            e.contains("starting with a letter or digit"),
            "{bad:?}: {e}"
        );
    }
    // The spec's name goes through the same rule.
    let e = parse_spec(&SPEC_WITH_NAME.replace("NAME", "..")).unwrap_err();
    assert!(e.to_string().contains("name: must be 1-128"), "{e}");
}

const SPEC_WITH_NAME: &str = "name: \"NAME\"\nsource:\n  generator: {}\nsink:\n  stdout: {}\n";

/// Every limit of a spec is accepted at its value and refused one past it,
/// with an error naming the limit.
#[test]
fn limits_hold_at_the_limit_and_refuse_one_past_it() {
    use super::validate::limits::*;
    let generator = |fields: &str| {
        format!("name: j\nsource:\n  generator: {{ {fields} }}\nsink:\n  stdout: {{}}\n")
    };
    let window = |size: u64, slide: u64| {
        format!(
            "{BASE}pipeline:\n  - key_by: key\n  - window: {{ size: {size}s, slide: {slide}s, time: ts }}\n  - aggregate: {{ n: {{}} }}\n"
        )
    };
    let kafka = |n: u64| {
        format!("name: j\nsource:\n  kafka: {{ brokers: b:9092, topic: t, format: text, max_records_per_partition: {n} }}\nsink:\n  stdout: {{}}\n")
    };
    let cases: Vec<(String, String, &str)> = vec![
        (
            generator(&format!("keys: {MAX_GENERATOR_KEYS}")),
            generator(&format!("keys: {}", MAX_GENERATOR_KEYS + 1)),
            "max_generator_keys",
        ),
        (
            generator(&format!(
                "max_records_per_partition: {MAX_RECORDS_PER_PARTITION}"
            )),
            generator(&format!(
                "max_records_per_partition: {}",
                MAX_RECORDS_PER_PARTITION + 1
            )),
            "max_records_per_partition",
        ),
        (
            kafka(MAX_RECORDS_PER_PARTITION),
            kafka(MAX_RECORDS_PER_PARTITION + 1),
            "max_records_per_partition",
        ),
        (
            generator(&format!(
                "max_bytes_per_partition: {MAX_BYTES_PER_PARTITION}"
            )),
            generator(&format!(
                "max_bytes_per_partition: {}",
                MAX_BYTES_PER_PARTITION + 1
            )),
            "max_bytes_per_partition",
        ),
        (
            format!("checkpoint_every: {MAX_CHECKPOINT_EVERY}\n{BASE}"),
            format!("checkpoint_every: {}\n{BASE}", MAX_CHECKPOINT_EVERY + 1),
            "max_checkpoint_every",
        ),
        (
            window(MAX_WINDOWS_PER_RECORD, 1),
            window(MAX_WINDOWS_PER_RECORD + 1, 1),
            "max_windows_per_record",
        ),
        (
            format!("state_partitions: {MAX_STATE_PARTITIONS}\n{BASE}"),
            format!("state_partitions: {}\n{BASE}", MAX_STATE_PARTITIONS + 1),
            "between 1 and 4096",
        ),
        (
            lookup(&lookup_fields(MAX_LOOKUP_FIELDS), ""),
            lookup(&lookup_fields(MAX_LOOKUP_FIELDS + 1), ""),
            "max_lookup_fields",
        ),
        (
            lookup(
                "v: string",
                &format!(", cache: {{ max_entries: {MAX_LOOKUP_CACHE_ENTRIES} }}"),
            ),
            lookup(
                "v: string",
                &format!(
                    ", cache: {{ max_entries: {} }}",
                    MAX_LOOKUP_CACHE_ENTRIES + 1
                ),
            ),
            "max_lookup_cache_entries",
        ),
        (
            with_pipeline(&"  - filter: value > 1\n".repeat(MAX_PIPELINE_STEPS)),
            with_pipeline(&"  - filter: value > 1\n".repeat(MAX_PIPELINE_STEPS + 1)),
            "max_pipeline_steps",
        ),
    ];
    for (at, past, name) in cases {
        parse_spec(&at).unwrap_or_else(|e| panic!("{name} at the limit: {e}\n{at}"));
        let e = parse_spec(&past).unwrap_err().to_string();
        assert!(e.contains(name), "{name}: {e}");
    }
}

/// A spec over the size limit is refused with its size and the limit.
#[test]
fn a_spec_over_max_spec_bytes_is_refused() {
    use super::validate::limits::MAX_SPEC_BYTES;
    let mut spec = parse_spec(BASE).unwrap();
    let filler = |n: usize| pb::Step {
        kind: Some(Kind::Filter(format!("value > {}", "1".repeat(n)))),
    };
    spec.pipeline = vec![filler(MAX_SPEC_BYTES / 2)];
    assert_eq!(super::validate(&spec).map_err(|e| e.to_string()), Ok(()));
    spec.pipeline = vec![filler(MAX_SPEC_BYTES)];
    let e = super::validate(&spec).unwrap_err().to_string();
    assert!(
        e.contains("exceeds the 1048576-byte (1 MiB) limit (max_spec_bytes)"),
        "{e}"
    );
}

mod properties {
    //! Hostile and random specs: parsing and validating one gives a spec or
    //! a clear error naming a field, never a panic.
    use super::*;
    use proptest::prelude::*;

    /// Lines of real specs, recombined, with values mutated.
    fn line() -> impl Strategy<Value = String> {
        let fixed = prop::sample::select(vec![
            "name: j",
            "name: ..",
            "batch_interval: 1s",
            "batch_interval: 0ms",
            "batch_interval: 99999999999h",
            "checkpoint_every: 0",
            "state_partitions: 4096",
            "state_partitions: 4294967295",
            "on_error: dead_letter",
            "dead_letter: { topic: bad }",
            "source:",
            "  generator: { partitions: 2, keys: 10, total: 100 }",
            "  generator: { partitions: 0, keys: 18446744073709551615 }",
            "  kafka: { brokers: b:1, topic: t, format: json, schema: { a: bigint } }",
            "  kafka: { brokers: '', topic: weir-commits, start: { offsets: { 0: 1 } } }",
            "pipeline:",
            "  - filter: value > 1",
            "  - key_by: key",
            "  - window: { size: 10s, slide: 1ms, time: ts }",
            "  - aggregate: { n: {}, s: { sum: value } }",
            "  - flat_map: { field: text, separator: '', as: w }",
            "  - custom: { name: x, version: 1, config: { a: [1, 2] } }",
            "  - map: { a: 'value * 2' }",
            "sink:",
            "  stdout: {}",
            "  file: { path: '', format: csv }",
            "  kafka: { brokers: b:1, topic: t, properties: { transactional.id: x } }",
            "- - - -",
            "{",
            "&anchor [*anchor]",
            "!!binary aGk=",
        ]);
        prop_oneof![
            4 => fixed.prop_map(str::to_string),
            1 => "[ -~]{0,40}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1024))]

        #[test]
        fn any_spec_parses_or_names_its_problem(lines in prop::collection::vec(line(), 0..24)) {
            let text = lines.join("\n");
            if let Err(e) = parse_spec(&text) {
                prop_assert!(!e.to_string().is_empty());
            }
        }

        #[test]
        fn any_bytes_parse_or_err(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_spec(&String::from_utf8_lossy(&bytes));
        }
    }
}

/// `max_bytes_per_partition` takes an integer or a size with a unit, is
/// left at 0 (the default, so existing specs keep their fingerprint) when
/// absent, refuses 0 and bad units, and renders back to the same spec.
#[test]
fn bytes_per_partition_reads_sizes() {
    let kafka = |v: &str| {
        format!("name: j\nsource:\n  kafka: {{ brokers: b:9092, topic: t, format: text{v} }}\nsink:\n  stdout: {{}}\n")
    };
    let bytes = |spec: &pb::JobSpec| match spec.source.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(pb::source::Kind::Kafka(k)) => k.max_bytes_per_partition,
        _ => panic!("kafka"),
    };
    let absent = parse_spec(&kafka("")).unwrap();
    assert_eq!(bytes(&absent), 0);
    assert_eq!(
        super::bytes_per_partition(absent.source.as_ref().unwrap()),
        super::limits::DEFAULT_MAX_BYTES_PER_PARTITION
    );
    for (text, want) in [("4096", 4096), ("\"64MiB\"", 64 << 20), ("2GiB", 2 << 30)] {
        let spec = parse_spec(&kafka(&format!(", max_bytes_per_partition: {text}"))).unwrap();
        assert_eq!(bytes(&spec), want, "{text}");
        assert_eq!(
            super::bytes_per_partition(spec.source.as_ref().unwrap()),
            want
        );
        let rendered = super::to_yaml(&spec);
        assert_eq!(parse_spec(&rendered).unwrap(), spec, "{rendered}");
    }
    for (text, message) in [
        ("0", "must be at least 1 byte"),
        ("12 furlongs", "unknown size unit"),
        ("[1]", "expected a size"),
    ] {
        let e = errors(&kafka(&format!(", max_bytes_per_partition: {text}")));
        assert!(
            e.contains("source.kafka.max_bytes_per_partition") && e.contains(message),
            "{text}: {e}"
        );
    }
}

/// `report_group` is a plain group id, kept as written and rendered back.
#[test]
fn report_group_is_a_group_id() {
    let kafka = |g: &str| {
        format!("name: j\nsource:\n  kafka: {{ brokers: b:9092, topic: t, format: text, report_group: {g} }}\nsink:\n  stdout: {{}}\n")
    };
    let spec = parse_spec(&kafka("weir.monitor-clicks_1")).unwrap();
    match spec.source.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(pb::source::Kind::Kafka(k)) => assert_eq!(k.report_group, "weir.monitor-clicks_1"),
        _ => panic!("kafka"),
    }
    let rendered = super::to_yaml(&spec);
    assert_eq!(parse_spec(&rendered).unwrap(), spec, "{rendered}");
    let e = errors(&kafka("\"a group\""));
    assert!(
        e.contains("source.kafka.report_group") && e.contains("not a group id"),
        "{e}"
    );
    let e = errors(&kafka(&"g".repeat(250)));
    assert!(e.contains("source.kafka.report_group"), "{e}");
}

/// The postgres sink: defaults to an upsert, names checked as SQL
/// identifiers, an upsert needs a key among the columns written, and the
/// spec renders back to itself.
#[test]
fn postgres_sinks_parse_validate_and_render() {
    let sink = |body: &str| {
        format!("name: j\nsource:\n  generator: {{}}\nsink:\n  postgres: {{ {body} }}\n")
    };
    let spec = parse_spec(&sink(
        "url: \"${env:PG}\", table: analytics.counts, key: [key], columns: [key, count]",
    ))
    .unwrap();
    match spec.sink.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(pb::sink::Kind::Postgres(p)) => {
            assert_eq!(p.mode, pb::PostgresMode::Upsert as i32);
            assert_eq!(
                (p.table.as_str(), p.key.len(), p.columns.len()),
                ("analytics.counts", 1, 2)
            );
        }
        _ => panic!("postgres"),
    }
    let rendered = super::to_yaml(&spec);
    assert_eq!(parse_spec(&rendered).unwrap(), spec, "{rendered}");
    for (body, path, message) in [
        (
            "url: \"mysql://x\", table: t, key: [k]",
            "sink.postgres.url",
            "must be postgres://",
        ),
        (
            "url: \"postgres://h/d\", table: \"Bad-Name\", key: [k]",
            "sink.postgres.table",
            "is not a table name",
        ),
        (
            "url: \"postgres://h/d\", table: a.b.c, key: [k]",
            "sink.postgres.table",
            "is not a table name",
        ),
        (
            "url: \"postgres://h/d\", table: t",
            "sink.postgres.key",
            "an upsert needs the key columns",
        ),
        (
            "url: \"postgres://h/d\", table: t, key: [\"Key\"]",
            "sink.postgres.key[0]",
            "is not a column name",
        ),
        (
            "url: \"postgres://h/d\", table: t, key: [k], columns: [a]",
            "sink.postgres.key[0]",
            "must be one of the columns written",
        ),
    ] {
        let e = errors(&sink(body));
        assert!(e.contains(path) && e.contains(message), "{body}: {e}");
    }
    assert!(parse_spec(&sink("url: \"postgres://h/d\", table: t, mode: append")).is_ok());
}

/// The hbase sink: the gateway's HOST:PORT, HBase table and family names,
/// a row key expression, and the spec renders back to itself.
#[test]
fn hbase_sinks_parse_validate_and_render() {
    let sink =
        |body: &str| format!("name: j\nsource:\n  generator: {{}}\nsink:\n  hbase: {{ {body} }}\n");
    let spec = parse_spec(&sink(
        "thrift: \"hbase-1.example:9090\", table: \"weir:counts\", family: f, row_key: \"concat(key, '#', text)\"",
    ))
    .unwrap();
    match spec.sink.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(pb::sink::Kind::Hbase(h)) => {
            assert_eq!(
                (
                    h.thrift.as_str(),
                    h.table.as_str(),
                    h.family.as_str(),
                    h.row_key.as_str()
                ),
                (
                    "hbase-1.example:9090",
                    "weir:counts",
                    "f",
                    "concat(key, '#', text)"
                )
            );
        }
        _ => panic!("hbase"),
    }
    let rendered = super::to_yaml(&spec);
    assert_eq!(parse_spec(&rendered).unwrap(), spec, "{rendered}");
    assert!(parse_spec(&sink(
        "thrift: \"[::1]:9090\", table: t, family: f, row_key: k"
    ))
    .is_ok());
    for (body, path, message) in [
        (
            "thrift: hbase, table: t, family: f, row_key: k",
            "sink.hbase.thrift",
            "HOST:PORT",
        ),
        (
            "thrift: \"h:0\", table: t, family: f, row_key: k",
            "sink.hbase.thrift",
            "HOST:PORT",
        ),
        (
            "thrift: \"h:9090\", table: \"a b\", family: f, row_key: k",
            "sink.hbase.table",
            "is not an HBase table name",
        ),
        (
            "thrift: \"h:9090\", table: \"a:b:c\", family: f, row_key: k",
            "sink.hbase.table",
            "is not an HBase table name",
        ),
        (
            "thrift: \"h:9090\", table: t, family: \"f:x\", row_key: k",
            "sink.hbase.family",
            "is not a column family name",
        ),
        (
            "thrift: \"h:9090\", table: t, family: f, row_key: \" \"",
            "sink.hbase.row_key",
            "must not be empty",
        ),
    ] {
        let e = errors(&sink(body));
        assert!(e.contains(path) && e.contains(message), "{body}: {e}");
    }
    assert!(errors(&sink("thrift: \"h:9090\", table: t, family: f")).contains("row_key"));
}

#[test]
fn a_json_field_may_not_take_a_metadata_column_name() {
    let e = parse_spec(
        "name: t\nsource:\n  kafka: { brokers: \"b:9092\", topic: t, schema: { kafka_offset: bigint } }\n\
         sink:\n  stdout: {}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("source.kafka.schema.kafka_offset: is the name of a record metadata column"),
        "{e}"
    );
}

#[test]
fn a_csv_source_needs_its_schema() {
    let e = parse_spec(
        "name: t\nsource:\n  kafka: { brokers: \"b:9092\", topic: t, format: csv }\nsink:\n  stdout: {}\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("source.kafka.schema: format csv (all its fields, in order) needs"),
        "{e}"
    );
    parse_spec(
        "name: t\nsource:\n  kafka: { brokers: \"b:9092\", topic: t, format: csv, schema: { a: string, n: bigint } }\n\
         sink:\n  stdout: {}\n",
    )
    .unwrap();
}
