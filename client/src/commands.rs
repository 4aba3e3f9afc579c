//! The cluster commands of the CLI: submit, status, list, batches, stop,
//! cluster, history, spec. Each prints a human table, or the same data as
//! JSON or YAML ([`Output`]).

use crate::output::{Align, Output, Table};
use crate::remote::{connect, ClientError, Cluster, READ_TIMEOUT, WRITE_TIMEOUT};
use serde_json::{json, Value};
use tonic::Code;
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
        "lag": if s.lag_listed_at_ms == 0 { Value::Null } else { json!({
            "records": s.lag_records,
            "listed_at_ms": s.lag_listed_at_ms,
            "partitions": s.lag.iter().map(|l| json!({
                "partition": l.partition,
                "committed": l.committed,
                "available": l.available,
                "lag": l.lag,
            })).collect::<Vec<_>>(),
        }) },
        "state_size": if s.state_sizes.is_empty() { Value::Null } else { json!({
            "keys": s.state_keys,
            "bytes": s.state_bytes,
            "partitions": s.state_sizes.iter().map(|p| json!({
                "partition": p.partition,
                "keys": p.keys,
                "bytes": p.bytes,
                "durable_version": p.durable_version,
            })).collect::<Vec<_>>(),
        }) },
        "lookups": s.lookups.iter().map(|l| json!({
            "step": l.step,
            "hits": l.hits,
            "misses": l.misses,
            "hit_rate": hit_rate(l),
            "requests": l.requests,
            "request_ms_avg": request_ms_avg(l),
        })).collect::<Vec<_>>(),
    })
}

/// The share of a lookup step's keys found in the cache (0 before any).
fn hit_rate(l: &pb::LookupCounts) -> f64 {
    let keys = l.hits + l.misses;
    if keys == 0 {
        0.0
    } else {
        l.hits as f64 / keys as f64
    }
}

/// The average time of a lookup step's requests to its store, in ms.
fn request_ms_avg(l: &pb::LookupCounts) -> f64 {
    if l.requests == 0 {
        0.0
    } else {
        l.request_us as f64 / l.requests as f64 / 1000.0
    }
}

/// `bytes` the way people read them: `812 B`, `3.4 MiB`.
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
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
    if s.lag_listed_at_ms != 0 {
        let busiest = s.lag.iter().max_by_key(|l| l.lag);
        lines.push(format!(
            "lag: {} records behind the source over {} partitions{}",
            s.lag_records,
            s.lag.len(),
            busiest
                .filter(|l| l.lag > 0)
                .map(|l| format!(" (most: partition {}, {})", l.partition, l.lag))
                .unwrap_or_default()
        ));
    }
    if !s.state_sizes.is_empty() {
        lines.push(format!(
            "state: {} keys, {} in {} partitions",
            s.state_keys,
            human_bytes(s.state_bytes),
            s.state_sizes.len()
        ));
    }
    for l in &s.lookups {
        lines.push(format!(
            "lookup {}: {} keys, {:.1} % from the cache; {} requests to the store, {:.2} ms on average",
            l.step,
            l.hits + l.misses,
            hit_rate(l) * 100.0,
            l.requests,
            request_ms_avg(l)
        ));
    }
    if !s.partitions.is_empty() {
        let mut t = Table::new(&[
            ("PARTITION", Align::Right),
            ("EXECUTOR", Align::Left),
            ("ADDRESS", Align::Left),
            ("EPOCH", Align::Right),
            ("KEYS", Align::Right),
            ("BYTES", Align::Right),
            ("CHECKPOINT", Align::Right),
        ]);
        for p in &s.partitions {
            let size = s.state_sizes.iter().find(|z| z.partition == p.partition);
            let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
            t.row(vec![
                p.partition.to_string(),
                p.executor_id.clone(),
                p.address.clone(),
                p.epoch.to_string(),
                or_dash(size.map(|z| z.keys.to_string())),
                or_dash(size.map(|z| human_bytes(z.bytes))),
                or_dash(size.map(|z| z.durable_version.to_string())),
            ]);
        }
        lines.extend(t.lines());
    }
    lines
}

/// The job table of `weir status` and `weir list`.
fn jobs_table(jobs: &[pb::JobStatus]) -> Table {
    let mut t = Table::new(&[
        ("JOB", Align::Left),
        ("STATE", Align::Left),
        ("COMMITTED", Align::Right),
        ("IN FLIGHT", Align::Left),
        ("RECORDS IN", Align::Right),
        ("RECORDS OUT", Align::Right),
        ("SKIPPED", Align::Right),
        ("LATE", Align::Right),
        ("LAG", Align::Right),
    ]);
    for s in jobs {
        let totals = s.totals.unwrap_or_default();
        let pending = match s.pending_batch {
            Some(b) if s.pending_committing => format!("batch {b} committing"),
            Some(b) => format!("batch {b} running"),
            None => "-".into(),
        };
        t.row(vec![
            s.job.clone(),
            s.state.clone(),
            s.last_committed_batch.to_string(),
            pending,
            totals.records_in.to_string(),
            totals.records_out.to_string(),
            totals.records_skipped.to_string(),
            totals.records_late.to_string(),
            if s.lag_listed_at_ms == 0 {
                "-".into()
            } else {
                s.lag_records.to_string()
            },
        ]);
    }
    t
}

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
pub fn print_diff(job: &str, diff: &PlanDiff, verdict: &str, out: Output) {
    if out.structured() {
        out.print(&diff_json(job, diff, verdict));
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
    out: Output,
) -> Result<(), ClientError> {
    let r = cluster
        .call(WRITE_TIMEOUT, |mut c| {
            let req = request(&spec, flags, false);
            async move { c.submit(req).await }
        })
        .await?;
    let diff = response_diff(&r.changes);
    if out.structured() {
        out.print(
            &json!({"job": r.job, "resumed": r.resumed, "fingerprint": r.fingerprint,
               "verdict": r.verdict, "version": r.version,
               "state_generation": r.state_generation,
               "changes": diff_json(&r.job, &diff, &r.verdict)["changes"]}),
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
    out: Output,
) -> Result<(), ClientError> {
    let r = cluster
        .call(READ_TIMEOUT, |mut c| {
            let req = request(&spec, flags, true);
            async move { c.submit(req).await }
        })
        .await?;
    print_diff(&spec.name, &response_diff(&r.changes), &r.verdict, out);
    Ok(())
}

/// `weir status JOB`.
pub async fn status(cluster: &Cluster, job: &str, out: Output) -> Result<(), ClientError> {
    let s = cluster
        .call(READ_TIMEOUT, |mut c| async move {
            c.status(pb::StatusRequest {
                job: job.to_string(),
            })
            .await
        })
        .await?;
    if out.structured() {
        out.print(&status_json(&s));
    } else {
        jobs_table(std::slice::from_ref(&s)).print();
        for line in status_details(&s) {
            println!("{line}");
        }
    }
    Ok(())
}

/// `weir list`.
pub async fn list(cluster: &Cluster, out: Output) -> Result<(), ClientError> {
    let r = cluster
        .call(READ_TIMEOUT, |mut c| async move {
            c.list(pb::ListRequest {}).await
        })
        .await?;
    if out.structured() {
        out.print(&Value::Array(r.jobs.iter().map(status_json).collect()));
    } else {
        jobs_table(&r.jobs).print();
    }
    Ok(())
}

/// `weir batches JOB`.
pub async fn batches(
    cluster: &Cluster,
    job: &str,
    limit: u32,
    out: Output,
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
    if out.structured() {
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
                    "times": b.times.map(|t| json!({
                        "planned_at_ms": t.planned_at_ms,
                        "scheduling_delay_us": t.scheduling_delay_us,
                        "plan_us": t.plan_us,
                        "stage_a_us": t.stage_a_us,
                        "shuffle_us": t.shuffle_us,
                        "stage_b_us": t.stage_b_us,
                        "checkpoint_us": t.checkpoint_us,
                        "commit_us": t.commit_us,
                        "ranges": t.ranges,
                    })),
                })
            })
            .collect();
        out.print(&Value::Array(rows));
    } else {
        let mut t = Table::new(&[
            ("BATCH", Align::Right),
            ("IN", Align::Right),
            ("OUT", Align::Right),
            ("SKIPPED", Align::Right),
            ("LATE", Align::Right),
            ("DURATION", Align::Right),
        ]);
        for b in &r.batches {
            t.row(vec![
                b.batch_id.to_string(),
                b.records_in.to_string(),
                b.records_out.to_string(),
                b.records_skipped.to_string(),
                b.records_late.to_string(),
                format!("{}ms", b.duration_ms),
            ]);
        }
        t.print();
    }
    Ok(())
}

/// `weir stop JOB`.
pub async fn stop(
    cluster: &Cluster,
    job: &str,
    purge: bool,
    out: Output,
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
    if out.structured() {
        if purge {
            out.print(&json!({"job": job, "purged": true, "remains": r.remains}));
        } else {
            out.print(&json!({"job": job, "state": "stopped"}));
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
pub async fn cluster(cluster: &Cluster, out: Output) -> Result<(), ClientError> {
    let mut drivers: Vec<pb::DriverInfo> = Vec::new();
    let mut leader_view: Option<pb::ClusterInfo> = None;
    let mut addresses: Vec<String> = cluster.drivers().to_vec();
    let mut i = 0;
    while i < addresses.len() {
        let address = addresses[i].clone();
        i += 1;
        let info = match connect(&address, READ_TIMEOUT, cluster.access()) {
            Ok(mut c) => match c.cluster(pb::ClusterRequest {}).await {
                Ok(r) => Some(r.into_inner()),
                // Credentials refused are the caller's to fix, not an
                // unreachable replica.
                Err(s) if matches!(s.code(), Code::Unauthenticated | Code::PermissionDenied) => {
                    return Err(ClientError::Status(s))
                }
                Err(_) => None,
            },
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
    if out.structured() {
        let value = json!({
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
        out.print(&value);
    } else {
        let mut t = Table::new(&[
            ("ID", Align::Right),
            ("ADDRESS", Align::Left),
            ("ROLE", Align::Left),
            ("TERM", Align::Right),
            ("COMMIT", Align::Right),
            ("APPLIED", Align::Right),
            ("LAST CONTACT", Align::Right),
        ]);
        for d in &drivers {
            let contact = match (d.role.as_str(), d.last_contact_ms) {
                ("leader", _) => "-".to_string(),
                (_, u64::MAX) => "never".to_string(),
                (_, ms) => format!("{ms}ms ago"),
            };
            t.row(vec![
                d.id.to_string(),
                d.address.clone(),
                d.role.clone(),
                d.term.to_string(),
                d.commit_index.to_string(),
                d.applied_index.to_string(),
                contact,
            ]);
        }
        t.print();
        if !executors.is_empty() {
            println!();
            let mut t = Table::new(&[
                ("EXECUTOR", Align::Left),
                ("ADDRESS", Align::Left),
                ("EPOCH", Align::Right),
                ("SLOTS", Align::Right),
                ("HEALTH", Align::Left),
                ("OPERATORS", Align::Left),
                ("PARTITIONS", Align::Left),
            ]);
            for e in &executors {
                let operators = if e.operators.is_empty() {
                    "-".to_string()
                } else {
                    e.operators.join(",")
                };
                t.row(vec![
                    e.id.clone(),
                    e.address.clone(),
                    e.epoch.to_string(),
                    e.slots.to_string(),
                    e.health.clone(),
                    operators,
                    e.partitions.join(","),
                ]);
            }
            t.print();
        }
    }
    Ok(())
}

/// `weir cluster add-driver` / `remove-driver`.
pub async fn membership(
    cluster: &Cluster,
    add: Option<(u64, String)>,
    remove: Option<u64>,
    out: Output,
) -> Result<(), ClientError> {
    if let Some((id, address)) = add {
        cluster
            .call(WRITE_TIMEOUT, |mut c| {
                let address = address.clone();
                async move { c.add_driver(pb::AddDriverRequest { id, address }).await }
            })
            .await?;
        if out.structured() {
            out.print(&json!({"added": id, "address": address}));
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
        if out.structured() {
            out.print(&json!({"removed": id}));
        } else {
            println!("driver {id} removed");
        }
    }
    Ok(())
}

/// Prints a job's spec versions (oldest first) with the diff of each
/// against the one before.
pub fn print_history(job: &str, versions: &[pb::JobRecord], out: Output) {
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
    if out.structured() {
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
        out.print(&json!({"job": job, "versions": list}));
        return;
    }
    for (i, (r, at, d)) in entries.iter().enumerate() {
        println!(
            "version {} at {} fingerprint {} state generation {}{}",
            r.version.max(1),
            weir_proto::time::utc(*at),
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

/// A job's spec versions, oldest first, the current one last.
async fn versions(cluster: &Cluster, job: &str) -> Result<Vec<pb::JobRecord>, ClientError> {
    let r = cluster
        .call(READ_TIMEOUT, |mut c| async move {
            c.history(pb::HistoryRequest {
                job: job.to_string(),
            })
            .await
        })
        .await?;
    Ok(r.versions)
}

/// `weir history JOB`.
pub async fn history(cluster: &Cluster, job: &str, out: Output) -> Result<(), ClientError> {
    print_history(job, &versions(cluster, job).await?, out);
    Ok(())
}

/// Why `--wait` gave up.
#[derive(Debug, thiserror::Error)]
pub enum WaitError {
    /// The cluster could not be asked.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The job failed while we waited.
    #[error("job {job} failed: {error}")]
    JobFailed {
        /// Job name.
        job: String,
        /// The job's recorded error.
        error: String,
    },
    /// The wait's time ran out.
    #[error(
        "job {job}: {what} did not happen within {waited:?}; the job goes on (`weir status {job}`)"
    )]
    TimedOut {
        /// Job name.
        job: String,
        /// What was waited for.
        what: &'static str,
        /// How long.
        waited: std::time::Duration,
    },
}

/// How often `--wait` and `--watch` ask for the job's status.
pub const POLL: std::time::Duration = std::time::Duration::from_millis(500);

async fn job_status(cluster: &Cluster, job: &str) -> Result<pb::JobStatus, ClientError> {
    cluster
        .call(READ_TIMEOUT, |mut c| async move {
            c.status(pb::StatusRequest {
                job: job.to_string(),
            })
            .await
        })
        .await
}

/// Asks for `job`'s status until `done` says it is done (`Some(true)`), or
/// it fails, or `timeout` passes. A failed job is an error unless `done`
/// accepts it first.
async fn wait_until(
    cluster: &Cluster,
    job: &str,
    timeout: std::time::Duration,
    what: &'static str,
    mut done: impl FnMut(&pb::JobStatus) -> bool,
) -> Result<pb::JobStatus, WaitError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let s = job_status(cluster, job).await?;
        if done(&s) {
            return Ok(s);
        }
        if s.state == "failed" {
            return Err(WaitError::JobFailed {
                job: job.to_string(),
                error: s.error,
            });
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(WaitError::TimedOut {
                job: job.to_string(),
                what,
                waited: timeout,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

/// `weir submit --wait`: waits until the job has committed a batch after
/// the submit (it runs the submitted spec), or has finished.
pub async fn wait_running(
    cluster: &Cluster,
    job: &str,
    timeout: std::time::Duration,
    out: Output,
) -> Result<(), WaitError> {
    let mut first: Option<u64> = None;
    let s = wait_until(cluster, job, timeout, "a committed batch", |s| {
        let since = *first.get_or_insert(s.last_committed_batch);
        s.state == "finished" || (s.state == "running" && s.last_committed_batch > since)
    })
    .await?;
    if out.structured() {
        out.print(&status_json(&s));
    } else {
        println!(
            "job {job} is {}: batch {} committed",
            s.state, s.last_committed_batch
        );
    }
    Ok(())
}

/// `weir stop --wait`: waits until the job is stopped and no batch is in
/// flight (twice in a row, as the drivers reconcile their job threads
/// every 200 ms).
pub async fn wait_stopped(
    cluster: &Cluster,
    job: &str,
    timeout: std::time::Duration,
    out: Output,
) -> Result<(), WaitError> {
    let mut idle = 0;
    let s = wait_until(cluster, job, timeout, "the stop", |s| {
        idle = if s.state != "running" && s.pending_batch.is_none() {
            idle + 1
        } else {
            0
        };
        idle >= 2 || s.state == "failed"
    })
    .await?;
    if out.structured() {
        out.print(&status_json(&s));
    } else {
        println!(
            "job {job} is {}; last committed batch {}",
            s.state, s.last_committed_batch
        );
    }
    Ok(())
}

/// `weir status --watch`: the status every `interval` until interrupted
/// (JSON and YAML: one document per status).
pub async fn watch(
    cluster: &Cluster,
    job: &str,
    interval: std::time::Duration,
    out: Output,
) -> Result<(), ClientError> {
    loop {
        status(cluster, job, out).await?;
        if !out.structured() {
            println!();
        }
        tokio::time::sleep(interval).await;
    }
}

/// The current spec among a job's versions (the last one), as YAML.
pub fn current_spec(versions: &[pb::JobRecord]) -> Option<String> {
    versions
        .last()
        .and_then(|r| r.spec.as_ref())
        .map(weir_proto::spec::to_yaml)
}

/// `weir spec JOB`: the stored spec as YAML (or, with `-o json`, in a
/// JSON document).
pub async fn spec(cluster: &Cluster, job: &str, out: Output) -> Result<(), ClientError> {
    print_spec(job, &versions(cluster, job).await?, out);
    Ok(())
}

/// Prints the current spec of `versions`.
pub fn print_spec(job: &str, versions: &[pb::JobRecord], out: Output) {
    let Some(yaml) = current_spec(versions) else {
        return;
    };
    match out {
        Output::Table | Output::Yaml => print!("{yaml}"),
        Output::Json => {
            let version = versions.last().map_or(0, |r| r.version.max(1));
            // The rendered spec is YAML Weir wrote: it always parses.
            let spec: Value = serde_yaml_ng::from_str(&yaml).unwrap_or(Value::Null);
            out.print(&json!({"job": job, "version": version, "spec": spec}))
        }
    }
}
