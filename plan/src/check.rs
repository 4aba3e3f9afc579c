//! The whole-spec type check that the driver runs at submit and the CLI
//! runs in `weir validate`: the same compilation the executors do at
//! deploy, without reading anything.

use crate::expr::CompiledExpr;
use crate::pipeline::{read_schema, Pipeline};
use crate::step::{CustomOp, CustomSteps};
use crate::PlanError;
use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use weir_proto::pb;
use weir_proto::spec::custom_operators;

/// What [`check_spec`] could check.
#[derive(Debug, Clone)]
pub enum Checked {
    /// Every step type-checks; the sink receives batches of this schema.
    Typed {
        /// The schema of what reaches the sink.
        output: SchemaRef,
    },
    /// The pipeline has custom steps, which only executors that have the
    /// operators can compile: the executors check the spec when the job is
    /// deployed (a failure there fails the job with the step's path).
    AtDeploy {
        /// The custom operators the spec uses (`name@version`).
        operators: Vec<String>,
    },
}

/// Type-checks a whole spec: the source's schema, each step's output
/// schema in turn, the stateful operator and the schema reaching the sink,
/// exactly as the executors compile it at deploy. The error names the step
/// path (`pipeline[0].filter: unknown column 'x' in "x > 1"; available
/// columns: …`).
///
/// A spec with custom steps is not compiled here (see
/// [`Checked::AtDeploy`]). The spec should have passed
/// `weir_proto::spec::validate`; this check does not repeat it.
pub fn check_spec(spec: &pb::JobSpec) -> Result<Checked, PlanError> {
    let operators = custom_operators(spec);
    if !operators.is_empty() {
        return Ok(Checked::AtDeploy { operators });
    }
    let pipeline = Pipeline::compile(spec, read_schema(spec)?, &NoCustomSteps)?;
    check_sink(spec, &pipeline.output)?;
    Ok(Checked::Typed {
        output: pipeline.output,
    })
}

/// Checks the sink's expressions against the schema reaching it: the
/// HBase sink's `row_key` must compile over the output columns.
fn check_sink(spec: &pb::JobSpec, output: &SchemaRef) -> Result<(), PlanError> {
    if let Some(pb::sink::Kind::Hbase(h)) = spec.sink.as_ref().and_then(|s| s.kind.as_ref()) {
        CompiledExpr::compile(&h.row_key, output)
            .map_err(|e| PlanError::expr("sink.hbase.row_key", e))?;
    }
    Ok(())
}

/// Custom steps without operators: never reached, [`check_spec`] returns
/// before compiling a pipeline that has custom steps.
struct NoCustomSteps;

/// A custom step that cannot exist.
enum NoOp {}

impl CustomSteps for NoCustomSteps {
    type Op = NoOp;

    fn compile(&self, step: &pb::CustomStep, _: &SchemaRef) -> Result<NoOp, String> {
        Err(format!(
            "custom operator {}@{} is compiled by the executors",
            step.name, step.version
        ))
    }
}

impl CustomOp for NoOp {
    fn output_schema(&self) -> SchemaRef {
        match *self {}
    }

    fn apply(&self, _: &RecordBatch) -> Result<RecordBatch, String> {
        match *self {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_proto::spec::parse_spec;

    fn check(pipeline: &str, sink: &str) -> Result<Checked, PlanError> {
        let yaml =
            format!("name: t\nsource:\n  generator: {{}}\npipeline:\n{pipeline}sink:\n  {sink}\n");
        check_spec(&parse_spec(&yaml).unwrap())
    }

    fn error(pipeline: &str) -> String {
        check(pipeline, "stdout: {}").unwrap_err().to_string()
    }

    #[test]
    fn every_step_is_checked_against_the_previous_ones_output() {
        let e = error("  - filter: \"nope > 1\"\n");
        assert!(
            e.starts_with("pipeline[0].filter: unknown column 'nope' in \"nope > 1\"; available columns: key, value, ts, text"),
            "{e}"
        );
        // A column a map adds is there for the steps after it, not before.
        let e = error("  - filter: \"double > 2\"\n  - map: { double: \"value * 2\" }\n");
        assert!(
            e.starts_with("pipeline[0].filter: unknown column 'double'"),
            "{e}"
        );
        check(
            "  - map: { double: \"value * 2\" }\n  - filter: \"double > 2\"\n",
            "stdout: {}",
        )
        .unwrap();
        let e = error("  - filter: \"value + 1\"\n");
        assert!(
            e.starts_with("pipeline[0].filter: filter must be a boolean condition"),
            "{e}"
        );
        let e = error("  - flat_map: { field: value, as: word }\n");
        assert!(
            e.starts_with("pipeline[0].flat_map: field \"value\" must be a string"),
            "{e}"
        );
    }

    #[test]
    fn steps_between_key_by_and_aggregate_apply_before_the_key_is_taken() {
        // A map between them feeds the aggregate; a filter reads it.
        check(
            "  - key_by: key\n  - map: { w: \"value * 10\" }\n  - filter: \"w > 5\"\n  \
             - aggregate: { total: { sum: w } }\n",
            "stdout: {}",
        )
        .unwrap();
        let e = error("  - key_by: key\n  - filter: \"nope\"\n  - aggregate: { n: {} }\n");
        assert!(
            e.starts_with("pipeline[1].filter: unknown column 'nope'"),
            "{e}"
        );
        // Setting what the key or the window's time is computed from is
        // refused, naming the step.
        let e = error(
            "  - key_by: \"upper(text)\"\n  - map: { text: \"'x'\" }\n  - aggregate: { n: {} }\n",
        );
        assert!(
            e.starts_with("pipeline[1]: sets column 'text', which key_by or the window reads"),
            "{e}"
        );
        let e = error(
            "  - key_by: key\n  - map: { ts: \"ts + 1\" }\n  - window: { size: 1s, time: ts }\n  \
             - aggregate: { n: {} }\n",
        );
        assert!(e.starts_with("pipeline[1]: sets column 'ts'"), "{e}");
    }

    #[test]
    fn the_stateful_operator_and_the_steps_after_it_are_checked() {
        let e = error("  - key_by: key\n  - aggregate: { total: { sum: text } }\n");
        assert_eq!(
            e,
            "pipeline[1].aggregate.total: needs a numeric input (BIGINT or DOUBLE), got Utf8"
        );
        let e = error(
            "  - key_by: key\n  - window: { size: 1s, time: text }\n  - aggregate: { n: {} }\n",
        );
        assert!(
            e.starts_with("pipeline[1].window.time: column \"text\" must hold event time"),
            "{e}"
        );
        // After the aggregate only its output columns exist.
        let e = error("  - key_by: key\n  - aggregate: { n: {} }\n  - filter: \"value > 1\"\n");
        assert!(
            e.starts_with("pipeline[2].filter: unknown column 'value' in \"value > 1\"; available columns: key, n"),
            "{e}"
        );
        let Checked::Typed { output } = check(
            "  - key_by: key\n  - window: { size: 1s, time: ts }\n  - aggregate: { n: {}, total: { sum: value } }\n",
            "stdout: {}",
        )
        .unwrap() else {
            panic!("no custom steps")
        };
        let names: Vec<&str> = output.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["key", "window_start", "window_end", "n", "total"]);
    }

    /// The HBase sink's row key compiles over what reaches the sink.
    #[test]
    fn the_hbase_row_key_is_checked_against_the_output() {
        let sink = |key: &str| {
            format!("hbase: {{ thrift: \"h:9090\", table: t, family: f, row_key: \"{key}\" }}")
        };
        let pipeline = "  - key_by: key\n  - aggregate: { n: {} }\n";
        check(pipeline, &sink("key")).unwrap();
        check(pipeline, &sink("concat(key, '#', CAST(n AS STRING))")).unwrap();
        let e = check(pipeline, &sink("value")).unwrap_err().to_string();
        assert!(
            e.starts_with("sink.hbase.row_key: unknown column 'value' in \"value\"; available columns: key, n"),
            "{e}"
        );
    }

    /// The check compiles against the columns the reader will produce, as
    /// the executor does: a projected source lists only those.
    #[test]
    fn a_projected_source_is_checked_as_the_executor_reads_it() {
        let e = check(
            "  - filter: \"nope > 1\"\n  - key_by: key\n  - aggregate: { n: {} }\n",
            "stdout: {}",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with(
                "pipeline[0].filter: unknown column 'nope' in \"nope > 1\"; available columns: key"
            ),
            "{e}"
        );
    }

    #[test]
    fn lookup_steps_are_type_checked_without_their_store() {
        let lookup = |key: &str, fields: &str| {
            format!("  - lookup: {{ redis: {{ url: \"redis://127.0.0.1:1\", key: \"{key}\", fields: {{ {fields} }} }} }}\n")
        };
        // The looked-up columns are there for the steps after it, the
        // stateful operator included, and the key's columns are read.
        let pipeline = format!(
            "{}  - filter: \"age > 1\"\n  - key_by: name\n  - aggregate: {{ n: {{}}, s: {{ sum: score }} }}\n{}",
            lookup("'user:' || key", "name: string, age: bigint, score: double"),
            lookup("key", "label: string")
        );
        let Checked::Typed { output } = check(&pipeline, "stdout: {}").unwrap() else {
            panic!("no custom steps")
        };
        let names: Vec<&str> = output.fields().iter().map(|f| f.name().as_str()).collect();
        assert_eq!(names, ["key", "n", "s", "label"]);
        let e = error(&lookup("value", "key: string"));
        assert!(
            e.starts_with("pipeline[0].lookup.redis.fields.key: column \"key\" already exists"),
            "{e}"
        );
        let e = error(&lookup("value > 1", "v: string"));
        assert!(
            e.starts_with("pipeline[0].lookup.redis.key: the key must be a STRING or BIGINT"),
            "{e}"
        );
        let e = error(&format!(
            "  - filter: \"v = 'x'\"\n{}",
            lookup("key", "v: string")
        ));
        assert!(
            e.starts_with("pipeline[0].filter: unknown column 'v'"),
            "{e}"
        );
        let e = error(&format!(
            "{}  - key_by: key\n  - aggregate: {{ n: {{}} }}\n",
            lookup("nope", "v: string")
        ));
        assert!(
            e.starts_with("pipeline[0].lookup.redis.key: unknown column 'nope'"),
            "{e}"
        );
    }

    #[test]
    fn custom_steps_are_left_to_the_executors() {
        let checked = check(
            "  - custom: { name: redact, version: 1 }\n  - filter: \"nope > 1\"\n",
            "stdout: {}",
        )
        .unwrap();
        let Checked::AtDeploy { operators } = checked else {
            panic!("{checked:?}")
        };
        assert_eq!(operators, ["redact@1"]);
    }

    /// The reader's own check of a generator from the wire (validation
    /// refuses such a spec first).
    #[test]
    fn source_limits_are_checked() {
        let mut spec =
            parse_spec("name: t\nsource:\n  generator: { keys: 10 }\nsink:\n  stdout: {}\n")
                .unwrap();
        if let Some(pb::source::Kind::Generator(g)) =
            spec.source.as_mut().and_then(|s| s.kind.as_mut())
        {
            g.keys = 3_000_000_000;
        }
        let e = check_spec(&spec).unwrap_err();
        assert_eq!(e.path, "source.generator.keys");
        assert!(e.to_string().contains("max_generator_keys"), "{e}");
        spec.source = None;
        assert_eq!(
            check_spec(&spec).unwrap_err().to_string(),
            "source: missing"
        );
    }
}
