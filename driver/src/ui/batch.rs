//! `/jobs/<name>/batches/<id>`: one batch's records, timing, phases,
//! input ranges (from its plan while the plan is kept) and the durable
//! state versions after it; a batch in flight shows its plan.

use super::batches::{
    checkpoint_text, href, rate_label, row, typical_gap_ms, Row, MAX_BATCHES, PHASES,
};
use super::charts::{self, Segment};
use super::html::{self, count, escape, micros, num, NONE};
use super::layout::View;
use super::{UiError, UiSource};
use weir_proto::pb;

/// The page of batch `batch_id` of job `job` (a valid name): its commit
/// record while kept, else its plan while the batch is in flight.
pub fn page(source: &dyn UiSource, job: &str, batch_id: u64) -> Result<View, UiError> {
    let status = source
        .job(job)
        .map_err(UiError::Unavailable)?
        .ok_or_else(|| UiError::NotFound(format!("There is no job named {job}.")))?;
    let kept = source
        .batches(job, MAX_BATCHES)
        .map_err(UiError::Unavailable)?;
    let plan = source.plan(job, batch_id).map_err(UiError::Unavailable)?;
    let commit = kept.iter().find(|b| b.batch_id == batch_id);
    let title = format!("{job}: batch {batch_id}");
    let mut body = format!(
        "<p class=\"crumbs\"><a href=\"/\">Jobs</a> / <a href=\"/jobs/{0}\">{0}</a> / batch {batch_id}</p>",
        escape(job)
    );
    let nav = |body: &mut String| {
        body.push_str("<p class=\"pager\">");
        if batch_id > 1 {
            body.push_str(&format!(
                "<a href=\"{}\">← batch {}</a> ",
                escape(&href(job, batch_id - 1)),
                batch_id - 1
            ));
        }
        if let Some(next) = batch_id.checked_add(1) {
            if batch_id < status.last_committed_batch || status.pending_batch == Some(next) {
                body.push_str(&format!(
                    "<a href=\"{}\">batch {next} →</a>",
                    escape(&href(job, next))
                ));
            }
        }
        body.push_str("</p>");
    };
    let Some(commit) = commit else {
        // Batches after the last committed one are in flight or to come;
        // the others committed, and their records may be gone while
        // their plans are kept for a state recovery.
        let committed = batch_id <= status.last_committed_batch;
        let Some(plan) = plan else {
            let why = if committed {
                format!(
                    "Batch {batch_id} of job {job} is no longer kept: the metadata keeps the last {MAX_BATCHES} commit records."
                )
            } else {
                format!("Batch {batch_id} of job {job} has not been planned yet.")
            };
            return Err(UiError::NotFound(why));
        };
        if committed {
            body.push_str(&format!(
                "<h1>Batch {batch_id}</h1><p>Committed; its commit record is no longer kept \
                 (the metadata keeps the last {MAX_BATCHES}), so only its plan is shown.</p>"
            ));
        } else {
            body.push_str(&format!(
                "<h1>Batch {batch_id} <span class=\"badge b-running\">in flight</span></h1>\
                 <p>Planned at {}; not committed yet. This page shows its results once it commits.</p>",
                html::time(plan.planned_at_ms)
            ));
        }
        nav(&mut body);
        body.push_str(&plan_section(&plan));
        return Ok(View {
            title,
            body,
            live: !committed,
        });
    };
    let before = kept
        .iter()
        .find(|b| b.batch_id.checked_add(1) == Some(batch_id));
    let mut sorted: Vec<&pb::BatchCommit> = kept.iter().collect();
    sorted.sort_by_key(|b| b.batch_id);
    let r = row(
        commit,
        before,
        plan.as_ref().map(|p| p.checkpoint),
        typical_gap_ms(&sorted),
    );
    body.push_str(&format!("<h1>Batch {batch_id}</h1>"));
    nav(&mut body);
    body.push_str("<div class=\"cols\"><section><h2>Records</h2><table class=\"kv\">");
    for (name, n) in [
        ("in", commit.records_in),
        ("out", commit.records_out),
        ("skipped (errors)", commit.records_skipped),
        ("late", commit.records_late),
        ("lost (deleted by source retention)", commit.records_lost),
    ] {
        body.push_str(&format!("<tr><th>{name}</th>{}</tr>", num(&count(n))));
    }
    body.push_str(&format!(
        "<tr><th>input rate</th>{}</tr></table></section>",
        num(&rate_label(r.input_rate))
    ));
    body.push_str("<section><h2>Timing</h2><table class=\"kv\">");
    let planned_at = commit
        .times
        .as_ref()
        .map(|t| t.planned_at_ms)
        .filter(|at| *at != 0)
        .or(plan.as_ref().map(|p| p.planned_at_ms))
        .unwrap_or(0);
    for (name, value) in [
        ("planned at", html::time(planned_at)),
        ("committed at", html::time(commit.committed_at_ms)),
        (
            "scheduling delay",
            r.scheduling_delay_us.map_or(NONE.into(), micros),
        ),
        ("processing time", micros(r.processing_us)),
        ("total delay", micros(r.total_delay_us())),
        ("max event time", html::time(commit.max_event_time_ms)),
    ] {
        body.push_str(&format!("<tr><th>{name}</th>{}</tr>", num(&value)));
    }
    body.push_str("</table></section></div>");
    body.push_str(&phase_section(&r));
    match &plan {
        Some(plan) => body.push_str(&plan_section(plan)),
        None => body.push_str(&format!(
            "<h2>Input ranges</h2><p class=\"muted\">The plan of batch {batch_id} is no longer kept \
             (the metadata keeps the plans a state recovery could replay); it read {} source ranges.</p>",
            commit
                .times
                .as_ref()
                .map_or(NONE.to_string(), |t| t.ranges.to_string())
        )),
    }
    body.push_str(&durable_section(commit, r.checkpoint));
    Ok(View {
        title,
        body,
        live: false,
    })
}

/// A batch's phases: a bar and a table.
fn phase_section(r: &Row<'_>) -> String {
    let Some(p) = &r.phases else {
        return "<h2>Phases</h2><p class=\"muted\">This batch was committed before phase times were recorded.</p>".into();
    };
    let segments: Vec<Segment> = PHASES
        .iter()
        .zip(p)
        .map(|((class, _), us)| Segment {
            class,
            value: *us as f64,
        })
        .collect();
    let mut out = format!(
        "<h2>Phases</h2>{}<table class=\"grid\"><thead><tr><th>Phase</th><th>Time</th><th>Share</th></tr></thead><tbody>",
        charts::strip("phases", &segments)
    );
    for ((class, name), us) in PHASES.iter().zip(p) {
        let share = if r.processing_us > 0 {
            format!("{:.1} %", *us as f64 * 100.0 / r.processing_us as f64)
        } else {
            NONE.into()
        };
        out.push_str(&format!(
            "<tr><td><span class=\"sw {class}\"></span>{name}</td>{}{}</tr>",
            num(&micros(*us)),
            num(&share)
        ));
    }
    out.push_str(&format!(
        "</tbody><tfoot><tr><th>processing time</th>{}<td></td></tr></tfoot></table>",
        num(&micros(r.processing_us))
    ));
    out
}

/// A plan's ranges per source partition, lost ranges and flags.
fn plan_section(plan: &pb::BatchPlan) -> String {
    let mut out = format!(
        "<h2>Input ranges</h2><p>Watermark {}; {}{}.</p>",
        html::time(plan.watermark_ms),
        if plan.checkpoint {
            "stage B checkpoints state"
        } else {
            "no state checkpoint"
        },
        if plan.r#final {
            "; the final batch (the source is exhausted)"
        } else {
            ""
        }
    );
    out.push_str(&ranges_table(&plan.ranges));
    if !plan.lost.is_empty() {
        out.push_str(
            "<h3>Lost ranges</h3><p>Deleted by the source's retention before the job read them; skipped, counted as lost.</p>",
        );
        out.push_str(&ranges_table(&plan.lost));
    }
    out
}

fn ranges_table(ranges: &[pb::OffsetRange]) -> String {
    let mut out = String::from(
        "<table class=\"grid\"><thead><tr><th>Partition</th><th>Start</th><th>End</th><th>Records</th></tr></thead><tbody>",
    );
    let mut sorted: Vec<&pb::OffsetRange> = ranges.iter().collect();
    sorted.sort_by_key(|r| r.partition);
    for r in sorted {
        out.push_str(&format!(
            "<tr class=\"range\">{}{}{}{}</tr>",
            num(&r.partition.to_string()),
            num(&count(r.start)),
            num(&count(r.end)),
            num(&count(r.end.saturating_sub(r.start)))
        ));
    }
    out.push_str("</tbody></table>");
    out
}

/// The durable state version of each partition after the batch.
fn durable_section(commit: &pb::BatchCommit, checkpoint: Option<bool>) -> String {
    if commit.durable_versions.is_empty() {
        return "<h2>State</h2><p class=\"muted\">The job has no state.</p>".into();
    }
    let mut out = format!(
        "<h2>State</h2><p>Checkpoint: {}. The newest durable checkpoint of each state partition after this batch \
         (checkpoint files are written in the background, so a checkpoint becomes durable a little later):</p>\
         <table class=\"grid\"><thead><tr><th>Partition</th><th>Durable version (batch)</th></tr></thead><tbody>",
        checkpoint_text(checkpoint)
    );
    for (partition, version) in commit.durable_versions.iter().enumerate() {
        out.push_str(&format!(
            "<tr>{}{}</tr>",
            num(&partition.to_string()),
            num(&version.to_string())
        ));
    }
    out.push_str("</tbody></table>");
    out
}
