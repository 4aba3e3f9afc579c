//! Stateless steps: `filter`, `map` and `flat_map`, compiled once per job
//! deployment against their input schema and applied to whole record
//! batches, `custom` steps, which only the executor can compile (it
//! holds the operators; see [`CustomSteps`]), and `lookup` steps, which
//! type-check here and run on the executor, which holds the store's client
//! (see [`Step::lookup`]).

use crate::expr::{CompiledExpr, ExprError};
use crate::lookup::LookupPlan;
use crate::PlanError;
use arrow_array::builder::StringBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{Array, ArrayRef, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use arrow_select::filter::filter_record_batch;
use std::sync::Arc;
use weir_proto::pb;

/// Compiles the `custom:` steps of a pipeline. The executor implements it
/// with its operator registry; without one (the driver, the CLI) a
/// pipeline with custom steps is not compiled at all (see
/// [`check_spec`](crate::check_spec)).
pub trait CustomSteps {
    /// A compiled custom step.
    type Op: CustomOp;

    /// Creates the operator of `step` for batches of schema `input`; the
    /// error says what is wrong (the caller adds the step's path).
    fn compile(&self, step: &pb::CustomStep, input: &SchemaRef) -> Result<Self::Op, String>;
}

/// A compiled custom step.
pub trait CustomOp {
    /// Schema of the batches the step produces.
    fn output_schema(&self) -> SchemaRef;

    /// Applies the step to a batch; the error says what went wrong (the
    /// caller adds the step's path).
    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, String>;
}

/// A compiled stateless step; `C` is what a custom step compiles to.
#[derive(Debug, Clone)]
pub struct Step<C> {
    /// Step path in the spec, e.g. `pipeline[1].filter`.
    pub path: String,
    kind: StepKind<C>,
    output: SchemaRef,
}

#[derive(Debug, Clone)]
enum StepKind<C> {
    Filter(CompiledExpr),
    /// Each output column: an input column index or an expression.
    Map(Vec<MapColumn>),
    FlatMap {
        field: usize,
        separator: String,
        replace: Option<usize>,
    },
    Custom(C),
    Lookup(Arc<LookupPlan>),
}

#[derive(Debug, Clone)]
enum MapColumn {
    Input(usize),
    Expr(CompiledExpr),
}

impl<C: CustomOp> Step<C> {
    /// Compiles a `filter`, `map`, `flat_map` or `custom` step at `path`
    /// (e.g. `pipeline[1]`) against `input`; custom steps are compiled by
    /// `custom`.
    pub fn compile<S>(
        path: String,
        step: &pb::step::Kind,
        input: &SchemaRef,
        custom: &S,
    ) -> Result<Self, PlanError>
    where
        S: CustomSteps<Op = C>,
    {
        use pb::step::Kind;
        match step {
            Kind::Custom(c) => {
                let path = format!("{path}.custom");
                let op = custom
                    .compile(c, input)
                    .map_err(|message| PlanError::new(&path, message))?;
                Ok(Step {
                    path,
                    output: op.output_schema(),
                    kind: StepKind::Custom(op),
                })
            }
            Kind::Lookup(l) => {
                let plan = LookupPlan::compile(format!("{path}.lookup"), l, input)?;
                Ok(Step {
                    path: plan.path().to_string(),
                    output: plan.output_schema().clone(),
                    kind: StepKind::Lookup(Arc::new(plan)),
                })
            }
            Kind::Filter(sql) => {
                let path = format!("{path}.filter");
                let expr =
                    CompiledExpr::compile(sql, input).map_err(|e| PlanError::expr(&path, e))?;
                if expr.data_type() != &DataType::Boolean {
                    let message = format!(
                        "filter must be a boolean condition, \"{sql}\" is {}",
                        expr.data_type()
                    );
                    return Err(PlanError::new(path, message));
                }
                Ok(Step {
                    path,
                    kind: StepKind::Filter(expr),
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
                        .map_err(|e| PlanError::expr(fpath, e))?;
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
                Ok(Step {
                    path,
                    kind: StepKind::Map(columns),
                    output: Arc::new(Schema::new(fields)),
                })
            }
            Kind::FlatMap(f) => {
                let path = format!("{path}.flat_map");
                let Some((field, input_field)) = input.column_with_name(&f.field) else {
                    let message = format!(
                        "unknown field {:?}; available: {}",
                        f.field,
                        column_names(input)
                    );
                    return Err(PlanError::new(path, message));
                };
                if !is_string(input_field.data_type()) {
                    let message = format!(
                        "field {:?} must be a string to split, it is {}",
                        f.field,
                        input_field.data_type()
                    );
                    return Err(PlanError::new(path, message));
                }
                let mut fields: Vec<Field> =
                    input.fields().iter().map(|f| f.as_ref().clone()).collect();
                let out_field = Field::new(&f.as_field, DataType::Utf8, true);
                let replace = fields.iter().position(|x| x.name() == &f.as_field);
                match replace {
                    Some(i) => fields[i] = out_field,
                    None => fields.push(out_field),
                }
                Ok(Step {
                    path,
                    kind: StepKind::FlatMap {
                        field,
                        separator: f.separator.clone(),
                        replace,
                    },
                    output: Arc::new(Schema::new(fields)),
                })
            }
            other => Err(PlanError::new(
                path,
                format!("{other:?} is not a stateless step"),
            )),
        }
    }

    /// Schema of the batches this step produces.
    pub fn output_schema(&self) -> &SchemaRef {
        &self.output
    }

    /// The lookup this step runs, if it is a lookup step: the caller
    /// fetches the values of its keys from the store and adds them with
    /// [`LookupPlan::assemble`]; [`apply`](Self::apply) cannot run it.
    pub fn lookup(&self) -> Option<&Arc<LookupPlan>> {
        match &self.kind {
            StepKind::Lookup(plan) => Some(plan),
            _ => None,
        }
    }

    /// Applies the step to a batch (a lookup step is an error: see
    /// [`lookup`](Self::lookup)).
    pub fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, PlanError> {
        let wrap = |e: ExprError| PlanError::expr(&self.path, e);
        let arrow = |e: arrow_schema::ArrowError| PlanError::new(&self.path, e.to_string());
        match &self.kind {
            StepKind::Filter(expr) => {
                let mask = expr.evaluate(batch).map_err(wrap)?;
                let mask = mask.as_boolean();
                if mask.null_count() == 0 && mask.true_count() == batch.num_rows() {
                    return Ok(batch.clone());
                }
                filter_record_batch(batch, mask).map_err(arrow)
            }
            StepKind::Map(columns) => {
                let mut out = Vec::with_capacity(columns.len());
                for c in columns {
                    out.push(match c {
                        MapColumn::Input(i) => batch.column(*i).clone(),
                        MapColumn::Expr(e) => e.evaluate(batch).map_err(wrap)?,
                    });
                }
                RecordBatch::try_new(self.output.clone(), out).map_err(arrow)
            }
            StepKind::FlatMap {
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
            StepKind::Custom(op) => op
                .apply(batch)
                .map_err(|message| PlanError::new(&self.path, message)),
            StepKind::Lookup(_) => Err(PlanError::new(
                &self.path,
                "a lookup step runs only where its store's client is (the executor)",
            )),
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
