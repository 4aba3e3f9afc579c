//! The executor process: flags and config, logging, the runtime and the
//! signals. The stock `weir-executor` binary and custom executor binaries
//! (built by users with their own operators) are both one call to
//! [`main_with`].

use crate::config::{Args, Config, LogFormat};
use crate::custom::OperatorRegistry;
use clap::Parser;
use std::process::ExitCode;

/// Runs an executor process with `operators` registered: parses the
/// command line and `WEIR_*` environment (as `weir-executor --help`
/// shows), serves until SIGTERM or SIGINT, and returns the exit code
/// (2 for a bad configuration, 1 when the executor failed).
pub fn main_with(operators: OperatorRegistry) -> ExitCode {
    let allocator = crate::allocator::keep_freed_memory();
    let config = match Config::load(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    weir_proto::process::init_logging("info", config.log_format == LogFormat::Json);
    tracing::debug!(?allocator, "allocator");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, operators)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "executor failed");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config, operators: OperatorRegistry) -> Result<(), String> {
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    crate::service::run_with(
        config,
        operators,
        listener,
        weir_proto::process::shutdown_signal(),
    )
    .await
    .map_err(|e| e.to_string())
}
