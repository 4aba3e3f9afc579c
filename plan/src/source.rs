//! The schemas sources produce: every column a source of a spec can
//! produce, and the limits a source's settings must keep to be read.
//!
//! The executor's readers produce these columns, or the subset a job reads
//! (`pipeline::source_columns`), in this order.

use crate::PlanError;
use arrow_schema::{DataType, Field, Schema};
use weir_proto::pb;

use weir_proto::spec::limits::MAX_GENERATOR_KEYS;

// The generator's `key` column is dictionary-encoded with `Int32` indexes:
// the spec's limit on its keys must fit them.
const _: () = assert!(MAX_GENERATOR_KEYS <= i32::MAX as u64);

/// Every column the source of `spec` can produce; an error for a missing
/// source or settings its reader cannot serve.
pub fn full_schema(spec: &pb::JobSpec) -> Result<Schema, PlanError> {
    match spec.source.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(pb::source::Kind::Generator(g)) => {
            check_generator(g)?;
            Ok(generator_schema())
        }
        Some(pb::source::Kind::Kafka(k)) => Ok(kafka_schema(k)),
        None => Err(PlanError::new("source", "missing")),
    }
}

/// Checks a generator source's settings against what its reader can serve.
pub fn check_generator(g: &pb::GeneratorSource) -> Result<(), PlanError> {
    if g.keys > MAX_GENERATOR_KEYS {
        return Err(PlanError::new(
            "source.generator.keys",
            format!(
                "keys {} exceeds the {MAX_GENERATOR_KEYS} limit (max_generator_keys)",
                g.keys
            ),
        ));
    }
    Ok(())
}

/// Every column the generator can produce: `key` (dictionary-encoded),
/// `value`, `ts` (event time, ms) and `text`.
pub fn generator_schema() -> Schema {
    Schema::new(vec![
        Field::new(
            "key",
            DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            false,
        ),
        Field::new("value", DataType::Int64, false),
        Field::new("ts", DataType::Int64, false),
        Field::new("text", DataType::Utf8, false),
    ])
}

/// Every column a Kafka source of this spec can produce: the value's
/// columns, then the record's metadata (see [`kafka_metadata`]).
pub fn kafka_schema(source: &pb::KafkaSource) -> Schema {
    let format = pb::KafkaFormat::try_from(source.format).unwrap_or(pb::KafkaFormat::Json);
    let mut fields = match format {
        pb::KafkaFormat::Json | pb::KafkaFormat::Csv => source
            .schema
            .iter()
            .map(|f| {
                let t = pb::FieldType::try_from(f.r#type).unwrap_or(pb::FieldType::String);
                Field::new(&f.name, arrow_type(t), true)
            })
            .collect::<Vec<_>>(),
        pb::KafkaFormat::Text => vec![Field::new("value", DataType::Utf8, true)],
        pb::KafkaFormat::Raw => vec![Field::new("value", DataType::Binary, true)],
    };
    let meta = |m: &KafkaMeta| Field::new(m.column(format), m.data_type(), m.nullable());
    if format == pb::KafkaFormat::Raw {
        // The key first, as raw has always had it.
        fields.insert(0, meta(&KafkaMeta::Key));
        fields.extend(KafkaMeta::ALL[1..].iter().map(meta));
    } else {
        fields.extend(KafkaMeta::ALL.iter().map(meta));
    }
    Schema::new(fields)
}

/// One piece of a Kafka record's metadata, a column of every format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KafkaMeta {
    /// The record's key as text (invalid UTF-8 replaced); NULL without one.
    Key,
    /// The record's timestamp, ms since the Unix epoch; NULL without one.
    Timestamp,
    /// The partition.
    Partition,
    /// The offset.
    Offset,
    /// The topic.
    Topic,
    /// The headers as a JSON object of text values (`{"trace": "a1"}`; a
    /// header without a value is `null`, a repeated name keeps the last);
    /// NULL without headers.
    Headers,
}

impl KafkaMeta {
    /// Every kind, in column order.
    pub const ALL: [KafkaMeta; 6] = [
        KafkaMeta::Key,
        KafkaMeta::Timestamp,
        KafkaMeta::Partition,
        KafkaMeta::Offset,
        KafkaMeta::Topic,
        KafkaMeta::Headers,
    ];

    /// Its column's name in `format`: `kafka_key`, … (`key`, … in `raw`).
    pub fn column(self, format: pb::KafkaFormat) -> &'static str {
        let i = Self::ALL.iter().position(|m| *m == self).unwrap_or(0);
        let name = weir_proto::spec::KAFKA_METADATA_COLUMNS[i];
        match format {
            pb::KafkaFormat::Raw => name.trim_start_matches("kafka_"),
            _ => name,
        }
    }

    /// Its column's type.
    pub fn data_type(self) -> DataType {
        match self {
            KafkaMeta::Key | KafkaMeta::Topic | KafkaMeta::Headers => DataType::Utf8,
            KafkaMeta::Timestamp | KafkaMeta::Partition | KafkaMeta::Offset => DataType::Int64,
        }
    }

    fn nullable(self) -> bool {
        matches!(
            self,
            KafkaMeta::Key | KafkaMeta::Timestamp | KafkaMeta::Headers
        )
    }

    /// The kind whose column in `format` is `name`, if any.
    pub fn named(format: pb::KafkaFormat, name: &str) -> Option<KafkaMeta> {
        Self::ALL.iter().copied().find(|m| m.column(format) == name)
    }
}

/// The Arrow type of a schema field type.
pub fn arrow_type(t: pb::FieldType) -> DataType {
    match t {
        pb::FieldType::Bigint => DataType::Int64,
        pb::FieldType::Double => DataType::Float64,
        pb::FieldType::String => DataType::Utf8,
        pb::FieldType::Boolean => DataType::Boolean,
    }
}
