//! The deterministic generator source (see `weir_proto::generator`).
//!
//! Columns: `key` (dictionary-encoded `"k" + (g % keys)`), `value` (`g`),
//! `ts` (event time, ms since the epoch) and `text` (a few words picked from
//! a small vocabulary by a seeded hash of `g`, for word-count jobs). Only
//! the columns a job refers to are produced.

use super::SourceReader;
use crate::error::ExecError;
use crate::keys::mix64;
use arrow_array::builder::StringBuilder;
use arrow_array::types::Int32Type;
use arrow_array::{ArrayRef, DictionaryArray, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{Schema, SchemaRef};
use std::sync::Arc;
use weir_proto::generator::event_time_ms;
use weir_proto::pb::GeneratorSource;

/// Rows per batch handed to the pipeline.
const CHUNK_ROWS: u64 = 65_536;

/// Words of the `text` column.
const VOCABULARY: [&str; 16] = [
    "stream", "batch", "state", "kafka", "offset", "commit", "window", "key", "replay", "driver",
    "executor", "shuffle", "raft", "leader", "record", "sink",
];
const WORDS_PER_TEXT: u64 = 4;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Column {
    Key,
    Value,
    Ts,
    Text,
}

/// Produces generator records for a job.
#[derive(Debug)]
pub struct GeneratorReader {
    config: GeneratorSource,
    created_at_ms: i64,
    columns: Vec<Column>,
    schema: SchemaRef,
    /// `k0 .. k{keys-1}`, built once and shared by every key column.
    key_values: Option<Arc<StringArray>>,
}

impl GeneratorReader {
    /// A reader producing the named columns (all four when `columns` is `None`).
    pub fn new(
        config: GeneratorSource,
        created_at_ms: i64,
        columns: Option<&[String]>,
    ) -> Result<Self, String> {
        weir_plan::source::check_generator(&config).map_err(|e| e.to_string())?;
        let full = weir_plan::source::generator_schema();
        let mut picked = Vec::new();
        let mut fields = Vec::new();
        for (field, column) in
            full.fields()
                .iter()
                .zip([Column::Key, Column::Value, Column::Ts, Column::Text])
        {
            if columns.is_none_or(|names| names.iter().any(|n| n == field.name())) {
                picked.push(column);
                fields.push(field.clone());
            }
        }
        let key_values = picked.contains(&Column::Key).then(|| {
            let mut b =
                StringBuilder::with_capacity(config.keys as usize, config.keys as usize * 7);
            for k in 0..config.keys {
                b.append_value(format!("k{k}"));
            }
            Arc::new(b.finish())
        });
        Ok(GeneratorReader {
            config,
            created_at_ms,
            columns: picked,
            schema: Arc::new(Schema::new(fields)),
            key_values,
        })
    }

    fn chunk(&self, partition: u32, start: u64, end: u64) -> RecordBatch {
        let parts = u64::from(self.config.partitions.max(1));
        let p = u64::from(partition);
        let global = (start..end).map(move |i| i * parts + p);
        let columns: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|c| -> ArrayRef {
                match c {
                    Column::Value => Arc::new(Int64Array::from_iter_values(
                        global.clone().map(|g| g as i64),
                    )),
                    Column::Ts => Arc::new(Int64Array::from_iter_values(global.clone().map(|g| {
                        event_time_ms(self.created_at_ms, self.config.event_time_rate, g)
                    }))),
                    Column::Key => {
                        let keys = self.config.keys.max(1);
                        let idx =
                            Int32Array::from_iter_values(global.clone().map(|g| (g % keys) as i32));
                        let values = self
                            .key_values
                            .clone()
                            .expect("built when key is projected");
                        // Indexes are below `keys`, the dictionary's length.
                        Arc::new(DictionaryArray::<Int32Type>::new(idx, values))
                    }
                    Column::Text => {
                        let mut b = StringBuilder::new();
                        let mut line = String::new();
                        for g in global.clone() {
                            line.clear();
                            for w in 0..WORDS_PER_TEXT {
                                let h = mix64(g ^ self.config.seed.rotate_left(17) ^ (w << 56));
                                if w > 0 {
                                    line.push(' ');
                                }
                                line.push_str(VOCABULARY[(h % VOCABULARY.len() as u64) as usize]);
                            }
                            b.append_value(&line);
                        }
                        Arc::new(b.finish())
                    }
                }
            })
            .collect();
        RecordBatch::try_new(self.schema.clone(), columns).expect("columns match the schema")
    }

    /// The words of the `text` column for global index `g` (for tests and
    /// for computing expected results independently).
    pub fn text_of(seed: u64, g: u64) -> Vec<&'static str> {
        (0..WORDS_PER_TEXT)
            .map(|w| {
                VOCABULARY[(mix64(g ^ seed.rotate_left(17) ^ (w << 56)) % VOCABULARY.len() as u64)
                    as usize]
            })
            .collect()
    }
}

impl SourceReader for GeneratorReader {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn read(
        &self,
        _batch_id: u64,
        partition: u32,
        start: u64,
        end: u64,
        _replay: bool,
        sink: &mut dyn FnMut(RecordBatch) -> Result<(), ExecError>,
    ) -> Result<u64, ExecError> {
        let mut at = start;
        while at < end {
            let to = (at + CHUNK_ROWS).min(end);
            sink(self.chunk(partition, at, to))?;
            at = to;
        }
        Ok(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int64Type;

    fn config() -> GeneratorSource {
        GeneratorSource {
            partitions: 3,
            keys: 5,
            rate: 100,
            event_time_rate: 100,
            ..Default::default()
        }
    }

    fn read_all(r: &GeneratorReader, p: u32, start: u64, end: u64) -> Vec<RecordBatch> {
        let mut out = Vec::new();
        r.read(0, p, start, end, false, &mut |b| {
            out.push(b);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn records_follow_the_definition() {
        let r = GeneratorReader::new(config(), 10_000, None).unwrap();
        let batches = read_all(&r, 2, 3, 6);
        let b = &batches[0];
        // offsets 3,4,5 of partition 2 of 3: g = 11, 14, 17
        let values: Vec<i64> = b.column(1).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(values, vec![11, 14, 17]);
        let keys = b.column(0).as_dictionary::<Int32Type>();
        let strings = keys.values().as_string::<i32>();
        let decoded: Vec<&str> = keys
            .keys()
            .values()
            .iter()
            .map(|k| strings.value(*k as usize))
            .collect();
        assert_eq!(decoded, vec!["k1", "k4", "k2"]);
        let ts: Vec<i64> = b.column(2).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(ts, vec![10_110, 10_140, 10_170]);
        let text = b.column(3).as_string::<i32>();
        assert_eq!(text.value(0), GeneratorReader::text_of(0, 11).join(" "));
    }

    #[test]
    fn projection_and_chunking() {
        let cols = vec!["value".to_string()];
        let r = GeneratorReader::new(config(), 0, Some(&cols)).unwrap();
        assert_eq!(r.schema().fields().len(), 1);
        let batches = read_all(&r, 0, 0, CHUNK_ROWS * 2 + 7);
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(batches.len(), 3);
        assert_eq!(rows as u64, CHUNK_ROWS * 2 + 7);
        // the same range read twice is identical
        assert_eq!(read_all(&r, 0, 5, 9), read_all(&r, 0, 5, 9));
    }

    #[test]
    fn seed_changes_text() {
        assert_ne!(
            GeneratorReader::text_of(1, 42),
            GeneratorReader::text_of(2, 42)
        );
    }
}
