//! YAML → protobuf conversion and the semantic checks of a job spec.

use super::yaml::PostgresModeYaml;
use super::yaml::{
    CustomYaml, ErrorPolicyYaml, FlatMapYaml, GeneratorYaml, JobSpecYaml, KafkaFormatYaml,
    KafkaSinkYaml, KafkaSourceYaml, KafkaStartYaml, OnMissingYaml, SinkYaml, SourceYaml, StepYaml,
    WindowYaml,
};
use super::{format_duration_ms, parse_duration_ms, SpecError, SpecIssue};
use crate::pb::{self, step::Kind as StepKind, AggregateFunction};
use prost::Message;

/// Layout version of stored [`pb::JobSpec`] messages written by this build.
pub const SPEC_FORMAT_VERSION: u32 = 1;

const DEFAULT_BATCH_INTERVAL_MS: u64 = 1_000;
const DEFAULT_STATE_PARTITIONS: u32 = 8;
const DEFAULT_GENERATOR_PARTITIONS: u32 = 2;
const DEFAULT_GENERATOR_KEYS: u64 = 1_000;
const DEFAULT_GENERATOR_RATE: u64 = 1_000;
const DEFAULT_MAX_RECORDS_PER_PARTITION: u64 = 1_000_000;
const DEFAULT_EVENT_TIME_RATE: u64 = 1_000_000;

/// Limits on what a spec may ask for, each named in its error. A spec is
/// data from the wire: these keep one spec from making a driver or an
/// executor allocate, loop or store without bound (docs/job-spec.md,
/// "Limits").
pub mod limits {
    /// The encoded size of a spec (`max_spec_bytes`): it is replicated in
    /// every Raft entry that carries it and shipped to every executor.
    pub const MAX_SPEC_BYTES: usize = 1 << 20;
    /// State partitions of a job (`max_state_partitions`).
    pub const MAX_STATE_PARTITIONS: u32 = 4_096;
    /// Partitions of a generator source (`max_generator_partitions`).
    pub const MAX_GENERATOR_PARTITIONS: u32 = 1_024;
    /// Distinct keys of a generator source (`max_generator_keys`): each
    /// key is a state entry.
    pub const MAX_GENERATOR_KEYS: u64 = 1_000_000_000;
    /// Records one batch reads from one source partition
    /// (`max_records_per_partition`).
    pub const MAX_RECORDS_PER_PARTITION: u64 = 100_000_000;
    /// Batches between two state checkpoints (`max_checkpoint_every`): a
    /// restore replays up to this many batches.
    pub const MAX_CHECKPOINT_EVERY: u32 = 10_000;
    /// Windows one record belongs to, `size / slide`
    /// (`max_windows_per_record`): each is a state entry per record.
    pub const MAX_WINDOWS_PER_RECORD: u64 = 1_000;
    /// Steps of a pipeline (`max_pipeline_steps`).
    pub const MAX_PIPELINE_STEPS: usize = 256;
    /// The text of one SQL expression (`max_expression_bytes`): the
    /// parser's tree, and the work of dropping it, grow with it.
    pub const MAX_EXPRESSION_BYTES: usize = 8 * 1024;
    /// Nesting of one SQL expression, e.g. the terms of `a + b + ...`
    /// (`max_expression_depth`): compiling and evaluating recurse this
    /// deep, on threads with 2 MiB stacks.
    pub const MAX_EXPRESSION_DEPTH: usize = 64;
    /// The value of one Kafka record (`max_value_bytes`): a larger one does
    /// not decode, and goes where the job's `on_error` sends bad records.
    pub const MAX_VALUE_BYTES: usize = 16 * 1024 * 1024;
    /// The bytes one batch reads from one source partition, as decoded
    /// records (`max_bytes_per_partition`): a stateless batch holds them
    /// until its sink takes them.
    pub const MAX_BYTES_PER_PARTITION: u64 = 64 << 30;
    /// The bytes per batch and source partition when a source does not set
    /// `max_bytes_per_partition`.
    pub const DEFAULT_MAX_BYTES_PER_PARTITION: u64 = 1 << 30;
    /// Columns one lookup step adds (`max_lookup_fields`): each is a value
    /// read per key and a column built per chunk.
    pub const MAX_LOOKUP_FIELDS: usize = 64;
    /// Entries of one lookup step's cache on one executor
    /// (`max_lookup_cache_entries`).
    pub const MAX_LOOKUP_CACHE_ENTRIES: u64 = 10_000_000;
}

use limits::*;

/// `{what} {value} exceeds the {limit} limit ({name})`, the one shape of a
/// limit's error.
pub(super) fn over_limit(
    what: &str,
    value: impl std::fmt::Display,
    limit: impl std::fmt::Display,
    name: &str,
) -> String {
    format!("{what} {value} exceeds the {limit} limit ({name})")
}

/// Parses a YAML job spec and validates it.
///
/// Structural problems (unknown fields, wrong types) and semantic ones
/// (a window size that is not a multiple of the batch interval) are both
/// reported with the field path.
pub fn parse_spec(yaml: &str) -> Result<pb::JobSpec, SpecError> {
    let parsed: JobSpecYaml = serde_yaml_ng::from_str(yaml).map_err(|e| {
        let path = e
            .location()
            .map(|l| format!("line {}", l.line()))
            .unwrap_or_default();
        SpecError::one(path, e.to_string())
    })?;
    let spec = convert(parsed)?;
    validate(&spec)?;
    Ok(spec)
}

/// Hex fingerprint of a spec's canonical protobuf encoding.
pub fn fingerprint(spec: &pb::JobSpec) -> String {
    // FNV-1a over the encoding: stable across builds, enough to tell specs apart.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in spec.encode_to_vec() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The problems found so far in a spec.
#[derive(Default)]
pub(super) struct Issues(Vec<SpecIssue>);

impl Issues {
    pub(super) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(SpecIssue {
            path: path.into(),
            message: message.into(),
        });
    }

    pub(super) fn duration(&mut self, path: &str, text: &str) -> u64 {
        parse_duration_ms(text).unwrap_or_else(|m| {
            self.add(path, m);
            0
        })
    }

    fn finish<T>(self, value: T) -> Result<T, SpecError> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(SpecError { issues: self.0 })
        }
    }
}

fn convert(y: JobSpecYaml) -> Result<pb::JobSpec, SpecError> {
    let mut issues = Issues::default();
    let batch_interval_ms = match &y.batch_interval {
        Some(t) => issues.duration("batch_interval", t),
        None => DEFAULT_BATCH_INTERVAL_MS,
    };
    let source = match y.source {
        SourceYaml::Generator(g) => pb::source::Kind::Generator(convert_generator(g, &mut issues)),
        SourceYaml::Kafka(k) => pb::source::Kind::Kafka(convert_kafka_source(k, &mut issues)),
    };
    let mut pipeline = Vec::with_capacity(y.pipeline.len() + 1);
    for (i, step) in y.pipeline.into_iter().enumerate() {
        let kind = convert_step(&format!("pipeline[{i}]"), step, &mut issues);
        pipeline.push(pb::Step { kind: Some(kind) });
    }
    // A window with no aggregate after it counts records per window.
    let window_last = matches!(
        pipeline.last(),
        Some(pb::Step {
            kind: Some(StepKind::Window(_))
        })
    );
    if window_last {
        pipeline.push(pb::Step {
            kind: Some(StepKind::Aggregate(pb::AggregateStep {
                aggregates: vec![pb::Aggregate {
                    name: "count".into(),
                    function: AggregateFunction::Count as i32,
                    expr: String::new(),
                }],
            })),
        });
    }
    let sink = match y.sink {
        SinkYaml::Noop(_) => pb::sink::Kind::Noop(pb::NoopSink {}),
        SinkYaml::Stdout(_) => pb::sink::Kind::Stdout(pb::StdoutSink {}),
        SinkYaml::File(f) => pb::sink::Kind::File(pb::FileSink {
            path: f.path,
            format: f.format.unwrap_or_else(|| "jsonl".into()),
        }),
        SinkYaml::Kafka(KafkaSinkYaml {
            brokers,
            topic,
            properties,
        }) => pb::sink::Kind::Kafka(pb::KafkaSink {
            brokers,
            topic,
            properties: convert_properties("sink.kafka.properties", properties, &mut issues),
        }),
        SinkYaml::Postgres(p) => pb::sink::Kind::Postgres(pb::PostgresSink {
            url: p.url,
            table: p.table,
            key: p.key,
            columns: p.columns,
            mode: match p.mode.unwrap_or(PostgresModeYaml::Upsert) {
                PostgresModeYaml::Upsert => pb::PostgresMode::Upsert,
                PostgresModeYaml::Append => pb::PostgresMode::Append,
            } as i32,
        }),
        SinkYaml::Hbase(h) => pb::sink::Kind::Hbase(pb::HbaseSink {
            thrift: h.thrift,
            table: h.table,
            family: h.family,
            row_key: h.row_key,
        }),
    };
    let on_error = match y.on_error.unwrap_or(ErrorPolicyYaml::Fail) {
        ErrorPolicyYaml::Fail => pb::ErrorPolicy::Fail,
        ErrorPolicyYaml::Skip => pb::ErrorPolicy::Skip,
        ErrorPolicyYaml::DeadLetter => pb::ErrorPolicy::DeadLetter,
    };
    let dead_letter = y.dead_letter.map(|d| pb::DeadLetter {
        topic: d.topic,
        brokers: d.brokers.unwrap_or_default(),
    });
    let spec = pb::JobSpec {
        format_version: SPEC_FORMAT_VERSION,
        name: y.name,
        batch_interval_ms,
        checkpoint_every: y.checkpoint_every.unwrap_or(1),
        state_partitions: y.state_partitions.unwrap_or(DEFAULT_STATE_PARTITIONS),
        source: Some(pb::Source { kind: Some(source) }),
        pipeline,
        sink: Some(pb::Sink { kind: Some(sink) }),
        on_error: on_error as i32,
        dead_letter,
    };
    issues.finish(spec)
}

/// A `max_bytes_per_partition` as written (an integer or `512MiB`); 0,
/// the default, when absent. Its limit is checked by [`validate`].
fn convert_bytes_per_partition(
    source: &str,
    value: Option<serde_yaml_ng::Value>,
    issues: &mut Issues,
) -> u64 {
    let Some(value) = value else { return 0 };
    let path = format!("{source}.max_bytes_per_partition");
    let parsed = yaml_scalar_text(&value)
        .ok_or_else(|| "expected a size such as 64MiB or 1GiB".to_string())
        .and_then(|t| super::parse_bytes(&t));
    match parsed {
        Ok(0) => {
            issues.add(path, "must be at least 1 byte");
            0
        }
        Ok(bytes) => bytes,
        Err(message) => {
            issues.add(path, message);
            0
        }
    }
}

fn convert_generator(g: GeneratorYaml, issues: &mut Issues) -> pb::GeneratorSource {
    let rate = g.rate.unwrap_or(DEFAULT_GENERATOR_RATE);
    let default_event_rate = if rate == 0 {
        DEFAULT_EVENT_TIME_RATE
    } else {
        rate
    };
    pb::GeneratorSource {
        partitions: g.partitions.unwrap_or(DEFAULT_GENERATOR_PARTITIONS),
        keys: g.keys.unwrap_or(DEFAULT_GENERATOR_KEYS),
        rate,
        event_time_rate: g.event_time_rate.unwrap_or(default_event_rate),
        total: g.total,
        seed: g.seed.unwrap_or(0),
        max_records_per_partition: g
            .max_records_per_partition
            .unwrap_or(DEFAULT_MAX_RECORDS_PER_PARTITION),
        max_bytes_per_partition: convert_bytes_per_partition(
            "source.generator",
            g.max_bytes_per_partition,
            issues,
        ),
    }
}

fn convert_kafka_source(k: KafkaSourceYaml, issues: &mut Issues) -> pb::KafkaSource {
    use pb::kafka_start::Kind as Start;
    let p = "source.kafka";
    let start = match k.start.unwrap_or(KafkaStartYaml::Latest) {
        KafkaStartYaml::Earliest => Start::Earliest(true),
        KafkaStartYaml::Latest => Start::Latest(true),
        KafkaStartYaml::Offsets(m) => Start::Offsets(pb::StartOffsets {
            offsets: m
                .into_iter()
                .map(|(partition, offset)| pb::PartitionOffset { partition, offset })
                .collect(),
        }),
        KafkaStartYaml::TimestampMs(t) => Start::TimestampMs(t),
    };
    let format = match k.format.unwrap_or(KafkaFormatYaml::Json) {
        KafkaFormatYaml::Json => pb::KafkaFormat::Json,
        KafkaFormatYaml::Csv => pb::KafkaFormat::Csv,
        KafkaFormatYaml::Text => pb::KafkaFormat::Text,
        KafkaFormatYaml::Raw => pb::KafkaFormat::Raw,
    };
    let mut schema = Vec::new();
    for (name, ty) in k.schema.unwrap_or_default() {
        let serde_yaml_ng::Value::String(name) = name else {
            issues.add(
                format!("{p}.schema"),
                format!("field names must be strings, got {name:?}"),
            );
            continue;
        };
        let ty = match ty.as_str() {
            Some("bigint") => pb::FieldType::Bigint,
            Some("double") => pb::FieldType::Double,
            Some("string") => pb::FieldType::String,
            Some("boolean") => pb::FieldType::Boolean,
            _ => {
                issues.add(
                    format!("{p}.schema.{name}"),
                    format!("unknown type {ty:?}; use one of bigint, double, string, boolean"),
                );
                continue;
            }
        };
        schema.push(pb::SchemaField {
            name,
            r#type: ty as i32,
        });
    }
    let on_missing = match k.on_missing.unwrap_or(OnMissingYaml::Fail) {
        OnMissingYaml::Fail => pb::OnMissing::Fail,
        OnMissingYaml::SkipToEarliest => pb::OnMissing::SkipToEarliest,
    };
    pb::KafkaSource {
        brokers: k.brokers,
        topic: k.topic,
        start: Some(pb::KafkaStart { kind: Some(start) }),
        max_records_per_partition: k
            .max_records_per_partition
            .unwrap_or(DEFAULT_MAX_RECORDS_PER_PARTITION),
        format: format as i32,
        schema,
        on_missing: on_missing as i32,
        properties: convert_properties(&format!("{p}.properties"), k.properties, issues),
        max_bytes_per_partition: convert_bytes_per_partition(p, k.max_bytes_per_partition, issues),
        report_group: k.report_group.unwrap_or_default(),
    }
}

fn convert_properties(
    path: &str,
    properties: Option<std::collections::BTreeMap<String, serde_yaml_ng::Value>>,
    issues: &mut Issues,
) -> Vec<pb::Property> {
    let mut out = Vec::new();
    for (key, value) in properties.unwrap_or_default() {
        match yaml_scalar_text(&value) {
            Some(value) => out.push(pb::Property { key, value }),
            None => issues.add(
                format!("{path}.{key}"),
                "must be a string, number or boolean",
            ),
        }
    }
    out
}

fn convert_step(path: &str, step: StepYaml, issues: &mut Issues) -> StepKind {
    match step {
        StepYaml::Filter(e) => StepKind::Filter(e),
        StepYaml::KeyBy(e) => StepKind::KeyBy(e),
        StepYaml::Map(m) => {
            let mut fields = Vec::with_capacity(m.len());
            for (k, v) in m {
                match (k, v) {
                    (serde_yaml_ng::Value::String(name), v) => match yaml_scalar_text(&v) {
                        Some(expr) => fields.push(pb::Assignment { name, expr }),
                        None => issues.add(
                            format!("{path}.map.{name}"),
                            "must be an SQL expression string, e.g. \"amount * 2\"",
                        ),
                    },
                    (k, _) => issues.add(
                        format!("{path}.map"),
                        format!("field names must be strings, got {k:?}"),
                    ),
                }
            }
            StepKind::Map(pb::MapStep { fields })
        }
        StepYaml::FlatMap(FlatMapYaml {
            field,
            separator,
            as_field,
        }) => StepKind::FlatMap(pb::FlatMapStep {
            as_field: as_field.unwrap_or_else(|| field.clone()),
            field,
            separator: separator.unwrap_or_else(|| " ".into()),
        }),
        StepYaml::Aggregate(m) => {
            let mut aggregates = Vec::with_capacity(m.len());
            for (k, v) in m {
                let serde_yaml_ng::Value::String(name) = k else {
                    issues.add(format!("{path}.aggregate"), "output names must be strings");
                    continue;
                };
                match convert_aggregate(&v) {
                    Ok((function, expr)) => aggregates.push(pb::Aggregate {
                        name,
                        function: function as i32,
                        expr,
                    }),
                    Err(m) => issues.add(format!("{path}.aggregate.{name}"), m),
                }
            }
            StepKind::Aggregate(pb::AggregateStep { aggregates })
        }
        StepYaml::Custom(CustomYaml {
            name,
            version,
            config,
        }) => {
            let version = yaml_scalar_text(&version).unwrap_or_else(|| {
                issues.add(
                    format!("{path}.custom.version"),
                    "must be a string or number, e.g. \"1\"",
                );
                String::new()
            });
            StepKind::Custom(pb::CustomStep {
                name,
                version,
                config: convert_properties(&format!("{path}.custom.config"), config, issues),
            })
        }
        StepYaml::Lookup(l) => {
            StepKind::Lookup(super::lookup::convert(&format!("{path}.lookup"), l, issues))
        }
        StepYaml::Window(WindowYaml {
            size,
            slide,
            time,
            watermark,
        }) => {
            let size_ms = issues.duration(&format!("{path}.window.size"), &size);
            let slide_ms = match slide {
                Some(s) => issues.duration(&format!("{path}.window.slide"), &s),
                None => size_ms,
            };
            let watermark_ms = match watermark {
                Some(w) => issues.duration(&format!("{path}.window.watermark"), &w),
                None => 0,
            };
            StepKind::Window(pb::WindowStep {
                size_ms,
                slide_ms,
                time,
                watermark_ms,
            })
        }
    }
}

pub(super) fn yaml_scalar_text(v: &serde_yaml_ng::Value) -> Option<String> {
    match v {
        serde_yaml_ng::Value::String(s) => Some(s.clone()),
        serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
        serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

const AGGREGATE_HELP: &str =
    "expected {} (count), or one of {count: EXPR}, {sum: EXPR}, {min: EXPR}, {max: EXPR}, {avg: EXPR}";

fn convert_aggregate(v: &serde_yaml_ng::Value) -> Result<(AggregateFunction, String), String> {
    use serde_yaml_ng::Value;
    let map = match v {
        Value::Null => return Ok((AggregateFunction::Count, String::new())),
        Value::Mapping(m) => m,
        _ => return Err(AGGREGATE_HELP.into()),
    };
    if map.is_empty() {
        return Ok((AggregateFunction::Count, String::new()));
    }
    if map.len() != 1 {
        return Err(format!("exactly one function per output; {AGGREGATE_HELP}"));
    }
    let (func, arg) = map
        .iter()
        .next()
        .ok_or_else(|| AGGREGATE_HELP.to_string())?;
    let function = match func.as_str() {
        Some("count") => AggregateFunction::Count,
        Some("sum") => AggregateFunction::Sum,
        Some("min") => AggregateFunction::Min,
        Some("max") => AggregateFunction::Max,
        Some("avg") => AggregateFunction::Avg,
        _ => {
            return Err(format!(
                "unknown aggregate function {func:?}; {AGGREGATE_HELP}"
            ))
        }
    };
    let expr = match arg {
        Value::Null => String::new(),
        Value::Mapping(m) if m.is_empty() => String::new(),
        other => yaml_scalar_text(other).ok_or_else(|| AGGREGATE_HELP.to_string())?,
    };
    if expr.is_empty() && function != AggregateFunction::Count {
        return Err(format!(
            "{} needs an expression, e.g. {{{}: amount}}",
            func.as_str().unwrap_or(""),
            func.as_str().unwrap_or("")
        ));
    }
    Ok((function, expr))
}

/// Checks a spec (from YAML or from the wire) for every semantic problem.
pub fn validate(spec: &pb::JobSpec) -> Result<(), SpecError> {
    let mut issues = Issues::default();
    if spec.format_version != SPEC_FORMAT_VERSION {
        issues.add(
            "format_version",
            format!(
                "this build reads spec format {SPEC_FORMAT_VERSION}, got {}; upgrade Weir or resubmit the spec",
                spec.format_version
            ),
        );
    }
    if let Err(e) = check_job_name(&spec.name) {
        issues.add("name", e);
    }
    if spec.batch_interval_ms == 0 {
        issues.add("batch_interval", "must be positive, e.g. 1s");
    }
    let size = spec.encoded_len();
    if size > MAX_SPEC_BYTES {
        issues.add(
            "spec",
            over_limit(
                "size",
                format!("{size} bytes"),
                format!("{MAX_SPEC_BYTES}-byte (1 MiB)"),
                "max_spec_bytes",
            ),
        );
    }
    if spec.checkpoint_every == 0 {
        issues.add(
            "checkpoint_every",
            "must be at least 1 (checkpoint every batch)",
        );
    } else if spec.checkpoint_every > MAX_CHECKPOINT_EVERY {
        issues.add(
            "checkpoint_every",
            over_limit(
                "batches",
                spec.checkpoint_every,
                MAX_CHECKPOINT_EVERY,
                "max_checkpoint_every",
            ),
        );
    }
    if spec.pipeline.len() > MAX_PIPELINE_STEPS {
        issues.add(
            "pipeline",
            over_limit(
                "steps",
                spec.pipeline.len(),
                MAX_PIPELINE_STEPS,
                "max_pipeline_steps",
            ),
        );
    }
    if spec.state_partitions == 0 || spec.state_partitions > MAX_STATE_PARTITIONS {
        issues.add(
            "state_partitions",
            format!(
                "must be between 1 and {MAX_STATE_PARTITIONS}, got {}",
                spec.state_partitions
            ),
        );
    }
    match spec.source.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(pb::source::Kind::Generator(g)) => validate_generator(g, &mut issues),
        Some(pb::source::Kind::Kafka(k)) => validate_kafka_source(k, &mut issues),
        None => issues.add(
            "source",
            "missing: give exactly one source, e.g. generator: {}",
        ),
    }
    validate_pipeline(spec, &mut issues);
    match spec.sink.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(pb::sink::Kind::File(f)) => {
            if f.path.trim().is_empty() {
                issues.add("sink.file.path", "must not be empty");
            }
            if f.format != "jsonl" {
                issues.add(
                    "sink.file.format",
                    format!("only jsonl is supported, got {:?}", f.format),
                );
            }
        }
        Some(pb::sink::Kind::Postgres(pg)) => validate_postgres_sink(pg, &mut issues),
        Some(pb::sink::Kind::Hbase(h)) => validate_hbase_sink(h, &mut issues),
        Some(pb::sink::Kind::Kafka(k)) => {
            let p = "sink.kafka";
            if k.brokers.trim().is_empty() {
                issues.add(
                    format!("{p}.brokers"),
                    "must not be empty, e.g. localhost:9092",
                );
            }
            check_topic(&mut issues, &format!("{p}.topic"), &k.topic);
            check_properties(
                &mut issues,
                &format!("{p}.properties"),
                &k.properties,
                SINK_OWNED_PROPERTIES,
            );
            check_references(&mut issues, &format!("{p}.properties"), &k.properties);
            if let Some(pb::source::Kind::Kafka(s)) =
                spec.source.as_ref().and_then(|s| s.kind.as_ref())
            {
                if s.topic == k.topic && s.brokers == k.brokers {
                    issues.add(
                        format!("{p}.topic"),
                        "is the source topic: the job would read its own output",
                    );
                }
            }
        }
        Some(_) => {}
        None => issues.add("sink", "missing: give exactly one sink, e.g. stdout: {}"),
    }
    validate_error_policy(spec, &mut issues);
    issues.finish(())
}

/// The topic where the Kafka sink writes its commit markers.
pub const COMMITS_TOPIC: &str = "weir-commits";

/// Client properties Weir sets itself for the Kafka source.
const SOURCE_OWNED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "enable.auto.commit",
    "enable.partition.eof",
    "auto.offset.reset",
];

/// Client properties Weir sets itself for the Kafka sink.
const SINK_OWNED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "metadata.broker.list",
    "transactional.id",
    "enable.idempotence",
];

fn check_topic(issues: &mut Issues, path: &str, topic: &str) {
    let legal = topic
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-');
    if topic.is_empty() || topic.len() > 249 || !legal || topic == "." || topic == ".." {
        issues.add(
            path,
            format!("must be a Kafka topic name (1-249 of letters, digits, '.', '_', '-'), got {topic:?}"),
        );
    } else if topic == COMMITS_TOPIC {
        issues.add(
            path,
            format!("{COMMITS_TOPIC} is Weir's commit-marker topic; choose another"),
        );
    }
}

fn check_properties(issues: &mut Issues, path: &str, properties: &[pb::Property], owned: &[&str]) {
    let mut previous: Option<&str> = None;
    for p in properties {
        if owned.contains(&p.key.as_str()) {
            issues.add(
                format!("{path}.{}", p.key),
                "is set by Weir and cannot be overridden",
            );
        }
        if previous.is_some_and(|prev| prev >= p.key.as_str()) {
            issues.add(
                format!("{path}.{}", p.key),
                "properties must be sorted by key and unique",
            );
        }
        previous = Some(&p.key);
    }
}

/// Checks the syntax of the secret references (`${env:NAME}`,
/// `${file:PATH}`) in Kafka client properties; they are resolved only where
/// a client is created (see [`secrets`](super::secrets)).
fn check_references(issues: &mut Issues, path: &str, properties: &[pb::Property]) {
    for p in properties {
        if let Err(reason) = super::secrets::parse(&p.value) {
            issues.add(format!("{path}.{}", p.key), reason);
        }
    }
}

/// The longest SQL identifier PostgreSQL keeps (`NAMEDATALEN - 1`).
const MAX_SQL_IDENTIFIER: usize = 63;

/// Whether `name` is a plain SQL identifier: a letter or `_`, then
/// letters, digits or `_` (no quoting needed, folded to lower case by
/// PostgreSQL, so written in lower case here).
pub fn is_sql_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
        && name.len() <= MAX_SQL_IDENTIFIER
}

fn validate_postgres_sink(pg: &pb::PostgresSink, issues: &mut Issues) {
    let p = "sink.postgres";
    if let Err(reason) = super::secrets::parse(&pg.url) {
        issues.add(format!("{p}.url"), reason);
    } else if !(super::secrets::has_references(&pg.url)
        || pg.url.starts_with("postgres://")
        || pg.url.starts_with("postgresql://"))
    {
        issues.add(
            format!("{p}.url"),
            "must be postgres://USER:PASSWORD@HOST:PORT/DATABASE (or hold ${env:…}/${file:…} references)",
        );
    }
    let parts: Vec<&str> = pg.table.split('.').collect();
    if parts.len() > 2 || !parts.iter().all(|t| is_sql_identifier(t)) {
        issues.add(
            format!("{p}.table"),
            format!(
                "{:?} is not a table name: TABLE or SCHEMA.TABLE of lower-case letters, digits and '_'",
                pg.table
            ),
        );
    }
    let upsert = pg.mode != pb::PostgresMode::Append as i32;
    if upsert && pg.key.is_empty() {
        issues.add(
            format!("{p}.key"),
            "an upsert needs the key columns: key: [COLUMN, ...] (or mode: append)",
        );
    }
    for (field, names) in [("key", &pg.key), ("columns", &pg.columns)] {
        for (i, k) in names.iter().enumerate() {
            if !is_sql_identifier(k) {
                issues.add(
                    format!("{p}.{field}[{i}]"),
                    format!("{k:?} is not a column name: lower-case letters, digits and '_'"),
                );
            }
        }
    }
    if !pg.columns.is_empty() {
        for (i, k) in pg.key.iter().enumerate() {
            if !pg.columns.contains(k) {
                issues.add(
                    format!("{p}.key[{i}]"),
                    format!(
                        "{k} must be one of the columns written ({})",
                        pg.columns.join(", ")
                    ),
                );
            }
        }
    }
}

/// The columns of a Kafka record's metadata that a `json` or `text`
/// source adds to the value's (`raw` names them without the prefix).
pub const KAFKA_METADATA_COLUMNS: [&str; 6] = [
    "kafka_key",
    "kafka_timestamp",
    "kafka_partition",
    "kafka_offset",
    "kafka_topic",
    "kafka_headers",
];

fn validate_kafka_source(k: &pb::KafkaSource, issues: &mut Issues) {
    let p = "source.kafka";
    if k.brokers.trim().is_empty() {
        issues.add(
            format!("{p}.brokers"),
            "must not be empty, e.g. localhost:9092",
        );
    }
    check_topic(issues, &format!("{p}.topic"), &k.topic);
    if k.max_records_per_partition == 0 {
        issues.add(
            format!("{p}.max_records_per_partition"),
            "must be at least 1",
        );
    }
    check_records_per_partition(issues, p, k.max_records_per_partition);
    check_bytes_per_partition(issues, p, k.max_bytes_per_partition);
    if !k.report_group.is_empty() {
        check_group(issues, &format!("{p}.report_group"), &k.report_group);
    }
    match k.start.as_ref().and_then(|s| s.kind.as_ref()) {
        None => issues.add(
            format!("{p}.start"),
            "missing: earliest, latest, {offsets: {PARTITION: OFFSET}} or {timestamp_ms: MS}",
        ),
        Some(pb::kafka_start::Kind::TimestampMs(t)) if *t < 0 => issues.add(
            format!("{p}.start.timestamp_ms"),
            format!("must be milliseconds since the epoch (>= 0), got {t}"),
        ),
        Some(pb::kafka_start::Kind::Offsets(o)) if o.offsets.is_empty() => issues.add(
            format!("{p}.start.offsets"),
            "must give at least one PARTITION: OFFSET (other partitions start at earliest)",
        ),
        Some(_) => {}
    }
    let format = pb::KafkaFormat::try_from(k.format);
    match format {
        Ok(f @ (pb::KafkaFormat::Json | pb::KafkaFormat::Csv)) => {
            if k.schema.is_empty() {
                issues.add(
                    format!("{p}.schema"),
                    format!(
                        "format {} needs the fields the job reads and their types, e.g. schema: {{ user: string, amount: double }}; types are not guessed from the data (see docs/kafka.md, \"Why json needs a schema\"); format text or raw need no schema",
                        if f == pb::KafkaFormat::Csv { "csv (all its fields, in order)" } else { "json" }
                    ),
                );
            }
        }
        Ok(f) => {
            if !k.schema.is_empty() {
                issues.add(
                    format!("{p}.schema"),
                    format!(
                        "only formats json and csv take a schema; format {} has fixed columns (see docs/kafka.md)",
                        if f == pb::KafkaFormat::Text { "text" } else { "raw" }
                    ),
                );
            }
        }
        Err(_) => issues.add(format!("{p}.format"), "must be json, csv, text or raw"),
    }
    let mut seen = std::collections::HashSet::new();
    for f in &k.schema {
        if f.name.is_empty() {
            issues.add(format!("{p}.schema"), "field names must not be empty");
        } else if !seen.insert(f.name.as_str()) {
            issues.add(format!("{p}.schema.{}", f.name), "duplicate field");
        } else if KAFKA_METADATA_COLUMNS.contains(&f.name.as_str()) {
            issues.add(
                format!("{p}.schema.{}", f.name),
                "is the name of a record metadata column (kafka_key, kafka_timestamp, kafka_partition, kafka_offset, kafka_topic, kafka_headers); read the value's field under another name with a map, or use the metadata column",
            );
        }
        if pb::FieldType::try_from(f.r#type).is_err() {
            issues.add(
                format!("{p}.schema.{}", f.name),
                "unknown type; use one of bigint, double, string, boolean",
            );
        }
    }
    if pb::OnMissing::try_from(k.on_missing).is_err() {
        issues.add(
            format!("{p}.on_missing"),
            "must be fail or skip_to_earliest",
        );
    }
    check_properties(
        issues,
        &format!("{p}.properties"),
        &k.properties,
        SOURCE_OWNED_PROPERTIES,
    );
    check_references(issues, &format!("{p}.properties"), &k.properties);
}

fn validate_error_policy(spec: &pb::JobSpec, issues: &mut Issues) {
    let dead_letter = spec.on_error == pb::ErrorPolicy::DeadLetter as i32;
    match (&spec.dead_letter, dead_letter) {
        (None, true) => issues.add(
            "dead_letter",
            "on_error: dead_letter needs dead_letter: { topic: NAME }",
        ),
        (Some(_), false) => issues.add(
            "dead_letter",
            "is only used with on_error: dead_letter; remove it or set on_error: dead_letter",
        ),
        (Some(d), true) => {
            check_topic(issues, "dead_letter.topic", &d.topic);
            let kafka_source = matches!(
                spec.source.as_ref().and_then(|s| s.kind.as_ref()),
                Some(pb::source::Kind::Kafka(_))
            );
            if !kafka_source {
                issues.add(
                    "on_error",
                    "dead_letter needs a kafka source (it forwards the records' original bytes); use fail or skip",
                );
            }
        }
        (None, false) => {}
    }
    if pb::ErrorPolicy::try_from(spec.on_error).is_err() {
        issues.add("on_error", "must be fail, skip or dead_letter");
    }
}

fn validate_generator(g: &pb::GeneratorSource, issues: &mut Issues) {
    let p = "source.generator";
    if g.partitions == 0 || g.partitions > MAX_GENERATOR_PARTITIONS {
        issues.add(
            format!("{p}.partitions"),
            format!(
                "must be between 1 and {MAX_GENERATOR_PARTITIONS}, got {}",
                g.partitions
            ),
        );
    }
    if g.keys == 0 {
        issues.add(format!("{p}.keys"), "must be at least 1");
    } else if g.keys > MAX_GENERATOR_KEYS {
        issues.add(
            format!("{p}.keys"),
            over_limit("keys", g.keys, MAX_GENERATOR_KEYS, "max_generator_keys"),
        );
    }
    check_records_per_partition(issues, p, g.max_records_per_partition);
    check_bytes_per_partition(issues, p, g.max_bytes_per_partition);
    if g.event_time_rate == 0 {
        issues.add(
            format!("{p}.event_time_rate"),
            "must be at least 1 record per second",
        );
    }
    if g.max_records_per_partition == 0 {
        issues.add(
            format!("{p}.max_records_per_partition"),
            "must be at least 1",
        );
    }
}

fn validate_pipeline(spec: &pb::JobSpec, issues: &mut Issues) {
    let interval = spec.batch_interval_ms;
    let mut key_by_at: Option<usize> = None;
    let mut aggregate_at: Option<usize> = None;
    for (i, step) in spec.pipeline.iter().enumerate() {
        let path = format!("pipeline[{i}]");
        let Some(kind) = &step.kind else {
            issues.add(
                path,
                "empty step: give one of filter, map, flat_map, lookup, custom, key_by, window, aggregate",
            );
            continue;
        };
        let after_state = aggregate_at.is_some();
        match kind {
            StepKind::Filter(e) | StepKind::KeyBy(e) if e.trim().is_empty() => {
                issues.add(path.clone(), "expression must not be empty");
            }
            _ => {}
        }
        match kind {
            StepKind::Filter(_) => {}
            StepKind::Custom(c) => {
                let cp = format!("{path}.custom");
                if key_by_at.is_some() && !after_state {
                    issues.add(
                        cp.clone(),
                        "a custom step goes before key_by or after aggregate, not between them",
                    );
                }
                if let Err(m) = check_operator_name(&c.name) {
                    issues.add(format!("{cp}.name"), m);
                }
                if let Err(m) = check_operator_version(&c.version) {
                    issues.add(format!("{cp}.version"), m);
                }
                check_properties(issues, &format!("{cp}.config"), &c.config, &[]);
            }
            StepKind::Lookup(l) => {
                let lp = format!("{path}.lookup");
                if key_by_at.is_some() && !after_state {
                    issues.add(
                        lp.clone(),
                        "a lookup step goes before key_by or after aggregate, not between them",
                    );
                }
                super::lookup::validate(&lp, l, issues);
            }
            StepKind::Map(m) => {
                if m.fields.is_empty() {
                    issues.add(format!("{path}.map"), "must set at least one field");
                }
                for f in &m.fields {
                    if f.expr.trim().is_empty() {
                        issues.add(
                            format!("{path}.map.{}", f.name),
                            "expression must not be empty",
                        );
                    }
                }
            }
            StepKind::FlatMap(f) => {
                if after_state {
                    issues.add(
                        format!("{path}.flat_map"),
                        "only filter and map may follow aggregate",
                    );
                }
                if f.separator.is_empty() {
                    issues.add(format!("{path}.flat_map.separator"), "must not be empty");
                }
            }
            StepKind::KeyBy(_) => {
                if after_state {
                    issues.add(
                        format!("{path}.key_by"),
                        "only filter and map may follow aggregate",
                    );
                } else if key_by_at.is_some() {
                    issues.add(format!("{path}.key_by"), "a job has at most one key_by");
                }
                key_by_at = Some(i);
            }
            StepKind::Window(w) => {
                let wp = format!("{path}.window");
                let next_is_aggregate = matches!(
                    spec.pipeline.get(i + 1).and_then(|s| s.kind.as_ref()),
                    Some(StepKind::Aggregate(_))
                );
                if !next_is_aggregate {
                    issues.add(
                        wp.clone(),
                        "must be followed by aggregate (or be the last step)",
                    );
                }
                check_multiple(issues, &format!("{wp}.size"), w.size_ms, interval);
                check_multiple(issues, &format!("{wp}.slide"), w.slide_ms, interval);
                if w.slide_ms > w.size_ms {
                    issues.add(
                        format!("{wp}.slide"),
                        format!(
                            "must not exceed size ({}), got {}",
                            format_duration_ms(w.size_ms),
                            format_duration_ms(w.slide_ms)
                        ),
                    );
                } else if w.slide_ms > 0 && w.size_ms % w.slide_ms != 0 {
                    issues.add(
                        format!("{wp}.size"),
                        format!(
                            "must be a multiple of slide ({}), got {}",
                            format_duration_ms(w.slide_ms),
                            format_duration_ms(w.size_ms)
                        ),
                    );
                } else if w.slide_ms > 0 && w.size_ms / w.slide_ms > MAX_WINDOWS_PER_RECORD {
                    issues.add(
                        format!("{wp}.slide"),
                        over_limit(
                            "windows per record (size / slide)",
                            w.size_ms / w.slide_ms,
                            MAX_WINDOWS_PER_RECORD,
                            "max_windows_per_record",
                        ),
                    );
                }
                if w.time.trim().is_empty() {
                    issues.add(
                        format!("{wp}.time"),
                        "must name the event-time column, e.g. ts",
                    );
                }
            }
            StepKind::Aggregate(a) => {
                let ap = format!("{path}.aggregate");
                if aggregate_at.is_some() {
                    issues.add(ap.clone(), "a job has at most one aggregate");
                }
                if key_by_at.is_none() {
                    issues.add(
                        ap.clone(),
                        "needs a key_by step before it, e.g. - key_by: user",
                    );
                }
                if a.aggregates.is_empty() {
                    issues.add(
                        ap.clone(),
                        "must compute at least one value, e.g. count: {}",
                    );
                }
                let mut seen = std::collections::HashSet::new();
                for agg in &a.aggregates {
                    if !seen.insert(agg.name.as_str()) {
                        issues.add(format!("{ap}.{}", agg.name), "duplicate output name");
                    }
                    if matches!(agg.name.as_str(), "key" | "window_start" | "window_end") {
                        issues.add(
                            format!("{ap}.{}", agg.name),
                            "this output name is reserved; choose another",
                        );
                    }
                }
                aggregate_at = Some(i);
            }
        }
    }
    if let (Some(k), None) = (key_by_at, aggregate_at) {
        issues.add(
            format!("pipeline[{k}].key_by"),
            "must be followed by an aggregate or window step",
        );
    }
}

/// The longest job name (`MAX_JOB_NAME`): it names directories and
/// Kafka transactional ids.
pub const MAX_JOB_NAME: usize = 128;

/// The one rule for job names, applied wherever a name arrives (a spec, a
/// CLI argument, a gRPC request) before it names anything: 1 to
/// [`MAX_JOB_NAME`] letters, digits, `-`, `_` or `.`, starting with a
/// letter or digit. A job name is then always a single, visible path
/// component: never `.`, `..`, a hidden directory or a path.
pub fn check_job_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= MAX_JOB_NAME
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name_characters(name);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be 1-{MAX_JOB_NAME} characters of letters, digits, '-', '_' or '.', starting with a letter or digit, got {:?}",
            name.chars().take(MAX_JOB_NAME + 1).collect::<String>()
        ))
    }
}

/// Whether every character of a name is a letter, a digit, `-`, `_` or `.`.
fn name_characters(name: &str) -> bool {
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks a custom operator's name: 1-128 letters, digits, '-', '_' or '.'.
pub fn check_operator_name(name: &str) -> Result<(), String> {
    check_operator_part(name, "my_operator")
}

/// Checks a custom operator's version: 1-128 letters, digits, '-', '_' or
/// '.' (compared as text: `1` and `1.0` are different versions).
pub fn check_operator_version(version: &str) -> Result<(), String> {
    check_operator_part(version, "1")
}

fn check_operator_part(text: &str, example: &str) -> Result<(), String> {
    let ok = !text.is_empty() && text.len() <= 128 && name_characters(text);
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be 1-128 characters of letters, digits, '-', '_' or '.', e.g. {example:?}, got {text:?}"
        ))
    }
}

/// The custom operators a spec uses, as `name@version`, sorted and unique.
pub fn custom_operators(spec: &pb::JobSpec) -> Vec<String> {
    let mut ops: Vec<String> = spec
        .pipeline
        .iter()
        .filter_map(|s| match &s.kind {
            Some(StepKind::Custom(c)) => Some(operator_id(&c.name, &c.version)),
            _ => None,
        })
        .collect();
    ops.sort();
    ops.dedup();
    ops
}

/// How an operator is named in registrations and messages: `name@version`.
pub fn operator_id(name: &str, version: &str) -> String {
    format!("{name}@{version}")
}

/// The cap on one batch's range per source partition (`0` is refused
/// where the field is read).
fn check_records_per_partition(issues: &mut Issues, source: &str, value: u64) {
    if value > MAX_RECORDS_PER_PARTITION {
        issues.add(
            format!("{source}.max_records_per_partition"),
            over_limit(
                "records",
                value,
                MAX_RECORDS_PER_PARTITION,
                "max_records_per_partition",
            ),
        );
    }
}

/// A Kafka consumer group id Weir commits offsets to: 1–249 letters,
/// digits, `.`, `_` or `-`.
fn check_group(issues: &mut Issues, path: &str, group: &str) {
    let ok = group.len() <= 249
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !ok {
        issues.add(
            path,
            format!("{group:?} is not a group id: use 1–249 letters, digits, '.', '_' or '-'"),
        );
    }
}

/// The cap on the bytes one batch reads from one source partition (`0`
/// is the default).
fn check_bytes_per_partition(issues: &mut Issues, source: &str, value: u64) {
    if value > MAX_BYTES_PER_PARTITION {
        issues.add(
            format!("{source}.max_bytes_per_partition"),
            over_limit(
                "bytes",
                super::format_bytes(value),
                super::format_bytes(MAX_BYTES_PER_PARTITION),
                "max_bytes_per_partition",
            ),
        );
    }
}

/// The bytes one batch may read from one partition of `source`: its
/// `max_bytes_per_partition`, or [`DEFAULT_MAX_BYTES_PER_PARTITION`].
pub fn bytes_per_partition(source: &pb::Source) -> u64 {
    let set = match &source.kind {
        Some(pb::source::Kind::Kafka(k)) => k.max_bytes_per_partition,
        Some(pb::source::Kind::Generator(g)) => g.max_bytes_per_partition,
        None => 0,
    };
    if set == 0 {
        DEFAULT_MAX_BYTES_PER_PARTITION
    } else {
        set
    }
}

fn check_multiple(issues: &mut Issues, path: &str, value_ms: u64, interval_ms: u64) {
    if value_ms == 0 {
        issues.add(path, "must be positive");
    } else if interval_ms > 0 && value_ms % interval_ms != 0 {
        issues.add(
            path,
            format!(
                "must be a multiple of batch_interval ({}), got {}",
                format_duration_ms(interval_ms),
                format_duration_ms(value_ms)
            ),
        );
    }
}

/// The longest HBase table or family name accepted here.
const MAX_HBASE_NAME: usize = 200;

/// Whether `name` is an HBase table (or namespace) name as HBase accepts
/// it: letters, digits, `_`, `-`, `.`, not starting with `.` or `-`.
fn is_hbase_table_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HBASE_NAME
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Whether `name` is an HBase column family name: printable characters,
/// no `:`, not starting with `.`.
fn is_hbase_family(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_HBASE_NAME
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

/// Whether `addr` is `HOST:PORT` with a port from 1 to 65535.
fn is_host_port(addr: &str) -> bool {
    match addr.rsplit_once(':') {
        Some((host, port)) => {
            let host = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host);
            !host.is_empty()
                && !host.contains(char::is_whitespace)
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        }
        None => false,
    }
}

fn validate_hbase_sink(h: &pb::HbaseSink, issues: &mut Issues) {
    let p = "sink.hbase";
    if !is_host_port(&h.thrift) {
        issues.add(
            format!("{p}.thrift"),
            format!(
                "{:?} is not the Thrift gateway's HOST:PORT, e.g. 127.0.0.1:9090",
                h.thrift
            ),
        );
    }
    let (namespace, table) = match h.table.split_once(':') {
        Some((n, t)) => (Some(n), t),
        None => (None, h.table.as_str()),
    };
    if !namespace.is_none_or(is_hbase_table_name) || !is_hbase_table_name(table) {
        issues.add(
            format!("{p}.table"),
            format!(
                "{:?} is not an HBase table name: TABLE or NAMESPACE:TABLE of letters, digits, '_', '-', '.'",
                h.table
            ),
        );
    }
    if !is_hbase_family(&h.family) {
        issues.add(
            format!("{p}.family"),
            format!(
                "{:?} is not a column family name: printable characters without ':' (e.g. f)",
                h.family
            ),
        );
    }
    if h.row_key.trim().is_empty() {
        issues.add(
            format!("{p}.row_key"),
            "must not be empty: a SQL expression over the output columns, e.g. key or concat(key, '#', day)",
        );
    }
}
