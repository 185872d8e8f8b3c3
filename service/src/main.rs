//! `booking-service`: configured from the environment or flags (`booking-service --help` lists
//! every setting), stops gracefully on SIGTERM or Ctrl-C, within `SHUTDOWN_GRACE_MS`.

use booking_service::{telemetry, Config};

/// How long the runtime waits, once the service has stopped, for blocking threads (a serve loop
/// given up on, a hung DNS lookup): dropping a runtime waits for them without bound.
const RUNTIME_SHUTDOWN: std::time::Duration = std::time::Duration::from_secs(1);

fn main() -> std::process::ExitCode {
    // `--help` and `--version` answer here and exit 0, before anything is started.
    let args = booking_service::config::command().get_matches();
    telemetry::init();
    let config = match Config::from_lookup(|name| args.get_one::<String>(name).cloned()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("booking-service: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("booking-service: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    tracing::info!(?config, "starting booking-service");
    let result = runtime.block_on(booking_service::run(config, shutdown_signal()));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("booking-service failed: {e:#}");
            eprintln!("booking-service: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
