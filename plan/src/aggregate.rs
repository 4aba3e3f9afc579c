//! The stateful operator's plan (`key_by` + optional `window` +
//! `aggregate`): the key expression, the window's time column and the
//! accumulators, type-checked against the operator's input schema. The
//! executor runs it in two halves (pre-aggregation in stage A, merging into
//! state in stage B).

use crate::accumulator::AccKind;
use crate::expr::CompiledExpr;
use crate::step::column_names;
use crate::window::WindowSpec;
use crate::PlanError;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use std::sync::Arc;
use weir_proto::pb;

/// One compiled aggregate output.
#[derive(Debug, Clone)]
pub struct AggPlan {
    /// Output column name.
    pub name: String,
    /// Accumulator.
    pub kind: AccKind,
    /// Input expression (`None` for `count(*)`).
    pub input: Option<CompiledExpr>,
    /// First slot of this accumulator in a group's slots.
    pub offset: usize,
}

/// The compiled stateful operator.
#[derive(Debug, Clone)]
pub struct AggregatePlan {
    /// The `key_by` expression.
    pub key: CompiledExpr,
    /// Event-time window, with the index of the time column.
    pub window: Option<(WindowSpec, usize)>,
    /// The aggregates.
    pub aggs: Vec<AggPlan>,
    /// Slots per group.
    pub stride: usize,
    /// Whether output keys are integers (else strings).
    pub int_keys: bool,
    /// Schema of the emitted rows: `key`, [`window_start`, `window_end`], aggregates.
    pub output: SchemaRef,
}

impl AggregatePlan {
    /// Compiles `key_by` (at `key_path`), `window` (at its path) and
    /// `aggregate` (at `agg_path`) against the operator's input schema.
    pub fn compile(
        key_path: &str,
        key_sql: &str,
        window: Option<(&str, &pb::WindowStep)>,
        agg_path: &str,
        aggregate: &pb::AggregateStep,
        input: &SchemaRef,
    ) -> Result<Self, PlanError> {
        let key = CompiledExpr::compile(key_sql, input)
            .map_err(|e| PlanError::expr(format!("{key_path}.key_by"), e))?;
        let int_keys = key.data_type() == &DataType::Int64;
        let window = match window {
            Some((path, w)) => {
                let Some((idx, field)) = input.column_with_name(&w.time) else {
                    return Err(PlanError::new(
                        format!("{path}.window.time"),
                        format!(
                            "unknown column {:?}; available: {}",
                            w.time,
                            column_names(input)
                        ),
                    ));
                };
                if field.data_type() != &DataType::Int64 {
                    return Err(PlanError::new(
                        format!("{path}.window.time"),
                        format!(
                            "column {:?} must hold event time as BIGINT milliseconds, it is {}",
                            w.time,
                            field.data_type()
                        ),
                    ));
                }
                Some((WindowSpec::from_step(w), idx))
            }
            None => None,
        };
        let mut aggs = Vec::with_capacity(aggregate.aggregates.len());
        let mut stride = 0;
        for a in &aggregate.aggregates {
            let path = format!("{agg_path}.aggregate.{}", a.name);
            let function = pb::AggregateFunction::try_from(a.function).map_err(|_| {
                PlanError::new(&path, format!("unknown aggregate function {}", a.function))
            })?;
            let input_expr = if a.expr.trim().is_empty() {
                None
            } else {
                Some(CompiledExpr::compile(&a.expr, input).map_err(|e| PlanError::expr(&path, e))?)
            };
            let kind = AccKind::for_input(function, input_expr.as_ref().map(|e| e.data_type()))
                .map_err(|m| PlanError::new(&path, m))?;
            aggs.push(AggPlan {
                name: a.name.clone(),
                kind,
                input: input_expr,
                offset: stride,
            });
            stride += kind.slots();
        }
        let mut fields = vec![Field::new(
            "key",
            if int_keys {
                DataType::Int64
            } else {
                DataType::Utf8
            },
            true,
        )];
        if window.is_some() {
            fields.push(Field::new("window_start", DataType::Int64, false));
            fields.push(Field::new("window_end", DataType::Int64, false));
        }
        for a in &aggs {
            fields.push(Field::new(&a.name, a.kind.output_type(), true));
        }
        Ok(AggregatePlan {
            key,
            window,
            aggs,
            stride,
            int_keys,
            output: Arc::new(Schema::new(fields)),
        })
    }

    /// Appends the initial slots of one group (`stride` values) to `out`.
    pub fn init_slots(&self, out: &mut Vec<u64>) {
        for a in &self.aggs {
            out.extend_from_slice(&a.kind.init()[..a.kind.slots()]);
        }
    }

    /// Operator name used in state paths.
    pub fn operator_name(&self) -> &'static str {
        if self.window.is_some() {
            "window"
        } else {
            "aggregate"
        }
    }
}
