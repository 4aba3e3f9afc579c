//! A job's committed batches: what each one's figures mean (processing
//! time, delays, input rate, phases, whether it checkpointed), and the
//! charts and the table of the job page.

use super::charts::{self, Bar, Point, Segment};
use super::html::{self, cell, count, escape, micros, num, NONE};
use super::UiError;
use weir_proto::pb;

/// The most batches a job page shows, and the most the metadata keeps.
pub const MAX_BATCHES: usize = 100;

/// A batch's phases in drawing order: CSS class and name. Shuffle and
/// checkpoint are parts of stage B (its slowest task's fetch and
/// checkpoint encoding), shown apart from the rest of it; "other" is the
/// batch's time outside every phase (waiting for its plan to reach the
/// quorum, reading progress).
pub const PHASES: [(&str, &str); 7] = [
    ("ph-plan", "plan"),
    ("ph-a", "stage A"),
    ("ph-shuffle", "shuffle"),
    ("ph-b", "stage B"),
    ("ph-checkpoint", "checkpoint"),
    ("ph-commit", "commit"),
    ("ph-other", "other"),
];

/// What the UI shows of one committed batch, derived from its commit
/// record, the batch before it and its plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Row<'a> {
    /// The commit record.
    pub commit: &'a pb::BatchCommit,
    /// Microseconds per phase in [`PHASES`] order; `None` for a record
    /// written before phases were measured.
    pub phases: Option<[u64; 7]>,
    /// From planning to the output being published, in microseconds (for
    /// an old record without phases: its stages alone).
    pub processing_us: u64,
    /// How late planning started after the batch's tick, in microseconds.
    pub scheduling_delay_us: Option<u64>,
    /// Records read per second since the batch before it committed (for
    /// a batch whose predecessor is not at hand: over the average time
    /// between the batches at hand, else over its own processing time).
    pub input_rate: f64,
    /// Whether stage B persisted state: the plan's flag while the plan is
    /// kept, else whether the durable versions moved since the batch
    /// before; `None` for a job without state or when neither is known.
    pub checkpoint: Option<bool>,
}

impl Row<'_> {
    /// Scheduling delay plus processing time, in microseconds.
    pub fn total_delay_us(&self) -> u64 {
        self.scheduling_delay_us
            .unwrap_or(0)
            .saturating_add(self.processing_us)
    }
}

/// The phase times of a batch, in [`PHASES`] order.
fn phases(commit: &pb::BatchCommit, t: &pb::BatchTimes) -> [u64; 7] {
    let shuffle = t.shuffle_us.min(t.stage_b_us);
    let checkpoint = t.checkpoint_us.min(t.stage_b_us - shuffle);
    let stage_b = t.stage_b_us - shuffle - checkpoint;
    let stages = commit.duration_ms.saturating_mul(1_000);
    let other = stages.saturating_sub(t.stage_a_us.saturating_add(t.stage_b_us));
    [
        t.plan_us,
        t.stage_a_us,
        shuffle,
        stage_b,
        checkpoint,
        t.commit_us,
        other,
    ]
}

/// The rows for the newest `limit` of `batches` (any order; one more than
/// `limit` gives the oldest row a batch before it), oldest first.
/// `planned_checkpoint` is a batch's plan's checkpoint flag while the
/// plan is kept.
pub fn rows<'a>(
    batches: &'a [pb::BatchCommit],
    limit: usize,
    planned_checkpoint: &mut dyn FnMut(u64) -> Result<Option<bool>, UiError>,
) -> Result<Vec<Row<'a>>, UiError> {
    let mut sorted: Vec<&pb::BatchCommit> = batches.iter().collect();
    sorted.sort_by_key(|b| b.batch_id);
    let typical = typical_gap_ms(&sorted);
    let skip = sorted.len().saturating_sub(limit);
    let mut out = Vec::with_capacity(sorted.len() - skip);
    for (i, commit) in sorted.iter().enumerate().skip(skip) {
        let before = i
            .checked_sub(1)
            .map(|p| sorted[p])
            .filter(|p| p.batch_id.checked_add(1) == Some(commit.batch_id));
        out.push(row(
            commit,
            before,
            planned_checkpoint(commit.batch_id)?,
            typical,
        ));
    }
    Ok(out)
}

/// The average time between the commits of `sorted` (in batch order),
/// in milliseconds; `None` for fewer than two batches.
pub fn typical_gap_ms(sorted: &[&pb::BatchCommit]) -> Option<f64> {
    let (first, last) = (sorted.first()?, sorted.last()?);
    let span = last.committed_at_ms.saturating_sub(first.committed_at_ms);
    (sorted.len() > 1 && span > 0).then(|| span as f64 / (sorted.len() - 1) as f64)
}

/// One batch's row, from its commit record, the batch before it (when
/// kept), its plan's checkpoint flag (when the plan is kept) and the
/// typical time between batches ([`typical_gap_ms`]).
pub fn row<'a>(
    commit: &'a pb::BatchCommit,
    before: Option<&pb::BatchCommit>,
    planned_checkpoint: Option<bool>,
    typical_gap_ms: Option<f64>,
) -> Row<'a> {
    let phases = commit.times.as_ref().map(|t| phases(commit, t));
    let processing_us = match &phases {
        Some(p) => p.iter().fold(0u64, |sum, us| sum.saturating_add(*us)),
        None => commit.duration_ms.saturating_mul(1_000),
    };
    let gap_ms = before
        .map(|b| commit.committed_at_ms.saturating_sub(b.committed_at_ms))
        .filter(|gap| *gap > 0)
        .map(|gap| gap as f64)
        .or(typical_gap_ms)
        .unwrap_or(processing_us as f64 / 1_000.0);
    let input_rate = commit.records_in as f64 * 1_000.0 / gap_ms.max(1.0);
    let checkpoint = if commit.durable_versions.is_empty() {
        None
    } else {
        planned_checkpoint.or_else(|| before.map(|b| b.durable_versions != commit.durable_versions))
    };
    Row {
        commit,
        phases,
        processing_us,
        scheduling_delay_us: commit.times.as_ref().map(|t| t.scheduling_delay_us),
        input_rate,
        checkpoint,
    }
}

/// The link to a batch's page.
pub fn href(job: &str, batch_id: u64) -> String {
    format!("/jobs/{job}/batches/{batch_id}")
}

fn ms(us: u64) -> f64 {
    us as f64 / 1_000.0
}

/// An input rate with its unit.
pub fn rate_label(v: f64) -> String {
    format!("{}/s", html::rate(v))
}

/// The four charts of Spark's Streaming tab (input rate, processing
/// time, scheduling delay, total delay) and the phases of each batch, over
/// `rows` (oldest first).
pub fn charts(job: &str, rows: &[Row<'_>]) -> String {
    let series = |value: &dyn Fn(&Row<'_>) -> f64, label: &dyn Fn(f64) -> String| -> Vec<Point> {
        rows.iter()
            .map(|r| {
                let v = value(r);
                Point {
                    at_ms: r.commit.committed_at_ms,
                    value: v,
                    title: format!("batch {}: {}", r.commit.batch_id, label(v)),
                    href: href(job, r.commit.batch_id),
                }
            })
            .collect()
    };
    let ms_label = |v: f64| html::millis_f(v);
    let mut out = String::from("<div class=\"charts\">");
    out.push_str(&charts::line_chart(
        "Input rate (records/s)",
        rate_label,
        &series(&|r| r.input_rate, &|v| {
            format!("{} records/s", html::rate(v))
        }),
    ));
    out.push_str(&charts::line_chart(
        "Processing time",
        html::millis_f,
        &series(&|r| ms(r.processing_us), &ms_label),
    ));
    out.push_str(&charts::line_chart(
        "Scheduling delay",
        html::millis_f,
        &series(&|r| ms(r.scheduling_delay_us.unwrap_or(0)), &ms_label),
    ));
    out.push_str(&charts::line_chart(
        "Total delay (scheduling delay + processing time)",
        html::millis_f,
        &series(&|r| ms(r.total_delay_us()), &ms_label),
    ));
    let bars: Vec<Bar> = rows
        .iter()
        .map(|r| Bar {
            segments: match &r.phases {
                Some(p) => PHASES
                    .iter()
                    .zip(p)
                    .map(|((class, _), us)| Segment {
                        class,
                        value: ms(*us),
                    })
                    .collect(),
                None => vec![Segment {
                    class: "ph-unknown",
                    value: ms(r.processing_us),
                }],
            },
            title: phase_title(r),
            href: href(job, r.commit.batch_id),
        })
        .collect();
    out.push_str(&charts::stacked_bars(
        "Where each batch's time went",
        html::millis_f,
        &bars,
    ));
    out.push_str("</div>");
    out.push_str(&legend());
    out
}

/// A bar's tooltip: the batch and each phase's time.
fn phase_title(r: &Row<'_>) -> String {
    let mut t = format!("batch {}: {}", r.commit.batch_id, micros(r.processing_us));
    match &r.phases {
        Some(p) => {
            for ((_, name), us) in PHASES.iter().zip(p) {
                t.push_str(&format!("\n{name}: {}", micros(*us)));
            }
        }
        None => t.push_str("\n(phases were not recorded for this batch)"),
    }
    t
}

/// The colour key of the phases.
fn legend() -> String {
    let mut out = String::from("<ul class=\"legend\">");
    for (class, name) in PHASES {
        out.push_str(&format!(
            "<li><span class=\"sw {class}\"></span>{name}</li>"
        ));
    }
    out.push_str("<li><span class=\"sw ph-unknown\"></span>not recorded</li></ul>");
    out
}

/// The batch table, newest first.
pub fn table(job: &str, rows: &[Row<'_>]) -> String {
    let mut out = format!(
        "<div class=\"scroll\"><table class=\"batches\"><thead><tr>\
         <th rowspan=\"2\">Batch</th><th rowspan=\"2\">Committed at</th><th rowspan=\"2\">Ranges</th>\
         <th colspan=\"5\" class=\"group\">Records</th><th colspan=\"{}\" class=\"group\">Phase times</th>\
         <th rowspan=\"2\">Processing</th><th rowspan=\"2\">Sched. delay</th><th rowspan=\"2\">Total delay</th>\
         <th rowspan=\"2\">Checkpointed</th></tr><tr><th>in</th><th>out</th><th>skipped</th><th>late</th><th>lost</th>",
        PHASES.len()
    );
    for (_, name) in PHASES {
        out.push_str(&format!("<th>{name}</th>"));
    }
    out.push_str("</tr></thead><tbody>");
    for r in rows.iter().rev() {
        let c = r.commit;
        out.push_str(&format!(
            "<tr class=\"batch\"><td class=\"n\"><a href=\"{}\">{}</a></td>",
            escape(&href(job, c.batch_id)),
            c.batch_id
        ));
        out.push_str(&cell("", &html::time(c.committed_at_ms)));
        out.push_str(&num(&c
            .times
            .as_ref()
            .map_or(NONE.to_string(), |t| count(u64::from(t.ranges)))));
        for n in [
            c.records_in,
            c.records_out,
            c.records_skipped,
            c.records_late,
            c.records_lost,
        ] {
            out.push_str(&num(&count(n)));
        }
        match &r.phases {
            Some(p) => {
                for us in p {
                    out.push_str(&num(&micros(*us)));
                }
            }
            None => {
                for _ in PHASES {
                    out.push_str(&num(NONE));
                }
            }
        }
        out.push_str(&num(&micros(r.processing_us)));
        out.push_str(&num(&r.scheduling_delay_us.map_or(NONE.into(), micros)));
        out.push_str(&num(&micros(r.total_delay_us())));
        out.push_str(&cell("", checkpoint_text(r.checkpoint)));
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

/// The checkpoint column's text.
pub fn checkpoint_text(checkpoint: Option<bool>) -> &'static str {
    match checkpoint {
        Some(true) => "yes",
        Some(false) => "no",
        None => NONE,
    }
}
