//! Raft messages to peers over gRPC: one task and bounded queue per peer,
//! so an unreachable peer never blocks the replica thread.

use super::replica::Event;
use crate::raft::{encode_message, Message, MessageType};
use crate::service::raft::{MAX_BATCH_BYTES, SNAPSHOT_CHUNK_BYTES};
use std::collections::{BTreeMap, HashMap};
use std::sync::{mpsc as std_mpsc, Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tracing::debug;
use weir_proto::pb::raft_transport_client::RaftTransportClient;
use weir_proto::pb::{RaftBatch, SnapshotChunk};

/// Messages queued per peer before new ones are dropped (Raft resends).
const QUEUE: usize = 4096;
/// Messages sent in one call.
const BATCH: usize = 256;
/// Bytes of the messages sent in one call (a larger message goes alone;
/// the receiver decodes up to [`MAX_BATCH_BYTES`]).
const BATCH_BYTES: usize = MAX_BATCH_BYTES / 4;
/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a snapshot stream may take.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(120);

pub(super) struct Transport {
    runtime: tokio::runtime::Handle,
    cluster_id: String,
    id: u64,
    addresses: Arc<RwLock<BTreeMap<u64, String>>>,
    events: std_mpsc::Sender<Event>,
    links: HashMap<u64, mpsc::Sender<Message>>,
    dialer: weir_security::Transport,
}

impl Transport {
    pub(super) fn new(
        runtime: tokio::runtime::Handle,
        cluster_id: String,
        id: u64,
        addresses: Arc<RwLock<BTreeMap<u64, String>>>,
        events: std_mpsc::Sender<Event>,
        dialer: weir_security::Transport,
    ) -> Self {
        Transport {
            runtime,
            cluster_id,
            id,
            addresses,
            events,
            links: HashMap::new(),
            dialer,
        }
    }

    pub(super) fn address_of(&self, id: u64) -> Option<String> {
        self.addresses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Queues a message; drops it if the peer's queue is full.
    pub(super) fn send(&mut self, message: Message) {
        let to = message.to;
        let link = self.links.entry(to).or_insert_with(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            let peer = Peer {
                to,
                from: self.id,
                cluster_id: self.cluster_id.clone(),
                addresses: self.addresses.clone(),
                events: self.events.clone(),
                dialer: self.dialer.clone(),
            };
            self.runtime.spawn(peer.run(rx));
            tx
        });
        if link.try_send(message).is_err() {
            debug!(to, "raft message queue full, message dropped");
        }
    }
}

struct Peer {
    to: u64,
    from: u64,
    cluster_id: String,
    addresses: Arc<RwLock<BTreeMap<u64, String>>>,
    events: std_mpsc::Sender<Event>,
    dialer: weir_security::Transport,
}

impl Peer {
    fn address(&self) -> Option<String> {
        self.addresses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&self.to)
            .cloned()
    }

    fn own_address(&self) -> String {
        self.addresses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&self.from)
            .cloned()
            .unwrap_or_default()
    }

    /// A client of the peer at `address` whose calls give up after
    /// `timeout`.
    fn connect(&self, address: &str, timeout: Duration) -> Option<RaftTransportClient<Channel>> {
        let channel = self
            .dialer
            .channel(address, |e| {
                e.connect_timeout(Duration::from_millis(500))
                    .timeout(timeout)
                    .tcp_nodelay(true)
            })
            .ok()?;
        Some(
            RaftTransportClient::new(channel)
                .max_encoding_message_size(MAX_BATCH_BYTES)
                .max_decoding_message_size(MAX_BATCH_BYTES),
        )
    }

    /// Sends queued messages in batches of at most [`BATCH`] messages and
    /// [`BATCH_BYTES`] (a larger message goes alone), and a snapshot larger
    /// than one chunk as a stream of chunks.
    async fn run(self, mut rx: mpsc::Receiver<Message>) {
        let mut client: Option<(String, RaftTransportClient<Channel>)> = None;
        let mut backoff = Duration::from_millis(50);
        let mut carried: Option<Encoded> = None;
        loop {
            let first = match carried.take() {
                Some(e) => Some(e),
                None => match rx.recv().await {
                    Some(m) => Encoded::of(&m),
                    None => return,
                },
            };
            let Some(first) = first else { continue };
            let Some(address) = self.address() else {
                let _ = self.events.send(Event::Unreachable(self.to));
                continue;
            };
            if client.as_ref().is_none_or(|(a, _)| *a != address) {
                client = self
                    .connect(&address, CALL_TIMEOUT)
                    .map(|c| (address.clone(), c));
            }
            let Some((_, c)) = client.as_mut() else {
                continue;
            };
            let sent = if first.snapshot && first.bytes.len() > SNAPSHOT_CHUNK_BYTES {
                self.stream_snapshot(&address, first.bytes).await.map(|_| 1)
            } else {
                let mut snapshots = usize::from(first.snapshot);
                let mut total = first.bytes.len();
                let mut messages = vec![first.bytes];
                while messages.len() < BATCH && total < BATCH_BYTES {
                    let Ok(m) = rx.try_recv() else { break };
                    let Some(next) = Encoded::of(&m) else {
                        continue;
                    };
                    let streamed = next.snapshot && next.bytes.len() > SNAPSHOT_CHUNK_BYTES;
                    if streamed || total + next.bytes.len() > BATCH_BYTES {
                        carried = Some(next);
                        break;
                    }
                    total += next.bytes.len();
                    snapshots += usize::from(next.snapshot);
                    messages.push(next.bytes);
                }
                let request = RaftBatch {
                    cluster_id: self.cluster_id.clone(),
                    from: self.from,
                    messages,
                    from_address: self.own_address(),
                };
                c.send(request)
                    .await
                    .map(|_| snapshots)
                    .map_err(|s| (snapshots, s))
            };
            match sent {
                Ok(snapshots) => {
                    backoff = Duration::from_millis(50);
                    for _ in 0..snapshots {
                        let _ = self.events.send(Event::Snapshot {
                            to: self.to,
                            delivered: true,
                        });
                    }
                }
                Err((snapshots, status)) => {
                    for _ in 0..snapshots {
                        let _ = self.events.send(Event::Snapshot {
                            to: self.to,
                            delivered: false,
                        });
                    }
                    debug!(to = self.to, address = %address, error = %status.message(), "raft peer unreachable");
                    let _ = self.events.send(Event::Unreachable(self.to));
                    // Drop what queued up meanwhile: Raft resends what matters.
                    tokio::time::sleep(backoff).await;
                    carried = None;
                    while rx.try_recv().is_ok() {}
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    /// Sends one encoded snapshot message in chunks, on a connection whose
    /// calls may take [`SNAPSHOT_TIMEOUT`].
    async fn stream_snapshot(
        &self,
        address: &str,
        bytes: Vec<u8>,
    ) -> Result<(), (usize, tonic::Status)> {
        let Some(mut client) = self.connect(address, SNAPSHOT_TIMEOUT) else {
            return Err((1, tonic::Status::unavailable("bad peer address")));
        };
        let total = bytes.len();
        debug!(to = self.to, bytes = total, "sending a snapshot in chunks");
        let mut chunks: Vec<SnapshotChunk> = bytes
            .chunks(SNAPSHOT_CHUNK_BYTES)
            .map(|data| SnapshotChunk {
                data: data.to_vec(),
                ..Default::default()
            })
            .collect();
        if let Some(first) = chunks.first_mut() {
            first.cluster_id = self.cluster_id.clone();
            first.from = self.from;
            first.from_address = self.own_address();
            first.total_bytes = total as u64;
        }
        client
            .send_snapshot(tokio_stream::iter(chunks))
            .await
            .map(|_| ())
            .map_err(|s| (1, s))
    }
}

/// A message encoded for the wire.
struct Encoded {
    snapshot: bool,
    bytes: Vec<u8>,
}

impl Encoded {
    /// `None` when it cannot be encoded (logged; Raft resends).
    fn of(message: &Message) -> Option<Encoded> {
        match encode_message(message) {
            Ok(bytes) => Some(Encoded {
                snapshot: message.get_msg_type() == MessageType::MsgSnapshot,
                bytes,
            }),
            Err(e) => {
                debug!(error = %e, "raft message not encoded");
                None
            }
        }
    }
}
