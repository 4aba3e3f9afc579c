//! A job's steps compiled against its source's schema, in the order they
//! run: the stateless steps before the stateful operator, the stateful
//! operator (`key_by` + optional `window` + `aggregate`), and the steps
//! applied to its output. Every step's output schema is the next step's
//! input, so a wrong column or type anywhere is an error naming the step.

use crate::aggregate::AggregatePlan;
use crate::expr::referenced_columns;
use crate::source::{full_schema, KafkaMeta};
use crate::step::{CustomOp, CustomSteps, Step};
use crate::PlanError;
use arrow_schema::{Schema, SchemaRef};
use std::collections::BTreeSet;
use std::sync::Arc;
use weir_proto::pb::{self, step::Kind};

/// A compiled pipeline; `C` is what a custom step compiles to.
#[derive(Debug, Clone)]
pub struct Pipeline<C> {
    /// Stateless steps before the stateful operator (all steps of a job without one).
    pub pre: Vec<Step<C>>,
    /// The stateful operator, if any.
    pub aggregate: Option<AggregatePlan>,
    /// Steps applied to the stateful operator's output.
    pub post: Vec<Step<C>>,
    /// Schema of what reaches the sink.
    pub output: SchemaRef,
}

/// Where the stateful operator's steps are in a pipeline.
struct Shape<'s> {
    steps: Vec<&'s Kind>,
    /// The `key_by` step, if any.
    key_by: Option<usize>,
    /// The `aggregate` step, if any.
    aggregate: Option<usize>,
}

impl<'s> Shape<'s> {
    fn of(spec: &'s pb::JobSpec) -> Self {
        let steps: Vec<&Kind> = spec
            .pipeline
            .iter()
            .filter_map(|s| s.kind.as_ref())
            .collect();
        Shape {
            key_by: steps.iter().position(|k| matches!(k, Kind::KeyBy(_))),
            aggregate: steps.iter().position(|k| matches!(k, Kind::Aggregate(_))),
            steps,
        }
    }

    /// The end of the stateless steps before the stateful operator.
    fn pre_end(&self) -> usize {
        self.key_by.unwrap_or(self.steps.len())
    }
}

impl<C: CustomOp> Pipeline<C> {
    /// Compiles the steps of `spec` for batches of schema `source` (what
    /// the source reader produces); custom steps are compiled by `custom`.
    /// The error names the step path and the problem.
    pub fn compile<S>(spec: &pb::JobSpec, source: SchemaRef, custom: &S) -> Result<Self, PlanError>
    where
        S: CustomSteps<Op = C>,
    {
        let shape = Shape::of(spec);
        let steps = &shape.steps;
        let mut schema = source;
        let mut pre = Vec::new();
        for (i, step) in steps.iter().enumerate().take(shape.pre_end()) {
            let op = Step::compile(format!("pipeline[{i}]"), step, &schema, custom)?;
            schema = op.output_schema().clone();
            pre.push(op);
        }
        let (aggregate, post_start) = match (shape.key_by, shape.aggregate) {
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
                // Stateless steps between key_by and aggregate apply to each
                // record before it is keyed, so they may not change what
                // the key (or the window's time) is computed from.
                let mut keyed_on: BTreeSet<String> = referenced_columns(key_sql)
                    .map_err(|e| PlanError::expr(format!("pipeline[{k}].key_by"), e))?
                    .into_iter()
                    .collect();
                if let Some((_, w)) = &window {
                    keyed_on.insert(w.time.clone());
                }
                for (j, step) in steps.iter().enumerate().take(a).skip(k + 1) {
                    if matches!(step, Kind::Window(_)) {
                        continue;
                    }
                    let path = format!("pipeline[{j}]");
                    if let Some(column) = written(step).into_iter().find(|c| keyed_on.contains(*c))
                    {
                        return Err(PlanError::new(
                            path,
                            format!(
                                "sets column '{column}', which key_by or the window reads: the key is taken from each record as it comes out of this step, so move the step before key_by"
                            ),
                        ));
                    }
                    let op = Step::compile(path, step, &schema, custom)?;
                    schema = op.output_schema().clone();
                    pre.push(op);
                }
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
                return Err(PlanError::new(
                    format!("pipeline[{k}].key_by"),
                    "must be followed by an aggregate",
                ))
            }
        };
        let mut post = Vec::new();
        for (i, step) in steps.iter().enumerate().skip(post_start) {
            let op = Step::compile(format!("pipeline[{i}]"), step, &schema, custom)?;
            schema = op.output_schema().clone();
            post.push(op);
        }
        Ok(Pipeline {
            pre,
            aggregate,
            post,
            output: schema,
        })
    }
}

/// The columns a stateless step sets.
fn written(step: &Kind) -> Vec<&str> {
    match step {
        Kind::Map(m) => m.fields.iter().map(|a| a.name.as_str()).collect(),
        Kind::FlatMap(f) => vec![f.as_field.as_str()],
        Kind::Lookup(l) => l
            .redis
            .iter()
            .flat_map(|r| r.fields.iter().map(|f| f.name.as_str()))
            .collect(),
        _ => Vec::new(),
    }
}

/// The schema the source reader of `spec` produces: the source's columns
/// that the job reads ([`source_columns`]), in the source's order.
pub fn read_schema(spec: &pb::JobSpec) -> Result<SchemaRef, PlanError> {
    let full = full_schema(spec)?;
    Ok(match source_columns(spec)? {
        None => Arc::new(full),
        Some(columns) => Arc::new(Schema::new(
            full.fields()
                .iter()
                .filter(|f| columns.iter().any(|c| c == f.name()))
                .cloned()
                .collect::<Vec<_>>(),
        )),
    })
}

/// The source columns the job reads (`None` = all), in the source's
/// order. A Kafka record's metadata columns are read only when a step
/// refers to them (`raw`'s first five always are, as they always were).
pub fn source_columns(spec: &pb::JobSpec) -> Result<Option<Vec<String>>, PlanError> {
    if let Some(columns) = needed_columns(spec)? {
        return Ok(Some(columns));
    }
    let Some(pb::source::Kind::Kafka(k)) = spec.source.as_ref().and_then(|s| s.kind.as_ref())
    else {
        return Ok(None);
    };
    let format = pb::KafkaFormat::try_from(k.format).unwrap_or(pb::KafkaFormat::Json);
    let read = referenced_anywhere(spec)?;
    Ok(Some(
        full_schema(spec)?
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .filter(|name| match KafkaMeta::named(format, name) {
                Some(KafkaMeta::Topic | KafkaMeta::Headers) => read.contains(name),
                Some(_) if format != pb::KafkaFormat::Raw => read.contains(name),
                _ => true,
            })
            .collect(),
    ))
}

/// Every column any step's expression or setting names.
fn referenced_anywhere(spec: &pb::JobSpec) -> Result<BTreeSet<String>, PlanError> {
    let refs =
        |path: String, sql: &str| referenced_columns(sql).map_err(|e| PlanError::expr(path, e));
    let mut read = BTreeSet::new();
    for (i, step) in spec.pipeline.iter().enumerate() {
        let path = format!("pipeline[{i}]");
        match step.kind.as_ref() {
            Some(Kind::Filter(sql)) => read.extend(refs(format!("{path}.filter"), sql)?),
            Some(Kind::Map(m)) => {
                for a in &m.fields {
                    read.extend(refs(format!("{path}.map.{}", a.name), &a.expr)?);
                }
            }
            Some(Kind::FlatMap(f)) => {
                read.insert(f.field.clone());
            }
            Some(Kind::KeyBy(sql)) => read.extend(refs(format!("{path}.key_by"), sql)?),
            Some(Kind::Window(w)) => {
                read.insert(w.time.clone());
            }
            Some(Kind::Aggregate(agg)) => {
                for x in agg.aggregates.iter().filter(|x| !x.expr.trim().is_empty()) {
                    read.extend(refs(format!("{path}.aggregate.{}", x.name), &x.expr)?);
                }
            }
            Some(Kind::Lookup(l)) => {
                if let Some(r) = &l.redis {
                    read.extend(refs(format!("{path}.lookup.redis.key"), &r.key)?);
                }
            }
            Some(Kind::Custom(_)) | None => {}
        }
    }
    Ok(read)
}

/// The source columns the job needs (`None` = all), found by walking the
/// steps backwards: a column is needed if a later step reads it before a
/// step replaces it.
fn needed_columns(spec: &pb::JobSpec) -> Result<Option<Vec<String>>, PlanError> {
    let available = full_schema(spec)?;
    let shape = Shape::of(spec);
    let steps = &shape.steps;
    let pre_end = shape.pre_end();
    let is_noop = matches!(
        spec.sink.as_ref().and_then(|s| s.kind.as_ref()),
        Some(pb::sink::Kind::Noop(_))
    );
    if shape.aggregate.is_none() && !is_noop {
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
        |path: String, sql: &str| referenced_columns(sql).map_err(|e| PlanError::expr(path, e));
    let mut needed: BTreeSet<String> = BTreeSet::new();
    if let Some(a) = shape.aggregate {
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
    // The stateless steps between key_by and aggregate run before the key
    // is taken: walked with those before key_by.
    let stateless_end = shape.aggregate.unwrap_or(pre_end);
    for (i, step) in steps.iter().enumerate().take(stateless_end).rev() {
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
            Kind::Lookup(l) => {
                if let Some(r) = &l.redis {
                    for f in &r.fields {
                        needed.remove(&f.name);
                    }
                    needed.extend(refs(format!("pipeline[{i}].lookup.redis.key"), &r.key)?);
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::spec::parse_spec;

    fn columns(format: &str, pipeline: &str, sink: &str) -> Option<Vec<String>> {
        let schema = if format == "json" {
            ", schema: { user: string, n: bigint }"
        } else {
            ""
        };
        let yaml = format!(
            "name: t\nsource:\n  kafka: {{ brokers: \"127.0.0.1:9092\", topic: t, format: {format}{schema} }}\n\
             pipeline:\n{pipeline}sink:\n  {sink}\n"
        );
        source_columns(&parse_spec(&yaml).unwrap()).unwrap()
    }

    fn names(v: &[&str]) -> Option<Vec<String>> {
        Some(v.iter().map(|s| s.to_string()).collect())
    }

    /// A record's metadata is read only when a step names it, so jobs that
    /// do not see exactly the columns they always did.
    #[test]
    fn kafka_metadata_columns_are_read_when_a_step_names_them() {
        let stdout = "stdout: {}";
        assert_eq!(
            columns("json", "  - filter: \"n > 1\"\n", stdout),
            names(&["user", "n"])
        );
        assert_eq!(
            columns(
                "json",
                "  - filter: \"kafka_partition = 0\"\n  - map: { h: \"kafka_headers\" }\n",
                stdout
            ),
            names(&["user", "n", "kafka_partition", "kafka_headers"])
        );
        assert_eq!(columns("text", "", stdout), names(&["value"]));
        assert_eq!(
            columns("text", "  - map: { o: \"kafka_offset\" }\n", stdout),
            names(&["value", "kafka_offset"])
        );
        // raw: its first five columns as ever, topic and headers if named.
        assert_eq!(
            columns("raw", "", stdout),
            names(&["key", "value", "timestamp", "partition", "offset"])
        );
        assert_eq!(
            columns("raw", "  - filter: \"topic = 't'\"\n", stdout),
            names(&["key", "value", "timestamp", "partition", "offset", "topic"])
        );
        // An aggregate reads only what it needs, metadata included.
        assert_eq!(
            columns(
                "json",
                "  - key_by: kafka_key\n  - aggregate: { last: { max: kafka_offset } }\n",
                stdout
            ),
            names(&["kafka_key", "kafka_offset"])
        );
    }
}
