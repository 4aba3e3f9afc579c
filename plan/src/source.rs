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

/// Every column a Kafka source of this spec can produce.
pub fn kafka_schema(source: &pb::KafkaSource) -> Schema {
    match pb::KafkaFormat::try_from(source.format).unwrap_or(pb::KafkaFormat::Json) {
        pb::KafkaFormat::Json => Schema::new(
            source
                .schema
                .iter()
                .map(|f| {
                    let t = pb::FieldType::try_from(f.r#type).unwrap_or(pb::FieldType::String);
                    Field::new(&f.name, arrow_type(t), true)
                })
                .collect::<Vec<_>>(),
        ),
        pb::KafkaFormat::Text => Schema::new(vec![Field::new("value", DataType::Utf8, true)]),
        pb::KafkaFormat::Raw => Schema::new(vec![
            Field::new("key", DataType::Utf8, true),
            Field::new("value", DataType::Binary, true),
            Field::new("timestamp", DataType::Int64, true),
            Field::new("partition", DataType::Int64, false),
            Field::new("offset", DataType::Int64, false),
        ]),
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
