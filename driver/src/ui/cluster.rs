//! `/cluster`: the driver replicas with the leader marked, as this
//! replica sees them, and the executors; and the notice a follower puts
//! above every page.

use super::html::{self, badge, count, escape, num, NONE};
use super::layout::View;
use weir_proto::pb;

/// The most state partitions named in an executor's row; the rest are
/// counted.
const MAX_PARTITIONS_NAMED: usize = 32;

/// The replica serving the page: the only one whose term this view knows.
fn this_replica(info: &pb::ClusterInfo) -> Option<&pb::DriverInfo> {
    info.drivers.iter().find(|d| d.term > 0)
}

fn leader(info: &pb::ClusterInfo) -> Option<&pb::DriverInfo> {
    info.drivers.iter().find(|d| d.id == info.leader_id)
}

/// Where to find the leader, as a sentence's end (`driver 2 at
/// host:7070`, or that none is known).
fn leader_text(info: &pb::ClusterInfo) -> String {
    match leader(info) {
        Some(l) => format!("driver {} at {}", l.id, escape(&l.address)),
        None => "the leader (none is known right now)".into(),
    }
}

/// The notice above every page of a replica that is not the leader (empty
/// on the leader): live figures come from the leader.
pub fn notice(info: &pb::ClusterInfo) -> String {
    match this_replica(info) {
        Some(me) if me.role != "leader" => format!(
            "<div class=\"alert info\">This replica (driver {}) is a {}: jobs and batches come from its copy of the metadata, \
             and live health (job health, batch times, lag, state sizes, executors) is shown by the leader, {}.</div>",
            me.id,
            escape(&me.role),
            leader_text(info)
        ),
        _ => String::new(),
    }
}

/// The cluster page; `None` (in `weir local`) says there is no cluster.
pub fn page(info: Option<&pb::ClusterInfo>) -> View {
    let Some(info) = info else {
        return View {
            title: "Cluster".into(),
            body:
                "<h1>Cluster</h1><p>This is <code>weir local</code>: one driver and one executor \
                   in this process, with no replicas or executors to show.</p>"
                    .into(),
            live: true,
        };
    };
    let mut body = format!(
        "<h1>Cluster <code>{}</code></h1><h2>Drivers</h2>",
        escape(&info.cluster_id)
    );
    body.push_str(&drivers(info));
    body.push_str("<h2>Executors</h2>");
    body.push_str(&executors(info));
    View {
        title: "Cluster".into(),
        body,
        live: true,
    }
}

fn drivers(info: &pb::ClusterInfo) -> String {
    if info.drivers.is_empty() {
        return "<p class=\"muted\">This replica knows no driver replicas yet.</p>".into();
    }
    let me = this_replica(info).map(|d| d.id);
    let mut out = String::from(
        "<table class=\"grid\"><thead><tr><th>Driver</th><th>Address</th><th>Role</th><th>Term</th>\
         <th>Commit index</th><th>Applied index</th><th>Last contact</th></tr></thead><tbody>",
    );
    for d in &info.drivers {
        let is_me = Some(d.id) == me;
        let known = |n: u64| if is_me { count(n) } else { NONE.into() };
        let mut role = badge(&d.role);
        if d.id == info.leader_id && d.role != "leader" {
            role.push_str(" <span class=\"badge b-leader\">leader</span>");
        }
        out.push_str(&format!(
            "<tr class=\"driver{}\">{}<td>{}</td><td>{role}</td>{}{}{}{}</tr>",
            if d.id == info.leader_id {
                " leader"
            } else {
                ""
            },
            num(&format!(
                "{}{}",
                d.id,
                if is_me { " (this replica)" } else { "" }
            )),
            escape(&d.address),
            num(&known(d.term)),
            num(&known(d.commit_index)),
            num(&known(d.applied_index)),
            num(&if is_me {
                NONE.into()
            } else if d.last_contact_ms == u64::MAX {
                "never".into()
            } else {
                format!("{} ago", html::millis_rounded(d.last_contact_ms))
            })
        ));
    }
    out.push_str(
        "</tbody></table><p class=\"muted\">Term and indexes are this replica's own; \
         <code>weir cluster</code> asks every driver.</p>",
    );
    out
}

fn executors(info: &pb::ClusterInfo) -> String {
    let leads = this_replica(info).is_some_and(|d| d.role == "leader");
    if info.executors.is_empty() {
        return if leads {
            "<p class=\"muted\">No executor is registered.</p>".into()
        } else {
            format!(
                "<p class=\"muted\">Executors register with the leader: open the leader's UI ({}) to see them.</p>",
                leader_text(info)
            )
        };
    }
    let mut out = String::from(
        "<table class=\"grid\"><thead><tr><th>Executor</th><th>Address</th><th>Health</th><th>Epoch</th>\
         <th>Slots</th><th>Last heartbeat</th><th>State partitions</th><th>Build</th></tr></thead><tbody>",
    );
    for e in &info.executors {
        let mut partitions = escape(
            &e.partitions
                .iter()
                .take(MAX_PARTITIONS_NAMED)
                .cloned()
                .collect::<Vec<_>>()
                .join(", "),
        );
        if e.partitions.len() > MAX_PARTITIONS_NAMED {
            partitions.push_str(&format!(
                " and {} more",
                e.partitions.len() - MAX_PARTITIONS_NAMED
            ));
        }
        out.push_str(&format!(
            "<tr class=\"executor\"><td>{}</td><td>{}</td><td>{}</td>{}{}{}<td><strong>{}</strong> {partitions}</td><td>{}</td></tr>",
            escape(&e.id),
            escape(&e.address),
            badge(&e.health),
            num(&e.epoch.to_string()),
            num(&e.slots.to_string()),
            num(&format!("{} ago", html::millis_rounded(e.last_heartbeat_ms))),
            e.partitions.len(),
            escape(&e.build_version)
        ));
    }
    out.push_str("</tbody></table>");
    out
}
