//! The executor as a network service: registers with the leader driver,
//! heartbeats, runs the leader's tasks over gRPC and serves its shuffle
//! blocks to other executors.
//!
//! [`run`] takes a bound listener and a shutdown future so tests can start
//! executors inside the test process on port 0 (the binary calls it too).

pub mod fence;
pub mod registration;
pub mod status;
pub mod tasks;

use crate::config::Config;
use crate::custom::OperatorRegistry;
use crate::metrics::{ExecutorMetrics, RegistrationCollector};
use crate::runtime::{Executor, ExecutorConfig};
use crate::state::{HdfsBackend, LocalBackend, StateBackend};
use fence::Fence;
use prometheus_client::registry::Registry;
use registration::Identity;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::info;
use weir_proto::pb::executor_service_server::ExecutorServiceServer;
use weir_security::{AuthorizeLayer, Policy, Reloading, Transport};

/// Why the executor service stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The listener's address could not be read.
    #[error("listener: {0}")]
    Listener(#[from] std::io::Error),
    /// The state root could not be created.
    #[error("cannot create state root {path}: {source}")]
    StateRoot {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The HDFS state root is not usable.
    #[error("state root: {0}")]
    StateStore(#[from] crate::state::StateError),
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The settings are invalid (TLS files missing, say).
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The TLS files cannot be used.
    #[error(transparent)]
    Tls(#[from] weir_security::TlsError),
    /// The tokens file cannot be used.
    #[error(transparent)]
    Tokens(#[from] weir_security::tokens::TokensError),
    /// The HTTP port cannot be opened.
    #[error(transparent)]
    Http(#[from] weir_web::HttpError),
}

/// Runs an executor on `listener` until `shutdown` completes: registers
/// with the leader among `config.drivers`, heartbeats, and serves
/// `ExecutorService`. It has no custom operators ([`run_with`] adds some).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    run_with(config, OperatorRegistry::new(), listener, shutdown).await
}

/// [`run`] with custom operators: jobs may use them, and the executor
/// reports them to the leader when it registers.
pub async fn run_with(
    config: Config,
    operators: OperatorRegistry,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServiceError> {
    let local = listener.local_addr()?;
    let material = match config.tls_files()? {
        Some(files) => Some(Arc::new(Reloading::load(
            files,
            Some(weir_security::Identity::Executor(config.id.clone())),
        )?)),
        None => {
            tracing::warn!("serving plaintext without authentication (--insecure): anyone who reaches this port can send tasks");
            None
        }
    };
    let transport = material
        .clone()
        .map_or(Transport::Insecure, Transport::mutual);
    let policy = Arc::new(Policy {
        tls: material.is_some(),
        tokens: None,
    });
    // The HTTP port's roles come from the drivers' tokens file.
    let http_policy = Arc::new(Policy {
        tls: material.is_some(),
        tokens: config
            .tokens
            .as_deref()
            .map(weir_security::Tokens::load)
            .transpose()?,
    });
    let http = match &config.http_listen {
        Some(address) => Some(weir_web::bind(address).await?),
        None => None,
    };
    let metrics = ExecutorMetrics::default();
    let address = config
        .advertise
        .clone()
        .unwrap_or_else(|| local.to_string());
    let backend: Arc<dyn StateBackend> = if config.state_root.contains("://") {
        Arc::new(HdfsBackend::new(&config.state_root, Default::default())?)
    } else {
        let root = PathBuf::from(&config.state_root);
        std::fs::create_dir_all(&root).map_err(|source| ServiceError::StateRoot {
            path: root.clone(),
            source,
        })?;
        Arc::new(LocalBackend::new(root))
    };
    tracing::info!(state = %backend.describe(), writer_threads = config.writer_threads, "state store");
    let reported = operators.operators();
    let executor = Arc::new(Executor::new(
        ExecutorConfig {
            checkpoints: config.checkpoints,
            writer_threads: config.writer_threads,
            operators,
            checkpoint_metrics: metrics.checkpoints.clone(),
            lookup_metrics: metrics.lookups.clone(),
        },
        backend,
    ));
    let fence = Arc::new(Fence::default());
    let (stop_tx, stop_rx) = watch::channel(false);
    let identity = Identity {
        id: config.id.clone(),
        address: address.clone(),
        slots: config.slots,
        operators: reported.clone(),
    };
    info!(executor_id = %config.id, listen = %local, address = %address, slots = config.slots, operators = ?reported, "executor starting");
    let heartbeats = tokio::spawn(registration::run(
        identity,
        config.drivers.clone(),
        config.heartbeat_interval,
        fence.clone(),
        transport.clone(),
        stop_rx,
    ));
    let http = http.map(|listener| {
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        registry.register_collector(Box::new(RegistrationCollector(fence.clone())));
        tokio::spawn(weir_web::serve(
            listener,
            material.clone(),
            http_policy,
            Arc::new(ExecutorSite {
                registry,
                fence: fence.clone(),
            }),
            std::future::pending(),
        ))
    });
    let service = tasks::TaskService::new(executor, fence, transport, metrics);
    // The standard gRPC health check, for Kubernetes probes.
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<ExecutorServiceServer<tasks::TaskService>>()
        .await;
    let served = tonic::transport::Server::builder()
        .layer(AuthorizeLayer::new(policy))
        .add_service(health_service)
        .add_service(
            ExecutorServiceServer::new(service)
                .max_decoding_message_size(weir_proto::wire::MAX_TASK_MESSAGE_BYTES)
                .max_encoding_message_size(weir_proto::wire::MAX_TASK_MESSAGE_BYTES),
        )
        .serve_with_incoming_shutdown(weir_security::incoming(listener, material), async move {
            shutdown.await;
            info!("executor shutting down");
        })
        .await;
    let _ = stop_tx.send(true);
    let _ = heartbeats.await;
    if let Some(http) = http {
        http.abort();
        let _ = http.await;
    }
    served?;
    Ok(())
}

/// What an executor serves on its HTTP port.
struct ExecutorSite {
    registry: Registry,
    fence: Arc<Fence>,
}

impl weir_web::Site for ExecutorSite {
    fn metrics(&self) -> String {
        weir_web::metrics::encode(&self.registry)
    }

    /// Ready while registered with the leader (holding a lease).
    fn ready(&self) -> Result<(), String> {
        match self.fence.current(std::time::Instant::now()) {
            Some(_) => Ok(()),
            None => Err("not registered with the leader driver".into()),
        }
    }
}
