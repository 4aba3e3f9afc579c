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
    init_logging(config.log_format);
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
    crate::service::run_with(config, operators, listener, shutdown_signal())
        .await
        .map_err(|e| e.to_string())
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
