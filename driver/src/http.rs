//! What a driver (or `weir local`) serves on its HTTP port: the metrics,
//! its readiness, and the web UI over the replica's metadata.

use crate::cluster::ReplicaHandle;
use crate::job_health::JobHealthBoard;
use crate::lag::LagBoard;
use crate::metadata::MetadataStore;
use crate::metrics::{DriverCollector, DriverMetrics, DriverSources};
use crate::service::views::{cluster_info, job_status};
use crate::service::ExecutorView;
use crate::ui::{self, UiSource};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use weir_proto::pb;
use weir_web::{Page, PageRequest, Site};

/// The driver's HTTP site.
pub struct DriverSite {
    registry: Registry,
    replica: ReplicaHandle,
    health: JobHealthBoard,
    lag: LagBoard,
    executors: Option<Arc<dyn ExecutorView>>,
}

impl DriverSite {
    /// The site of `sources`' replica, exporting `metrics`, listing
    /// `executors` (none in `weir local`).
    pub fn new(
        sources: DriverSources,
        metrics: &DriverMetrics,
        executors: Option<Arc<dyn ExecutorView>>,
    ) -> Self {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let site = DriverSite {
            replica: sources.replica.clone(),
            health: sources.health.clone(),
            lag: sources.lag.clone(),
            executors,
            registry: Registry::default(),
        };
        registry.register_collector(Box::new(DriverCollector(sources)));
        DriverSite { registry, ..site }
    }
}

impl Site for DriverSite {
    fn metrics(&self) -> String {
        weir_web::metrics::encode(&self.registry)
    }

    /// Ready once this replica is a voting member that knows its leader
    /// and has applied every entry it knows to be committed.
    fn ready(&self) -> Result<(), String> {
        let s = self.replica.status();
        if !s.voters.contains(&s.id) {
            return Err(format!(
                "driver {} is not a voting member yet (joining, or removed)",
                s.id
            ));
        }
        if s.leader_id.is_none() {
            return Err("no leader is known".into());
        }
        if s.applied < s.commit {
            return Err(format!(
                "applied index {} is behind the commit index {}",
                s.applied, s.commit
            ));
        }
        Ok(())
    }

    fn page(&self, request: &PageRequest) -> Option<Page> {
        ui::page(self, request)
    }
}

impl UiSource for DriverSite {
    fn jobs(&self) -> Result<Vec<pb::JobStatus>, String> {
        let meta = self.replica.metadata();
        meta.jobs()
            .and_then(|records| {
                records
                    .iter()
                    .map(|r| {
                        job_status(
                            meta.as_ref(),
                            r,
                            &self.health,
                            &self.lag,
                            self.executors.as_deref(),
                        )
                    })
                    .collect()
            })
            .map_err(|e| e.to_string())
    }

    fn job(&self, name: &str) -> Result<Option<pb::JobStatus>, String> {
        let meta = self.replica.metadata();
        let Some(record) = meta.job(name).map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        job_status(
            meta.as_ref(),
            &record,
            &self.health,
            &self.lag,
            self.executors.as_deref(),
        )
        .map(Some)
        .map_err(|e| e.to_string())
    }

    fn batches(&self, job: &str, limit: usize) -> Result<Vec<pb::BatchCommit>, String> {
        self.replica
            .metadata()
            .batches(job, limit)
            .map_err(|e| e.to_string())
    }

    fn plan(&self, job: &str, batch_id: u64) -> Result<Option<pb::BatchPlan>, String> {
        self.replica
            .metadata()
            .plan(job, batch_id)
            .map_err(|e| e.to_string())
    }

    fn history(&self, job: &str) -> Result<Vec<pb::JobRecord>, String> {
        let meta = self.replica.metadata();
        let mut versions = meta.history(job).map_err(|e| e.to_string())?;
        versions.extend(meta.job(job).map_err(|e| e.to_string())?);
        Ok(versions)
    }

    fn cluster(&self) -> Option<pb::ClusterInfo> {
        self.executors
            .as_ref()
            .map(|e| cluster_info(&self.replica, Some(e.as_ref())))
    }
}
