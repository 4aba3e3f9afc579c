//! A job's spec compiled into what its tasks run: the source reader (with
//! only the columns the job uses), the stateless steps, the stateful
//! operator and the steps applied to its output.

use crate::custom::OperatorRegistry;
use crate::expr::referenced_columns;
use crate::operators::aggregate::AggregatePlan;
use crate::operators::stateless::StatelessOp;
use crate::sources::kafka::{self, BadRecords};
use crate::sources::{generator, GeneratorReader, KafkaReader, SourceReader};
use arrow_schema::SchemaRef;
use std::collections::BTreeSet;
use std::sync::Arc;
use weir_proto::pb::{self, step::Kind};

/// A compiled job.
#[derive(Clone)]
pub struct JobPlan {
    /// The job record it was compiled from.
    pub record: pb::JobRecord,
    /// Reads source ranges.
    pub source: Arc<dyn SourceReader>,
    /// Stateless steps before the stateful operator (all steps of a job without one).
    pub pre: Vec<StatelessOp>,
    /// The stateful operator, if any.
    pub aggregate: Option<AggregatePlan>,
    /// Steps applied to the stateful operator's output.
    pub post: Vec<StatelessOp>,
    /// Schema of what reaches the sink.
    pub output: SchemaRef,
}

impl std::fmt::Debug for JobPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobPlan")
            .field("job", &self.spec().name)
            .field("output", &self.output)
            .finish()
    }
}

impl JobPlan {
    /// Compiles a job, creating its custom steps from `operators`; the
    /// error names the step path and the problem.
    pub fn compile(
        record: &pb::JobRecord,
        operators: &OperatorRegistry,
    ) -> Result<JobPlan, String> {
        let spec = record.spec.as_ref().ok_or("the job record has no spec")?;
        let steps: Vec<&Kind> = spec
            .pipeline
            .iter()
            .filter_map(|s| s.kind.as_ref())
            .collect();
        let stateful_at = steps.iter().position(|k| matches!(k, Kind::KeyBy(_)));
        let aggregate_at = steps.iter().position(|k| matches!(k, Kind::Aggregate(_)));
        let pre_end = stateful_at.unwrap_or(steps.len());
        let kind = spec.source.as_ref().and_then(|s| s.kind.as_ref());
        let available = match kind {
            Some(pb::source::Kind::Generator(_)) => generator::full_schema(),
            Some(pb::source::Kind::Kafka(k)) => kafka::full_schema(k),
            None => return Err("source: missing".into()),
        };
        let columns = source_columns(spec, &steps, pre_end, aggregate_at, &available)?;
        let source: Arc<dyn SourceReader> = match kind {
            Some(pb::source::Kind::Generator(g)) => Arc::new(GeneratorReader::new(
                *g,
                record.created_at_ms,
                columns.as_deref(),
            )?),
            Some(pb::source::Kind::Kafka(k)) => {
                let bad = match pb::ErrorPolicy::try_from(spec.on_error) {
                    Ok(pb::ErrorPolicy::Skip) => BadRecords::Skip,
                    Ok(pb::ErrorPolicy::DeadLetter) => BadRecords::DeadLetter,
                    _ => BadRecords::Fail,
                };
                Arc::new(KafkaReader::new(
                    &spec.name,
                    record.created_at_ms,
                    k,
                    columns.as_deref(),
                    bad,
                    spec.dead_letter.as_ref(),
                )?)
            }
            None => return Err("source: missing".into()),
        };
        let mut schema = source.schema();
        let mut pre = Vec::new();
        for (i, step) in steps.iter().enumerate().take(pre_end) {
            let op = StatelessOp::compile(format!("pipeline[{i}]"), step, &schema, operators)
                .map_err(|e| e.to_string())?;
            schema = op.output_schema().clone();
            pre.push(op);
        }
        let (aggregate, post_start) = match (stateful_at, aggregate_at) {
            (Some(k), Some(a)) => {
                let Kind::KeyBy(key_sql) = steps[k] else {
                    unreachable!("position found key_by")
                };
                let Kind::Aggregate(agg) = steps[a] else {
                    unreachable!("position found aggregate")
                };
                let window = steps[k + 1..a]
                    .iter()
                    .enumerate()
                    .find_map(|(j, s)| match s {
                        Kind::Window(w) => Some((format!("pipeline[{}]", k + 1 + j), w)),
                        _ => None,
                    });
                let plan = AggregatePlan::compile(
                    &format!("pipeline[{k}]"),
                    key_sql,
                    window.as_ref().map(|(p, w)| (p.as_str(), *w)),
                    &format!("pipeline[{a}]"),
                    agg,
                    &schema,
                )?;
                schema = plan.output.clone();
                (Some(plan), a + 1)
            }
            (None, _) => (None, steps.len()),
            (Some(k), None) => {
                return Err(format!(
                    "pipeline[{k}].key_by: must be followed by an aggregate"
                ))
            }
        };
        let mut post = Vec::new();
        for (i, step) in steps.iter().enumerate().skip(post_start) {
            let op = StatelessOp::compile(format!("pipeline[{i}]"), step, &schema, operators)
                .map_err(|e| e.to_string())?;
            schema = op.output_schema().clone();
            post.push(op);
        }
        Ok(JobPlan {
            record: record.clone(),
            source,
            pre,
            aggregate,
            post,
            output: schema,
        })
    }

    /// The job's spec.
    pub fn spec(&self) -> &pb::JobSpec {
        self.record.spec.as_ref().expect("checked at compile")
    }
}

/// The source columns the job needs (`None` = all), found by walking the
/// steps backwards: a column is needed if a later step reads it before a
/// step replaces it.
fn source_columns(
    spec: &pb::JobSpec,
    steps: &[&Kind],
    pre_end: usize,
    aggregate_at: Option<usize>,
    available: &arrow_schema::Schema,
) -> Result<Option<Vec<String>>, String> {
    let is_noop = matches!(
        spec.sink.as_ref().and_then(|s| s.kind.as_ref()),
        Some(pb::sink::Kind::Noop(_))
    );
    if aggregate_at.is_none() && !is_noop {
        // Every record reaches the sink with all its columns.
        return Ok(None);
    }
    if steps[..pre_end]
        .iter()
        .any(|s| matches!(s, Kind::Custom(_)))
    {
        // A custom operator may read any column.
        return Ok(None);
    }
    let refs =
        |path: String, sql: &str| referenced_columns(sql).map_err(|e| format!("{path}: {e}"));
    let mut needed: BTreeSet<String> = BTreeSet::new();
    if let Some(a) = aggregate_at {
        for (i, step) in steps.iter().enumerate().take(a + 1).skip(pre_end) {
            match step {
                Kind::KeyBy(sql) => needed.extend(refs(format!("pipeline[{i}].key_by"), sql)?),
                Kind::Window(w) => {
                    needed.insert(w.time.clone());
                }
                Kind::Aggregate(agg) => {
                    for x in agg.aggregates.iter().filter(|x| !x.expr.trim().is_empty()) {
                        needed.extend(refs(
                            format!("pipeline[{i}].aggregate.{}", x.name),
                            &x.expr,
                        )?);
                    }
                }
                _ => {}
            }
        }
    }
    for (i, step) in steps.iter().enumerate().take(pre_end).rev() {
        match step {
            Kind::Filter(sql) => needed.extend(refs(format!("pipeline[{i}].filter"), sql)?),
            Kind::Map(m) => {
                for a in &m.fields {
                    needed.remove(&a.name);
                }
                for a in &m.fields {
                    needed.extend(refs(format!("pipeline[{i}].map.{}", a.name), &a.expr)?);
                }
            }
            Kind::FlatMap(f) => {
                needed.remove(&f.as_field);
                needed.insert(f.field.clone());
            }
            _ => {}
        }
    }
    Ok(Some(
        needed
            .into_iter()
            .filter(|n| available.column_with_name(n).is_some())
            .collect(),
    ))
}
