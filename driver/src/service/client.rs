//! The client service (`weir` CLI): submit, status, list, batches, stop,
//! cluster and membership.

use super::status::not_leader;
use crate::cluster::{RaftMetadata, ReplicaHandle};
use crate::job_health::JobHealthBoard;
use crate::lag::LagBoard;
use crate::metadata::{command, MetadataStore};
use crate::raft::{ConfChange, ConfChangeType};
use crate::submit::{submit_with, FromOffsets, SubmitOptions};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use weir_proto::pb;
use weir_proto::pb::weir_client_client::WeirClientClient;
use weir_proto::pb::weir_client_server::WeirClient;
use weir_proto::{spec, wire};
use weir_security::{authz, Caller, Role};

/// Executors as the leader knows them, for `weir cluster` and the
/// custom-operator check of `weir submit`.
pub trait ExecutorView: Send + Sync {
    /// Every executor the leader knows.
    fn executors(&self) -> Vec<pb::ExecutorInfo>;
    /// The owner of each state partition of `job`, in partition order.
    fn partition_owners(&self, job: &str) -> Vec<pb::PartitionOwner>;
    /// The live executors, with their custom operators.
    fn live(&self) -> Vec<crate::executors::ExecutorInfo>;
}

/// Executors as the leader sees them: registry health and the state
/// partitions the runner assigned them (`job/partition`).
pub struct LeaderExecutors {
    /// Registered executors.
    pub registry: std::sync::Arc<crate::executors::ExecutorRegistry>,
    /// Partition ownership.
    pub runner: std::sync::Arc<crate::executors::RemoteRunner>,
    /// For the job names.
    pub replica: ReplicaHandle,
}

impl ExecutorView for LeaderExecutors {
    fn live(&self) -> Vec<crate::executors::ExecutorInfo> {
        self.registry.live(Instant::now())
    }

    fn executors(&self) -> Vec<pb::ExecutorInfo> {
        let now = Instant::now();
        let jobs: Vec<String> = self
            .replica
            .metadata()
            .jobs()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|r| r.spec.map(|s| s.name))
            .collect();
        let mut partitions: std::collections::HashMap<String, Vec<String>> = Default::default();
        for job in &jobs {
            for owner in self.runner.owners(job) {
                partitions
                    .entry(owner.executor_id)
                    .or_default()
                    .push(format!("{job}/{}", owner.partition));
            }
        }
        self.registry
            .all()
            .into_iter()
            .map(|e| pb::ExecutorInfo {
                health: if e.alive { "alive" } else { "dead" }.into(),
                last_heartbeat_ms: now.saturating_duration_since(e.last_heartbeat).as_millis()
                    as u64,
                partitions: partitions.remove(&e.id).unwrap_or_default(),
                id: e.id,
                address: e.address,
                epoch: e.epoch,
                slots: e.slots,
                build_version: String::new(),
                operators: e.operators,
            })
            .collect()
    }

    fn partition_owners(&self, job: &str) -> Vec<pb::PartitionOwner> {
        self.runner.owners(job)
    }
}

/// The longest a forwarded call may take on the leader: a purge waits up
/// to 60 s for the job's batch in flight.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(90);

/// Where a client call runs (see [`ClientService::route`]).
enum Route<T> {
    /// On this replica, the leader.
    Here(T),
    /// On the leader, through this client (boxed: the request with its
    /// metadata is large next to a bare message).
    Leader(WeirClientClient<Channel>, Box<Request<T>>),
}

/// The `WeirClient` service of one replica.
pub struct ClientService {
    replica: ReplicaHandle,
    executors: Option<std::sync::Arc<dyn ExecutorView>>,
    health: JobHealthBoard,
    lag: LagBoard,
    /// The channel to the leader that calls are forwarded on, by address.
    leader_channel: Mutex<Option<(String, Channel)>>,
    /// How the leader is dialed to forward calls.
    transport: weir_security::Transport,
}

impl ClientService {
    /// The service of `replica`, listing `executors` in `cluster` and the
    /// live health and lag of the jobs this replica drives from `health`
    /// and `lag`.
    pub fn new(
        replica: ReplicaHandle,
        executors: Option<std::sync::Arc<dyn ExecutorView>>,
        (health, lag): (JobHealthBoard, LagBoard),
        transport: weir_security::Transport,
    ) -> Self {
        ClientService {
            replica,
            executors,
            health,
            lag,
            leader_channel: Mutex::new(None),
            transport,
        }
    }

    /// Where a call runs: here if this replica leads, else on the leader,
    /// so a client reaches the cluster through any one replica (a
    /// port-forward, an Ingress, a Service). A call that was already
    /// forwarded is never forwarded again: a replica that stopped leading
    /// meanwhile answers `Unavailable` with its leader hint, and the client
    /// retries.
    fn route<T>(&self, request: Request<T>) -> Result<Route<T>, Status> {
        if self.replica.is_leader() {
            return Ok(Route::Here(request.into_inner()));
        }
        let leader = self.replica.leader_address();
        let address = match leader {
            Some(a) if !request.metadata().contains_key(wire::FORWARDED_KEY) => a,
            _ => return Err(not_leader(leader.as_deref())),
        };
        let client = self.leader_client(&address)?;
        let caller = weir_security::caller(&request);
        let (mut metadata, _, message) = request.into_parts();
        metadata.insert(wire::FORWARDED_KEY, MetadataValue::from_static("1"));
        // The leader trusts a driver to name the client it authorized.
        if let (Caller::Client { name, .. }, Some(role)) = (&caller, caller.role()) {
            if let Ok(name) = name.parse() {
                metadata.insert(authz::CALLER_KEY, name);
            }
            metadata.insert(authz::ROLE_KEY, MetadataValue::from_static(role.as_str()));
        }
        Ok(Route::Leader(
            client,
            Box::new(Request::from_parts(metadata, Default::default(), message)),
        ))
    }

    /// A client of the leader at `address`, on a channel kept while that
    /// replica leads.
    fn leader_client(&self, address: &str) -> Result<WeirClientClient<Channel>, Status> {
        let mut cached = self
            .leader_channel
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((a, channel)) = cached.as_ref() {
            if a == address {
                return Ok(WeirClientClient::new(channel.clone()));
            }
        }
        let channel = self
            .transport
            .channel(address, |e| {
                e.connect_timeout(Duration::from_secs(3))
                    .timeout(FORWARD_TIMEOUT)
            })
            .map_err(|e| Status::internal(format!("leader address {address:?}: {e}")))?;
        *cached = Some((address.to_string(), channel.clone()));
        Ok(WeirClientClient::new(channel))
    }

    fn job_status(&self, record: &pb::JobRecord) -> Result<pb::JobStatus, Status> {
        super::views::job_status(
            self.replica.metadata().as_ref(),
            record,
            &self.health,
            &self.lag,
            self.executors.as_deref(),
        )
        .map_err(Status::from)
    }

    fn record(&self, job: &str) -> Result<pb::JobRecord, Status> {
        self.replica
            .metadata()
            .job(job)
            .map_err(Status::from)?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "job {job} does not exist; `weir list` shows the jobs"
                ))
            })
    }

    fn cluster_info(&self) -> pb::ClusterInfo {
        super::views::cluster_info(&self.replica, self.executors.as_deref())
    }

    async fn wait_for_members(
        &self,
        done: impl Fn(&crate::cluster::ReplicaStatus) -> bool,
    ) -> Result<(), Status> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if done(&self.replica.status()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(Status::deadline_exceeded(
            "the membership change was proposed but not applied within 10 s; check `weir cluster`",
        ))
    }
}

#[tonic::async_trait]
impl WeirClient for ClientService {
    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        let caller = weir_security::caller(&request);
        let request = match self.route(request)? {
            Route::Here(r) => r,
            Route::Leader(mut leader, r) => return leader.submit(*r).await,
        };
        let spec = request
            .spec
            .ok_or_else(|| Status::invalid_argument("spec: missing"))?;
        // A newer format is refused as such, before validation would call
        // it invalid.
        crate::submit::check_format(&spec.name, "the submitted", &spec).map_err(Status::from)?;
        spec::validate(&spec)
            .map_err(|e| Status::invalid_argument(format!("invalid job spec:\n{e}")))?;
        authz::audit(&caller, "submit", &spec.name);
        let needs = spec::custom_operators(&spec);
        if let (false, Some(executors)) = (needs.is_empty() || request.dry_run, &self.executors) {
            crate::executors::operators::check_available(&spec.name, &needs, &executors.live())
                .map_err(Status::failed_precondition)?;
        }
        let from = match request.from.as_str() {
            "" => None,
            f => Some(FromOffsets::parse(f).map_err(|e| Status::invalid_argument(e.to_string()))?),
        };
        let options = SubmitOptions {
            reset_state: request.reset_state,
            from,
            dry_run: request.dry_run,
        };
        let meta = RaftMetadata::new(self.replica.clone());
        let result = tokio::task::spawn_blocking(move || submit_with(&meta, spec, &options))
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        match result {
            Ok(s) => Ok(Response::new(pb::SubmitResponse {
                verdict: s.verdict().to_string(),
                changes: s
                    .diff
                    .changes
                    .iter()
                    .map(|c| pb::SpecChange {
                        path: c.path.clone(),
                        before: c.before.clone(),
                        after: c.after.clone(),
                        class: c.class.as_str().to_string(),
                    })
                    .collect(),
                job: s.record.spec.map(|s| s.name).unwrap_or_default(),
                resumed: s.resumed,
                fingerprint: s.record.fingerprint,
                version: s.record.version,
                state_generation: s.record.state_generation,
            })),
            Err(e) => Err(e.into()),
        }
    }

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::JobStatus>, Status> {
        let request = match self.route(request)? {
            Route::Here(r) => r,
            Route::Leader(mut leader, r) => return leader.status(*r).await,
        };
        let record = self.record(&request.job)?;
        Ok(Response::new(self.job_status(&record)?))
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        match self.route(request)? {
            Route::Here(r) => r,
            Route::Leader(mut leader, r) => return leader.list(*r).await,
        };
        let jobs = self
            .replica
            .metadata()
            .jobs()
            .map_err(Status::from)?
            .iter()
            .map(|r| self.job_status(r))
            .collect::<Result<_, _>>()?;
        Ok(Response::new(pb::ListResponse { jobs }))
    }

    async fn batches(
        &self,
        request: Request<pb::BatchesRequest>,
    ) -> Result<Response<pb::BatchesResponse>, Status> {
        let r = match self.route(request)? {
            Route::Here(r) => r,
            Route::Leader(mut leader, r) => return leader.batches(*r).await,
        };
        self.record(&r.job)?;
        let limit = if r.limit == 0 { 20 } else { r.limit as usize };
        let batches = self
            .replica
            .metadata()
            .batches(&r.job, limit)
            .map_err(Status::from)?;
        Ok(Response::new(pb::BatchesResponse { batches }))
    }

    async fn history(
        &self,
        request: Request<pb::HistoryRequest>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        let job = match self.route(request)? {
            Route::Here(r) => r,
            Route::Leader(mut leader, r) => return leader.history(*r).await,
        }
        .job;
        let current = self.record(&job)?;
        let mut versions = self
            .replica
            .metadata()
            .history(&job)
            .map_err(Status::from)?;
        versions.push(current);
        Ok(Response::new(pb::HistoryResponse { versions }))
    }

    async fn stop(
        &self,
        request: Request<pb::StopRequest>,
    ) -> Result<Response<pb::StopResponse>, Status> {
        let caller = weir_security::caller(&request);
        if request.get_ref().purge {
            caller.require(Role::Admin, "stop --purge")?;
        }
        let request = match self.route(request)? {
            Route::Here(r) => r,
            Route::Leader(mut leader, r) => return leader.stop(*r).await,
        };
        let job = request.job;
        spec::check_job_name(&job)
            .map_err(|e| Status::invalid_argument(format!("job name: {e}")))?;
        authz::audit(
            &caller,
            if request.purge {
                "stop --purge"
            } else {
                "stop"
            },
            &job,
        );
        self.record(&job)?;
        self.replica
            .propose(command::job_state(&job, pb::JobState::Stopped, ""))
            .await
            .map_err(Status::from)?;
        if !request.purge {
            return Ok(Response::new(pb::StopResponse::default()));
        }
        // The job thread stops after its current batch: wait until no batch
        // is in flight twice in a row (the supervisor reconciles every
        // 200 ms), then delete the metadata.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut idle = 0;
        while idle < 2 {
            if Instant::now() > deadline {
                return Err(Status::deadline_exceeded(format!(
                    "job {job} still has a batch in flight after 60 s; it is stopped, retry the purge"
                )));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            let progress = self
                .replica
                .metadata()
                .progress(&job)
                .map_err(Status::from)?;
            idle = if progress.pending.is_none() {
                idle + 1
            } else {
                0
            };
        }
        self.replica
            .propose(command::delete_job(&job))
            .await
            .map_err(Status::from)?;
        Ok(Response::new(pb::StopResponse {
            remains: format!(
                "the state checkpoints of job {job} in the executors' state store (directory {job}/) and the sink's output"
            ),
        }))
    }

    async fn cluster(
        &self,
        _: Request<pb::ClusterRequest>,
    ) -> Result<Response<pb::ClusterInfo>, Status> {
        // Any replica answers with its own view: `weir cluster` asks them all.
        Ok(Response::new(self.cluster_info()))
    }

    async fn add_driver(
        &self,
        request: Request<pb::AddDriverRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let caller = weir_security::caller(&request);
        let r = match self.route(request)? {
            Route::Here(r) => r,
            Route::Leader(mut leader, r) => return leader.add_driver(*r).await,
        };
        if r.id == 0 || r.address.is_empty() {
            return Err(Status::invalid_argument(
                "add-driver needs a positive id and host:port",
            ));
        }
        authz::audit(
            &caller,
            "cluster add-driver",
            &format!("{}={}", r.id, r.address),
        );
        let status = self.replica.status();
        if status.voters.contains(&r.id) {
            return Err(Status::already_exists(format!(
                "driver {} is already a member",
                r.id
            )));
        }
        self.replica
            .propose(command::peer_address(r.id, &r.address))
            .await
            .map_err(Status::from)?;
        // A learner first: it receives the log but does not vote, so an
        // unreachable or slow new driver never costs the group its quorum.
        // The leader promotes it once it has caught up.
        if !status.learners.contains(&r.id) {
            let mut cc = ConfChange::default();
            cc.set_change_type(ConfChangeType::AddLearnerNode);
            cc.node_id = r.id;
            self.replica
                .change_membership(cc)
                .await
                .map_err(Status::from)?;
        }
        self.wait_for_members(|s| s.learners.contains(&r.id) || s.voters.contains(&r.id))
            .await?;
        Ok(Response::new(pb::MembershipResponse {
            cluster: Some(self.cluster_info()),
        }))
    }

    async fn remove_driver(
        &self,
        request: Request<pb::RemoveDriverRequest>,
    ) -> Result<Response<pb::MembershipResponse>, Status> {
        let caller = weir_security::caller(&request);
        let id = match self.route(request)? {
            Route::Here(r) => r,
            Route::Leader(mut leader, r) => return leader.remove_driver(*r).await,
        }
        .id;
        authz::audit(&caller, "cluster remove-driver", &id.to_string());
        let status = self.replica.status();
        if !status.voters.contains(&id) && !status.learners.contains(&id) {
            return Err(Status::not_found(format!("driver {id} is not a member")));
        }
        // The voters left must still have a quorum this leader can reach.
        let left: Vec<u64> = status.voters.iter().copied().filter(|v| *v != id).collect();
        let reachable = self.replica.reachable(&left);
        let quorum = left.len() / 2 + 1;
        if reachable.len() < quorum {
            return Err(Status::failed_precondition(format!(
                "removing driver {id} would leave voters {left:?} of which only {reachable:?} are reachable, and a quorum needs {quorum}: bring a driver back (or add one) first"
            )));
        }
        let mut cc = ConfChange::default();
        cc.set_change_type(ConfChangeType::RemoveNode);
        cc.node_id = id;
        self.replica
            .change_membership(cc)
            .await
            .map_err(Status::from)?;
        self.wait_for_members(|s| !s.voters.contains(&id) && !s.learners.contains(&id))
            .await?;
        Ok(Response::new(pb::MembershipResponse {
            cluster: Some(self.cluster_info()),
        }))
    }
}
