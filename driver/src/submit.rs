//! Submitting a job: store a new one, resume the stored one, or upgrade it
//! to a changed spec by the rules of [`crate::upgrade`].

use crate::batch::now_ms;
use crate::error::DriverError;
use crate::metadata::{command, MetadataStore};
use tracing::{debug, info};
use weir_plan::Checked;
use weir_proto::pb;
use weir_proto::spec::fingerprint;

/// Stores a job, or resumes the stored job of the same name and spec
/// (Spark's `getOrCreate`). Returns the record and whether it was resumed.
/// A changed spec is applied when every change is compatible (see
/// [`submit_with`] for the options that allow the others).
pub fn submit(
    meta: &dyn MetadataStore,
    spec: pb::JobSpec,
) -> Result<(pb::JobRecord, bool), DriverError> {
    let s = submit_with(meta, spec, &SubmitOptions::default())?;
    Ok((s.record, s.resumed))
}

/// Where a job's offsets restart with `--from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromOffsets {
    /// Every partition from offset 0.
    Earliest,
    /// Keep the offsets reached (only the state is reset).
    Latest,
    /// `partition:offset` pairs; partitions not named start at 0.
    Offsets(Vec<(u32, u64)>),
}

impl FromOffsets {
    /// Parses `earliest`, `latest` or `p:o,p:o,...`.
    pub fn parse(value: &str) -> Result<Self, DriverError> {
        let bad = |message: String| DriverError::BadFrom {
            value: value.to_string(),
            message,
        };
        match value.trim() {
            "earliest" => Ok(FromOffsets::Earliest),
            "latest" => Ok(FromOffsets::Latest),
            "" => Err(bad("give earliest, latest or partition:offset,...".into())),
            list => list
                .split(',')
                .map(|pair| {
                    let (p, o) = pair.trim().split_once(':').ok_or_else(|| {
                        bad(format!(
                            "{pair:?} is not partition:offset (or earliest/latest)"
                        ))
                    })?;
                    let p = p
                        .trim()
                        .parse()
                        .map_err(|_| bad(format!("{p:?} is not a partition number")))?;
                    let o = o
                        .trim()
                        .parse()
                        .map_err(|_| bad(format!("{o:?} is not an offset")))?;
                    Ok((p, o))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(FromOffsets::Offsets),
        }
    }
}

/// Options of a submit that changes a stored job.
#[derive(Debug, Clone, Default)]
pub struct SubmitOptions {
    /// Start a new state generation while the offsets continue.
    pub reset_state: bool,
    /// Restart from these offsets (with a new state generation).
    pub from: Option<FromOffsets>,
    /// Compute the diff only.
    pub dry_run: bool,
}

/// What a submit did (or, dry, would do).
#[derive(Debug, Clone)]
pub struct Submitted {
    /// The job record now stored (or that would be).
    pub record: pb::JobRecord,
    /// An existing job of that name was resumed or upgraded.
    pub resumed: bool,
    /// The changes against the stored spec.
    pub diff: crate::upgrade::PlanDiff,
}

impl Submitted {
    /// The verdict: "new" for a new job, else the diff's.
    pub fn verdict(&self) -> &'static str {
        if self.resumed {
            self.diff.verdict().as_str()
        } else {
            "new"
        }
    }
}

/// Type-checks the whole spec as the executors will compile it at deploy
/// (`weir_plan::check_spec`), so a spec that cannot run is refused before
/// it is stored. Custom steps are compiled by the executors that have
/// their operators, at deploy.
fn check_plan(spec: &pb::JobSpec) -> Result<(), DriverError> {
    match weir_plan::check_spec(spec) {
        Ok(Checked::Typed { output }) => check_postgres(spec, &output),
        Ok(Checked::AtDeploy { operators }) => {
            debug!(job = %spec.name, ?operators, "custom steps are type-checked by the executors at deploy");
            Ok(())
        }
        Err(error) => Err(DriverError::InvalidSpec {
            job: spec.name.clone(),
            error: Box::new(error),
        }),
    }
}

/// How long submit waits for the sink's database.
const POSTGRES_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Checks a `postgres` sink's table against the job's output when the
/// database is reachable from this driver (with a URL it can resolve):
/// a missing table, column or unique index, a mistyped column or refused
/// credentials refuse the spec now. Unreachable, the check is left to the
/// executors, before their first write.
fn check_postgres(spec: &pb::JobSpec, output: &arrow_schema::Schema) -> Result<(), DriverError> {
    let Some(pb::sink::Kind::Postgres(pg)) = spec.sink.as_ref().and_then(|s| s.kind.as_ref())
    else {
        return Ok(());
    };
    let url = match weir_proto::spec::secrets::resolve(
        "sink.postgres.url",
        &pg.url,
        "driver",
        &weir_proto::spec::secrets::ProcessLookup,
    ) {
        Ok(url) => url,
        Err(e) => {
            debug!(job = %spec.name, error = %e, "the sink's URL is resolved by the executors; its table is checked there");
            return Ok(());
        }
    };
    let refuse = |message: String| DriverError::InvalidSpec {
        job: spec.name.clone(),
        error: Box::new(weir_plan::PlanError::new("sink.postgres.table", message)),
    };
    let mut client = match weir_pg::connect(&url, POSTGRES_CHECK_TIMEOUT) {
        Ok(c) => c,
        Err(weir_pg::Failure::User(m)) => return Err(refuse(m)),
        Err(weir_pg::Failure::Outage(m)) => {
            info!(job = %spec.name, error = %m, "the sink's database is not reachable from this driver; the executors check the table before their first write");
            return Ok(());
        }
    };
    let schema = if pg.columns.is_empty() {
        output.clone()
    } else {
        let mut fields = Vec::new();
        for c in &pg.columns {
            match output.field_with_name(c) {
                Ok(f) => fields.push(f.clone()),
                Err(_) => {
                    return Err(DriverError::InvalidSpec {
                        job: spec.name.clone(),
                        error: Box::new(weir_plan::PlanError::new(
                            "sink.postgres.columns",
                            format!("{c} is not a column of the job's output"),
                        )),
                    })
                }
            }
        }
        arrow_schema::Schema::new(fields)
    };
    let upsert = pg.mode != pb::PostgresMode::Append as i32;
    match weir_pg::check_table(&mut client, &pg.table, &schema, &pg.key, upsert) {
        Ok(()) | Err(weir_pg::Failure::Outage(_)) => Ok(()),
        Err(weir_pg::Failure::User(m)) => Err(refuse(format!("table {}: {m}", pg.table))),
    }
}

/// Checks the spec's Kafka `properties` against librdkafka (an unknown or
/// invalid setting is refused with its path), and resolves the secret
/// references of the source's properties, which this driver resolves
/// itself when it lists offsets: a reference it cannot resolve is refused
/// now, naming the property and the variable or file, rather than failing
/// the job at its first plan. The executors resolve theirs at deploy.
fn check_kafka(spec: &pb::JobSpec) -> Result<(), DriverError> {
    let invalid = |path: String, message: String| DriverError::InvalidSpec {
        job: spec.name.clone(),
        error: Box::new(weir_plan::PlanError::new(path, message)),
    };
    if let Err(e) = weir_kafka::check_properties(spec) {
        let mut issues = e.issues.into_iter();
        let first = issues
            .next()
            .unwrap_or_else(|| weir_proto::spec::SpecIssue {
                path: String::new(),
                message: "invalid Kafka properties".into(),
            });
        let mut message = first.message;
        for more in issues {
            message.push_str(&format!("; {more}"));
        }
        return Err(invalid(first.path, message));
    }
    if let Some(pb::source::Kind::Kafka(k)) = spec.source.as_ref().and_then(|s| s.kind.as_ref()) {
        let path = "source.kafka.properties";
        if let Err(e) = weir_kafka::resolve_properties(path, &k.properties, "driver") {
            let text = e.to_string();
            // The secret error names the property first; keep it as the path.
            let (at, message) = text.split_once(": ").unwrap_or((path, &text));
            return Err(invalid(at.to_string(), message.to_string()));
        }
    }
    Ok(())
}

pub(crate) fn check_format(
    job: &str,
    what: &'static str,
    spec: &pb::JobSpec,
) -> Result<(), DriverError> {
    if spec.format_version > weir_proto::spec::SPEC_FORMAT_VERSION {
        return Err(DriverError::UnsupportedFormat {
            job: job.to_string(),
            what,
            found: spec.format_version,
            supported: weir_proto::spec::SPEC_FORMAT_VERSION,
        });
    }
    Ok(())
}

/// Stores a job, resumes it, or upgrades it to a changed spec.
///
/// Compatible changes are stored at once; the running driver picks the new
/// record up at its next batch boundary. Changes that need a state decision
/// are allowed with `reset_state` (new state generation based at the last
/// committed batch, offsets continue) or `from`; changes that need an offset
/// decision only with `from` (new state generation, next batch starts at the
/// chosen offsets). Anything else is refused with every change listed.
///
/// First of all the spec must type-check as a whole
/// ([`DriverError::InvalidSpec`] otherwise, with nothing stored), also on
/// a dry run.
pub fn submit_with(
    meta: &dyn MetadataStore,
    spec: pb::JobSpec,
    options: &SubmitOptions,
) -> Result<Submitted, DriverError> {
    let fp = fingerprint(&spec);
    check_format(&spec.name, "the submitted", &spec)?;
    check_plan(&spec)?;
    check_kafka(&spec)?;
    let Some(existing) = meta.job(&spec.name)? else {
        let now = now_ms();
        let record = pb::JobRecord {
            spec: Some(spec),
            fingerprint: fp,
            created_at_ms: now,
            state: pb::JobState::Running as i32,
            version: 1,
            updated_at_ms: now,
            ..Default::default()
        };
        if !options.dry_run {
            meta.apply(command::put_job(record.clone()))?;
        }
        return Ok(Submitted {
            record,
            resumed: false,
            diff: Default::default(),
        });
    };
    let stored = existing.spec.clone().unwrap_or_default();
    check_format(&spec.name, "the stored", &stored)?;
    let diff = crate::upgrade::diff(&stored, &spec);
    let refused = diff.refused(options.reset_state, options.from.is_some());
    if options.dry_run {
        return Ok(Submitted {
            record: existing,
            resumed: true,
            diff,
        });
    }
    if !refused.is_empty() {
        return Err(DriverError::UpgradeRefused(
            crate::upgrade::refusal_message(&spec.name, &refused),
        ));
    }
    let reset = options.reset_state || options.from.is_some();
    let mut record = existing.clone();
    if !diff.changes.is_empty() || reset {
        // A decided batch is finished before the new record runs: the new
        // state generation and `--from` offsets start after it.
        let last = meta.progress(&spec.name)?.last_decided();
        record.spec = Some(spec);
        record.fingerprint = fp;
        record.version = existing.version.max(1) + 1;
        record.updated_at_ms = now_ms();
        if reset {
            record.state_generation += 1;
            record.state_base_batch = last;
        }
        if let Some(from) = &options.from {
            record.offsets_from_batch = last;
            record.offsets_from =
                offsets_for(record.spec.as_ref().expect("set"), from, last, meta)?;
        }
    }
    record.state = pb::JobState::Running as i32;
    record.error.clear();
    if !options.dry_run {
        if record != existing {
            meta.apply(command::put_job(record.clone()))?;
        } else if existing.state != pb::JobState::Running as i32 {
            // Submitting a stopped, failed or finished job runs it again
            // from its checkpoint.
            meta.apply(command::job_state(
                &record_name(&record),
                pb::JobState::Running,
                "",
            ))?;
        }
    }
    Ok(Submitted {
        record,
        resumed: true,
        diff,
    })
}

fn record_name(record: &pb::JobRecord) -> String {
    record
        .spec
        .as_ref()
        .map(|s| s.name.clone())
        .unwrap_or_default()
}

/// The offsets a `--from` choice names, as empty ranges per partition.
fn offsets_for(
    spec: &pb::JobSpec,
    from: &FromOffsets,
    last_committed: u64,
    meta: &dyn MetadataStore,
) -> Result<Vec<pb::OffsetRange>, DriverError> {
    let partitions = match spec.source.as_ref().and_then(|s| s.kind.as_ref()) {
        Some(pb::source::Kind::Generator(g)) => g.partitions,
        Some(pb::source::Kind::Kafka(_)) => {
            return Err(DriverError::BadFrom {
                value: format!("{from:?}"),
                message: "--from is not supported for Kafka sources yet; set source.kafka.start and use a new job name".into(),
            })
        }
        None => 0,
    };
    let at = |partition: u32, offset: u64| pb::OffsetRange {
        partition,
        start: offset,
        end: offset,
    };
    Ok(match from {
        FromOffsets::Earliest => (0..partitions).map(|p| at(p, 0)).collect(),
        FromOffsets::Latest => {
            // Where the job is: the last committed plan's ends (a partition
            // the new source does not have is dropped, a new one starts at 0).
            let plan = match last_committed {
                0 => None,
                b => meta.plan(&spec.name, b)?,
            };
            (0..partitions)
                .map(|p| {
                    let end = plan
                        .as_ref()
                        .and_then(|pl| pl.ranges.iter().find(|r| r.partition == p))
                        .map_or(0, |r| r.end);
                    at(p, end)
                })
                .collect()
        }
        FromOffsets::Offsets(pairs) => {
            if let Some((p, _)) = pairs.iter().find(|(p, _)| *p >= partitions) {
                return Err(DriverError::BadFrom {
                    value: format!("{p}:..."),
                    message: format!("the source has {partitions} partitions (0..{partitions})"),
                });
            }
            (0..partitions)
                .map(|p| {
                    let o = pairs.iter().find(|(q, _)| *q == p).map_or(0, |(_, o)| *o);
                    at(p, o)
                })
                .collect()
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::SledMetadata;
    use weir_proto::spec::parse_spec;

    const SPEC: &str = "name: j
batch_interval: 100ms
state_partitions: 2
source:
  generator: { partitions: 2, keys: 5, rate: 0, total: 100, max_records_per_partition: 10, event_time_rate: 10 }
pipeline:
  - key_by: key
  - aggregate: { count: {} }
sink:
  noop: {}
";

    fn spec(from: &str, to: &str) -> pb::JobSpec {
        parse_spec(&SPEC.replace(from, to)).unwrap()
    }

    fn store() -> (tempfile::TempDir, SledMetadata) {
        let dir = tempfile::tempdir().unwrap();
        let meta = SledMetadata::open(dir.path()).unwrap();
        (dir, meta)
    }

    /// Commits one batch reading `ends` on each partition.
    fn commit_batch(meta: &SledMetadata, batch_id: u64, ends: &[u64]) {
        let ranges = ends
            .iter()
            .enumerate()
            .map(|(p, e)| pb::OffsetRange {
                partition: p as u32,
                start: 0,
                end: *e,
            })
            .collect();
        meta.apply(command::planned(pb::BatchPlan {
            job: "j".into(),
            batch_id,
            ranges,
            ..Default::default()
        }))
        .unwrap();
        meta.apply(command::committing(pb::BatchCommit {
            job: "j".into(),
            batch_id,
            ..Default::default()
        }))
        .unwrap();
        meta.apply(command::committed("j", batch_id)).unwrap();
    }

    fn opts(reset_state: bool, from: Option<&str>) -> SubmitOptions {
        SubmitOptions {
            reset_state,
            from: from.map(|f| FromOffsets::parse(f).unwrap()),
            dry_run: false,
        }
    }

    /// A spec whose steps do not type-check is refused before anything
    /// is stored: as a new job, as a dry run, and as a change of a stored
    /// job, which keeps its record.
    #[test]
    fn a_spec_that_does_not_type_check_is_refused_and_not_stored() {
        let (_d, meta) = store();
        let bad = parse_spec(&SPEC.replace("pipeline:\n", "pipeline:\n  - filter: \"nope > 1\"\n"))
            .unwrap();
        let refused = |options: &SubmitOptions| {
            let e = submit_with(&meta, bad.clone(), options).unwrap_err();
            assert!(matches!(e, DriverError::InvalidSpec { .. }), "{e:?}");
            let message = e.to_string();
            assert!(
                message.starts_with(
                    "invalid job spec j: pipeline[0].filter: unknown column 'nope' in \"nope > 1\""
                ),
                "{message}"
            );
        };
        refused(&opts(false, None));
        refused(&SubmitOptions {
            dry_run: true,
            ..Default::default()
        });
        assert!(meta.job("j").unwrap().is_none());
        assert!(meta.jobs().unwrap().is_empty());

        submit_with(&meta, spec("", ""), &opts(false, None)).unwrap();
        refused(&opts(true, None));
        let stored = meta.job("j").unwrap().unwrap();
        assert_eq!(stored.version, 1);
        assert_eq!(stored.spec.unwrap(), spec("", ""));
        assert!(meta.history("j").unwrap().is_empty());
    }

    #[test]
    fn new_same_and_compatible() {
        let (_d, meta) = store();
        let s = submit_with(&meta, spec("", ""), &opts(false, None)).unwrap();
        assert!(!s.resumed);
        assert_eq!(s.verdict(), "new");
        assert_eq!(s.record.version, 1);
        let created = s.record.created_at_ms;
        let s = submit_with(&meta, spec("", ""), &opts(false, None)).unwrap();
        assert!(s.resumed);
        assert_eq!(s.verdict(), "unchanged");
        assert_eq!(s.record.version, 1);

        // Dry run: nothing stored.
        let dry = SubmitOptions {
            dry_run: true,
            ..Default::default()
        };
        let s = submit_with(&meta, spec("100ms", "200ms"), &dry).unwrap();
        assert_eq!(s.verdict(), "compatible");
        assert_eq!(meta.job("j").unwrap().unwrap().version, 1);

        let s = submit_with(&meta, spec("100ms", "200ms"), &opts(false, None)).unwrap();
        assert_eq!(s.verdict(), "compatible");
        let stored = meta.job("j").unwrap().unwrap();
        assert_eq!(stored.version, 2);
        assert_eq!(stored.created_at_ms, created);
        assert_eq!(stored.state_generation, 0);
        assert_eq!(stored.spec.unwrap().batch_interval_ms, 200);
        let history = meta.history("j").unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].version, 1);
        assert_eq!(history[0].spec.as_ref().unwrap().batch_interval_ms, 100);
    }

    #[test]
    fn a_reset_starts_after_a_batch_whose_commit_was_decided() {
        let (_d, meta) = store();
        submit_with(&meta, spec("", ""), &opts(false, None)).unwrap();
        commit_batch(&meta, 1, &[10, 10]);
        // Batch 2 is decided, its `committed` record never made it (the
        // driver died after publishing its output).
        let range = |p, end| pb::OffsetRange {
            partition: p,
            start: 10,
            end,
        };
        meta.apply(command::planned(pb::BatchPlan {
            job: "j".into(),
            batch_id: 2,
            ranges: vec![range(0, 20), range(1, 20)],
            ..Default::default()
        }))
        .unwrap();
        meta.apply(command::committing(pb::BatchCommit {
            job: "j".into(),
            batch_id: 2,
            ..Default::default()
        }))
        .unwrap();
        let changed = spec("key_by: key", "key_by: value");
        let s = submit_with(&meta, changed.clone(), &opts(true, None)).unwrap();
        assert_eq!(s.record.state_base_batch, 2);
        let s = submit_with(&meta, changed, &opts(false, Some("latest"))).unwrap();
        assert_eq!(
            (s.record.state_base_batch, s.record.offsets_from_batch),
            (2, 2)
        );
        let ends: Vec<u64> = s.record.offsets_from.iter().map(|r| r.start).collect();
        assert_eq!(
            ends,
            [20, 20],
            "--from latest starts where the decided batch ended"
        );
    }

    #[test]
    fn state_change_needs_reset_and_starts_a_generation() {
        let (_d, meta) = store();
        submit_with(&meta, spec("", ""), &opts(false, None)).unwrap();
        commit_batch(&meta, 1, &[10, 10]);
        let changed = spec("key_by: key", "key_by: value");
        let e = submit_with(&meta, changed.clone(), &opts(false, None)).unwrap_err();
        let m = e.to_string();
        assert!(matches!(e, DriverError::UpgradeRefused(_)));
        assert!(m.contains("pipeline[0].key_by: key -> value (needs-state-decision; allowed with --reset-state"), "{m}");
        assert_eq!(meta.job("j").unwrap().unwrap().version, 1);

        let s = submit_with(&meta, changed, &opts(true, None)).unwrap();
        assert_eq!(s.record.state_generation, 1);
        assert_eq!(s.record.state_base_batch, 1);
        assert!(s.record.offsets_from.is_empty());
        // Resubmitting with --reset-state again starts yet another generation.
        let s = submit_with(
            &meta,
            spec("key_by: key", "key_by: value"),
            &opts(true, None),
        )
        .unwrap();
        assert_eq!(s.record.state_generation, 2);
    }

    #[test]
    fn source_change_needs_from() {
        let (_d, meta) = store();
        submit_with(&meta, spec("", ""), &opts(false, None)).unwrap();
        commit_batch(&meta, 1, &[10, 7]);
        let changed = spec("keys: 5", "keys: 6");
        let e = submit_with(&meta, changed.clone(), &opts(true, None)).unwrap_err();
        assert!(
            e.to_string().contains(
                "source.generator.keys: 5 -> 6 (needs-offset-decision; allowed with --from"
            ),
            "{e}"
        );

        let s = submit_with(&meta, changed.clone(), &opts(false, Some("latest"))).unwrap();
        assert_eq!(s.record.offsets_from_batch, 1);
        let ends: Vec<u64> = s.record.offsets_from.iter().map(|r| r.end).collect();
        assert_eq!(ends, vec![10, 7]);
        assert_eq!(s.record.state_generation, 1);

        let s = submit_with(&meta, changed.clone(), &opts(false, Some("earliest"))).unwrap();
        let ends: Vec<u64> = s.record.offsets_from.iter().map(|r| r.end).collect();
        assert_eq!(ends, vec![0, 0]);
        let s = submit_with(&meta, changed.clone(), &opts(false, Some("1:4"))).unwrap();
        let ends: Vec<u64> = s.record.offsets_from.iter().map(|r| r.end).collect();
        assert_eq!(ends, vec![0, 4]);
        assert!(submit_with(&meta, changed, &opts(false, Some("2:4"))).is_err());
        assert!(FromOffsets::parse("x").is_err());
        assert!(FromOffsets::parse("0:a").is_err());
    }

    #[test]
    fn newer_format_is_refused() {
        let (_d, meta) = store();
        let mut s = spec("", "");
        s.format_version = weir_proto::spec::SPEC_FORMAT_VERSION + 1;
        let e = submit_with(&meta, s.clone(), &opts(false, None)).unwrap_err();
        assert!(e.to_string().contains("format_version"), "{e}");
        // A stored spec of a newer format (written by a newer build) is not resumed.
        meta.apply(command::put_job(pb::JobRecord {
            spec: Some(s),
            version: 1,
            ..Default::default()
        }))
        .unwrap();
        let e = submit_with(&meta, spec("", ""), &opts(false, None)).unwrap_err();
        assert!(
            e.to_string().contains("the stored spec has format_version"),
            "{e}"
        );
    }
}
