//! Stateless steps: `filter`, `map`, `flat_map` and `custom`, each compiled
//! once per job deployment against its input schema and applied to whole
//! record batches.

use crate::custom::{CustomOperator, OperatorConfig, OperatorRegistry};
use crate::expr::{CompiledExpr, ExprError};
use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use arrow_select::filter::filter_record_batch;
use std::sync::Arc;
use weir_proto::pb;

/// A compiled stateless step.
#[derive(Debug, Clone)]
pub struct StatelessOp {
    /// Step path in the spec, e.g. `pipeline[1].filter`.
    pub path: String,
    kind: OpKind,
    output: SchemaRef,
}

#[derive(Debug, Clone)]
enum OpKind {
    Filter(CompiledExpr),
    /// Each output column: an input column index or an expression.
    Map(Vec<MapColumn>),
    FlatMap {
        field: usize,
        separator: String,
        replace: Option<usize>,
    },
    Custom(Custom),
}

/// A custom operator instance (see [`crate::custom`]).
#[derive(Clone)]
struct Custom {
    /// `name@version`.
    id: String,
    op: Arc<dyn CustomOperator>,
}

impl std::fmt::Debug for Custom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Custom").field(&self.id).finish()
    }
}

#[derive(Debug, Clone)]
enum MapColumn {
    Input(usize),
    Expr(CompiledExpr),
}

/// An error compiling or applying a step, with its path.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct OpError {
    /// Step path.
    pub path: String,
    /// What went wrong.
    pub message: String,
    /// The expression error, when there was one.
    #[source]
    pub expr: Option<ExprError>,
}

impl OpError {
    fn expr(path: &str, e: ExprError) -> Self {
        OpError {
            path: path.to_string(),
            message: e.to_string(),
            expr: Some(e),
        }
    }
}

impl StatelessOp {
    /// Compiles a `filter`, `map`, `flat_map` or `custom` step against
    /// `input`; custom steps are created from `operators`.
    pub fn compile(
        path: String,
        step: &pb::step::Kind,
        input: &SchemaRef,
        operators: &OperatorRegistry,
    ) -> Result<Self, OpError> {
        use pb::step::Kind;
        match step {
            Kind::Custom(c) => {
                let path = format!("{path}.custom");
                let id = weir_proto::spec::operator_id(&c.name, &c.version);
                let config: OperatorConfig = c
                    .config
                    .iter()
                    .map(|p| (p.key.clone(), p.value.clone()))
                    .collect();
                let op = operators
                    .create(&c.name, &c.version, &config, input)
                    .map_err(|e| OpError {
                        message: if operators.contains(&c.name, &c.version) {
                            format!("{id}: {e}")
                        } else {
                            e.to_string()
                        },
                        path: path.clone(),
                        expr: None,
                    })?;
                Ok(StatelessOp {
                    path,
                    output: op.output_schema(),
                    kind: OpKind::Custom(Custom {
                        id,
                        op: Arc::from(op),
                    }),
                })
            }
            Kind::Filter(sql) => {
                let path = format!("{path}.filter");
                let expr =
                    CompiledExpr::compile(sql, input).map_err(|e| OpError::expr(&path, e))?;
                if expr.data_type() != &DataType::Boolean {
                    return Err(OpError {
                        message: format!(
                            "filter must be a boolean condition, \"{sql}\" is {}",
                            expr.data_type()
                        ),
                        path,
                        expr: None,
                    });
                }
                Ok(StatelessOp {
                    path,
                    kind: OpKind::Filter(expr),
                    output: input.clone(),
                })
            }
            Kind::Map(m) => {
                let path = format!("{path}.map");
                let mut fields: Vec<Field> =
                    input.fields().iter().map(|f| f.as_ref().clone()).collect();
                let mut columns: Vec<MapColumn> = (0..fields.len()).map(MapColumn::Input).collect();
                for a in &m.fields {
                    let fpath = format!("{path}.{}", a.name);
                    let expr = CompiledExpr::compile(&a.expr, input)
                        .map_err(|e| OpError::expr(&fpath, e))?;
                    let field = Field::new(&a.name, expr.data_type().clone(), expr.nullable());
                    match fields.iter().position(|f| f.name() == &a.name) {
                        Some(i) => {
                            fields[i] = field;
                            columns[i] = MapColumn::Expr(expr);
                        }
                        None => {
                            fields.push(field);
                            columns.push(MapColumn::Expr(expr));
                        }
                    }
                }
                Ok(StatelessOp {
                    path,
                    kind: OpKind::Map(columns),
                    output: Arc::new(Schema::new(fields)),
                })
            }
            Kind::FlatMap(f) => {
                let path = format!("{path}.flat_map");
                let Some((field, input_field)) = input.column_with_name(&f.field) else {
                    return Err(OpError {
                        message: format!(
                            "unknown field {:?}; available: {}",
                            f.field,
                            column_names(input)
                        ),
                        path,
                        expr: None,
                    });
                };
                if !is_string(input_field.data_type()) {
                    return Err(OpError {
                        message: format!(
                            "field {:?} must be a string to split, it is {}",
                            f.field,
                            input_field.data_type()
                        ),
                        path,
                        expr: None,
                    });
                }
                let mut fields: Vec<Field> =
                    input.fields().iter().map(|f| f.as_ref().clone()).collect();
                let out_field = Field::new(&f.as_field, DataType::Utf8, true);
                let replace = fields.iter().position(|x| x.name() == &f.as_field);
                match replace {
                    Some(i) => fields[i] = out_field,
                    None => fields.push(out_field),
                }
                Ok(StatelessOp {
                    path,
                    kind: OpKind::FlatMap {
                        field,
                        separator: f.separator.clone(),
                        replace,
                    },
                    output: Arc::new(Schema::new(fields)),
                })
            }
            other => Err(OpError {
                path,
                message: format!("{other:?} is not a stateless step"),
                expr: None,
            }),
        }
    }

    /// Schema of the batches this step produces.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output
    }

    /// Applies the step to a batch.
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, OpError> {
        let wrap = |e: ExprError| OpError::expr(&self.path, e);
        let arrow = |e: arrow_schema::ArrowError| OpError {
            path: self.path.clone(),
            message: e.to_string(),
            expr: None,
        };
        match &self.kind {
            OpKind::Filter(expr) => {
                let mask = expr.evaluate(batch).map_err(wrap)?;
                let mask = mask.as_boolean();
                if mask.null_count() == 0 && mask.true_count() == batch.num_rows() {
                    return Ok(batch.clone());
                }
                filter_record_batch(batch, mask).map_err(arrow)
            }
            OpKind::Map(columns) => {
                let mut out = Vec::with_capacity(columns.len());
                for c in columns {
                    out.push(match c {
                        MapColumn::Input(i) => batch.column(*i).clone(),
                        MapColumn::Expr(e) => e.evaluate(batch).map_err(wrap)?,
                    });
                }
                RecordBatch::try_new(self.output.clone(), out).map_err(arrow)
            }
            OpKind::FlatMap {
                field,
                separator,
                replace,
            } => {
                let strings = string_values(batch.column(*field));
                let mut rows = Vec::with_capacity(batch.num_rows());
                let mut words = StringBuilder::new();
                for row in 0..batch.num_rows() {
                    let Some(s) = strings(row) else { continue };
                    for part in s.split(separator.as_str()).filter(|p| !p.is_empty()) {
                        rows.push(row as u32);
                        words.append_value(part);
                    }
                }
                let idx = UInt32Array::from(rows);
                let mut out: Vec<ArrayRef> = batch
                    .columns()
                    .iter()
                    .map(|c| arrow_select::take::take(c, &idx, None))
                    .collect::<Result<_, _>>()
                    .map_err(arrow)?;
                let words: ArrayRef = Arc::new(words.finish());
                match replace {
                    Some(i) => out[*i] = words,
                    None => out.push(words),
                }
                RecordBatch::try_new(self.output.clone(), out).map_err(arrow)
            }
            OpKind::Custom(Custom { id, op }) => {
                let out = op.apply(batch).map_err(|e| OpError {
                    path: self.path.clone(),
                    message: format!("{id}: {e}"),
                    expr: None,
                })?;
                if out.schema().fields() != self.output.fields() {
                    return Err(OpError {
                        path: self.path.clone(),
                        message: format!(
                            "{id} returned a batch with columns ({}), not its declared output schema ({})",
                            column_names(&out.schema()),
                            column_names(&self.output)
                        ),
                        expr: None,
                    });
                }
                Ok(out)
            }
        }
    }
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8)
        || matches!(t, DataType::Dictionary(_, v) if v.as_ref() == &DataType::Utf8)
}

/// Row accessor for a Utf8 or dictionary-of-Utf8 column.
fn string_values<'a>(col: &'a ArrayRef) -> Box<dyn Fn(usize) -> Option<&'a str> + 'a> {
    match col.data_type() {
        DataType::Dictionary(_, _) => {
            let dict = col.as_dictionary::<Int32Type>();
            let values: &StringArray = dict.values().as_string::<i32>();
            Box::new(move |row| {
                dict.is_valid(row)
                    .then(|| values.value(dict.keys().value(row) as usize))
            })
        }
        _ => {
            let s = col.as_string::<i32>();
            Box::new(move |row| s.is_valid(row).then(|| s.value(row)))
        }
    }
}

/// Comma-separated column names, for error messages.
pub fn column_names(schema: &Schema) -> String {
    schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
