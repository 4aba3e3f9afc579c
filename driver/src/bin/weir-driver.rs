//! `weir-driver`: one replica of the driver Raft group. The leader plans
//! and commits batches on the executors; followers are hot standbys. The
//! wiring is `weir_driver::server::run`; this binary reads the settings,
//! sets up logging and serves until SIGTERM or SIGINT.

use anyhow::Context;
use clap::Parser;
use weir_driver::config::{DriverArgs, DriverConfig};

fn main() -> anyhow::Result<()> {
    let config = DriverConfig::load(DriverArgs::parse())?;
    init_logging(&config.log_format);
    // Two workers serve gRPC; the replica, the supervisor and the job
    // drivers have threads of their own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        weir_driver::server::run(config, listener, shutdown_signal()).await?;
        Ok(())
    })
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
