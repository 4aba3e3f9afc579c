//! What `weir status`, `weir list` and `weir cluster` show, built from a
//! replica's metadata and the live boards; the web UI shows the same.

use super::ExecutorView;
use crate::cluster::ReplicaHandle;
use crate::job_health::JobHealthBoard;
use crate::lag::LagBoard;
use crate::metadata::{MetaError, MetadataStore};
use std::time::Instant;
use weir_proto::pb;

/// A job's status: its record and progress, with the live health, state
/// sizes and lag where this replica has them.
pub fn job_status(
    meta: &dyn MetadataStore,
    record: &pb::JobRecord,
    health: &JobHealthBoard,
    lag: &LagBoard,
    executors: Option<&dyn ExecutorView>,
) -> Result<pb::JobStatus, MetaError> {
    let name = record
        .spec
        .as_ref()
        .map(|s| s.name.clone())
        .unwrap_or_default();
    let progress = meta.progress(&name)?;
    let state = match pb::JobState::try_from(record.state) {
        Ok(pb::JobState::Stopped) => "stopped",
        Ok(pb::JobState::Failed) => "failed",
        Ok(pb::JobState::Finished) => "finished",
        _ => "running",
    };
    let live = (state == "running").then(|| health.get(&name)).flatten();
    let degraded = live.as_ref().and_then(|h| h.degraded.clone());
    let partitions = executors
        .map(|e| e.partition_owners(&name))
        .unwrap_or_default();
    let lag = lag.get(&name).unwrap_or_default();
    Ok(pb::JobStatus {
        health: match (&live, &degraded) {
            (None, _) => String::new(),
            (Some(_), None) => "healthy".into(),
            (Some(_), Some(_)) => "degraded".into(),
        },
        degraded_reason: degraded
            .as_ref()
            .map(|d| d.reason.clone())
            .unwrap_or_default(),
        degraded_since_ms: degraded.as_ref().map_or(0, |d| d.since_ms),
        scheduling_delay_ms: live.as_ref().map_or(0, |h| h.scheduling_delay_ms),
        last_batch_ms: live.as_ref().map_or(0, |h| h.last_batch_ms),
        overhead_p50_ms: live
            .as_ref()
            .map_or(0.0, |h| h.overhead_quantile_us(0.5) as f64 / 1000.0),
        overhead_p99_ms: live
            .as_ref()
            .map_or(0.0, |h| h.overhead_quantile_us(0.99) as f64 / 1000.0),
        overhead_batches: live.as_ref().map_or(0, |h| h.overheads_us.len() as u32),
        partitions,
        job: name,
        state: state.into(),
        last_committed_batch: progress.last_committed(),
        totals: progress.last_commit.as_ref().and_then(|c| c.totals),
        pending_batch: progress.pending.as_ref().map(|p| p.plan.batch_id),
        pending_committing: progress
            .pending
            .as_ref()
            .is_some_and(|p| p.committing.is_some()),
        fingerprint: record.fingerprint.clone(),
        error: record.error.clone(),
        watermark_ms: progress
            .last_plan
            .as_ref()
            .map_or(i64::MIN, |p| p.watermark_ms),
        lag_records: lag.total(),
        lag_listed_at_ms: lag.listed_at_ms,
        lag: lag.partitions,
        state_keys: live
            .as_ref()
            .map_or(0, |h| h.state_sizes.iter().map(|s| s.keys).sum()),
        state_bytes: live
            .as_ref()
            .map_or(0, |h| h.state_sizes.iter().map(|s| s.bytes).sum()),
        lookups: live
            .as_ref()
            .map(|h| h.lookups.values().cloned().collect())
            .unwrap_or_default(),
        state_sizes: live.map(|h| h.state_sizes).unwrap_or_default(),
    })
}

/// The driver replicas as `replica` sees them, and the executors.
pub fn cluster_info(
    replica: &ReplicaHandle,
    executors: Option<&dyn ExecutorView>,
) -> pb::ClusterInfo {
    let status = replica.status();
    let now = Instant::now();
    let mut drivers = Vec::new();
    for (id, address) in replica.addresses() {
        let learner = status.learners.contains(&id);
        if !status.voters.contains(&id) && !learner && id != status.id {
            continue;
        }
        let is_self = id == status.id;
        drivers.push(pb::DriverInfo {
            id,
            address,
            role: if learner {
                "learner".into()
            } else if is_self {
                status.role.clone()
            } else if status.leader_id == Some(id) {
                "leader".into()
            } else {
                "follower".into()
            },
            term: if is_self { status.term } else { 0 },
            commit_index: if is_self { status.commit } else { 0 },
            applied_index: if is_self { status.applied } else { 0 },
            last_contact_ms: if is_self {
                0
            } else {
                status
                    .last_contact
                    .get(&id)
                    .map_or(u64::MAX, |t| now.duration_since(*t).as_millis() as u64)
            },
        });
    }
    pb::ClusterInfo {
        cluster_id: replica.cluster_id().to_string(),
        leader_id: status.leader_id.unwrap_or(0),
        drivers,
        executors: executors.map(|e| e.executors()).unwrap_or_default(),
    }
}
