//! The HTTP side: `/metrics` (Prometheus, outbox gauges refreshed at every scrape), `/healthz`,
//! `/readyz` (migrations applied, the database answering within a second, NATS connected), and the operator's `/outbox` routes
//! (`operator.rs`), on `HTTP_ADDR`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use tokio::sync::watch;

use crate::app::App;

/// The outbox gauges' query, run at every scrape. Its `status <> 'SENT'` matches the predicate of
/// the partial index `outbox_events_channel_unsent_idx`, so it reads the unsent rows only, not
/// the whole (mostly delivered) table.
pub const OUTBOX_GAUGES_SQL: &str = "SELECT count(*) FILTER (WHERE status = 'PENDING'), \
     COALESCE(EXTRACT(EPOCH FROM now() - min(created_at) FILTER (WHERE status = 'PENDING')), 0)::int8, \
     count(*) FILTER (WHERE status = 'PENDING' AND retry_count >= $1), \
     count(*) FILTER (WHERE status = 'REJECTED') FROM outbox_events WHERE status <> 'SENT'";

/// Longest `/readyz` and `/metrics` wait on the database: a hung database makes the replica
/// unready at once, and a scrape never hangs (the gauges keep their last values).
const DB_PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Refreshes the outbox gauges from the database.
async fn refresh_outbox(app: &App) {
    let row = tokio::time::timeout(
        DB_PROBE_WAIT,
        sqlx::query_as::<_, (i64, i64, i64, i64)>(OUTBOX_GAUGES_SQL)
            .bind(app.config.outbox_max_attempts)
            .fetch_one(&app.pool),
    )
    .await;
    if let Ok(Ok((backlog, oldest, stuck, rejected))) = row {
        app.metrics.outbox_backlog.set(backlog);
        app.metrics.outbox_oldest_pending_seconds.set(oldest);
        app.metrics.outbox_stuck.set(stuck);
        app.metrics.outbox_rejected.set(rejected);
    }
}

async fn metrics(State(app): State<Arc<App>>) -> String {
    refresh_outbox(&app).await;
    app.metrics.render()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(app): State<Arc<App>>) -> (StatusCode, String) {
    let db = tokio::time::timeout(
        DB_PROBE_WAIT,
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM _sqlx_migrations WHERE success")
            .fetch_one(&app.pool),
    )
    .await
    .map_err(|_| format!("no answer within {DB_PROBE_WAIT:?}"))
    .and_then(|r| r.map_err(|e| e.to_string()));
    let expected = crate::MIGRATOR.iter().count() as i64;
    let nats = app.nats.connection_state() == async_nats::connection::State::Connected;
    match (db, nats) {
        (Ok(applied), true) if applied >= expected => (StatusCode::OK, "ready".into()),
        (Ok(applied), true) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("migrations: {applied} of {expected} applied"),
        ),
        (Err(e), _) => (StatusCode::SERVICE_UNAVAILABLE, format!("database: {e}")),
        (_, false) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "nats: not connected".into(),
        ),
    }
}

/// Binds `addr` and serves the endpoints until `shutdown` turns true; returns the bound address.
pub(crate) async fn serve(
    app: Arc<App>,
    addr: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding HTTP_ADDR {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/outbox", get(crate::operator::unsent))
        .route(
            "/outbox/redrive",
            axum::routing::post(crate::operator::redrive),
        )
        .with_state(app);
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!("metrics endpoint failed: {e}");
        }
    });
    tracing::info!(%bound, "metrics and health on HTTP");
    Ok((bound, task))
}
