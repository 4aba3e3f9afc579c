//! Raft messages to peers over gRPC: one task and bounded queue per peer,
//! so an unreachable peer never blocks the replica thread.

use super::replica::Event;
use crate::raft::{encode_message, Message, MessageType};
use std::collections::{BTreeMap, HashMap};
use std::sync::{mpsc as std_mpsc, Arc, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::transport::Channel;
use tracing::debug;
use weir_proto::pb::raft_transport_client::RaftTransportClient;
use weir_proto::pb::RaftBatch;

/// Messages queued per peer before new ones are dropped (Raft resends).
const QUEUE: usize = 4096;
/// Messages sent in one call.
const BATCH: usize = 256;

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

    fn connect(&self, address: &str) -> Option<RaftTransportClient<Channel>> {
        let channel = self
            .dialer
            .channel(address, |e| {
                e.connect_timeout(Duration::from_millis(500))
                    .timeout(Duration::from_secs(2))
                    .tcp_nodelay(true)
            })
            .ok()?;
        Some(RaftTransportClient::new(channel))
    }

    async fn run(self, mut rx: mpsc::Receiver<Message>) {
        let mut client: Option<(String, RaftTransportClient<Channel>)> = None;
        let mut backoff = Duration::from_millis(50);
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(m) => batch.push(m),
                    Err(_) => break,
                }
            }
            let Some(address) = self.address() else {
                let _ = self.events.send(Event::Unreachable(self.to));
                continue;
            };
            if client.as_ref().is_none_or(|(a, _)| *a != address) {
                client = self.connect(&address).map(|c| (address.clone(), c));
            }
            let Some((_, c)) = client.as_mut() else {
                continue;
            };
            let snapshots = batch
                .iter()
                .filter(|m| m.get_msg_type() == MessageType::MsgSnapshot)
                .count();
            let messages: Vec<Vec<u8>> = batch
                .iter()
                .filter_map(|m| encode_message(m).ok())
                .collect();
            let request = RaftBatch {
                cluster_id: self.cluster_id.clone(),
                from: self.from,
                messages,
                from_address: self.own_address(),
            };
            match c.send(request).await {
                Ok(_) => {
                    backoff = Duration::from_millis(50);
                    for _ in 0..snapshots {
                        let _ = self.events.send(Event::Snapshot {
                            to: self.to,
                            delivered: true,
                        });
                    }
                }
                Err(status) => {
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
                    while rx.try_recv().is_ok() {}
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}
