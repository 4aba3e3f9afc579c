//! Receives Raft messages from peer replicas.

use crate::cluster::ReplicaHandle;
use crate::raft::decode_message;
use tonic::{Request, Response, Status};
use weir_proto::pb::raft_transport_server::RaftTransport;
use weir_proto::pb::{RaftAck, RaftBatch};

/// The `RaftTransport` service of one replica.
pub struct RaftService {
    replica: ReplicaHandle,
}

impl RaftService {
    /// The service delivering to `replica`.
    pub fn new(replica: ReplicaHandle) -> Self {
        RaftService { replica }
    }
}

#[tonic::async_trait]
impl RaftTransport for RaftService {
    async fn send(&self, request: Request<RaftBatch>) -> Result<Response<RaftAck>, Status> {
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
        self.replica
            .deliver(batch.from, &batch.from_address, messages);
        Ok(Response::new(RaftAck {}))
    }
}
