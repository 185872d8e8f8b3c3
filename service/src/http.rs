//! The HTTP side: `/metrics` (Prometheus, outbox gauges refreshed at every scrape), `/healthz` and
//! `/readyz` (migrations applied, the database answering within a second, NATS connected) on
//! `HTTP_ADDR`; the operator's `/outbox` routes (`operator.rs`) on `ADMIN_ADDR` only, behind
//! `ADMIN_TOKEN` when one is set, since they show customers' bookings and move events.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
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

/// Binds `HTTP_ADDR` and serves `/metrics`, `/healthz` and `/readyz` until `shutdown` turns
/// true; returns the bound address.
pub(crate) async fn serve(
    app: Arc<App>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    let addr = app.config.http_addr;
    listen("HTTP_ADDR", addr, router.with_state(app), shutdown).await
}

/// Binds `ADMIN_ADDR` and serves the operator's routes until `shutdown` turns true; returns the
/// bound address.
pub(crate) async fn serve_admin(
    app: Arc<App>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let token: Arc<Option<String>> = Arc::new(app.config.admin_token.clone());
    let router = Router::new()
        .route("/outbox", get(crate::operator::unsent))
        .route(
            "/outbox/redrive",
            axum::routing::post(crate::operator::redrive),
        )
        .route_layer(axum::middleware::from_fn_with_state(token, bearer));
    let addr = app.config.admin_addr;
    listen("ADMIN_ADDR", addr, router.with_state(app), shutdown).await
}

/// Lets a request through when no token is set or it carries `Authorization: Bearer <token>`.
async fn bearer(
    State(token): State<Arc<Option<String>>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(token) = token.as_deref() else {
        return next.run(request).await;
    };
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if given.is_some_and(|given| same(given.as_bytes(), token.as_bytes())) {
        return next.run(request).await;
    }
    let mut refused = (
        StatusCode::UNAUTHORIZED,
        "ADMIN_TOKEN is set: send Authorization: Bearer <token>\n",
    )
        .into_response();
    refused.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    refused
}

/// Byte equality whose time does not depend on where the first difference is, so the token
/// cannot be guessed a byte at a time.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Binds `addr` (the setting `name`) and serves `router` on it until `shutdown` turns true.
async fn listen(
    name: &'static str,
    addr: SocketAddr,
    router: Router,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("binding {name} {addr}: {e}"))?;
    let bound = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let stop = async move {
            let _ = shutdown.changed().await;
        };
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await
        {
            tracing::error!("{name} endpoint failed: {e}");
        }
    });
    tracing::info!(%bound, "serving {name}");
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"s3cret", b"s3cret"));
        assert!(!same(b"s3cret", b"s3creT"));
        assert!(!same(b"s3cret", b"s3cre"));
        assert!(!same(b"", b"x"));
    }
}
