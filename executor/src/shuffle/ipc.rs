//! Shuffle blocks on the wire: Arrow IPC stream format, one row per group.
//!
//! Columns: `key_kind` Int8 (0 null, 1 int, 2 str), `key_int` Int64 (0
//! unless the key is an int), `key_str` Utf8 (null unless the key is a
//! string), `window` Int64 (window start, ms), then `slot_0` ..
//! `slot_{stride-1}` UInt64. Separate slot columns rather than one
//! FixedSizeList keep a zero stride and the schema check simple.
//! The stream is cut into record batches of bounded row count, and the
//! encoded bytes into chunks of bounded size for gRPC messages.

use crate::keys::Key;
use crate::operators::aggregate::ShuffleBlock;
use arrow_array::builder::{Int64Builder, Int8Builder, StringBuilder, UInt64Builder};
use arrow_array::{Array, ArrayRef, Int64Array, Int8Array, RecordBatch, StringArray, UInt64Array};
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;
use arrow_schema::{ArrowError, DataType, Field, Schema};
use std::sync::Arc;

/// Rows per IPC record batch.
pub const ROWS_PER_BATCH: usize = 16 * 1024;

/// Largest gRPC message payload of a shuffle chunk.
pub const MAX_CHUNK_BYTES: usize = 1024 * 1024;

const KIND_NULL: i8 = 0;
const KIND_INT: i8 = 1;
const KIND_STR: i8 = 2;

fn schema(stride: usize) -> Schema {
    let mut fields = vec![
        Field::new("key_kind", DataType::Int8, false),
        Field::new("key_int", DataType::Int64, false),
        Field::new("key_str", DataType::Utf8, true),
        Field::new("window", DataType::Int64, false),
    ];
    fields.extend((0..stride).map(|i| Field::new(format!("slot_{i}"), DataType::UInt64, false)));
    Schema::new(fields)
}

/// Encodes a block whose rows hold `stride` slots each as an Arrow IPC stream.
pub fn encode(block: &ShuffleBlock, stride: usize) -> Result<Vec<u8>, ArrowError> {
    if block.slots.len() != block.keys.len() * stride {
        return Err(ArrowError::InvalidArgumentError(format!(
            "shuffle block has {} slots for {} keys of stride {stride}",
            block.slots.len(),
            block.keys.len()
        )));
    }
    let schema = Arc::new(schema(stride));
    let mut out = Vec::new();
    {
        let mut writer = StreamWriter::try_new(&mut out, &schema)?;
        let mut start = 0;
        while start < block.keys.len() {
            let end = (start + ROWS_PER_BATCH).min(block.keys.len());
            writer.write(&rows(block, stride, start, end, &schema)?)?;
            start = end;
        }
        writer.finish()?;
    }
    Ok(out)
}

fn rows(
    block: &ShuffleBlock,
    stride: usize,
    start: usize,
    end: usize,
    schema: &Arc<Schema>,
) -> Result<RecordBatch, ArrowError> {
    let n = end - start;
    let mut kind = Int8Builder::with_capacity(n);
    let mut int = Int64Builder::with_capacity(n);
    let mut string = StringBuilder::new();
    let mut window = Int64Builder::with_capacity(n);
    for (key, w) in &block.keys[start..end] {
        match key {
            Key::Null => {
                kind.append_value(KIND_NULL);
                int.append_value(0);
                string.append_null();
            }
            Key::Int(v) => {
                kind.append_value(KIND_INT);
                int.append_value(*v);
                string.append_null();
            }
            Key::Str(s) => {
                kind.append_value(KIND_STR);
                int.append_value(0);
                string.append_value(s);
            }
        }
        window.append_value(*w);
    }
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(kind.finish()),
        Arc::new(int.finish()),
        Arc::new(string.finish()),
        Arc::new(window.finish()),
    ];
    for slot in 0..stride {
        let mut b = UInt64Builder::with_capacity(n);
        for row in start..end {
            b.append_value(block.slots[row * stride + slot]);
        }
        columns.push(Arc::new(b.finish()));
    }
    RecordBatch::try_new(schema.clone(), columns)
}

/// Decodes an Arrow IPC stream written by [`encode`] with the same stride.
pub fn decode(bytes: &[u8], stride: usize) -> Result<ShuffleBlock, ArrowError> {
    let reader = StreamReader::try_new(bytes, None)?;
    let want = schema(stride);
    if reader.schema().fields() != want.fields() {
        return Err(ArrowError::SchemaError(format!(
            "shuffle block schema {:?} does not match the job's (stride {stride})",
            reader.schema()
        )));
    }
    let mut block = ShuffleBlock::default();
    for batch in reader {
        let batch = batch?;
        let kind = downcast::<Int8Array>(batch.column(0))?;
        let int = downcast::<Int64Array>(batch.column(1))?;
        let string = downcast::<StringArray>(batch.column(2))?;
        let window = downcast::<Int64Array>(batch.column(3))?;
        let slots = batch.columns()[4..]
            .iter()
            .map(downcast::<UInt64Array>)
            .collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            let key = match kind.value(row) {
                KIND_NULL => Key::Null,
                KIND_INT => Key::Int(int.value(row)),
                KIND_STR if string.is_valid(row) => Key::Str(string.value(row).into()),
                k => {
                    return Err(ArrowError::InvalidArgumentError(format!(
                        "shuffle block row {row}: bad key kind {k}"
                    )))
                }
            };
            block.keys.push((key, window.value(row)));
            block.slots.extend(slots.iter().map(|s| s.value(row)));
        }
    }
    Ok(block)
}

fn downcast<T: 'static>(a: &ArrayRef) -> Result<&T, ArrowError> {
    a.as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| ArrowError::SchemaError("unexpected column type".into()))
}

/// Splits encoded bytes into chunks of at most `max` bytes (at least one
/// chunk, so an empty stream still arrives as one message).
pub fn chunks(bytes: Vec<u8>, max: usize) -> Vec<Vec<u8>> {
    if bytes.len() <= max {
        return vec![bytes];
    }
    bytes.chunks(max.max(1)).map(<[u8]>::to_vec).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(n: usize, stride: usize) -> ShuffleBlock {
        let mut b = ShuffleBlock::default();
        for i in 0..n {
            let key = match i % 3 {
                0 => Key::Null,
                1 => Key::Int(i as i64 - 7),
                _ => Key::Str(format!("k{i}é").into()),
            };
            b.keys.push((key, (i as i64) * 1000 - 5));
            b.slots
                .extend((0..stride).map(|s| (i * 31 + s) as u64 ^ 0xdead_beef_0000_0000));
        }
        b
    }

    #[test]
    fn blocks_round_trip_through_ipc_and_chunks() {
        for (n, stride) in [(0, 1), (1, 0), (5, 3), (ROWS_PER_BATCH * 2 + 17, 2)] {
            let b = block(n, stride);
            let bytes = encode(&b, stride).unwrap();
            let parts = chunks(bytes.clone(), 1000);
            assert!(parts.iter().all(|c| c.len() <= 1000));
            let joined: Vec<u8> = parts.concat();
            assert_eq!(joined, bytes);
            assert_eq!(decode(&joined, stride).unwrap(), b, "n {n} stride {stride}");
        }
    }

    #[test]
    fn a_stride_mismatch_is_refused() {
        let bytes = encode(&block(4, 2), 2).unwrap();
        assert!(decode(&bytes, 3).is_err());
        assert!(decode(&bytes[..bytes.len() / 2], 2).is_err());
        let mut bad = block(2, 2);
        bad.slots.pop();
        assert!(encode(&bad, 2).is_err());
    }
}
