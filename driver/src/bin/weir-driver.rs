//! `weir-driver`: one replica of the driver Raft group. The leader plans
//! and commits batches on the executors; followers are hot standbys.

use anyhow::Context;
use clap::Parser;
use std::sync::Arc;
use std::time::Duration;
use tracing::info;
use weir_driver::cluster::{check_data_dir, Replica, Supervisor, TermEpochs};
use weir_driver::config::{DriverArgs, DriverConfig};
use weir_driver::executors::{
    ControlService, ExecutorRegistry, LeaderState, RegistryOptions, RemoteOptions, RemoteRunner,
};
use weir_driver::service::{ClientService, LeaderExecutors, RaftService};
use weir_proto::pb::raft_transport_server::RaftTransportServer;
use weir_proto::pb::weir_client_server::WeirClientServer;

fn main() -> anyhow::Result<()> {
    let config = DriverConfig::load(DriverArgs::parse())?;
    init_logging(&config.log_format);
    let is_new = check_data_dir(&config.data_dir, &config.cluster_id, config.id)
        .map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let replica =
        Replica::start(&config, is_new, runtime.handle().clone()).map_err(anyhow::Error::msg)?;
    info!(id = config.id, listen = %config.listen, cluster_id = %config.cluster_id, "driver replica started");

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
    {
        let registry = registry.clone();
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tick.tick().await;
                registry.reap(std::time::Instant::now());
            }
        });
    }
    let runner = Arc::new(RemoteRunner::new(
        registry.clone(),
        runtime.handle().clone(),
        RemoteOptions::default(),
    ));
    let jobs_health = weir_driver::job_health::JobHealthBoard::default();
    let supervisor = Supervisor::new(replica.clone(), runner.clone(), jobs_health.clone());
    supervisor
        .start()
        .context("cannot start the job supervisor")?;

    let listener = runtime
        .block_on(tokio::net::TcpListener::bind(&config.listen))
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let view = Arc::new(LeaderExecutors {
        registry: registry.clone(),
        runner,
        replica: replica.clone(),
    });
    let client = ClientService::new(replica.clone(), Some(view), jobs_health);
    let control = ControlService::new(registry, leader);
    let (health, health_service) =
        runtime.block_on(async { tonic_health::server::health_reporter() });
    runtime.block_on(async move {
        health
            .set_serving::<WeirClientServer<ClientService>>()
            .await;
        tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(RaftTransportServer::new(RaftService::new(replica)))
            .add_service(WeirClientServer::new(client))
            .add_service(control.into_server())
            .serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
                shutdown_signal(),
            )
            .await
    })?;
    info!("shutting down: stopping job drivers after their current batch");
    supervisor.shutdown(Duration::from_secs(20));
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        }
        _ => std::future::pending().await,
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,sled=warn,raft=warn,h2=warn,tower=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
