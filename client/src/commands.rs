//! The cluster commands of the CLI: submit, status, list, batches, stop,
//! cluster. Each prints a human table, or with `--json` the same as JSON.

use crate::remote::{connect, ClientError, Cluster, READ_TIMEOUT, WRITE_TIMEOUT};
use serde_json::{json, Value};
use weir_driver::upgrade::{Change, ChangeClass, PlanDiff};
use weir_proto::pb;

fn totals_json(t: Option<pb::JobTotals>) -> Value {
    let t = t.unwrap_or_default();
    json!({
        "batches": t.batches,
        "records_in": t.records_in,
        "records_out": t.records_out,
        "records_skipped": t.records_skipped,
        "records_late": t.records_late,
        "records_lost": t.records_lost,
    })
}

/// A job status as JSON.
pub fn status_json(s: &pb::JobStatus) -> Value {
    json!({
        "job": s.job,
        "state": s.state,
        "last_committed_batch": s.last_committed_batch,
        "pending_batch": s.pending_batch,
        "pending_committing": s.pending_committing,
        "fingerprint": s.fingerprint,
        "error": s.error,
        "watermark_ms": if s.watermark_ms == i64::MIN { Value::Null } else { json!(s.watermark_ms) },
        "totals": totals_json(s.totals),
        "health": s.health,
        "degraded_reason": s.degraded_reason,
        "degraded_since_ms": if s.degraded_since_ms == 0 { Value::Null } else { json!(s.degraded_since_ms) },
        "scheduling_delay_ms": s.scheduling_delay_ms,
        "last_batch_ms": s.last_batch_ms,
        "overhead_ms": json!({
            "p50": s.overhead_p50_ms,
            "p99": s.overhead_p99_ms,
            "batches": s.overhead_batches,
        }),
        "partitions": s.partitions.iter().map(|p| json!({
            "partition": p.partition,
            "executor_id": p.executor_id,
            "address": p.address,
            "epoch": p.epoch,
        })).collect::<Vec<_>>(),
    })
}

/// The lines under a job's status line: health, batch timing and where
/// its state partitions live.
fn status_details(s: &pb::JobStatus) -> Vec<String> {
    let mut lines = Vec::new();
    if !s.error.is_empty() {
        lines.push(format!("error: {}", s.error));
    }
    if s.health == "degraded" {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64)
            .saturating_sub(s.degraded_since_ms);
        lines.push(format!(
            "health: degraded for {:.1} s: {}",
            since as f64 / 1000.0,
            s.degraded_reason
        ));
    } else if !s.health.is_empty() {
        lines.push(format!(
            "health: {}; last batch {} ms, scheduling delay {} ms, overhead p50 {:.2} ms p99 {:.2} ms ({} batches)",
            s.health,
            s.last_batch_ms,
            s.scheduling_delay_ms,
            s.overhead_p50_ms,
            s.overhead_p99_ms,
            s.overhead_batches
        ));
    }
    if !s.partitions.is_empty() {
        lines.push("PARTITION  EXECUTOR             ADDRESS                EPOCH".into());
        for p in &s.partitions {
            lines.push(format!(
                "{:<10} {:<20} {:<22} {}",
                p.partition, p.executor_id, p.address, p.epoch
            ));
        }
    }
    lines
}

fn status_line(s: &pb::JobStatus) -> String {
    let t = s.totals.unwrap_or_default();
    let pending = match s.pending_batch {
        Some(b) if s.pending_committing => format!("batch {b} committing"),
        Some(b) => format!("batch {b} running"),
        None => "-".into(),
    };
    format!(
        "{:<24} {:<9} {:>8} {:<20} {:>14} {:>14} {:>9} {:>9}",
        s.job,
        s.state,
        s.last_committed_batch,
        pending,
        t.records_in,
        t.records_out,
        t.records_skipped,
        t.records_late
    )
}

const STATUS_HEADER: &str = "JOB                      STATE     COMMITTED IN FLIGHT           RECORDS IN    RECORDS OUT   SKIPPED      LATE";

/// Upgrade options of `weir submit` and `weir local`.
#[derive(Debug, Clone, Default)]
pub struct UpgradeFlags {
    /// `--reset-state`.
    pub reset_state: bool,
    /// `--from`.
    pub from: Option<String>,
}

/// The diff carried in a submit response, as the driver's type.
pub fn response_diff(changes: &[pb::SpecChange]) -> PlanDiff {
    PlanDiff {
        changes: changes
            .iter()
            .map(|c| Change {
                path: c.path.clone(),
                before: c.before.clone(),
                after: c.after.clone(),
                class: ChangeClass::parse(&c.class).unwrap_or(ChangeClass::NeedsOffsetDecision),
            })
            .collect(),
    }
}

/// A diff as JSON.
pub fn diff_json(job: &str, diff: &PlanDiff, verdict: &str) -> Value {
    json!({
        "job": job,
        "verdict": verdict,
        "changes": diff.changes.iter().map(|c| json!({
            "path": c.path,
            "before": c.before,
            "after": c.after,
            "class": c.class.as_str(),
            "allowed_by": c.class.allowed_by(),
        })).collect::<Vec<_>>(),
    })
}

/// Prints a diff as a table with its verdict, or as JSON.
pub fn print_diff(job: &str, diff: &PlanDiff, verdict: &str, as_json: bool) {
    if as_json {
        println!("{}", diff_json(job, diff, verdict));
    } else if verdict == "new" {
        println!("job {job} does not exist: it would be created\nverdict: new");
    } else {
        print!("{}", diff.table());
    }
}

fn request(spec: &pb::JobSpec, flags: &UpgradeFlags, dry_run: bool) -> pb::SubmitRequest {
    pb::SubmitRequest {
        spec: Some(spec.clone()),
        reset_state: flags.reset_state,
        from: flags.from.clone().unwrap_or_default(),
        dry_run,
    }
}

/// `weir submit`.
pub async fn submit(
    cluster: &Cluster,
    spec: pb::JobSpec,
    flags: &UpgradeFlags,
    as_json: bool,
) -> Result<(), ClientError> {
    let r = cluster
        .call(WRITE_TIMEOUT, |mut c| {
            let req = request(&spec, flags, false);
            async move { c.submit(req).await }
        })
        .await?;
    let diff = response_diff(&r.changes);
    if as_json {
        println!(
            "{}",
            json!({"job": r.job, "resumed": r.resumed, "fingerprint": r.fingerprint,
                   "verdict": r.verdict, "version": r.version,
                   "state_generation": r.state_generation,
                   "changes": diff_json(&r.job, &diff, &r.verdict)["changes"]})
        );
    } else if !r.resumed {
        println!("job {} submitted (fingerprint {})", r.job, r.fingerprint);
    } else if diff.changes.is_empty() && !flags.reset_state && flags.from.is_none() {
        println!(
            "job {} resumed from its checkpoint (fingerprint {})",
            r.job, r.fingerprint
        );
    } else {
        print!("{}", diff.table());
        println!(
            "job {} upgraded to version {} (fingerprint {}, state generation {}); applied at the next batch boundary",
            r.job, r.version, r.fingerprint, r.state_generation
        );
    }
    Ok(())
}

/// `weir diff SPEC`: what a submit would change, without changing anything.
pub async fn diff(
    cluster: &Cluster,
    spec: pb::JobSpec,
    flags: &UpgradeFlags,
    as_json: bool,
) -> Result<(), ClientError> {
    let r = cluster
        .call(READ_TIMEOUT, |mut c| {
            let req = request(&spec, flags, true);
            async move { c.submit(req).await }
        })
        .await?;
    print_diff(&spec.name, &response_diff(&r.changes), &r.verdict, as_json);
    Ok(())
}

/// `weir status JOB`.
pub async fn status(cluster: &Cluster, job: &str, as_json: bool) -> Result<(), ClientError> {
    let s = cluster
        .call(READ_TIMEOUT, |mut c| async move {
            c.status(pb::StatusRequest {
                job: job.to_string(),
            })
            .await
        })
        .await?;
    if as_json {
        println!("{}", status_json(&s));
    } else {
        println!("{STATUS_HEADER}");
        println!("{}", status_line(&s));
        for line in status_details(&s) {
            println!("{line}");
        }
    }
    Ok(())
}

/// `weir list`.
pub async fn list(cluster: &Cluster, as_json: bool) -> Result<(), ClientError> {
    let r = cluster
        .call(READ_TIMEOUT, |mut c| async move {
            c.list(pb::ListRequest {}).await
        })
        .await?;
    if as_json {
        println!("{}", Value::Array(r.jobs.iter().map(status_json).collect()));
    } else {
        println!("{STATUS_HEADER}");
        for s in &r.jobs {
            println!("{}", status_line(s));
        }
    }
    Ok(())
}

/// `weir batches JOB`.
pub async fn batches(
    cluster: &Cluster,
    job: &str,
    limit: u32,
    as_json: bool,
) -> Result<(), ClientError> {
    let r = cluster
        .call(READ_TIMEOUT, |mut c| async move {
            c.batches(pb::BatchesRequest {
                job: job.to_string(),
                limit,
            })
            .await
        })
        .await?;
    if as_json {
        let rows: Vec<Value> = r
            .batches
            .iter()
            .map(|b| {
                json!({
                    "batch_id": b.batch_id,
                    "records_in": b.records_in,
                    "records_out": b.records_out,
                    "records_skipped": b.records_skipped,
                    "records_late": b.records_late,
                    "duration_ms": b.duration_ms,
                    "committed_at_ms": b.committed_at_ms,
                })
            })
            .collect();
        println!("{}", Value::Array(rows));
    } else {
        println!(
            "{:>8} {:>12} {:>12} {:>9} {:>9} {:>10}",
            "BATCH", "IN", "OUT", "SKIPPED", "LATE", "DURATION"
        );
        for b in &r.batches {
            println!(
                "{:>8} {:>12} {:>12} {:>9} {:>9} {:>8}ms",
                b.batch_id,
                b.records_in,
                b.records_out,
                b.records_skipped,
                b.records_late,
                b.duration_ms
            );
        }
    }
    Ok(())
}

/// `weir stop JOB`.
pub async fn stop(
    cluster: &Cluster,
    job: &str,
    purge: bool,
    as_json: bool,
) -> Result<(), ClientError> {
    // A purge waits for the job's batch in flight.
    let timeout = if purge {
        std::time::Duration::from_secs(90)
    } else {
        WRITE_TIMEOUT
    };
    let r = cluster
        .call(timeout, |mut c| async move {
            c.stop(pb::StopRequest {
                job: job.to_string(),
                purge,
            })
            .await
        })
        .await?;
    if as_json {
        if purge {
            println!(
                "{}",
                json!({"job": job, "purged": true, "remains": r.remains})
            );
        } else {
            println!("{}", json!({"job": job, "state": "stopped"}));
        }
    } else if purge {
        println!(
            "job {job} stopped and its metadata deleted; kept: {}",
            r.remains
        );
    } else {
        println!("job {job} stops after its current batch; `weir submit` resumes it");
    }
    Ok(())
}

fn driver_json(d: &pb::DriverInfo) -> Value {
    json!({
        "id": d.id,
        "address": d.address,
        "role": d.role,
        "term": d.term,
        "commit_index": d.commit_index,
        "applied_index": d.applied_index,
        "last_contact_ms": if d.last_contact_ms == u64::MAX { Value::Null } else { json!(d.last_contact_ms) },
    })
}

/// `weir cluster`: asks every driver for its own view, so each row is what
/// that replica says of itself (`unreachable` when it does not answer).
pub async fn cluster(cluster: &Cluster, as_json: bool) -> Result<(), ClientError> {
    let mut drivers: Vec<pb::DriverInfo> = Vec::new();
    let mut leader_view: Option<pb::ClusterInfo> = None;
    let mut addresses: Vec<String> = cluster.drivers().to_vec();
    let mut i = 0;
    while i < addresses.len() {
        let address = addresses[i].clone();
        i += 1;
        let info = match connect(&address, READ_TIMEOUT) {
            Ok(mut c) => c
                .cluster(pb::ClusterRequest {})
                .await
                .map(|r| r.into_inner())
                .ok(),
            Err(_) => None,
        };
        match info {
            Some(info) => {
                // Members the asked replica knows of that were not given.
                for d in &info.drivers {
                    if !addresses.contains(&d.address) {
                        addresses.push(d.address.clone());
                    }
                }
                let me = info
                    .drivers
                    .iter()
                    .find(|d| d.address == address && d.term > 0)
                    .cloned();
                let me = me.or_else(|| info.drivers.iter().find(|d| d.term > 0).cloned());
                if let Some(me) = me {
                    if me.role == "leader" {
                        leader_view = Some(info.clone());
                    }
                    drivers.push(me);
                }
            }
            None => drivers.push(pb::DriverInfo {
                address: address.clone(),
                role: "unreachable".into(),
                last_contact_ms: u64::MAX,
                ..Default::default()
            }),
        }
    }
    // Contact times are the leader's view of the others.
    if let Some(view) = &leader_view {
        for d in drivers.iter_mut() {
            if let Some(v) = view
                .drivers
                .iter()
                .find(|v| v.id == d.id && d.role != "leader")
            {
                d.last_contact_ms = v.last_contact_ms;
            }
            if d.id == 0 {
                if let Some(v) = view.drivers.iter().find(|v| v.address == d.address) {
                    d.id = v.id;
                }
            }
        }
    }
    drivers.sort_by_key(|d| (d.id, d.address.clone()));
    let executors = leader_view
        .as_ref()
        .map(|v| v.executors.clone())
        .unwrap_or_default();
    if as_json {
        let out = json!({
            "cluster_id": leader_view.as_ref().map(|v| v.cluster_id.clone()),
            "leader_id": leader_view.as_ref().map(|v| v.leader_id),
            "drivers": drivers.iter().map(driver_json).collect::<Vec<_>>(),
            "executors": executors.iter().map(|e| json!({
                "id": e.id, "address": e.address, "epoch": e.epoch, "slots": e.slots,
                "build_version": e.build_version, "health": e.health,
                "last_heartbeat_ms": e.last_heartbeat_ms, "partitions": e.partitions,
                "operators": e.operators,
            })).collect::<Vec<_>>(),
        });
        println!("{out}");
    } else {
        println!(
            "{:>4} {:<22} {:<13} {:>6} {:>8} {:>8} {:>12}",
            "ID", "ADDRESS", "ROLE", "TERM", "COMMIT", "APPLIED", "LAST CONTACT"
        );
        for d in &drivers {
            let contact = match (d.role.as_str(), d.last_contact_ms) {
                ("leader", _) => "-".to_string(),
                (_, u64::MAX) => "never".to_string(),
                (_, ms) => format!("{ms}ms ago"),
            };
            println!(
                "{:>4} {:<22} {:<13} {:>6} {:>8} {:>8} {:>12}",
                d.id, d.address, d.role, d.term, d.commit_index, d.applied_index, contact
            );
        }
        if !executors.is_empty() {
            println!();
            println!(
                "{:<16} {:<22} {:>6} {:>6} {:<8} {:<16} PARTITIONS",
                "EXECUTOR", "ADDRESS", "EPOCH", "SLOTS", "HEALTH", "OPERATORS"
            );
            for e in &executors {
                let operators = if e.operators.is_empty() {
                    "-".to_string()
                } else {
                    e.operators.join(",")
                };
                println!(
                    "{:<16} {:<22} {:>6} {:>6} {:<8} {:<16} {}",
                    e.id,
                    e.address,
                    e.epoch,
                    e.slots,
                    e.health,
                    operators,
                    e.partitions.join(",")
                );
            }
        }
    }
    Ok(())
}

/// `weir cluster add-driver` / `remove-driver`.
pub async fn membership(
    cluster: &Cluster,
    add: Option<(u64, String)>,
    remove: Option<u64>,
    as_json: bool,
) -> Result<(), ClientError> {
    if let Some((id, address)) = add {
        cluster
            .call(WRITE_TIMEOUT, |mut c| {
                let address = address.clone();
                async move { c.add_driver(pb::AddDriverRequest { id, address }).await }
            })
            .await?;
        if as_json {
            println!("{}", json!({"added": id, "address": address}));
        } else {
            println!("driver {id} added; start it with --join and the same --cluster-id");
        }
    }
    if let Some(id) = remove {
        cluster
            .call(WRITE_TIMEOUT, |mut c| async move {
                c.remove_driver(pb::RemoveDriverRequest { id }).await
            })
            .await?;
        if as_json {
            println!("{}", json!({"removed": id}));
        } else {
            println!("driver {id} removed");
        }
    }
    Ok(())
}

/// Prints a job's spec versions (oldest first) with the diff of each
/// against the one before.
pub fn print_history(job: &str, versions: &[pb::JobRecord], as_json: bool) {
    let mut entries = Vec::new();
    for (i, r) in versions.iter().enumerate() {
        let diff = match (i.checked_sub(1).map(|p| &versions[p]), &r.spec) {
            (Some(prev), Some(spec)) => weir_driver::upgrade::diff(
                prev.spec.as_ref().unwrap_or(&pb::JobSpec::default()),
                spec,
            ),
            _ => PlanDiff::default(),
        };
        let at = if r.updated_at_ms != 0 {
            r.updated_at_ms
        } else {
            r.created_at_ms
        };
        entries.push((r, at, diff));
    }
    if as_json {
        let list: Vec<Value> = entries
            .iter()
            .map(|(r, at, d)| {
                json!({
                    "version": r.version.max(1),
                    "updated_at_ms": at,
                    "fingerprint": r.fingerprint,
                    "state_generation": r.state_generation,
                    "state_base_batch": r.state_base_batch,
                    "changes": diff_json(job, d, d.verdict().as_str())["changes"],
                })
            })
            .collect();
        println!("{}", json!({"job": job, "versions": list}));
        return;
    }
    for (i, (r, at, d)) in entries.iter().enumerate() {
        println!(
            "version {} at {} fingerprint {} state generation {}{}",
            r.version.max(1),
            format_time(*at),
            r.fingerprint,
            r.state_generation,
            if i + 1 == entries.len() {
                " (current)"
            } else {
                ""
            }
        );
        if i == 0 {
            println!("  created");
        } else if d.changes.is_empty() {
            println!("  same spec (state or offsets reset)");
        } else {
            for line in d.table().lines() {
                println!("  {line}");
            }
        }
    }
}

fn format_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `weir history JOB`.
pub async fn history(cluster: &Cluster, job: &str, as_json: bool) -> Result<(), ClientError> {
    let r = cluster
        .call(READ_TIMEOUT, |mut c| async move {
            c.history(pb::HistoryRequest {
                job: job.to_string(),
            })
            .await
        })
        .await?;
    print_history(job, &r.versions, as_json);
    Ok(())
}
