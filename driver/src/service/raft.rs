//! Receives Raft messages from peer replicas.

use crate::cluster::ReplicaHandle;
use crate::raft::decode_message;
use tonic::{Request, Response, Status};
use tracing::warn;
use weir_proto::pb::raft_transport_server::RaftTransport;
use weir_proto::pb::{RaftAck, RaftBatch};
use weir_security::Identity;

/// The `RaftTransport` service of one replica.
pub struct RaftService {
    replica: ReplicaHandle,
}

impl RaftService {
    /// The service delivering to `replica`.
    pub fn new(replica: ReplicaHandle) -> Self {
        RaftService { replica }
    }

    /// With TLS, a batch is accepted only from the replica its certificate
    /// names, speaking for itself, and only while it is a member (voter or
    /// learner). A replica that has no membership yet (it is joining and
    /// waits for the leader's snapshot) accepts any driver.
    fn check_sender(
        &self,
        identity: &Identity,
        batch: &RaftBatch,
        messages: &[crate::raft::Message],
    ) -> Result<(), Status> {
        let Identity::Driver(id) = *identity else {
            return Err(Status::permission_denied(format!(
                "{identity} is not a driver replica"
            )));
        };
        if batch.from != id || messages.iter().any(|m| m.from != id) {
            warn!(%identity, claimed = batch.from, "refused Raft messages sent in another replica's name");
            return Err(Status::permission_denied(format!(
                "{identity} may only send its own Raft messages (claimed replica {})",
                batch.from
            )));
        }
        let status = self.replica.status();
        let joining = status.voters.is_empty() && status.learners.is_empty();
        if !joining && !status.voters.contains(&id) && !status.learners.contains(&id) {
            warn!(%identity, "refused Raft messages from a replica that is not a member");
            return Err(Status::permission_denied(format!(
                "{identity} is not a member of this cluster (members: {:?}, learners: {:?})",
                status.voters, status.learners
            )));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl RaftTransport for RaftService {
    async fn send(&self, request: Request<RaftBatch>) -> Result<Response<RaftAck>, Status> {
        let caller = weir_security::caller(&request);
        let batch = request.into_inner();
        if batch.cluster_id != self.replica.cluster_id() {
            return Err(Status::failed_precondition(format!(
                "replica of cluster {:?} refuses messages from cluster {:?}; check --cluster-id and --peers",
                self.replica.cluster_id(),
                batch.cluster_id
            )));
        }
        let mut messages = Vec::with_capacity(batch.messages.len());
        for bytes in &batch.messages {
            messages.push(
                decode_message(bytes)
                    .map_err(|e| Status::invalid_argument(format!("bad raft message: {e}")))?,
            );
        }
        if let Some(identity) = caller.identity() {
            self.check_sender(identity, &batch, &messages)?;
        }
        self.replica
            .deliver(batch.from, &batch.from_address, messages);
        Ok(Response::new(RaftAck {}))
    }
}
