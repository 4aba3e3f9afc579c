//! Registration with the leader driver and the heartbeat loop.
//!
//! The executor tries the configured drivers in turn; a follower answers
//! `UNAVAILABLE` naming the leader, which is tried next. Registration
//! yields an epoch; heartbeats carry it. When a heartbeat fails for any
//! reason (the leader refused the epoch, the leader is gone, the network
//! failed), the executor registers again and gets a new epoch: tasks of the
//! old epoch are then refused, and the leader re-runs what they were doing.

use super::fence::Fence;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tonic::transport::Channel;
use tonic::Code;
use tracing::{info, warn};
use weir_proto::pb::executor_control_client::ExecutorControlClient;
use weir_proto::pb::{HeartbeatRequest, RegisterRequest};
use weir_proto::wire;
use weir_security::Transport;

/// What this executor tells the leader about itself.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Executor id.
    pub id: String,
    /// Advertised address.
    pub address: String,
    /// Task slots.
    pub slots: u32,
    /// Custom operators as `name@version`.
    pub operators: Vec<String>,
}

/// Keeps this executor registered until `shutdown` turns true.
pub async fn run(
    identity: Identity,
    drivers: Vec<String>,
    interval: Duration,
    fence: Arc<Fence>,
    transport: Transport,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut hint: Option<String> = None;
    loop {
        let registered = tokio::select! {
            r = register(&identity, &drivers, &transport, &mut hint, &fence) => r,
            _ = shutdown.changed() => return,
        };
        let (driver, mut client, epoch) = registered;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => return,
            }
            let sent = Instant::now();
            let request = HeartbeatRequest {
                executor_id: identity.id.clone(),
                epoch,
            };
            // A paused leader accepts connections but never answers: give up
            // after one interval and look for the new leader.
            let answer = tokio::time::timeout(interval, client.heartbeat(request)).await;
            match answer {
                Ok(Ok(_)) => fence.renewed(epoch, sent),
                Ok(Err(status)) => {
                    if status.code() == Code::FailedPrecondition {
                        fence.revoke();
                        warn!(epoch, driver = %driver, reason = status.message(), "the leader refused this executor's epoch; registering again");
                    } else {
                        hint = wire::leader_hint(&status);
                        warn!(epoch, driver = %driver, code = ?status.code(), error = status.message(), "heartbeat failed; registering again");
                    }
                    break;
                }
                Err(_) => {
                    warn!(epoch, driver = %driver, "heartbeat timed out; registering again");
                    break;
                }
            }
        }
    }
}

fn channel(transport: &Transport, address: &str) -> Option<Channel> {
    transport
        .channel(address, |e| {
            e.connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(3))
        })
        .ok()
}

/// Registers with the leader, retrying forever; returns the leader's
/// address, a client to it and the new epoch.
async fn register(
    identity: &Identity,
    drivers: &[String],
    transport: &Transport,
    hint: &mut Option<String>,
    fence: &Fence,
) -> (String, ExecutorControlClient<Channel>, u64) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let mut candidates: Vec<String> = hint.take().into_iter().collect();
        candidates.extend(drivers.iter().cloned());
        let mut i = 0;
        while i < candidates.len() {
            let address = candidates[i].clone();
            i += 1;
            let Some(channel) = channel(transport, &address) else {
                warn!(driver = %address, "not a valid driver address");
                continue;
            };
            let mut client = ExecutorControlClient::new(channel);
            let sent = Instant::now();
            let request = RegisterRequest {
                executor_id: identity.id.clone(),
                address: identity.address.clone(),
                slots: identity.slots,
                build_version: env!("CARGO_PKG_VERSION").to_string(),
                operators: identity.operators.clone(),
            };
            match client.register(request).await {
                Ok(r) => {
                    let r = r.into_inner();
                    let timeout = Duration::from_millis(r.heartbeat_timeout_ms.max(1));
                    fence.registered(r.epoch, timeout, sent);
                    info!(epoch = r.epoch, driver = %address, executor_id = %identity.id, "registered with the leader");
                    return (address, client, r.epoch);
                }
                Err(status) => {
                    if let Some(leader) = wire::leader_hint(&status) {
                        info!(driver = %address, leader = %leader, "not the leader; following the hint");
                        if !candidates[i..].contains(&leader) {
                            candidates.insert(i, leader);
                        }
                    } else {
                        warn!(driver = %address, code = ?status.code(), error = status.message(), "registration failed");
                    }
                }
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
