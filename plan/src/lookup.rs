//! The lookup step's plan: its key expression and the typed columns it
//! adds, compiled against the step's input. The executor fetches the
//! values of a chunk's distinct keys ([`LookupPlan::keys`]) from the store
//! and hands them back to [`LookupPlan::assemble`], which adds the columns
//! and applies `on_missing`. Nothing here talks to the store.

use crate::expr::{CompiledExpr, ExprError};
use crate::step::column_names;
use crate::PlanError;
use arrow_array::builder::{BooleanBuilder, Float64Builder, Int64Builder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, ArrayRef, BooleanArray, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use arrow_select::filter::filter_record_batch;
use std::collections::HashMap;
use std::sync::Arc;
use weir_proto::pb;

/// What a lookup does with a record whose key is NULL or not in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnMissing {
    /// The added columns are NULL.
    Null,
    /// The record is dropped and counted as skipped.
    Skip,
    /// The batch fails naming the key.
    Fail,
}

/// How the store holds a key's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// A Redis hash whose fields are the columns.
    Hash,
    /// A Redis string holding a JSON object whose members are the columns.
    Json,
}

/// A key's values as the store returned them, one per field in the
/// step's order, as text (`None`: the field is absent or null). A key is
/// missing when the store has no such key or it holds none of the fields.
pub type Values = Vec<Option<String>>;

/// A compiled lookup step.
#[derive(Debug, Clone)]
pub struct LookupPlan {
    path: String,
    key: CompiledExpr,
    fields: Vec<Field>,
    on_missing: OnMissing,
    layout: Layout,
    url: String,
    cache: Option<pb::LookupCache>,
    output: SchemaRef,
}

/// The distinct keys of a chunk, and which one each row has.
#[derive(Debug, Clone, Default)]
pub struct RowKeys {
    /// Each key once, in order of first appearance.
    pub distinct: Vec<String>,
    /// Per row, the index of its key in `distinct`; `None` for a NULL key.
    rows: Vec<Option<u32>>,
}

/// Why a chunk's looked-up values could not be added.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupDataError {
    /// `on_missing: fail` and a record's key is not in the store.
    #[error("key {key:?} is not in the store (on_missing: fail)")]
    Missing {
        /// The key.
        key: String,
    },
    /// `on_missing: fail` and a record's key expression is NULL.
    #[error("the key expression \"{sql}\" is NULL for a record (on_missing: fail)")]
    NullKey {
        /// The key expression.
        sql: String,
    },
    /// A stored value does not read as its column's type.
    #[error("key {key:?}, field {field:?}: {value:?} is not a {ty}")]
    Value {
        /// The key.
        key: String,
        /// The field.
        field: String,
        /// The start of the value.
        value: String,
        /// The column's type, as the spec names it.
        ty: &'static str,
    },
    /// The columns could not be put together (a broken invariant).
    #[error("cannot build the looked-up columns: {0}")]
    Arrow(String),
}

/// A chunk with the looked-up columns added.
#[derive(Debug)]
pub struct Assembled {
    /// The records kept, with the new columns.
    pub batch: RecordBatch,
    /// Records dropped by `on_missing: skip`.
    pub skipped_missing: u64,
    /// Records dropped because a value did not read as its type (only when
    /// asked to skip them).
    pub skipped_bad: u64,
}

impl LookupPlan {
    /// Compiles `step` at `path` (`pipeline[1].lookup`) for batches of
    /// schema `input`: the key must be a STRING or BIGINT expression, and
    /// no added column may have the name of an input column.
    pub fn compile(
        path: String,
        step: &pb::LookupStep,
        input: &SchemaRef,
    ) -> Result<Self, PlanError> {
        let redis = step
            .redis
            .as_ref()
            .ok_or_else(|| PlanError::new(&path, "missing: redis"))?;
        let key_path = format!("{path}.redis.key");
        let key =
            CompiledExpr::compile(&redis.key, input).map_err(|e| PlanError::expr(&key_path, e))?;
        if !is_key_type(key.data_type()) {
            let message = format!(
                "the key must be a STRING or BIGINT, \"{}\" is {}; convert it, e.g. CAST(x AS STRING)",
                redis.key,
                key.data_type()
            );
            return Err(PlanError::new(key_path, message));
        }
        let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
        let mut added = Vec::with_capacity(redis.fields.len());
        for f in &redis.fields {
            if input.column_with_name(&f.name).is_some() {
                let message = format!(
                    "column {:?} already exists (columns: {}); name the looked-up field otherwise, or drop the column with a map before the lookup",
                    f.name,
                    column_names(input)
                );
                return Err(PlanError::new(
                    format!("{path}.redis.fields.{}", f.name),
                    message,
                ));
            }
            let data_type = match pb::FieldType::try_from(f.r#type) {
                Ok(pb::FieldType::Bigint) => DataType::Int64,
                Ok(pb::FieldType::Double) => DataType::Float64,
                Ok(pb::FieldType::String) => DataType::Utf8,
                Ok(pb::FieldType::Boolean) => DataType::Boolean,
                Err(_) => {
                    return Err(PlanError::new(
                        format!("{path}.redis.fields.{}", f.name),
                        "unknown type",
                    ))
                }
            };
            added.push(Field::new(&f.name, data_type, true));
        }
        fields.extend(added.iter().cloned());
        let on_missing = match pb::LookupOnMissing::try_from(step.on_missing) {
            Ok(pb::LookupOnMissing::Skip) => OnMissing::Skip,
            Ok(pb::LookupOnMissing::Fail) => OnMissing::Fail,
            _ => OnMissing::Null,
        };
        let layout = if redis.layout == pb::RedisLayout::Json as i32 {
            Layout::Json
        } else {
            Layout::Hash
        };
        Ok(LookupPlan {
            path,
            key,
            fields: added,
            on_missing,
            layout,
            url: redis.url.clone(),
            cache: step.cache,
            output: Arc::new(Schema::new(fields)),
        })
    }

    /// The step's path in the spec, e.g. `pipeline[1].lookup`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The store's URL as written in the spec (secret references
    /// unresolved).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The fields looked up, in column order.
    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|f| f.name().as_str())
    }

    /// How the store holds a key's values.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// What to do with a record whose key is missing.
    pub fn on_missing(&self) -> OnMissing {
        self.on_missing
    }

    /// The cache settings, if the step caches.
    pub fn cache(&self) -> Option<pb::LookupCache> {
        self.cache
    }

    /// Schema of the batches the step produces: the input's columns, then
    /// the looked-up ones (nullable).
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output
    }

    /// The distinct keys of `batch`.
    pub fn keys(&self, batch: &RecordBatch) -> Result<RowKeys, ExprError> {
        let column = self.key.evaluate(batch)?;
        Ok(row_keys(&column))
    }

    /// Adds the looked-up columns to `batch`: `found[i]` holds the values
    /// of `keys.distinct[i]` (`None`: the key is missing). With
    /// `skip_bad_values`, a record with a value that does not read as its
    /// column's type is dropped and counted instead of failing the chunk.
    pub fn assemble(
        &self,
        batch: &RecordBatch,
        keys: &RowKeys,
        found: &[Option<Arc<Values>>],
        skip_bad_values: bool,
    ) -> Result<Assembled, LookupDataError> {
        let n = batch.num_rows();
        let mut columns: Vec<Column> = self
            .fields
            .iter()
            .map(|f| Column::new(f.data_type(), n))
            .collect();
        let mut keep = vec![true; n];
        let (mut skipped_missing, mut skipped_bad) = (0, 0);
        for (row, keep_row) in keep.iter_mut().enumerate() {
            let key = keys.rows.get(row).copied().flatten();
            let values = key.and_then(|k| found.get(k as usize).cloned().flatten());
            let Some(values) = values else {
                match self.on_missing {
                    OnMissing::Null => {}
                    OnMissing::Skip => {
                        *keep_row = false;
                        skipped_missing += 1;
                    }
                    OnMissing::Fail => {
                        return Err(match key {
                            Some(k) => LookupDataError::Missing {
                                key: keys.distinct[k as usize].clone(),
                            },
                            None => LookupDataError::NullKey {
                                sql: self.key.sql().to_string(),
                            },
                        })
                    }
                }
                columns.iter_mut().for_each(Column::append_null);
                continue;
            };
            let mut bad = None;
            for (i, column) in columns.iter_mut().enumerate() {
                let value = values.get(i).and_then(|v| v.as_deref());
                match (bad.is_some(), value) {
                    (false, Some(text)) => {
                        if let Err(ty) = column.append(text) {
                            bad = Some((i, text, ty));
                            column.append_null();
                        }
                    }
                    _ => column.append_null(),
                }
            }
            if let Some((i, text, ty)) = bad {
                if !skip_bad_values {
                    let key = key.map(|k| keys.distinct[k as usize].clone());
                    return Err(LookupDataError::Value {
                        key: key.unwrap_or_default(),
                        field: self.fields[i].name().clone(),
                        value: text.chars().take(64).collect(),
                        ty,
                    });
                }
                *keep_row = false;
                skipped_bad += 1;
            }
        }
        let mut arrays: Vec<ArrayRef> = batch.columns().to_vec();
        arrays.extend(columns.into_iter().map(Column::finish));
        let arrow = |e: arrow_schema::ArrowError| LookupDataError::Arrow(e.to_string());
        let out = RecordBatch::try_new(self.output.clone(), arrays).map_err(arrow)?;
        let batch = if keep.iter().all(|k| *k) {
            out
        } else {
            filter_record_batch(&out, &BooleanArray::from(keep)).map_err(arrow)?
        };
        Ok(Assembled {
            batch,
            skipped_missing,
            skipped_bad,
        })
    }
}

fn is_key_type(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::Int64 => true,
        DataType::Dictionary(k, v) => {
            k.as_ref() == &DataType::Int32 && v.as_ref() == &DataType::Utf8
        }
        _ => false,
    }
}

/// The distinct keys of a key column (STRING, dictionary of STRING or
/// BIGINT, as [`is_key_type`] allows; other types have no keys).
fn row_keys(column: &ArrayRef) -> RowKeys {
    let mut out = RowKeys {
        distinct: Vec::new(),
        rows: Vec::with_capacity(column.len()),
    };
    let mut index: HashMap<String, u32> = HashMap::new();
    let mut intern = |out: &mut RowKeys, key: String| -> u32 {
        *index.entry(key).or_insert_with_key(|k| {
            out.distinct.push(k.clone());
            (out.distinct.len() - 1) as u32
        })
    };
    match column.data_type() {
        DataType::Utf8 => {
            let s = column.as_string::<i32>();
            for row in 0..s.len() {
                let k = s
                    .is_valid(row)
                    .then(|| intern(&mut out, s.value(row).into()));
                out.rows.push(k);
            }
        }
        DataType::Int64 => {
            let v = column.as_primitive::<Int64Type>();
            for row in 0..v.len() {
                let k = v
                    .is_valid(row)
                    .then(|| intern(&mut out, v.value(row).to_string()));
                out.rows.push(k);
            }
        }
        DataType::Dictionary(_, _) => {
            let dict = column.as_dictionary::<Int32Type>();
            let values = dict.values().as_string::<i32>();
            // Each dictionary entry is interned once, on first use.
            let mut by_entry: Vec<Option<u32>> = vec![None; values.len()];
            for row in 0..dict.len() {
                if !dict.is_valid(row) {
                    out.rows.push(None);
                    continue;
                }
                let entry = dict.keys().value(row) as usize;
                let k = match by_entry.get(entry).copied().flatten() {
                    Some(k) => Some(k),
                    None if entry < values.len() && values.is_valid(entry) => {
                        let k = intern(&mut out, values.value(entry).into());
                        by_entry[entry] = Some(k);
                        Some(k)
                    }
                    None => None,
                };
                out.rows.push(k);
            }
        }
        _ => out.rows.resize(column.len(), None),
    }
    out
}

/// One added column being built.
enum Column {
    Int(Int64Builder),
    Double(Float64Builder),
    Text(StringBuilder),
    Bool(BooleanBuilder),
}

impl Column {
    fn new(t: &DataType, rows: usize) -> Column {
        match t {
            DataType::Int64 => Column::Int(Int64Builder::with_capacity(rows)),
            DataType::Float64 => Column::Double(Float64Builder::with_capacity(rows)),
            DataType::Boolean => Column::Bool(BooleanBuilder::with_capacity(rows)),
            _ => Column::Text(StringBuilder::with_capacity(rows, rows * 8)),
        }
    }

    /// Appends `text` read as the column's type, or returns the type's
    /// name if it does not read as one.
    fn append(&mut self, text: &str) -> Result<(), &'static str> {
        match self {
            Column::Int(b) => b.append_value(text.trim().parse().map_err(|_| "bigint")?),
            Column::Double(b) => b.append_value(text.trim().parse().map_err(|_| "double")?),
            Column::Text(b) => b.append_value(text),
            Column::Bool(b) => b.append_value(parse_bool(text.trim()).ok_or("boolean")?),
        }
        Ok(())
    }

    fn append_null(&mut self) {
        match self {
            Column::Int(b) => b.append_null(),
            Column::Double(b) => b.append_null(),
            Column::Text(b) => b.append_null(),
            Column::Bool(b) => b.append_null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Column::Int(mut b) => Arc::new(b.finish()),
            Column::Double(mut b) => Arc::new(b.finish()),
            Column::Text(mut b) => Arc::new(b.finish()),
            Column::Bool(mut b) => Arc::new(b.finish()),
        }
    }
}

/// `true`/`false` in any case, or `1`/`0`, as stored by most clients.
fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") || text == "1" {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") || text == "0" {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
