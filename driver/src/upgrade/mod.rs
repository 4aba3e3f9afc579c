//! Spec upgrades: what changed between a stored spec and a resubmitted one,
//! and whether the change can be applied to the running job as it is.
//!
//! Every difference is classified:
//!
//! - **compatible**: the meaning of the state and of the offsets is kept
//!   (stateless steps before or after the stateful operator, lookups
//!   included, as `map` steps are: their values feed later batches, not
//!   the stored state; sink settings,
//!   batch interval, rate limits, checkpoint cadence, error policy); applied
//!   at the next batch boundary.
//! - **needs a state decision**: the stored state would be misread (key
//!   expression, aggregate set, window size/slide/time/watermark, state
//!   partitions, the order of operators around the state); allowed only with
//!   `--reset-state` (fresh state, offsets continue) or `--from`.
//! - **needs an offset decision**: the source is another one, so the stored
//!   offsets mean nothing (source kind, generator partitions/keys/seed/total);
//!   allowed only with `--from` (restart at chosen offsets, fresh state).

use std::fmt;
use weir_proto::pb::{self, step::Kind, AggregateFunction};
use weir_proto::spec::lookup::{on_missing_name, redact_url};
use weir_proto::spec::{format_duration_ms, operator_id};

/// How a change affects a running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeClass {
    /// Applied at the next batch boundary.
    Compatible,
    /// The stored state would be misread: needs `--reset-state` or `--from`.
    NeedsStateDecision,
    /// The stored offsets mean nothing for the new source: needs `--from`.
    NeedsOffsetDecision,
}

impl ChangeClass {
    /// Short name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeClass::Compatible => "compatible",
            ChangeClass::NeedsStateDecision => "needs-state-decision",
            ChangeClass::NeedsOffsetDecision => "needs-offset-decision",
        }
    }

    /// The class named by [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Self> {
        [
            ChangeClass::Compatible,
            ChangeClass::NeedsStateDecision,
            ChangeClass::NeedsOffsetDecision,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }

    /// The submit option that would allow a change of this class.
    pub fn allowed_by(self) -> &'static str {
        match self {
            ChangeClass::Compatible => "-",
            ChangeClass::NeedsStateDecision => "--reset-state (or --from)",
            ChangeClass::NeedsOffsetDecision => "--from earliest|latest|<p:o,...>",
        }
    }
}

impl fmt::Display for ChangeClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One difference between two specs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Field path in the spec (`pipeline[1].key_by`, `source.generator.keys`).
    pub path: String,
    /// The stored value ("" when added).
    pub before: String,
    /// The new value ("" when removed).
    pub after: String,
    /// Its class.
    pub class: ChangeClass,
}

/// What a resubmission would do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Same spec: the job resumes.
    Unchanged,
    /// Every change is compatible: applied at a batch boundary.
    Compatible,
    /// Some change needs `--reset-state` (or `--from`).
    NeedsStateDecision,
    /// Some change needs `--from`.
    NeedsOffsetDecision,
}

impl Verdict {
    /// Short name used in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Unchanged => "unchanged",
            Verdict::Compatible => "compatible",
            Verdict::NeedsStateDecision => "needs-state-decision",
            Verdict::NeedsOffsetDecision => "needs-offset-decision",
        }
    }
}

/// Every difference between a stored spec and a new one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanDiff {
    /// The changes, in spec order.
    pub changes: Vec<Change>,
}

impl PlanDiff {
    /// The overall verdict: the most demanding class of any change.
    pub fn verdict(&self) -> Verdict {
        match self.changes.iter().map(|c| c.class).max() {
            None => Verdict::Unchanged,
            Some(ChangeClass::Compatible) => Verdict::Compatible,
            Some(ChangeClass::NeedsStateDecision) => Verdict::NeedsStateDecision,
            Some(ChangeClass::NeedsOffsetDecision) => Verdict::NeedsOffsetDecision,
        }
    }

    /// The changes the given options do not allow (empty: the upgrade may
    /// proceed). `--from` resets offsets and state, so it allows everything;
    /// `--reset-state` allows state changes.
    pub fn refused(&self, reset_state: bool, from: bool) -> Vec<&Change> {
        self.changes
            .iter()
            .filter(|c| match c.class {
                ChangeClass::Compatible => false,
                ChangeClass::NeedsStateDecision => !(reset_state || from),
                ChangeClass::NeedsOffsetDecision => !from,
            })
            .collect()
    }

    /// A fixed-width table of the changes and the verdict.
    pub fn table(&self) -> String {
        let mut rows = vec![[
            "PATH".to_string(),
            "BEFORE".to_string(),
            "AFTER".to_string(),
            "CLASS".to_string(),
            "ALLOWED BY".to_string(),
        ]];
        for c in &self.changes {
            rows.push([
                c.path.clone(),
                or_dash(&c.before),
                or_dash(&c.after),
                c.class.as_str().to_string(),
                c.class.allowed_by().to_string(),
            ]);
        }
        let mut widths = [0usize; 5];
        for r in &rows {
            for (w, cell) in widths.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        if !self.changes.is_empty() {
            for r in &rows {
                let cells: Vec<String> = r
                    .iter()
                    .zip(widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                out.push_str(cells.join("  ").trim_end());
                out.push('\n');
            }
        }
        out.push_str(&format!("verdict: {}\n", self.verdict().as_str()));
        out
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// The error text of a refused upgrade: each change not allowed, its class
/// and the option that would allow it.
pub fn refusal_message(job: &str, refused: &[&Change]) -> String {
    let mut m = format!(
        "job {job} exists with a spec whose changes cannot be applied to its state or offsets as they are:"
    );
    for c in refused {
        m.push_str(&format!(
            "\n  {}: {} -> {} ({}; allowed with {})",
            c.path,
            or_dash(&c.before),
            or_dash(&c.after),
            c.class,
            c.class.allowed_by()
        ));
    }
    m.push_str("\nrun `weir diff SPEC` for the full diff; compatible changes alone are applied at the next batch boundary");
    m
}

struct Diff {
    changes: Vec<Change>,
}

impl Diff {
    fn cmp<T: PartialEq + ToString>(&mut self, path: &str, a: T, b: T, class: ChangeClass) {
        if a != b {
            self.changes.push(Change {
                path: path.to_string(),
                before: a.to_string(),
                after: b.to_string(),
                class,
            });
        }
    }

    fn push(&mut self, path: String, before: String, after: String, class: ChangeClass) {
        self.changes.push(Change {
            path,
            before,
            after,
            class,
        });
    }
}

fn is_stateful(step: &pb::Step) -> bool {
    matches!(
        step.kind,
        Some(Kind::KeyBy(_)) | Some(Kind::Aggregate(_)) | Some(Kind::Window(_))
    )
}

fn has_window(spec: &pb::JobSpec) -> bool {
    spec.pipeline
        .iter()
        .any(|s| matches!(s.kind, Some(Kind::Window(_))))
}

fn has_state(spec: &pb::JobSpec) -> bool {
    spec.pipeline
        .iter()
        .any(|s| matches!(s.kind, Some(Kind::Aggregate(_))))
}

fn step_kind(step: &pb::Step) -> &'static str {
    match step.kind {
        Some(Kind::Filter(_)) => "filter",
        Some(Kind::Map(_)) => "map",
        Some(Kind::FlatMap(_)) => "flat_map",
        Some(Kind::KeyBy(_)) => "key_by",
        Some(Kind::Aggregate(_)) => "aggregate",
        Some(Kind::Window(_)) => "window",
        Some(Kind::Custom(_)) => "custom",
        Some(Kind::Lookup(_)) => "lookup",
        None => "none",
    }
}

fn function_name(f: i32) -> &'static str {
    match AggregateFunction::try_from(f) {
        Ok(AggregateFunction::Count) => "count",
        Ok(AggregateFunction::Sum) => "sum",
        Ok(AggregateFunction::Min) => "min",
        Ok(AggregateFunction::Max) => "max",
        Ok(AggregateFunction::Avg) => "avg",
        Err(_) => "unknown",
    }
}

/// A step as one line of text.
pub fn step_text(step: &pb::Step) -> String {
    match &step.kind {
        Some(Kind::Filter(e)) => format!("filter: {e}"),
        Some(Kind::KeyBy(e)) => format!("key_by: {e}"),
        Some(Kind::Map(m)) => {
            let f: Vec<String> = m
                .fields
                .iter()
                .map(|a| format!("{} = {}", a.name, a.expr))
                .collect();
            format!("map: {}", f.join(", "))
        }
        Some(Kind::FlatMap(f)) => format!(
            "flat_map: {} split {:?} as {}",
            f.field, f.separator, f.as_field
        ),
        Some(Kind::Aggregate(a)) => format!("aggregate: {}", aggregates_text(a)),
        Some(Kind::Window(w)) => format!(
            "window: size {} slide {} time {} watermark {}",
            format_duration_ms(w.size_ms),
            format_duration_ms(w.slide_ms),
            w.time,
            format_duration_ms(w.watermark_ms)
        ),
        Some(Kind::Lookup(l)) => lookup_text(l),
        Some(Kind::Custom(c)) => {
            let config: Vec<String> = c
                .config
                .iter()
                .map(|p| format!("{}={}", p.key, p.value))
                .collect();
            format!(
                "custom: {} {{{}}}",
                operator_id(&c.name, &c.version),
                config.join(", ")
            )
        }
        None => "-".into(),
    }
}

/// A lookup step as one line, every field shown (a literal password in
/// its URL as `***`): a change of any of them is a change of the step,
/// compatible like any stateless step's.
fn lookup_text(l: &pb::LookupStep) -> String {
    let mut t = String::from("lookup: ");
    if let Some(r) = &l.redis {
        let fields: Vec<String> = r
            .fields
            .iter()
            .map(|f| format!("{} {}", f.name, field_type_name(f.r#type)))
            .collect();
        let layout = if r.layout == pb::RedisLayout::Json as i32 {
            "json"
        } else {
            "hash"
        };
        t.push_str(&format!(
            "redis {} key {} fields {} ({layout})",
            redact_url(&r.url),
            r.key,
            fields.join(", ")
        ));
    }
    if let Some(c) = &l.cache {
        t.push_str(&format!(
            " cache {} x {}",
            format_duration_ms(c.ttl_ms),
            c.max_entries
        ));
    }
    t.push_str(&format!(" on_missing {}", on_missing_name(l.on_missing)));
    if l.snapshot {
        t.push_str(" snapshot");
    }
    t
}

fn field_type_name(t: i32) -> &'static str {
    match pb::FieldType::try_from(t) {
        Ok(pb::FieldType::Bigint) => "bigint",
        Ok(pb::FieldType::Double) => "double",
        Ok(pb::FieldType::String) => "string",
        Ok(pb::FieldType::Boolean) => "boolean",
        Err(_) => "unknown",
    }
}

fn aggregates_text(a: &pb::AggregateStep) -> String {
    let parts: Vec<String> = a
        .aggregates
        .iter()
        .map(|g| format!("{}={}({})", g.name, function_name(g.function), g.expr))
        .collect();
    parts.join(", ")
}

fn source_text(s: Option<&pb::Source>) -> String {
    match s.and_then(|s| s.kind.as_ref()) {
        Some(pb::source::Kind::Generator(_)) => "generator".into(),
        Some(pb::source::Kind::Kafka(k)) => format!("kafka {} @ {}", k.topic, k.brokers),
        None => "-".into(),
    }
}

fn sink_kind(s: Option<&pb::Sink>) -> &'static str {
    match s.and_then(|s| s.kind.as_ref()) {
        Some(pb::sink::Kind::Noop(_)) => "noop",
        Some(pb::sink::Kind::Stdout(_)) => "stdout",
        Some(pb::sink::Kind::File(_)) => "file",
        Some(pb::sink::Kind::Kafka(_)) => "kafka",
        Some(pb::sink::Kind::Postgres(_)) => "postgres",
        Some(pb::sink::Kind::Hbase(_)) => "hbase",
        None => "-",
    }
}

fn on_error_text(p: i32) -> &'static str {
    match pb::ErrorPolicy::try_from(p) {
        Ok(pb::ErrorPolicy::Fail) => "fail",
        Ok(pb::ErrorPolicy::Skip) => "skip",
        Ok(pb::ErrorPolicy::DeadLetter) => "dead_letter",
        Err(_) => "unknown",
    }
}

/// A spec's dead-letter topic and brokers ("" when it has none).
fn dead_letter(s: &pb::JobSpec) -> (&str, &str) {
    s.dead_letter
        .as_ref()
        .map_or(("", ""), |d| (d.topic.as_str(), d.brokers.as_str()))
}

fn properties_text(properties: &[pb::Property]) -> String {
    let pairs: Vec<String> = properties
        .iter()
        .map(|p| format!("{}={}", p.key, p.value))
        .collect();
    pairs.join(", ")
}

fn on_missing_text(p: i32) -> &'static str {
    match pb::OnMissing::try_from(p) {
        Ok(pb::OnMissing::Fail) => "fail",
        Ok(pb::OnMissing::SkipToEarliest) => "skip_to_earliest",
        Err(_) => "unknown",
    }
}

fn opt(v: Option<u64>) -> String {
    v.map_or_else(|| "unbounded".to_string(), |v| v.to_string())
}

/// Every difference between `stored` and `new`, classified.
pub fn diff(stored: &pb::JobSpec, new: &pb::JobSpec) -> PlanDiff {
    use ChangeClass::*;
    let mut d = Diff {
        changes: Vec::new(),
    };
    d.cmp(
        "format_version",
        stored.format_version,
        new.format_version,
        Compatible,
    );
    d.cmp(
        "batch_interval",
        format_duration_ms(stored.batch_interval_ms),
        format_duration_ms(new.batch_interval_ms),
        Compatible,
    );
    d.cmp(
        "checkpoint_every",
        stored.checkpoint_every,
        new.checkpoint_every,
        Compatible,
    );
    let stateful = has_state(stored) || has_state(new);
    d.cmp(
        "state_partitions",
        stored.state_partitions,
        new.state_partitions,
        if stateful {
            NeedsStateDecision
        } else {
            Compatible
        },
    );
    d.cmp(
        "on_error",
        on_error_text(stored.on_error),
        on_error_text(new.on_error),
        Compatible,
    );
    // Dead letters of later batches go to the new topic.
    let (a, b) = (dead_letter(stored), dead_letter(new));
    d.cmp("dead_letter.topic", a.0, b.0, Compatible);
    d.cmp("dead_letter.brokers", a.1, b.1, Compatible);
    diff_source(&mut d, stored, new);
    diff_pipeline(&mut d, &stored.pipeline, &new.pipeline);
    diff_sink(&mut d, stored.sink.as_ref(), new.sink.as_ref());
    PlanDiff { changes: d.changes }
}

fn diff_source(d: &mut Diff, stored: &pb::JobSpec, new: &pb::JobSpec) {
    use pb::source::Kind::Generator;
    use ChangeClass::*;
    let a = stored.source.as_ref().and_then(|s| s.kind.as_ref());
    let b = new.source.as_ref().and_then(|s| s.kind.as_ref());
    match (a, b) {
        (Some(Generator(a)), Some(Generator(b))) => {
            let p = "source.generator";
            d.cmp(
                &format!("{p}.partitions"),
                a.partitions,
                b.partitions,
                NeedsOffsetDecision,
            );
            d.cmp(&format!("{p}.keys"), a.keys, b.keys, NeedsOffsetDecision);
            d.cmp(&format!("{p}.seed"), a.seed, b.seed, NeedsOffsetDecision);
            d.cmp(
                &format!("{p}.total"),
                opt(a.total),
                opt(b.total),
                NeedsOffsetDecision,
            );
            d.cmp(&format!("{p}.rate"), a.rate, b.rate, Compatible);
            d.cmp(
                &format!("{p}.max_records_per_partition"),
                a.max_records_per_partition,
                b.max_records_per_partition,
                Compatible,
            );
            d.cmp(
                &format!("{p}.max_bytes_per_partition"),
                a.max_bytes_per_partition,
                b.max_bytes_per_partition,
                Compatible,
            );
            // Event times feed windows: a window's state would mix two clocks.
            let class = if has_window(stored) || has_window(new) {
                NeedsStateDecision
            } else {
                Compatible
            };
            d.cmp(
                &format!("{p}.event_time_rate"),
                a.event_time_rate,
                b.event_time_rate,
                class,
            );
        }
        (Some(pb::source::Kind::Kafka(a)), Some(pb::source::Kind::Kafka(b))) => {
            let p = "source.kafka";
            d.cmp(
                &format!("{p}.topic"),
                &a.topic,
                &b.topic,
                NeedsOffsetDecision,
            );
            d.cmp(
                &format!("{p}.brokers"),
                &a.brokers,
                &b.brokers,
                NeedsOffsetDecision,
            );
            d.cmp(
                &format!("{p}.start"),
                format!("{:?}", a.start),
                format!("{:?}", b.start),
                NeedsOffsetDecision,
            );
            d.cmp(
                &format!("{p}.max_records_per_partition"),
                a.max_records_per_partition,
                b.max_records_per_partition,
                Compatible,
            );
            d.cmp(
                &format!("{p}.max_bytes_per_partition"),
                a.max_bytes_per_partition,
                b.max_bytes_per_partition,
                Compatible,
            );
            d.cmp(
                &format!("{p}.report_group"),
                &a.report_group,
                &b.report_group,
                Compatible,
            );
            d.cmp(
                &format!("{p}.format"),
                format!("{}/{:?}", a.format, a.schema),
                format!("{}/{:?}", b.format, b.schema),
                Compatible,
            );
            // What happens at the next retention gap.
            d.cmp(
                &format!("{p}.on_missing"),
                on_missing_text(a.on_missing),
                on_missing_text(b.on_missing),
                Compatible,
            );
            // Client settings: the consumers are created anew with them.
            d.cmp(
                &format!("{p}.properties"),
                properties_text(&a.properties),
                properties_text(&b.properties),
                Compatible,
            );
        }
        _ if a == b => {}
        _ => d.push(
            "source".into(),
            source_text(stored.source.as_ref()),
            source_text(new.source.as_ref()),
            NeedsOffsetDecision,
        ),
    }
}

fn diff_sink(d: &mut Diff, a: Option<&pb::Sink>, b: Option<&pb::Sink>) {
    use pb::sink::Kind::{File, Hbase, Kafka, Postgres};
    use ChangeClass::Compatible;
    match (
        a.and_then(|s| s.kind.as_ref()),
        b.and_then(|s| s.kind.as_ref()),
    ) {
        (Some(File(a)), Some(File(b))) => {
            d.cmp(
                "sink.file.path",
                a.path.as_str(),
                b.path.as_str(),
                Compatible,
            );
            d.cmp(
                "sink.file.format",
                a.format.as_str(),
                b.format.as_str(),
                Compatible,
            );
        }
        // Output of later batches goes to the new topic.
        (Some(Kafka(a)), Some(Kafka(b))) => {
            d.cmp(
                "sink.kafka.brokers",
                a.brokers.as_str(),
                b.brokers.as_str(),
                Compatible,
            );
            d.cmp(
                "sink.kafka.topic",
                a.topic.as_str(),
                b.topic.as_str(),
                Compatible,
            );
            d.cmp(
                "sink.kafka.properties",
                properties_text(&a.properties),
                properties_text(&b.properties),
                Compatible,
            );
        }
        // Later batches write to the new table (its commit markers are
        // the job's, whatever the table).
        (Some(Postgres(a)), Some(Postgres(b))) => {
            d.cmp(
                "sink.postgres.url",
                a.url.as_str(),
                b.url.as_str(),
                Compatible,
            );
            d.cmp(
                "sink.postgres.table",
                a.table.as_str(),
                b.table.as_str(),
                Compatible,
            );
            d.cmp(
                "sink.postgres.key",
                a.key.join(","),
                b.key.join(","),
                Compatible,
            );
            d.cmp("sink.postgres.mode", a.mode, b.mode, Compatible);
            d.cmp(
                "sink.postgres.columns",
                a.columns.join(","),
                b.columns.join(","),
                Compatible,
            );
        }
        // Later batches write to the new table, family or keys. Their
        // cells' versions are batch ids whatever the table.
        (Some(Hbase(a)), Some(Hbase(b))) => {
            for (field, x, y) in [
                ("sink.hbase.thrift", &a.thrift, &b.thrift),
                ("sink.hbase.table", &a.table, &b.table),
                ("sink.hbase.family", &a.family, &b.family),
                ("sink.hbase.row_key", &a.row_key, &b.row_key),
            ] {
                d.cmp(field, x.as_str(), y.as_str(), Compatible);
            }
        }
        (x, y) if x == y => {}
        _ => d.cmp("sink", sink_kind(a), sink_kind(b), Compatible),
    }
}

/// A pipeline split into the stateful steps (key_by, window, aggregate) and
/// the runs of stateless steps around them: `segments[i]` holds the
/// stateless steps before stateful step `i`, the last one those after all.
struct Shape<'a> {
    stateful: Vec<(usize, &'a pb::Step)>,
    segments: Vec<Vec<(usize, &'a pb::Step)>>,
}

fn shape(pipeline: &[pb::Step]) -> Shape<'_> {
    let mut s = Shape {
        stateful: Vec::new(),
        segments: vec![Vec::new()],
    };
    for (i, step) in pipeline.iter().enumerate() {
        if is_stateful(step) {
            s.stateful.push((i, step));
            s.segments.push(Vec::new());
        } else {
            s.segments.last_mut().expect("one segment").push((i, step));
        }
    }
    s
}

fn pipeline_text(pipeline: &[pb::Step]) -> String {
    let kinds: Vec<&str> = pipeline.iter().map(step_kind).collect();
    kinds.join(" -> ")
}

fn diff_pipeline(d: &mut Diff, a: &[pb::Step], b: &[pb::Step]) {
    use ChangeClass::*;
    let sa = shape(a);
    let sb = shape(b);
    let kinds =
        |s: &Shape| -> Vec<&'static str> { s.stateful.iter().map(|(_, x)| step_kind(x)).collect() };
    if kinds(&sa) != kinds(&sb) {
        // Stateful operators added, removed or reordered: the state's
        // meaning changes as a whole.
        d.push(
            "pipeline".into(),
            pipeline_text(a),
            pipeline_text(b),
            NeedsStateDecision,
        );
        return;
    }
    for (seg_a, seg_b) in sa.segments.iter().zip(&sb.segments) {
        diff_stateless(d, seg_a, seg_b);
    }
    for ((_, x), (j, y)) in sa.stateful.iter().zip(&sb.stateful) {
        diff_stateful(d, *j, x, y);
    }
    d.changes.sort_by_key(|c| pipeline_index(&c.path));
}

/// Orders pipeline changes by step index (others keep their place first).
fn pipeline_index(path: &str) -> (u8, usize) {
    match path
        .strip_prefix("pipeline[")
        .and_then(|r| r.split(']').next())
        .and_then(|n| n.parse().ok())
    {
        Some(n) => (1, n),
        None if path.starts_with("sink") => (2, 0),
        None => (0, 0),
    }
}

fn diff_stateless(d: &mut Diff, a: &[(usize, &pb::Step)], b: &[(usize, &pb::Step)]) {
    use ChangeClass::Compatible;
    for k in 0..a.len().max(b.len()) {
        match (a.get(k), b.get(k)) {
            (Some((_, x)), Some((j, y))) if x != y => d.push(
                format!("pipeline[{j}]"),
                step_text(x),
                step_text(y),
                Compatible,
            ),
            (Some(_), Some(_)) => {}
            (Some((i, x)), None) => d.push(
                format!("pipeline[{i}]"),
                step_text(x),
                String::new(),
                Compatible,
            ),
            (None, Some((j, y))) => d.push(
                format!("pipeline[{j}]"),
                String::new(),
                step_text(y),
                Compatible,
            ),
            (None, None) => {}
        }
    }
}

fn diff_stateful(d: &mut Diff, j: usize, x: &pb::Step, y: &pb::Step) {
    use ChangeClass::NeedsStateDecision as S;
    match (&x.kind, &y.kind) {
        (Some(Kind::KeyBy(a)), Some(Kind::KeyBy(b))) => {
            d.cmp(&format!("pipeline[{j}].key_by"), a.as_str(), b.as_str(), S)
        }
        (Some(Kind::Aggregate(a)), Some(Kind::Aggregate(b))) => d.cmp(
            &format!("pipeline[{j}].aggregate"),
            aggregates_text(a),
            aggregates_text(b),
            S,
        ),
        (Some(Kind::Window(a)), Some(Kind::Window(b))) => {
            let p = format!("pipeline[{j}].window");
            d.cmp(
                &format!("{p}.size"),
                format_duration_ms(a.size_ms),
                format_duration_ms(b.size_ms),
                S,
            );
            d.cmp(
                &format!("{p}.slide"),
                format_duration_ms(a.slide_ms),
                format_duration_ms(b.slide_ms),
                S,
            );
            d.cmp(&format!("{p}.time"), a.time.as_str(), b.time.as_str(), S);
            d.cmp(
                &format!("{p}.watermark"),
                format_duration_ms(a.watermark_ms),
                format_duration_ms(b.watermark_ms),
                S,
            );
        }
        _ => {}
    }
}

#[cfg(test)]
mod every_field;
#[cfg(test)]
mod tests;
