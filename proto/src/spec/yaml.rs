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
    // Enums are written as single-key maps (`generator: {...}`), not YAML tags.
    #[serde(with = "serde_yaml::with::singleton_map")]
    pub source: SourceYaml,
    #[serde(default, with = "serde_yaml::with::singleton_map_recursive")]
    pub pipeline: Vec<StepYaml>,
    #[serde(with = "serde_yaml::with::singleton_map")]
    pub sink: SinkYaml,
}

/// What to do with a record that fails to decode or evaluate.
#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
pub enum ErrorPolicyYaml {
    Fail,
    Skip,
}

/// `source:` — exactly one kind.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceYaml {
    Generator(GeneratorYaml),
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
    #[serde(default)]
    pub event_time_rate: Option<u64>,
}

/// One `pipeline:` step.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StepYaml {
    Filter(String),
    Map(serde_yaml::Mapping),
    FlatMap(FlatMapYaml),
    KeyBy(String),
    Aggregate(serde_yaml::Mapping),
    Window(WindowYaml),
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
