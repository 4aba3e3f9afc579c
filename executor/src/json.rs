//! JSON lines from record batches: one object per row, columns in schema
//! order. Used by the file and stdout sinks.

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, Int32Type, Int64Type};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use std::fmt::Write;
use weir_proto::json::json_string;

/// JSON lines of every row of `batches`, with the number of rows.
pub fn json_lines(batches: &[RecordBatch]) -> (String, u64) {
    let mut text = String::new();
    let mut rows = 0;
    for b in batches {
        write_json_lines(b, &mut text);
        rows += b.num_rows() as u64;
    }
    (text, rows)
}

/// Appends one JSON line per row of `batch` to `out`.
pub fn write_json_lines(batch: &RecordBatch, out: &mut String) {
    let schema = batch.schema();
    let names: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            let mut s = String::new();
            json_string(f.name(), &mut s);
            s
        })
        .collect();
    for row in 0..batch.num_rows() {
        out.push('{');
        for (i, col) in batch.columns().iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&names[i]);
            out.push(':');
            write_value(col.as_ref(), row, out);
        }
        out.push_str("}\n");
    }
}

/// The JSON-quoted names of a batch's columns, for [`write_json_row`].
pub fn json_field_names(batch: &RecordBatch) -> Vec<String> {
    batch
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let mut s = String::new();
            json_string(f.name(), &mut s);
            s
        })
        .collect()
}

/// Appends row `row` of `batch` as one JSON object (no newline).
pub fn write_json_row(batch: &RecordBatch, names: &[String], row: usize, out: &mut String) {
    out.push('{');
    for (i, col) in batch.columns().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&names[i]);
        out.push(':');
        write_value(col.as_ref(), row, out);
    }
    out.push('}');
}

/// A value as a record key: strings as they are, anything else as JSON.
pub fn write_key_text(col: &dyn Array, row: usize, out: &mut String) {
    match col.data_type() {
        DataType::Utf8 if col.is_valid(row) => out.push_str(col.as_string::<i32>().value(row)),
        DataType::Dictionary(_, _) if col.is_valid(row) => {
            let dict = col.as_dictionary::<Int32Type>();
            let idx = dict.keys().value(row) as usize;
            write_key_text(dict.values().as_ref(), idx, out);
        }
        _ => write_value(col, row, out),
    }
}

fn write_value(col: &dyn Array, row: usize, out: &mut String) {
    if col.is_null(row) {
        out.push_str("null");
        return;
    }
    match col.data_type() {
        DataType::Int64 => {
            let _ = write!(out, "{}", col.as_primitive::<Int64Type>().value(row));
        }
        DataType::Float64 => {
            let v = col.as_primitive::<Float64Type>().value(row);
            if v.is_finite() {
                let _ = write!(out, "{v}");
            } else {
                out.push_str("null");
            }
        }
        DataType::Boolean => out.push_str(if col.as_boolean().value(row) {
            "true"
        } else {
            "false"
        }),
        DataType::Utf8 => json_string(col.as_string::<i32>().value(row), out),
        DataType::Dictionary(_, _) => {
            let dict = col.as_dictionary::<Int32Type>();
            let idx = dict.keys().value(row) as usize;
            write_value(dict.values().as_ref(), idx, out);
        }
        other => json_string(&format!("<{other}>"), out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{ArrayRef, Float64Array, Int64Array, StringArray};
    use std::sync::Arc;

    #[test]
    fn rows_become_objects() {
        let batch = RecordBatch::try_from_iter(vec![
            (
                "key",
                Arc::new(StringArray::from(vec![Some("k\"1"), None])) as ArrayRef,
            ),
            ("count", Arc::new(Int64Array::from(vec![2, 3])) as ArrayRef),
            (
                "avg",
                Arc::new(Float64Array::from(vec![Some(1.5), None])) as ArrayRef,
            ),
        ])
        .unwrap();
        let mut out = String::new();
        write_json_lines(&batch, &mut out);
        assert_eq!(out, "{\"key\":\"k\\\"1\",\"count\":2,\"avg\":1.5}\n{\"key\":null,\"count\":3,\"avg\":null}\n");
        for line in out.lines() {
            serde_json::from_str::<serde_json::Value>(line).unwrap();
        }
    }
}
