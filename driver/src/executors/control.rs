//! `ExecutorControl`: where executors register and heartbeat. Only the
//! leader answers; a follower says `UNAVAILABLE` and names the leader in
//! the `weir-leader` metadata so the executor can go there.

use super::registry::{ExecutorRegistry, Registration};
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};
use tracing::instrument;
use weir_proto::pb::executor_control_server::{ExecutorControl, ExecutorControlServer};
use weir_proto::pb::{HeartbeatRequest, HeartbeatResponse, RegisterRequest, RegisterResponse};
use weir_proto::wire;
use weir_security::Identity;

/// Whether this driver leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeaderState {
    /// This driver is the leader.
    Leader,
    /// Another driver leads (its client address, when known).
    Follower {
        /// Where executors should register instead.
        leader_address: Option<String>,
    },
}

/// Asked on every call: is this driver the leader, and if not, who is.
pub type LeaderFn = Arc<dyn Fn() -> LeaderState + Send + Sync>;

/// A [`LeaderFn`] for a driver that always leads (a single driver, tests).
pub fn always_leader() -> LeaderFn {
    Arc::new(|| LeaderState::Leader)
}

/// The `ExecutorControl` service backed by a registry.
pub struct ControlService {
    registry: Arc<ExecutorRegistry>,
    leader: LeaderFn,
}

impl ControlService {
    /// A service registering executors in `registry` while `leader` says so.
    pub fn new(registry: Arc<ExecutorRegistry>, leader: LeaderFn) -> Self {
        ControlService { registry, leader }
    }

    /// The tonic server for this service.
    pub fn into_server(self) -> ExecutorControlServer<Self> {
        ExecutorControlServer::new(self)
            .max_decoding_message_size(wire::MAX_CONTROL_MESSAGE_BYTES)
            .max_encoding_message_size(wire::MAX_CONTROL_MESSAGE_BYTES)
    }

    fn ensure_leader(&self) -> Result<(), Status> {
        match (self.leader)() {
            LeaderState::Leader => Ok(()),
            LeaderState::Follower { leader_address } => {
                Err(wire::not_leader(leader_address.as_deref()))
            }
        }
    }
}

/// With TLS, an executor registers and heartbeats only as the executor its
/// certificate names.
fn speaks_for<T>(request: &Request<T>, executor_id: &str) -> Result<(), Status> {
    match weir_security::caller(request).identity() {
        Some(Identity::Executor(id)) if id == executor_id => Ok(()),
        Some(identity) => {
            tracing::warn!(%identity, claimed = executor_id, "refused an executor call in another executor's name");
            Err(Status::permission_denied(format!(
                "{identity} may not act as executor {executor_id:?}: its certificate must name weir://executor/{executor_id}"
            )))
        }
        None => Ok(()),
    }
}

#[tonic::async_trait]
impl ExecutorControl for ControlService {
    #[instrument(skip_all, fields(executor_id = %request.get_ref().executor_id))]
    async fn register(
        &self,
        request: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        speaks_for(&request, &request.get_ref().executor_id)?;
        self.ensure_leader()?;
        let r = request.into_inner();
        let epoch = self
            .registry
            .register(
                Registration {
                    id: r.executor_id,
                    address: r.address,
                    slots: r.slots,
                    build_version: r.build_version,
                    operators: r.operators,
                },
                Instant::now(),
            )
            .map_err(|e| Status::from(&e))?;
        Ok(Response::new(RegisterResponse {
            epoch,
            heartbeat_timeout_ms: self.registry.heartbeat_timeout().as_millis() as u64,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        speaks_for(&request, &request.get_ref().executor_id)?;
        self.ensure_leader()?;
        let r = request.into_inner();
        self.registry
            .heartbeat(&r.executor_id, r.epoch, Instant::now())
            .map_err(|e| Status::from(&e))?;
        Ok(Response::new(HeartbeatResponse {}))
    }
}

/// Serves `ExecutorControl` alone on `listener` until `shutdown` completes
/// (for tests and single-purpose drivers; the driver binary mounts the
/// service beside its others).
pub async fn serve(
    service: ControlService,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(service.into_server())
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown,
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executors::registry::RegistryOptions;

    fn request() -> RegisterRequest {
        RegisterRequest {
            executor_id: "e1".into(),
            address: "127.0.0.1:1".into(),
            slots: 1,
            build_version: env!("CARGO_PKG_VERSION").into(),
            operators: vec![],
        }
    }

    #[tokio::test]
    async fn followers_point_at_the_leader_and_leaders_fence_epochs() {
        let registry = Arc::new(ExecutorRegistry::new(RegistryOptions::default()));
        let follower = ControlService::new(
            registry.clone(),
            Arc::new(|| LeaderState::Follower {
                leader_address: Some("10.1.1.1:7000".into()),
            }),
        );
        let s = follower
            .register(Request::new(request()))
            .await
            .unwrap_err();
        assert_eq!(s.code(), tonic::Code::Unavailable);
        assert_eq!(wire::leader_hint(&s).as_deref(), Some("10.1.1.1:7000"));

        let leader = ControlService::new(registry, always_leader());
        let r = leader
            .register(Request::new(request()))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.heartbeat_timeout_ms, 3000);
        let hb = |epoch| HeartbeatRequest {
            executor_id: "e1".into(),
            epoch,
        };
        leader.heartbeat(Request::new(hb(r.epoch))).await.unwrap();
        let s = leader
            .heartbeat(Request::new(hb(r.epoch + 5)))
            .await
            .unwrap_err();
        assert_eq!(s.code(), tonic::Code::FailedPrecondition);
        assert!(s.message().contains("stale epoch"), "{}", s.message());
    }
}
