//! Decodes records, JSON objects or CSV lines, into typed Arrow columns.
//!
//! Each record is parsed once straight into a reused row of typed cells: a
//! JSON object by `serde_json` (no `serde_json::Value`, no per-record
//! allocation beyond the parser's own), a CSV line by [`super::csv`]. Only
//! when the whole record is valid are its cells appended to the column
//! builders, so a malformed record leaves no trace. JSON fields not in the
//! schema are skipped; missing fields and JSON `null` are nulls.

use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema, SchemaRef};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use std::fmt;
use std::sync::Arc;
use weir_plan::source::arrow_type;
use weir_proto::pb;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cell {
    Null,
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A range of the row's string scratch.
    Str(usize, usize),
}

enum Builder {
    Int(Int64Builder),
    Float(Float64Builder),
    Str(StringBuilder),
    Bool(BooleanBuilder),
}

/// Decodes records (JSON objects or CSV lines) into the columns of a schema.
pub struct RecordDecoder {
    names: Vec<String>,
    types: Vec<pb::FieldType>,
    /// Indexes (into `names`) of the fields that become columns; the others
    /// are only type-checked.
    output: Vec<usize>,
    schema: SchemaRef,
    builders: Vec<Builder>,
    row: Vec<Cell>,
    scratch: String,
    rows: usize,
}

impl RecordDecoder {
    /// A decoder of `fields` (name and type) producing every field as a column.
    pub fn new(fields: &[(String, pb::FieldType)]) -> Self {
        Self::projected(fields, &(0..fields.len()).collect::<Vec<_>>())
    }

    /// A decoder checking every field of `fields` and producing the columns
    /// at `output` (indexes into `fields`, in column order).
    pub fn projected(fields: &[(String, pb::FieldType)], output: &[usize]) -> Self {
        let schema = Arc::new(Schema::new(
            output
                .iter()
                .map(|i| Field::new(&fields[*i].0, arrow_type(fields[*i].1), true))
                .collect::<Vec<_>>(),
        ));
        let mut d = RecordDecoder {
            names: fields.iter().map(|(n, _)| n.clone()).collect(),
            types: fields.iter().map(|(_, t)| *t).collect(),
            output: output.to_vec(),
            schema,
            builders: Vec::new(),
            row: vec![Cell::Null; fields.len()],
            scratch: String::new(),
            rows: 0,
        };
        d.builders = d.new_builders();
        d
    }

    fn new_builders(&self) -> Vec<Builder> {
        self.output
            .iter()
            .map(|i| match self.types[*i] {
                pb::FieldType::Bigint => Builder::Int(Int64Builder::new()),
                pb::FieldType::Double => Builder::Float(Float64Builder::new()),
                pb::FieldType::String => Builder::Str(StringBuilder::new()),
                pb::FieldType::Boolean => Builder::Bool(BooleanBuilder::new()),
            })
            .collect()
    }

    /// The schema of the batches.
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// Rows decoded since the last [`RecordDecoder::finish`].
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Decodes one record; on error nothing is appended.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.row.iter_mut().for_each(|c| *c = Cell::Null);
        self.scratch.clear();
        let mut de = serde_json::Deserializer::from_slice(bytes);
        de::Deserializer::deserialize_map(
            &mut de,
            RowVisitor {
                names: &self.names,
                types: &self.types,
                row: &mut self.row,
                scratch: &mut self.scratch,
            },
        )
        .and_then(|()| de.end())
        .map_err(|e| e.to_string())?;
        self.append_row();
        Ok(())
    }

    /// Decodes one CSV line (RFC 4180 quoting, `delimiter` between fields):
    /// its fields are the schema's, in order. An empty unquoted field is
    /// NULL, as in Spark; fewer fields than the schema leave the rest NULL;
    /// more, or a value that does not read as its type, make the line bad.
    pub fn push_csv(&mut self, bytes: &[u8], delimiter: u8) -> Result<(), String> {
        self.row.iter_mut().for_each(|c| *c = Cell::Null);
        self.scratch.clear();
        let line = std::str::from_utf8(bytes).map_err(|e| format!("the line is not UTF-8: {e}"))?;
        let mut count = 0;
        let (names, types, row, scratch) =
            (&self.names, &self.types, &mut self.row, &mut self.scratch);
        super::csv::fields(line, delimiter, |field| {
            let i = count;
            count += 1;
            let Some(ty) = types.get(i) else {
                return Err(format!(
                    "the line has more than the schema's {} fields",
                    types.len()
                ));
            };
            row[i] = text_cell(field, *ty, &names[i], scratch)?;
            Ok(())
        })?;
        self.append_row();
        Ok(())
    }

    /// Appends the row's cells to the builders.
    fn append_row(&mut self) {
        for (b, i) in self.builders.iter_mut().zip(&self.output) {
            match (b, self.row[*i]) {
                (Builder::Int(b), Cell::Int(v)) => b.append_value(v),
                (Builder::Float(b), Cell::Float(v)) => b.append_value(v),
                (Builder::Float(b), Cell::Int(v)) => b.append_value(v as f64),
                (Builder::Bool(b), Cell::Bool(v)) => b.append_value(v),
                (Builder::Str(b), Cell::Str(from, to)) => b.append_value(&self.scratch[from..to]),
                (Builder::Int(b), _) => b.append_null(),
                (Builder::Float(b), _) => b.append_null(),
                (Builder::Bool(b), _) => b.append_null(),
                (Builder::Str(b), _) => b.append_null(),
            }
        }
        self.rows += 1;
    }

    /// The decoded rows as a batch; the decoder starts over.
    pub fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = self
            .builders
            .iter_mut()
            .map(|b| -> ArrayRef {
                match b {
                    Builder::Int(b) => Arc::new(b.finish()),
                    Builder::Float(b) => Arc::new(b.finish()),
                    Builder::Str(b) => Arc::new(b.finish()),
                    Builder::Bool(b) => Arc::new(b.finish()),
                }
            })
            .collect();
        let rows = std::mem::take(&mut self.rows);
        // Columns built together always have `rows` rows.
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            columns,
            &arrow_array::RecordBatchOptions::new().with_row_count(Some(rows)),
        )
        .expect("columns match the schema")
    }
}

/// The cell of a text field of type `ty` (`None`: an empty unquoted field,
/// NULL); strings go to `scratch`.
fn text_cell(
    field: Option<&str>,
    ty: pb::FieldType,
    name: &str,
    scratch: &mut String,
) -> Result<Cell, String> {
    let Some(text) = field else {
        return Ok(Cell::Null);
    };
    let wrong = |want: &str| format!("field {name:?}: expected {want}, got {text:?}");
    Ok(match ty {
        pb::FieldType::String => {
            let from = scratch.len();
            scratch.push_str(text);
            Cell::Str(from, scratch.len())
        }
        pb::FieldType::Bigint => Cell::Int(text.trim().parse().map_err(|_| wrong("bigint"))?),
        pb::FieldType::Double => Cell::Float(text.trim().parse().map_err(|_| wrong("double"))?),
        pb::FieldType::Boolean => match text.trim().to_ascii_lowercase().as_str() {
            "true" => Cell::Bool(true),
            "false" => Cell::Bool(false),
            _ => return Err(wrong("boolean")),
        },
    })
}

struct RowVisitor<'a> {
    names: &'a [String],
    types: &'a [pb::FieldType],
    row: &'a mut [Cell],
    scratch: &'a mut String,
}

impl<'de> Visitor<'de> for RowVisitor<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(field) = map.next_key_seed(KeySeed(self.names))? {
            match field {
                Some(i) => {
                    let cell = map.next_value_seed(ValueSeed {
                        ty: self.types[i],
                        name: &self.names[i],
                        scratch: self.scratch,
                    })?;
                    self.row[i] = cell;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Finds a key's column without allocating.
struct KeySeed<'a>(&'a [String]);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<usize>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<usize>, E> {
        Ok(self.0.iter().position(|n| n == v))
    }
}

struct ValueSeed<'a> {
    ty: pb::FieldType,
    name: &'a str,
    scratch: &'a mut String,
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Cell;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Cell, D::Error> {
        d.deserialize_any(self)
    }
}

impl ValueSeed<'_> {
    fn wrong<E: de::Error>(&self, got: &str) -> E {
        let want = match self.ty {
            pb::FieldType::Bigint => "bigint",
            pb::FieldType::Double => "double",
            pb::FieldType::String => "string",
            pb::FieldType::Boolean => "boolean",
        };
        E::custom(format!("field {:?}: expected {want}, got {got}", self.name))
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Cell;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "a value for field {:?}", self.name)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Cell, E> {
        match self.ty {
            pb::FieldType::Bigint => Ok(Cell::Int(v)),
            pb::FieldType::Double => Ok(Cell::Float(v as f64)),
            _ => Err(self.wrong("a number")),
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Cell, E> {
        match self.ty {
            pb::FieldType::Bigint => i64::try_from(v)
                .map(Cell::Int)
                .map_err(|_| self.wrong("a number beyond BIGINT")),
            pb::FieldType::Double => Ok(Cell::Float(v as f64)),
            _ => Err(self.wrong("a number")),
        }
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Cell, E> {
        match self.ty {
            pb::FieldType::Double => Ok(Cell::Float(v)),
            _ => Err(self.wrong("a fractional number")),
        }
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Cell, E> {
        match self.ty {
            pb::FieldType::Boolean => Ok(Cell::Bool(v)),
            _ => Err(self.wrong("a boolean")),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Cell, E> {
        match self.ty {
            pb::FieldType::String => {
                let from = self.scratch.len();
                self.scratch.push_str(v);
                Ok(Cell::Str(from, self.scratch.len()))
            }
            _ => Err(self.wrong("a string")),
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<Cell, E> {
        Ok(Cell::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Cell, E> {
        Ok(Cell::Null)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Cell, A::Error> {
        Err(self.wrong("an array"))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<Cell, A::Error> {
        Err(self.wrong("an object"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, Int64Type};
    use arrow_array::Array;

    fn decoder() -> RecordDecoder {
        RecordDecoder::new(&[
            ("user".into(), pb::FieldType::String),
            ("n".into(), pb::FieldType::Bigint),
            ("x".into(), pb::FieldType::Double),
            ("ok".into(), pb::FieldType::Boolean),
        ])
    }

    #[test]
    fn records_decode_into_typed_columns() {
        let mut d = decoder();
        d.push(br#"{"user":"a\"b","n":3,"x":1.5,"ok":true,"extra":[1,{"y":2}]}"#)
            .unwrap();
        d.push(br#"{"n":-4,"x":2,"user":null}"#).unwrap();
        let b = d.finish();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(b.column(0).as_string::<i32>().value(0), "a\"b");
        assert!(b.column(0).is_null(1));
        let n = b.column(1).as_primitive::<Int64Type>();
        assert_eq!((n.value(0), n.value(1)), (3, -4));
        assert_eq!(b.column(2).as_primitive::<Float64Type>().value(1), 2.0);
        assert!(b.column(3).is_null(1));
        assert_eq!(d.finish().num_rows(), 0);
    }

    #[test]
    fn fields_not_projected_are_still_checked() {
        let fields = [
            ("user".to_string(), pb::FieldType::String),
            ("n".to_string(), pb::FieldType::Bigint),
        ];
        let mut d = RecordDecoder::projected(&fields, &[0]);
        assert!(d.push(br#"{"user":"a","n":"x"}"#).is_err());
        d.push(br#"{"user":"a","n":1}"#).unwrap();
        let b = d.finish();
        assert_eq!((b.num_columns(), b.num_rows()), (1, 1));
    }

    #[test]
    fn csv_lines_decode_into_typed_columns() {
        let mut d = decoder();
        d.push_csv(b"\"a,b\",3,1.5,true\n", b',').unwrap();
        // Empty unquoted fields are NULL; missing trailing fields too.
        d.push_csv(b",-4", b',').unwrap();
        d.push_csv(b"\"\", 7 ,2,FALSE", b',').unwrap();
        let b = d.finish();
        assert_eq!(b.num_rows(), 3);
        let user = b.column(0).as_string::<i32>();
        assert_eq!(user.value(0), "a,b");
        assert!(user.is_null(1));
        assert_eq!(user.value(2), "", "a quoted empty field is ''");
        let n = b.column(1).as_primitive::<Int64Type>();
        assert_eq!((n.value(0), n.value(1), n.value(2)), (3, -4, 7));
        assert!(b.column(2).is_null(1));
        assert_eq!(b.column(2).as_primitive::<Float64Type>().value(2), 2.0);
        assert!(!b.column(3).as_boolean().value(2));
        // A bad line leaves no trace.
        for (bad, why) in [
            (&b"a,x"[..], "field \"n\": expected bigint, got \"x\""),
            (b"a,1,2,true,extra", "more than the schema's 4 fields"),
            (b"\"a", "not closed"),
            (b"a,1,2,maybe", "expected boolean"),
            (b"\xff,1", "not UTF-8"),
        ] {
            let e = d.push_csv(bad, b',').unwrap_err();
            assert!(e.contains(why), "{e}");
        }
        assert_eq!(d.finish().num_rows(), 0);
    }

    #[test]
    fn malformed_records_leave_no_trace() {
        let mut d = decoder();
        for bad in [
            &b"not json"[..],
            br#"{"n":"three"}"#,
            br#"{"user":"a","n":1.5}"#,
            br#"[1,2]"#,
            br#"{"user":"a"} trailing"#,
            br#"{"n":99999999999999999999}"#,
        ] {
            let e = d.push(bad).unwrap_err();
            assert!(!e.is_empty());
        }
        let e = d.push(br#"{"n":"three"}"#).unwrap_err();
        assert!(
            e.contains("field \"n\": expected bigint, got a string"),
            "{e}"
        );
        d.push(br#"{"user":"ok"}"#).unwrap();
        let b = d.finish();
        assert_eq!(b.num_rows(), 1);
        assert_eq!(b.column(0).as_string::<i32>().value(0), "ok");
    }
}
