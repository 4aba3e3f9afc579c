//! Stateless steps as the executor runs them: `filter`, `map` and
//! `flat_map` compiled by `weir-plan`, and `custom` steps created from the
//! executor's [`OperatorRegistry`].

use crate::custom::{CustomOperator, OperatorConfig, OperatorRegistry};
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use std::sync::Arc;
use weir_plan::step::{column_names, CustomOp, CustomSteps, Step};
use weir_proto::pb;

/// A compiled stateless step.
pub type StatelessOp = Step<Custom>;

/// A custom operator instance (see [`crate::custom`]).
#[derive(Clone)]
pub struct Custom {
    /// `name@version`.
    id: String,
    op: Arc<dyn CustomOperator>,
}

impl std::fmt::Debug for Custom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Custom").field(&self.id).finish()
    }
}

impl CustomSteps for OperatorRegistry {
    type Op = Custom;

    fn compile(&self, c: &pb::CustomStep, input: &SchemaRef) -> Result<Custom, String> {
        let id = weir_proto::spec::operator_id(&c.name, &c.version);
        let config: OperatorConfig = c
            .config
            .iter()
            .map(|p| (p.key.clone(), p.value.clone()))
            .collect();
        let op = self
            .create(&c.name, &c.version, &config, input)
            .map_err(|e| {
                if self.contains(&c.name, &c.version) {
                    format!("{id}: {e}")
                } else {
                    e.to_string()
                }
            })?;
        Ok(Custom {
            id,
            op: Arc::from(op),
        })
    }
}

impl CustomOp for Custom {
    fn output_schema(&self) -> SchemaRef {
        self.op.output_schema()
    }

    /// Applies the operator and holds it to its declared output schema.
    fn apply(&self, batch: &RecordBatch) -> Result<RecordBatch, String> {
        let id = &self.id;
        let out = self.op.apply(batch).map_err(|e| format!("{id}: {e}"))?;
        let declared = self.op.output_schema();
        if out.schema().fields() != declared.fields() {
            return Err(format!(
                "{id} returned a batch with columns ({}), not its declared output schema ({})",
                column_names(&out.schema()),
                column_names(&declared)
            ));
        }
        Ok(out)
    }
}
