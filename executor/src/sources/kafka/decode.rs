//! Decoding Kafka records into Arrow columns per the source's format.

use super::super::json::JsonDecoder;
use arrow_array::builder::{BinaryBuilder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use std::sync::Arc;
use weir_kafka::rdkafka::message::{BorrowedMessage, Message};
use weir_proto::spec::limits::MAX_VALUE_BYTES;

/// Column builders of one format; a record that does not decode leaves no trace.
pub(super) enum Decoder {
    Json(JsonDecoder),
    Text {
        project: bool,
        value: StringBuilder,
        rows: usize,
    },
    Raw(Box<RawBuilders>),
}

impl Decoder {
    /// Rows decoded since the last [`Decoder::finish`].
    pub(super) fn rows(&self) -> usize {
        match self {
            Decoder::Json(d) => d.rows(),
            Decoder::Text { rows, .. } => *rows,
            Decoder::Raw(r) => r.rows,
        }
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
        match self {
            Decoder::Json(d) => match m.payload() {
                Some(p) => d.push(p),
                None => Err("the record has no value (a tombstone)".into()),
            },
            Decoder::Text {
                project,
                value,
                rows,
            } => {
                match m.payload() {
                    Some(p) => {
                        let s = std::str::from_utf8(p)
                            .map_err(|e| format!("the value is not UTF-8 text: {e}"))?;
                        if *project {
                            value.append_value(s);
                        }
                    }
                    None if *project => value.append_null(),
                    None => {}
                }
                *rows += 1;
                Ok(())
            }
            Decoder::Raw(r) => {
                r.push(m);
                Ok(())
            }
        }
    }

    /// The decoded rows as a batch; the decoder starts over.
    pub(super) fn finish(&mut self) -> RecordBatch {
        match self {
            Decoder::Json(d) => d.finish(),
            Decoder::Text {
                project,
                value,
                rows,
            } => {
                let n = std::mem::take(rows);
                let columns: Vec<ArrayRef> = if *project {
                    vec![Arc::new(value.finish())]
                } else {
                    Vec::new()
                };
                let schema = Arc::new(Schema::new(if *project {
                    vec![Field::new("value", DataType::Utf8, true)]
                } else {
                    Vec::new()
                }));
                RecordBatch::try_new_with_options(
                    schema,
                    columns,
                    &arrow_array::RecordBatchOptions::new().with_row_count(Some(n)),
                )
                .expect("columns match the schema")
            }
            Decoder::Raw(r) => r.finish(),
        }
    }
}

/// Column builders of the `raw` format (only the projected ones are filled).
pub(super) struct RawBuilders {
    schema: SchemaRef,
    key: Option<StringBuilder>,
    value: Option<BinaryBuilder>,
    timestamp: Option<Int64Builder>,
    partition: Option<Int64Builder>,
    offset: Option<Int64Builder>,
    rows: usize,
}

impl RawBuilders {
    pub(super) fn new(schema: &SchemaRef) -> Self {
        let has = |n: &str| schema.column_with_name(n).is_some();
        RawBuilders {
            schema: schema.clone(),
            key: has("key").then(StringBuilder::new),
            value: has("value").then(BinaryBuilder::new),
            timestamp: has("timestamp").then(Int64Builder::new),
            partition: has("partition").then(Int64Builder::new),
            offset: has("offset").then(Int64Builder::new),
            rows: 0,
        }
    }

    fn push(&mut self, m: &BorrowedMessage<'_>) {
        if let Some(b) = &mut self.key {
            match m.key() {
                Some(k) => b.append_value(String::from_utf8_lossy(k)),
                None => b.append_null(),
            }
        }
        if let Some(b) = &mut self.value {
            b.append_option(m.payload());
        }
        if let Some(b) = &mut self.timestamp {
            b.append_option(m.timestamp().to_millis());
        }
        if let Some(b) = &mut self.partition {
            b.append_value(i64::from(m.partition()));
        }
        if let Some(b) = &mut self.offset {
            b.append_value(m.offset());
        }
        self.rows += 1;
    }

    fn finish(&mut self) -> RecordBatch {
        let mut columns: Vec<ArrayRef> = Vec::new();
        for f in self.schema.fields() {
            let col: ArrayRef = match f.name().as_str() {
                "key" => Arc::new(self.key.as_mut().expect("projected").finish()),
                "value" => Arc::new(self.value.as_mut().expect("projected").finish()),
                "timestamp" => Arc::new(self.timestamp.as_mut().expect("projected").finish()),
                "partition" => Arc::new(self.partition.as_mut().expect("projected").finish()),
                _ => Arc::new(self.offset.as_mut().expect("projected").finish()),
            };
            columns.push(col);
        }
        let n = std::mem::take(&mut self.rows);
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(n)),
        )
        .expect("columns match the schema")
    }
}
