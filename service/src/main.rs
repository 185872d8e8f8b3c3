//! `booking-service`: configured from the environment or flags (`booking-service --help` lists
//! every setting), stops gracefully on SIGTERM or Ctrl-C.

use booking_service::{telemetry, Config};

#[tokio::main]
async fn main() -> std::process::ExitCode {
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
    tracing::info!(?config, "starting booking-service");
    match booking_service::run(config, shutdown_signal()).await {
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
