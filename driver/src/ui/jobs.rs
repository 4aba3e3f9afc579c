//! The jobs list (`/`) and a job's page (`/jobs/<name>`): its summary and
//! health, the batch timeline, state per partition, source lag per
//! partition and the batch table.

use super::batches::{self, MAX_BATCHES};
use super::html::{self, badge, count, escape, num, NONE};
use super::layout::View;
use super::{UiError, UiSource};
use std::collections::BTreeMap;
use weir_proto::pb;

/// The batch counts a job page offers to show.
const BATCH_CHOICES: [usize; 3] = [20, 50, MAX_BATCHES];

/// `/`: every job with its state, health, last batch, lag and state size.
pub fn list(source: &dyn UiSource) -> Result<View, UiError> {
    let jobs = source.jobs().map_err(UiError::Unavailable)?;
    let mut body = String::from("<h1>Jobs</h1>");
    if jobs.is_empty() {
        body.push_str(
            "<p class=\"muted\">No jobs yet. Submit one with <code>weir submit SPEC</code>.</p>",
        );
        return Ok(View {
            title: "Jobs".into(),
            body,
            live: true,
        });
    }
    body.push_str(
        "<div class=\"scroll\"><table class=\"jobs\"><thead><tr><th>Job</th><th>State</th><th>Health</th>\
         <th>Last batch</th><th>Batch time</th><th>Sched. delay</th><th>Lag (records)</th>\
         <th>State keys</th><th>State size</th><th>Records in</th><th>Records out</th></tr></thead><tbody>",
    );
    let now = html::now_ms();
    for s in &jobs {
        let name = escape(&s.job);
        let totals = s.totals.unwrap_or_default();
        body.push_str(&format!(
            "<tr class=\"job\"><td class=\"name\"><a href=\"/jobs/{name}\">{name}</a></td><td>{}</td><td>{}</td>",
            badge(&s.state),
            health(s, now)
        ));
        body.push_str(&num(&last_batch(s)));
        let driven = !s.health.is_empty();
        body.push_str(&num(&if driven {
            html::millis(s.last_batch_ms)
        } else {
            NONE.into()
        }));
        body.push_str(&num(&if driven {
            html::millis(s.scheduling_delay_ms)
        } else {
            NONE.into()
        }));
        body.push_str(&num(&if s.lag_listed_at_ms != 0 {
            count(s.lag_records)
        } else {
            NONE.into()
        }));
        let sized = !s.state_sizes.is_empty();
        body.push_str(&num(&if sized {
            count(s.state_keys)
        } else {
            NONE.into()
        }));
        body.push_str(&num(&if sized {
            html::bytes(s.state_bytes)
        } else {
            NONE.into()
        }));
        body.push_str(&num(&count(totals.records_in)));
        body.push_str(&num(&count(totals.records_out)));
        body.push_str("</tr>");
        if !s.error.is_empty() {
            body.push_str(&format!(
                "<tr class=\"job-error\"><td></td><td colspan=\"10\" class=\"error\">{}</td></tr>",
                escape(&s.error)
            ));
        }
    }
    body.push_str("</tbody></table></div>");
    if jobs
        .iter()
        .any(|s| s.state == "running" && s.health.is_empty())
    {
        body.push_str(&leader_note());
    }
    Ok(View {
        title: "Jobs".into(),
        body,
        live: true,
    })
}

/// The health cell: the badge and, when degraded, why and for how long.
fn health(s: &pb::JobStatus, now: i64) -> String {
    let mut out = badge(&s.health);
    if s.health == "degraded" {
        out.push_str(&format!(
            "<div class=\"reason\">{}{}</div>",
            escape(&s.degraded_reason),
            since(s.degraded_since_ms, now)
        ));
    }
    out
}

fn since(ms: i64, now: i64) -> String {
    if ms == 0 {
        String::new()
    } else {
        format!(
            " <span class=\"muted\">(since {}, {})</span>",
            html::time(ms),
            html::ago(ms, now)
        )
    }
}

/// The last committed batch and the one in flight.
fn last_batch(s: &pb::JobStatus) -> String {
    let mut out = if s.last_committed_batch == 0 {
        NONE.to_string()
    } else {
        s.last_committed_batch.to_string()
    };
    if let Some(p) = s.pending_batch {
        let what = if s.pending_committing {
            "committing"
        } else {
            "in flight"
        };
        out.push_str(&format!(" ({p} {what})"));
    }
    out
}

fn leader_note() -> String {
    "<p class=\"muted\">Health, batch times, lag and state sizes are live figures of the leader, which drives the jobs: \
     this replica shows none for a running job while it is a follower or just after the leader changed. \
     Open the leader's UI for them.</p>"
        .into()
}

/// `/jobs/<name>`: the job's summary, charts and tables over its newest
/// `limit` batches (1 to [`MAX_BATCHES`]).
pub fn page(source: &dyn UiSource, name: &str, limit: usize) -> Result<View, UiError> {
    let s = source
        .job(name)
        .map_err(UiError::Unavailable)?
        .ok_or_else(|| UiError::NotFound(format!("There is no job named {name}.")))?;
    // One batch more than shown: the input rate of the oldest shown batch
    // is measured from the commit of the batch before it.
    let commits = source
        .batches(name, limit + 1)
        .map_err(UiError::Unavailable)?;
    let rows = batches::rows(&commits, limit, &mut |id| {
        source
            .plan(name, id)
            .map(|p| p.map(|p| p.checkpoint))
            .map_err(UiError::Unavailable)
    })?;
    let now = html::now_ms();
    let job = escape(name);
    let mut body = format!(
        "<p class=\"crumbs\"><a href=\"/\">Jobs</a> / {job}</p>\
         <h1>{job} {} {}</h1><p class=\"links\"><a href=\"/jobs/{job}/history\">Upgrade history</a></p>",
        badge(&s.state),
        if s.health.is_empty() {
            String::new()
        } else {
            badge(&s.health)
        }
    );
    if !s.error.is_empty() {
        body.push_str(&format!(
            "<div class=\"alert error\"><strong>Error:</strong> {}</div>",
            escape(&s.error)
        ));
    }
    if s.health == "degraded" {
        body.push_str(&format!(
            "<div class=\"alert warn\"><strong>Degraded:</strong> {}{}. \
             Its batches are retried; nothing advances past a batch that did not commit.</div>",
            escape(&s.degraded_reason),
            since(s.degraded_since_ms, now)
        ));
    }
    if s.state == "running" && s.health.is_empty() {
        body.push_str(&leader_note());
    }
    body.push_str(&summary(&s, now));
    body.push_str(&format!(
        "<h2 id=\"timeline\">Batch timeline</h2>{}",
        choices(name, limit)
    ));
    if rows.is_empty() {
        body.push_str("<p class=\"muted\">No committed batches yet.</p>");
    } else {
        body.push_str(&batches::charts(name, &rows));
    }
    body.push_str("<div class=\"cols\"><section>");
    body.push_str(&state(&s));
    body.push_str("</section><section>");
    body.push_str(&lag(&s, now));
    body.push_str("</section></div>");
    body.push_str(&format!(
        "<h2 id=\"batches\">Batches</h2><p class=\"muted\">The newest {} committed batches, newest first. \
         Processing time runs from planning to the output being published; total delay adds the scheduling delay.</p>",
        rows.len()
    ));
    if !rows.is_empty() {
        body.push_str(&batches::table(name, &rows));
    }
    Ok(View {
        title: name.to_string(),
        body,
        live: true,
    })
}

/// The links that choose how many batches the page shows.
fn choices(name: &str, limit: usize) -> String {
    let mut out = String::from("<p class=\"choices\">Last");
    for n in BATCH_CHOICES {
        if n == limit {
            out.push_str(&format!(" <strong>{n}</strong>"));
        } else {
            out.push_str(&format!(
                " <a href=\"/jobs/{}?batches={n}\">{n}</a>",
                escape(name)
            ));
        }
    }
    out.push_str(" batches</p>");
    out
}

/// The job's figures as a table of names and values.
fn summary(s: &pb::JobStatus, now: i64) -> String {
    let totals = s.totals.unwrap_or_default();
    let driven = !s.health.is_empty();
    let live = |text: String| if driven { text } else { NONE.to_string() };
    let rows: Vec<(&str, String)> = vec![
        ("last committed batch", last_batch(s)),
        ("batches committed", count(totals.batches)),
        ("watermark", html::time(s.watermark_ms)),
        ("records in", count(totals.records_in)),
        ("records out", count(totals.records_out)),
        (
            "skipped / late / lost",
            format!(
                "{} / {} / {}",
                count(totals.records_skipped),
                count(totals.records_late),
                count(totals.records_lost)
            ),
        ),
        ("last batch time", live(html::millis(s.last_batch_ms))),
        (
            "scheduling delay",
            live(html::millis(s.scheduling_delay_ms)),
        ),
        (
            "overhead p50 / p99",
            if s.overhead_batches == 0 {
                NONE.into()
            } else {
                format!(
                    "{} / {} ({} batches)",
                    html::millis_f(s.overhead_p50_ms),
                    html::millis_f(s.overhead_p99_ms),
                    s.overhead_batches
                )
            },
        ),
        (
            "lag",
            if s.lag_listed_at_ms == 0 {
                NONE.into()
            } else {
                format!(
                    "{} records ({})",
                    count(s.lag_records),
                    html::ago(s.lag_listed_at_ms, now)
                )
            },
        ),
        (
            "state",
            if s.state_sizes.is_empty() {
                NONE.into()
            } else {
                format!(
                    "{} keys, {}",
                    count(s.state_keys),
                    html::bytes(s.state_bytes)
                )
            },
        ),
        ("spec fingerprint", s.fingerprint.clone()),
    ];
    let mut out = String::from("<dl class=\"facts\">");
    for (name, value) in rows {
        out.push_str(&format!(
            "<div><dt>{name}</dt><dd>{}</dd></div>",
            escape(&value)
        ));
    }
    out.push_str("</dl>");
    out
}

/// State per partition: its owner and size, and its newest durable
/// checkpoint.
fn state(s: &pb::JobStatus) -> String {
    let mut out = String::from("<h2 id=\"state\">State</h2>");
    let mut partitions: BTreeMap<u32, (Option<&pb::PartitionOwner>, Option<&pb::PartitionSize>)> =
        BTreeMap::new();
    for o in &s.partitions {
        partitions.entry(o.partition).or_default().0 = Some(o);
    }
    for z in &s.state_sizes {
        partitions.entry(z.partition).or_default().1 = Some(z);
    }
    if partitions.is_empty() {
        out.push_str(
            "<p class=\"muted\">No state partitions reported: the job has no state, \
             its state has not been restored yet, or this replica is not the leader.</p>",
        );
        return out;
    }
    out.push_str(
        "<table class=\"grid\"><thead><tr><th>Partition</th><th>Executor</th><th>Epoch</th>\
         <th>Keys</th><th>Bytes</th><th>Last checkpoint</th></tr></thead><tbody>",
    );
    for (partition, (owner, size)) in &partitions {
        out.push_str(&format!(
            "<tr class=\"partition\">{}",
            num(&partition.to_string())
        ));
        match owner {
            Some(o) => {
                out.push_str(&format!(
                    "<td>{}<div class=\"muted\">{}</div></td>",
                    escape(&o.executor_id),
                    escape(&o.address)
                ));
                out.push_str(&num(&o.epoch.to_string()));
            }
            None => out.push_str(&format!("<td>{NONE}</td><td>{NONE}</td>")),
        }
        match size {
            Some(z) => {
                out.push_str(&num(&count(z.keys)));
                out.push_str(&num(&html::bytes(z.bytes)));
                out.push_str(&num(&format!("batch {}", z.durable_version)));
            }
            None => out.push_str(&format!("{0}{0}{0}", num(NONE))),
        }
        out.push_str("</tr>");
    }
    out.push_str(&format!(
        "</tbody><tfoot><tr><th colspan=\"3\">total</th>{}{}<td></td></tr></tfoot></table>",
        num(&count(s.state_keys)),
        num(&html::bytes(s.state_bytes))
    ));
    out
}

/// Source lag per partition, as the leader last listed the source.
fn lag(s: &pb::JobStatus, now: i64) -> String {
    let mut out = String::from("<h2 id=\"lag\">Source lag</h2>");
    if s.lag.is_empty() {
        out.push_str(
            "<p class=\"muted\">Not listed yet: the leader lists the source when it plans a batch.</p>",
        );
        return out;
    }
    out.push_str(&format!(
        "<p class=\"muted\">Listed at {} ({}).</p>\
         <table class=\"grid\"><thead><tr><th>Partition</th><th>Committed</th><th>Available</th><th>Lag</th></tr></thead><tbody>",
        html::time(s.lag_listed_at_ms),
        html::ago(s.lag_listed_at_ms, now)
    ));
    let mut lag: Vec<&pb::SourceLag> = s.lag.iter().collect();
    lag.sort_by_key(|l| l.partition);
    for l in lag {
        out.push_str(&format!(
            "<tr class=\"lag\">{}{}{}{}</tr>",
            num(&l.partition.to_string()),
            num(&count(l.committed)),
            num(&count(l.available)),
            num(&count(l.lag))
        ));
    }
    out.push_str(&format!(
        "</tbody><tfoot><tr><th colspan=\"3\">total</th>{}</tr></tfoot></table>",
        num(&count(s.lag_records))
    ));
    out
}
