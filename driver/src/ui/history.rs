//! `/jobs/<name>/history`: a job's spec versions, newest first, each
//! with what changed against the version before it (as `weir history`
//! shows it) and its spec as YAML.

use super::html::{self, escape, NONE};
use super::layout::View;
use super::{UiError, UiSource};
use crate::upgrade::{self, PlanDiff};
use weir_proto::pb;
use weir_proto::spec::to_yaml;

/// The history page of job `name` (a valid name).
pub fn page(source: &dyn UiSource, name: &str) -> Result<View, UiError> {
    let versions = source.history(name).map_err(UiError::Unavailable)?;
    if versions.is_empty() {
        return Err(UiError::NotFound(format!("There is no job named {name}.")));
    }
    let job = escape(name);
    let mut body = format!(
        "<p class=\"crumbs\"><a href=\"/\">Jobs</a> / <a href=\"/jobs/{job}\">{job}</a> / history</p>\
         <h1>{job}: upgrade history</h1><p class=\"muted\">{} versions, newest first. \
         Each shows what changed against the version before it and the class of every change.</p>",
        versions.len()
    );
    let empty = pb::JobSpec::default();
    for (i, record) in versions.iter().enumerate().rev() {
        let diff = match (i.checked_sub(1).map(|p| &versions[p]), &record.spec) {
            (Some(before), Some(spec)) => {
                Some(upgrade::diff(before.spec.as_ref().unwrap_or(&empty), spec))
            }
            _ => None,
        };
        body.push_str(&version(record, diff.as_ref(), i + 1 == versions.len()));
    }
    Ok(View {
        title: format!("{name}: history"),
        body,
        live: true,
    })
}

/// One version: when, its generation and offsets, its changes and spec.
/// `diff` is `None` for the first version.
fn version(record: &pb::JobRecord, diff: Option<&PlanDiff>, current: bool) -> String {
    let at = if record.updated_at_ms != 0 {
        record.updated_at_ms
    } else {
        record.created_at_ms
    };
    let mut out = format!(
        "<section class=\"version\"><h2>Version {}{}</h2><table class=\"kv\"><tbody>\
         <tr><th>stored at</th><td>{}</td></tr><tr><th>fingerprint</th><td><code>{}</code></td></tr>\
         <tr><th>state generation</th><td>{}{}</td></tr>",
        record.version.max(1),
        if current {
            " <span class=\"badge b-current\">current</span>"
        } else {
            ""
        },
        html::time(at),
        escape(&record.fingerprint),
        record.state_generation,
        if record.state_base_batch > 0 {
            format!(" (state holds the batches after {})", record.state_base_batch)
        } else {
            String::new()
        }
    );
    if !record.offsets_from.is_empty() {
        let offsets: Vec<String> = record
            .offsets_from
            .iter()
            .map(|r| format!("{}:{}", r.partition, r.start))
            .collect();
        out.push_str(&format!(
            "<tr><th>offsets from</th><td>{} (after batch {})</td></tr>",
            escape(&offsets.join(",")),
            record.offsets_from_batch
        ));
    }
    out.push_str("</tbody></table>");
    match diff {
        None => out.push_str("<p>Created.</p>"),
        Some(d) if d.changes.is_empty() => {
            out.push_str("<p>Same spec (state or offsets reset).</p>")
        }
        Some(d) => out.push_str(&changes(d)),
    }
    match &record.spec {
        Some(spec) => out.push_str(&format!(
            "<details><summary>Spec (YAML)</summary><pre class=\"spec\">{}</pre></details>",
            escape(&to_yaml(spec))
        )),
        None => out.push_str("<p class=\"muted\">No spec stored with this version.</p>"),
    }
    out.push_str("</section>");
    out
}

/// The changes of a diff as a table, with the verdict.
fn changes(d: &PlanDiff) -> String {
    let mut out = format!(
        "<p>Verdict: {}</p><table class=\"grid diff\"><thead><tr><th>Path</th><th>Before</th><th>After</th>\
         <th>Class</th><th>Allowed by</th></tr></thead><tbody>",
        html::badge(d.verdict().as_str())
    );
    for c in &d.changes {
        out.push_str(&format!(
            "<tr class=\"change\"><td><code>{}</code></td><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
            escape(&c.path),
            or_none(&c.before),
            or_none(&c.after),
            html::badge(c.class.as_str()),
            escape(c.class.allowed_by())
        ));
    }
    out.push_str("</tbody></table>");
    out
}

fn or_none(text: &str) -> String {
    if text.is_empty() {
        NONE.into()
    } else {
        escape(text)
    }
}
