//! Decoding Kafka records into Arrow columns: the value's per the source's
//! format, and the record's metadata the job reads.

use super::super::records::RecordDecoder;
use arrow_array::builder::{BinaryBuilder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use std::sync::Arc;
use weir_kafka::rdkafka::message::{BorrowedMessage, Headers, Message};
use weir_plan::source::KafkaMeta;
use weir_proto::pb;
use weir_proto::spec::limits::MAX_VALUE_BYTES;

/// Column builders of one format and of the metadata columns read; a
/// record that does not decode leaves no trace.
pub(super) struct Decoder {
    format: pb::KafkaFormat,
    schema: SchemaRef,
    value: Value,
    meta: Vec<(KafkaMeta, Meta)>,
    rows: usize,
}

/// The builders of the value's columns.
enum Value {
    Json(RecordDecoder),
    /// `csv`: comma-separated fields.
    Csv(RecordDecoder),
    /// `text`: the value column, if read.
    Text(Option<StringBuilder>),
    /// `raw`: the value column, if read.
    Raw(Option<BinaryBuilder>),
}

enum Meta {
    Str(StringBuilder),
    Int(Int64Builder),
}

impl Decoder {
    /// A decoder producing the columns of `schema` (the reader's: the value's
    /// and metadata columns the job reads, in the source's order).
    pub(super) fn new(
        format: pb::KafkaFormat,
        schema: &SchemaRef,
        json_fields: &[(String, pb::FieldType)],
        json_output: &[usize],
    ) -> Decoder {
        let has_value = schema.column_with_name("value").is_some();
        let value = match format {
            pb::KafkaFormat::Json => {
                Value::Json(RecordDecoder::projected(json_fields, json_output))
            }
            pb::KafkaFormat::Csv => Value::Csv(RecordDecoder::projected(json_fields, json_output)),
            pb::KafkaFormat::Text => Value::Text(has_value.then(StringBuilder::new)),
            pb::KafkaFormat::Raw => Value::Raw(has_value.then(BinaryBuilder::new)),
        };
        let meta = schema
            .fields()
            .iter()
            .filter_map(|f| KafkaMeta::named(format, f.name()))
            .map(|m| {
                let b = match m {
                    KafkaMeta::Key | KafkaMeta::Topic | KafkaMeta::Headers => {
                        Meta::Str(StringBuilder::new())
                    }
                    KafkaMeta::Timestamp | KafkaMeta::Partition | KafkaMeta::Offset => {
                        Meta::Int(Int64Builder::new())
                    }
                };
                (m, b)
            })
            .collect();
        Decoder {
            format,
            schema: schema.clone(),
            value,
            meta,
            rows: 0,
        }
    }

    /// Rows decoded since the last [`Decoder::finish`].
    pub(super) fn rows(&self) -> usize {
        self.rows
    }

    /// Decodes one record, or says why it does not decode (a value over
    /// [`MAX_VALUE_BYTES`] does not).
    pub(super) fn push(&mut self, m: &BorrowedMessage<'_>) -> Result<(), String> {
        if let Some(p) = m.payload().filter(|p| p.len() > MAX_VALUE_BYTES) {
            return Err(format!(
                "the value is {} bytes; a record's value is at most {MAX_VALUE_BYTES} (max_value_bytes)",
                p.len()
            ));
        }
        match &mut self.value {
            Value::Json(d) => match m.payload() {
                Some(p) => d.push(p)?,
                None => return Err("the record has no value (a tombstone)".into()),
            },
            Value::Csv(d) => match m.payload() {
                Some(p) => d.push_csv(p, b',')?,
                None => return Err("the record has no value (a tombstone)".into()),
            },
            Value::Text(b) => {
                let text = m
                    .payload()
                    .map(std::str::from_utf8)
                    .transpose()
                    .map_err(|e| format!("the value is not UTF-8 text: {e}"))?;
                if let Some(b) = b {
                    b.append_option(text);
                }
            }
            Value::Raw(b) => {
                if let Some(b) = b {
                    b.append_option(m.payload());
                }
            }
        }
        for (kind, b) in &mut self.meta {
            match (kind, b) {
                (KafkaMeta::Key, Meta::Str(b)) => {
                    b.append_option(m.key().map(String::from_utf8_lossy));
                }
                (KafkaMeta::Topic, Meta::Str(b)) => b.append_value(m.topic()),
                (KafkaMeta::Headers, Meta::Str(b)) => b.append_option(headers_json(m)),
                (KafkaMeta::Timestamp, Meta::Int(b)) => b.append_option(m.timestamp().to_millis()),
                (KafkaMeta::Partition, Meta::Int(b)) => b.append_value(i64::from(m.partition())),
                (KafkaMeta::Offset, Meta::Int(b)) => b.append_value(m.offset()),
                (_, Meta::Str(b)) => b.append_null(),
                (_, Meta::Int(b)) => b.append_null(),
            }
        }
        self.rows += 1;
        Ok(())
    }

    /// The decoded rows as a batch; the decoder starts over.
    pub(super) fn finish(&mut self) -> RecordBatch {
        let value: Option<RecordBatch> = match &mut self.value {
            Value::Json(d) | Value::Csv(d) => Some(d.finish()),
            Value::Text(_) | Value::Raw(_) => None,
        };
        let mut value_column: Option<ArrayRef> = match &mut self.value {
            Value::Text(Some(b)) => Some(Arc::new(b.finish())),
            Value::Raw(Some(b)) => Some(Arc::new(b.finish())),
            _ => None,
        };
        let mut meta: Vec<(KafkaMeta, ArrayRef)> = self
            .meta
            .iter_mut()
            .map(|(k, b)| -> (KafkaMeta, ArrayRef) {
                match b {
                    Meta::Str(b) => (*k, Arc::new(b.finish())),
                    Meta::Int(b) => (*k, Arc::new(b.finish())),
                }
            })
            .collect();
        let columns: Vec<ArrayRef> = self
            .schema
            .fields()
            .iter()
            .filter_map(|f| match KafkaMeta::named(self.format, f.name()) {
                Some(kind) => meta
                    .iter()
                    .position(|(k, _)| *k == kind)
                    .map(|i| meta.swap_remove(i).1),
                None => match &value {
                    Some(batch) => batch.column_by_name(f.name()).cloned(),
                    None => value_column.take(),
                },
            })
            .collect();
        let n = std::mem::take(&mut self.rows);
        // Built together, every column has `n` rows and the schema's type.
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(n)),
        )
        .expect("columns match the schema")
    }
}

/// A record's headers as a JSON object of text values (a header without a
/// value is `null`; of a repeated name, the last), or `None` without any.
fn headers_json(m: &BorrowedMessage<'_>) -> Option<String> {
    let headers = m.headers()?;
    let mut object = serde_json::Map::new();
    for h in headers.iter() {
        let value = match h.value {
            Some(v) => serde_json::Value::String(String::from_utf8_lossy(v).into_owned()),
            None => serde_json::Value::Null,
        };
        object.insert(h.key.to_string(), value);
    }
    Some(serde_json::Value::Object(object).to_string())
}
