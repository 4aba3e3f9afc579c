//! The YAML form of a job spec, exactly as users write it.
//!
//! Unknown fields are errors. Conversion into the protobuf [`JobSpec`]
//! happens in [`super::validate`], which also checks every value.
//!
//! [`JobSpec`]: crate::pb::JobSpec

use serde::Deserialize;

/// A job spec file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpecYaml {
    pub name: String,
    #[serde(default)]
    pub batch_interval: Option<String>,
    #[serde(default)]
    pub checkpoint_every: Option<u32>,
    #[serde(default)]
    pub state_partitions: Option<u32>,
    #[serde(default)]
    pub on_error: Option<ErrorPolicyYaml>,
    #[serde(default)]
    pub dead_letter: Option<DeadLetterYaml>,
    // Enums are written as single-key maps (`generator: {...}`), not YAML tags.
    #[serde(with = "serde_yaml_ng::with::singleton_map")]
    pub source: SourceYaml,
    #[serde(default, with = "serde_yaml_ng::with::singleton_map_recursive")]
    pub pipeline: Vec<StepYaml>,
    #[serde(with = "serde_yaml_ng::with::singleton_map")]
    pub sink: SinkYaml,
}

/// What to do with a record that fails to decode or evaluate.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum ErrorPolicyYaml {
    Fail,
    Skip,
    DeadLetter,
}

/// `dead_letter: { topic, brokers }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterYaml {
    pub topic: String,
    #[serde(default)]
    pub brokers: Option<String>,
}

/// `source:` — exactly one kind.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceYaml {
    Generator(GeneratorYaml),
    Kafka(KafkaSourceYaml),
}

/// `source.kafka`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceYaml {
    pub brokers: String,
    pub topic: String,
    #[serde(default, with = "serde_yaml_ng::with::singleton_map")]
    pub start: Option<KafkaStartYaml>,
    #[serde(default)]
    pub max_records_per_partition: Option<u64>,
    /// A byte size: an integer or text such as `512MiB`.
    #[serde(default)]
    pub max_bytes_per_partition: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    pub format: Option<KafkaFormatYaml>,
    /// `field: type`, in order (a mapping keeps the order written).
    #[serde(default)]
    pub schema: Option<serde_yaml_ng::Mapping>,
    #[serde(default)]
    pub on_missing: Option<OnMissingYaml>,
    #[serde(default)]
    pub properties: Option<std::collections::BTreeMap<String, serde_yaml_ng::Value>>,
    #[serde(default)]
    pub report_group: Option<String>,
}

/// `start: earliest | latest | {offsets: {p: o}} | {timestamp_ms: t}`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum KafkaStartYaml {
    Earliest,
    Latest,
    Offsets(std::collections::BTreeMap<u32, u64>),
    TimestampMs(i64),
}

/// `format: json | text | raw`.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum KafkaFormatYaml {
    Json,
    Csv,
    Text,
    Raw,
}

/// `on_missing: fail | skip_to_earliest`.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum OnMissingYaml {
    Fail,
    SkipToEarliest,
}

/// `source.generator`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeneratorYaml {
    #[serde(default)]
    pub partitions: Option<u32>,
    #[serde(default)]
    pub keys: Option<u64>,
    #[serde(default)]
    pub rate: Option<u64>,
    #[serde(default)]
    pub total: Option<u64>,
    #[serde(default)]
    pub seed: Option<u64>,
    #[serde(default)]
    pub max_records_per_partition: Option<u64>,
    /// A byte size: an integer or text such as `512MiB`.
    #[serde(default)]
    pub max_bytes_per_partition: Option<serde_yaml_ng::Value>,
    #[serde(default)]
    pub event_time_rate: Option<u64>,
}

/// One `pipeline:` step.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StepYaml {
    Filter(String),
    Map(serde_yaml_ng::Mapping),
    FlatMap(FlatMapYaml),
    KeyBy(String),
    Aggregate(serde_yaml_ng::Mapping),
    Window(WindowYaml),
    Custom(CustomYaml),
    Lookup(LookupYaml),
}

/// `lookup: { redis, cache, on_missing, snapshot }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupYaml {
    pub redis: RedisLookupYaml,
    #[serde(default)]
    pub cache: Option<LookupCacheYaml>,
    /// `null` (also the YAML null, the default), `skip` or `fail`.
    #[serde(default)]
    pub on_missing: Option<LookupOnMissingYaml>,
    #[serde(default)]
    pub snapshot: Option<bool>,
}

/// `lookup.redis: { url, key, fields, hash }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisLookupYaml {
    pub url: String,
    pub key: String,
    /// `name: type`, in order (a mapping keeps the order written).
    pub fields: serde_yaml_ng::Mapping,
    /// `true` (the default): each key is a hash; `false`: a string holding
    /// a JSON object.
    #[serde(default)]
    pub hash: Option<bool>,
}

/// `lookup.cache: { ttl, max_entries }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupCacheYaml {
    #[serde(default)]
    pub ttl: Option<String>,
    #[serde(default)]
    pub max_entries: Option<u64>,
}

/// `lookup.on_missing: null | skip | fail`.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum LookupOnMissingYaml {
    Null,
    Skip,
    Fail,
}

/// `custom: { name, version, config }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomYaml {
    pub name: String,
    /// A string; a number (`version: 1`) is read as its text.
    pub version: serde_yaml_ng::Value,
    #[serde(default)]
    pub config: Option<std::collections::BTreeMap<String, serde_yaml_ng::Value>>,
}

/// `flat_map: { field, separator, as }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlatMapYaml {
    pub field: String,
    #[serde(default)]
    pub separator: Option<String>,
    #[serde(default, rename = "as")]
    pub as_field: Option<String>,
}

/// `window: { size, slide, time, watermark }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowYaml {
    pub size: String,
    #[serde(default)]
    pub slide: Option<String>,
    pub time: String,
    #[serde(default)]
    pub watermark: Option<String>,
}

/// `sink:` — exactly one kind.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SinkYaml {
    Noop(EmptyYaml),
    Stdout(EmptyYaml),
    File(FileSinkYaml),
    Kafka(KafkaSinkYaml),
    Postgres(PostgresSinkYaml),
    Hbase(HbaseSinkYaml),
}

/// `sink.hbase`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HbaseSinkYaml {
    pub thrift: String,
    pub table: String,
    pub family: String,
    pub row_key: String,
}

/// `sink.postgres`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkYaml {
    pub url: String,
    pub table: String,
    #[serde(default)]
    pub key: Vec<String>,
    #[serde(default)]
    pub mode: Option<PostgresModeYaml>,
    #[serde(default)]
    pub columns: Vec<String>,
}

/// `mode: upsert | append`.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum PostgresModeYaml {
    Upsert,
    Append,
}

/// `sink.kafka`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkYaml {
    pub brokers: String,
    pub topic: String,
    #[serde(default)]
    pub properties: Option<std::collections::BTreeMap<String, serde_yaml_ng::Value>>,
}

/// `{}` for sinks without options.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct EmptyYaml {}

/// `sink.file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkYaml {
    pub path: String,
    #[serde(default)]
    pub format: Option<String>,
}
