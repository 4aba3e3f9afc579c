//! The driver as a network service: one replica of the Raft group, the
//! executor registry and the remote task runner, the job supervisor and the
//! gRPC services (`WeirClient`, `RaftTransport`, `ExecutorControl` and the
//! standard health check), all on one listener.
//!
//! [`run`] takes a bound listener and a shutdown future, so tests can start
//! drivers inside the test process on port 0; the `weir-driver` binary
//! calls it too.

use crate::batch::DriverOptions;
use crate::cluster::{check_data_dir, Replica, Supervisor, TermEpochs};
use crate::config::DriverConfig;
use crate::executors::{
    ControlService, ExecutorRegistry, LeaderState, RegistryOptions, RemoteOptions, RemoteRunner,
};
use crate::http::DriverSite;
use crate::job_health::JobHealthBoard;
use crate::lag::{run_poller, LagBoard};
use crate::metrics::{DriverMetrics, DriverSources};
use crate::service::raft::MAX_BATCH_BYTES;
use crate::service::{ClientService, LeaderExecutors, RaftService};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tracing::{info, warn};
use weir_proto::pb::raft_transport_server::RaftTransportServer;
use weir_proto::pb::weir_client_server::WeirClientServer;
use weir_proto::wire;
use weir_security::{AuthorizeLayer, Identity, Policy, Reloading, Tokens, Transport};

/// How often executors that stopped heartbeating are declared dead.
const REAP_EVERY: Duration = Duration::from_millis(250);
/// How long a shutdown waits for the job drivers to finish their batch.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(20);

/// Why a driver could not start or stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The data directory belongs to another cluster or replica, or
    /// cannot be used.
    #[error("data directory: {0}")]
    DataDir(String),
    /// The Raft replica could not start on the data directory.
    #[error("{0}")]
    Replica(String),
    /// A thread could not be started.
    #[error("cannot start the job supervisor: {0}")]
    Supervisor(#[source] std::io::Error),
    /// The listener's address could not be read.
    #[error("listener: {0}")]
    Listener(#[from] std::io::Error),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The TLS files cannot be used.
    #[error(transparent)]
    Tls(#[from] weir_security::TlsError),
    /// The tokens file cannot be used.
    #[error(transparent)]
    Tokens(#[from] weir_security::tokens::TokensError),
    /// The HTTP port cannot be opened.
    #[error(transparent)]
    Http(#[from] weir_web::HttpError),
    /// A thread could not be started.
    #[error("cannot start the lag poller: {0}")]
    Poller(#[source] std::io::Error),
}

/// Runs a driver replica on `listener` until `shutdown` completes: starts
/// (or bootstraps) the replica in `config.data_dir`, serves clients, peers
/// and executors, and on the leader runs the jobs. Then it stops accepting
/// calls, lets each job driver finish its current batch (up to 20 s) and
/// stops the replica thread.
///
/// `config.listen` is not bound here: `listener` is. Peers and executors
/// reach this replica at `config.advertise`, which must lead to
/// `listener`. Needs a multi-threaded tokio runtime (the replica's
/// transport and the task runner block on it from their own threads).
pub async fn run(
    config: DriverConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let local = listener.local_addr()?;
    let (material, policy) = security(&config)?;
    let transport = material
        .clone()
        .map_or(Transport::Insecure, Transport::mutual);
    let is_new = check_data_dir(&config.data_dir, &config.cluster_id, config.id)
        .map_err(ServerError::DataDir)?;
    let runtime = tokio::runtime::Handle::current();
    let replica = Replica::start(&config, is_new, runtime.clone(), transport.clone())
        .map_err(ServerError::Replica)?;
    info!(id = config.id, listen = %local, advertise = %config.advertise, cluster_id = %config.cluster_id, tls = material.is_some(), "driver replica started");

    let epochs = Arc::new(TermEpochs::new(replica.clone()));
    let registry = Arc::new(ExecutorRegistry::with_epochs(
        RegistryOptions::default(),
        epochs,
    ));
    let leader = {
        let replica = replica.clone();
        Arc::new(move || {
            if replica.is_leader() {
                LeaderState::Leader
            } else {
                LeaderState::Follower {
                    leader_address: replica.leader_address(),
                }
            }
        })
    };
    // Declare silent executors dead even while no batch asks about them,
    // so that their epochs are bumped and `weir cluster` tells the truth.
    let reaper = {
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REAP_EVERY);
            loop {
                tick.tick().await;
                registry.reap(Instant::now());
            }
        })
    };
    let runner = Arc::new(RemoteRunner::new(
        registry.clone(),
        runtime,
        RemoteOptions {
            transport: transport.clone(),
            ..RemoteOptions::default()
        },
    ));
    let jobs_health = JobHealthBoard::default();
    let lag = LagBoard::default();
    let metrics = DriverMetrics {
        proposal: replica.proposals(),
        ..DriverMetrics::default()
    };
    let http = match &config.http_listen {
        Some(address) => Some(weir_web::bind(address).await?),
        None => None,
    };
    let supervisor = Supervisor::new(
        replica.clone(),
        runner.clone(),
        DriverOptions {
            health: jobs_health.clone(),
            metrics: metrics.clone(),
            ..DriverOptions::default()
        },
    );
    supervisor.start().map_err(ServerError::Supervisor)?;
    let stop_poller = Arc::new(AtomicBool::new(false));
    let poller = {
        let (replica, lag, stop) = (replica.clone(), lag.clone(), stop_poller.clone());
        std::thread::Builder::new()
            .name("lag".into())
            .spawn(move || run_poller(replica, lag, stop))
            .map_err(ServerError::Poller)?
    };

    let view = Arc::new(LeaderExecutors {
        registry: registry.clone(),
        runner,
        replica: replica.clone(),
    });
    let (stopping, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stopping.send(true);
    });
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let http = http.map(|listener| {
        let site = DriverSite::new(
            DriverSources {
                replica: replica.clone(),
                health: jobs_health.clone(),
                lag: lag.clone(),
                executors: Some(registry.clone()),
            },
            &metrics,
            Some(view.clone()),
        );
        tokio::spawn(weir_web::serve(
            listener,
            material.clone(),
            policy.clone(),
            Arc::new(site),
            wait(stopped.clone()),
        ))
    });
    let client = ClientService::new(replica.clone(), Some(view), (jobs_health, lag), transport);
    let control = ControlService::new(registry, leader);
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<WeirClientServer<ClientService>>()
        .await;
    let served = tonic::transport::Server::builder()
        .layer(AuthorizeLayer::new(policy))
        .add_service(health_service)
        .add_service(
            RaftTransportServer::new(RaftService::new(replica.clone()))
                .max_decoding_message_size(MAX_BATCH_BYTES)
                .max_encoding_message_size(MAX_BATCH_BYTES),
        )
        .add_service(
            WeirClientServer::new(client)
                .max_decoding_message_size(wire::MAX_CLIENT_MESSAGE_BYTES)
                .max_encoding_message_size(wire::MAX_CLIENT_MESSAGE_BYTES),
        )
        .add_service(control.into_server())
        .serve_with_incoming_shutdown(weir_security::incoming(listener, material), wait(stopped))
        .await;
    info!("shutting down: stopping job drivers after their current batch");
    reaper.abort();
    let _ = reaper.await;
    if let Some(http) = http {
        http.abort();
        let _ = http.await;
    }
    stop_poller.store(true, Ordering::SeqCst);
    // Waiting for the job, supervisor and replica threads blocks; keep it
    // off the runtime's workers.
    let _ = tokio::task::spawn_blocking(move || {
        supervisor.shutdown(SHUTDOWN_WAIT);
        let _ = poller.join();
        replica.stop();
    })
    .await;
    served?;
    Ok(())
}

/// The TLS material and the authorization policy of `config`: certificates
/// that must name this replica, and the tokens file.
fn security(config: &DriverConfig) -> Result<(Option<Arc<Reloading>>, Arc<Policy>), ServerError> {
    let material = match &config.tls {
        Some(files) => Some(Arc::new(Reloading::load(
            files.clone(),
            Some(Identity::Driver(config.id)),
        )?)),
        None => {
            warn!("serving plaintext without authentication (--insecure): anyone who reaches this port can run, stop and purge jobs");
            None
        }
    };
    let tokens = config.tokens.as_deref().map(Tokens::load).transpose()?;
    if material.is_some() && tokens.is_none() {
        warn!("no --tokens file: clients have no roles, so only drivers and executors can call this replica");
    }
    let policy = Policy {
        tls: material.is_some(),
        tokens,
    };
    Ok((material, Arc::new(policy)))
}
