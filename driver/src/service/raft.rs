//! Receives Raft messages from peer replicas: batches of small messages,
//! and snapshots too large for one message in chunks. Both are bounded:
//! [`MAX_BATCH_BYTES`] per batch (the gRPC decoding limit of the service)
//! and [`MAX_SNAPSHOT_BYTES`] per snapshot.

use crate::cluster::ReplicaHandle;
use crate::raft::decode_message;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};
use tracing::warn;
use weir_proto::pb::raft_transport_server::RaftTransport;
use weir_proto::pb::{RaftAck, RaftBatch, SnapshotChunk};

/// The largest `Send` request a replica decodes (and sends: the transport
/// batches messages up to a quarter of it, and a message larger than that
/// goes alone or, if it is a snapshot, in chunks). A single log entry is at
/// most a spec (`MAX_SPEC_BYTES`, 1 MiB) plus its command.
pub const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;
/// The largest metadata snapshot a replica accepts.
pub const MAX_SNAPSHOT_BYTES: u64 = 1024 * 1024 * 1024;
/// Snapshots a replica receives at once.
const MAX_SNAPSHOTS_RECEIVING: usize = 2;
/// The size of one snapshot chunk.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1024 * 1024;
use weir_security::Identity;

/// The `RaftTransport` service of one replica.
pub struct RaftService {
    replica: ReplicaHandle,
    /// Snapshots being received at once (each holds up to
    /// [`MAX_SNAPSHOT_BYTES`] in memory).
    snapshots: tokio::sync::Semaphore,
}

impl RaftService {
    /// The service delivering to `replica`.
    pub fn new(replica: ReplicaHandle) -> Self {
        RaftService {
            replica,
            snapshots: tokio::sync::Semaphore::new(MAX_SNAPSHOTS_RECEIVING),
        }
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
        let id = self.check_identity(identity, batch.from)?;
        if messages.iter().any(|m| m.from != id) {
            warn!(%identity, claimed = batch.from, "refused Raft messages sent in another replica's name");
            return Err(Status::permission_denied(format!(
                "{identity} may only send its own Raft messages (claimed replica {})",
                batch.from
            )));
        }
        Ok(())
    }

    /// The sender `from` is the driver `identity` names, and a member;
    /// returns its id.
    fn check_identity(&self, identity: &Identity, from: u64) -> Result<u64, Status> {
        let Identity::Driver(id) = *identity else {
            return Err(Status::permission_denied(format!(
                "{identity} is not a driver replica"
            )));
        };
        if from != id {
            warn!(%identity, claimed = from, "refused Raft messages sent in another replica's name");
            return Err(Status::permission_denied(format!(
                "{identity} may only send its own Raft messages (claimed replica {from})"
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
        Ok(id)
    }
}

#[tonic::async_trait]
impl RaftTransport for RaftService {
    async fn send_snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<RaftAck>, Status> {
        let caller = weir_security::caller(&request);
        let _receiving = self.snapshots.try_acquire().map_err(|_| {
            Status::resource_exhausted("this replica is receiving other snapshots; retry")
        })?;
        let mut chunks = request.into_inner();
        let first = chunks
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("an empty snapshot stream"))??;
        if first.cluster_id != self.replica.cluster_id() {
            return Err(Status::failed_precondition(format!(
                "replica of cluster {:?} refuses a snapshot from cluster {:?}",
                self.replica.cluster_id(),
                first.cluster_id
            )));
        }
        if first.total_bytes > MAX_SNAPSHOT_BYTES {
            return Err(Status::resource_exhausted(format!(
                "a snapshot of {} bytes is over the limit of {MAX_SNAPSHOT_BYTES}",
                first.total_bytes
            )));
        }
        if let Some(identity) = caller.identity() {
            self.check_identity(identity, first.from)?;
        }
        let total = first.total_bytes as usize;
        let mut bytes = Vec::with_capacity(total.min(64 * SNAPSHOT_CHUNK_BYTES));
        bytes.extend_from_slice(&first.data);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk?;
            if bytes.len() + chunk.data.len() > total {
                return Err(Status::invalid_argument(format!(
                    "snapshot chunks exceed the announced {total} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk.data);
        }
        if bytes.len() != total {
            return Err(Status::invalid_argument(format!(
                "snapshot stream ended at {} of {total} bytes",
                bytes.len()
            )));
        }
        let message = decode_message(&bytes)
            .map_err(|e| Status::invalid_argument(format!("bad raft snapshot message: {e}")))?;
        if message.get_msg_type() != crate::raft::MessageType::MsgSnapshot
            || message.from != first.from
        {
            return Err(Status::invalid_argument(
                "a snapshot stream must carry one snapshot message from its sender",
            ));
        }
        tracing::info!(
            from = first.from,
            bytes = total,
            "snapshot received in chunks"
        );
        self.replica
            .deliver(first.from, &first.from_address, vec![message]);
        Ok(Response::new(RaftAck {}))
    }

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
