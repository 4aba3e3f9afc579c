//! What every Weir process sets up the same way: logging to stderr and
//! the signals that ask it to shut down. `weir-driver`, `weir-executor`
//! (and custom executor binaries) and `weir local` use them.

/// Logs to stderr, filtered by `WEIR_LOG` (tracing's `EnvFilter` syntax)
/// or, when it is unset or invalid, by `default`; as JSON lines when
/// `json`, with colours only when stderr is a terminal. Call it once per
/// process, first thing.
pub fn init_logging(default: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Completes when the process receives SIGTERM or SIGINT; never, when the
/// handlers cannot be installed. Needs a tokio runtime with I/O enabled.
pub async fn shutdown_signal() {
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
