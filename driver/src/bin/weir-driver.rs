//! `weir-driver`: one replica of the driver Raft group. The leader plans
//! and commits batches on the executors; followers are hot standbys. The
//! wiring is `weir_driver::server::run`; this binary reads the settings,
//! sets up logging and serves until SIGTERM or SIGINT.

use anyhow::Context;
use clap::Parser;
use weir_driver::config::{DriverArgs, DriverConfig};

fn main() -> anyhow::Result<()> {
    let config = DriverConfig::load(DriverArgs::parse())?;
    weir_proto::process::init_logging(
        "info,sled=warn,raft=warn,h2=warn,tower=warn",
        config.log_format == "json",
    );
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
        weir_driver::server::run(config, listener, weir_proto::process::shutdown_signal()).await?;
        Ok(())
    })
}
