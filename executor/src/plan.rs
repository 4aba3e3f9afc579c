//! A job's spec compiled into what its tasks run: the source reader (with
//! only the columns the job uses) and the pipeline `weir-plan` compiles
//! against the reader's schema: the stateless steps, the stateful operator
//! and the steps applied to its output.

use crate::custom::OperatorRegistry;
use crate::operators::aggregate::AggregatePlan;
use crate::operators::stateless::StatelessOp;
use crate::sources::kafka::BadRecords;
use crate::sources::{GeneratorReader, KafkaReader, SourceReader};
use arrow_schema::SchemaRef;
use std::sync::Arc;
use weir_plan::pipeline::source_columns;
use weir_plan::Pipeline;
use weir_proto::pb;

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
        let columns = source_columns(spec).map_err(|e| e.to_string())?;
        let source: Arc<dyn SourceReader> = match spec.source.as_ref().and_then(|s| s.kind.as_ref())
        {
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
        let pipeline =
            Pipeline::compile(spec, source.schema(), operators).map_err(|e| e.to_string())?;
        Ok(JobPlan {
            record: record.clone(),
            source,
            pre: pipeline.pre,
            aggregate: pipeline.aggregate,
            post: pipeline.post,
            output: pipeline.output,
        })
    }

    /// The job's spec.
    pub fn spec(&self) -> &pb::JobSpec {
        self.record.spec.as_ref().expect("checked at compile")
    }
}
