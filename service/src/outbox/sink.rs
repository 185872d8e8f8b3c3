//! Where booking events go: JetStream when the server has it (the stream created or brought up to
//! date, with a dedup window that outlasts every retry), core NATS only when configured so
//! (`EVENTS_DELIVERY=core`) or when the server itself says it runs without JetStream (its INFO's
//! `jetstream` flag). A JetStream that fails (a publish without an ack, a 503 from a cluster
//! without quorum, an API that does not answer) is a reason to retry, never to fall back: only a
//! JetStream ack marks a booking event sent. The stream is made again until that succeeds.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use contracts::subjects;
use serde_json::Value;

use crate::app::App;
use crate::config::EventsDelivery;
use crate::error::{Result, ServiceError};
use crate::faults::PlantedBug;

/// How often the events loop looks again at where events go while all is well.
const JETSTREAM_RECHECK: Duration = Duration::from_secs(10);
/// How often it tries again to make the stream while it is not there.
const STREAM_RETRY: Duration = Duration::from_millis(500);

/// Where booking events go now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Route {
    /// Not known yet, or JetStream's stream could not be made: publishes fail and are retried.
    Waiting = 0,
    /// JetStream, the stream made.
    JetStream = 1,
    /// Core NATS: configured, or the server has no JetStream.
    Core = 2,
}

impl Route {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Route::JetStream,
            2 => Route::Core,
            _ => Route::Waiting,
        }
    }
}

/// Where booking events go.
pub(super) struct EventSink {
    js: async_nats::jetstream::Context,
    route: AtomicU8,
    /// When the route was last looked at.
    checked: Mutex<Option<Instant>>,
}

impl EventSink {
    pub(super) fn new(app: &App) -> Self {
        Self {
            js: async_nats::jetstream::new(app.nats.clone()),
            route: AtomicU8::new(Route::Waiting as u8),
            checked: Mutex::new(None),
        }
    }

    fn route(&self) -> Route {
        Route::from_u8(self.route.load(Ordering::SeqCst))
    }

    /// Looks again at where events go when `force`d or when due: every [`JETSTREAM_RECHECK`]
    /// (after a reconnect the server may differ), every [`STREAM_RETRY`] while the stream is
    /// missing.
    pub(super) async fn refresh(&self, app: &App, force: bool) {
        {
            let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
            let every = if self.route() == Route::Waiting {
                STREAM_RETRY
            } else {
                JETSTREAM_RECHECK
            };
            let due = force || checked.is_none_or(|at| at.elapsed() >= every);
            if !due {
                return;
            }
            *checked = Some(Instant::now());
        }
        let route = match app.config.events_delivery {
            EventsDelivery::Core => Route::Core,
            _ if app.faults.planted(PlantedBug::JetstreamFallback) => {
                // The defect: any failure to answer JetStream's API counts as "no JetStream".
                match jetstream_enabled(&app.nats).await {
                    Ok(()) if ensure_stream(app, &self.js).await => Route::JetStream,
                    _ => Route::Core,
                }
            }
            EventsDelivery::Auto if jetstream_absent(&app.nats).await => Route::Core,
            _ if ensure_stream(app, &self.js).await => Route::JetStream,
            _ => Route::Waiting,
        };
        let before = Route::from_u8(self.route.swap(route as u8, Ordering::SeqCst));
        if before == route {
            return;
        }
        match route {
            Route::JetStream => {
                tracing::info!(stream = %app.config.events_stream, "booking events go to JetStream")
            }
            Route::Core => {
                app.metrics.events_to_core_nats.inc();
                tracing::warn!(
                    configured = app.config.events_delivery == EventsDelivery::Core,
                    "booking events go out as core NATS messages (no stream, no server-side dedup): \
                     EVENTS_DELIVERY=core, or the NATS server says it has no JetStream"
                );
            }
            Route::Waiting => tracing::warn!(
                stream = %app.config.events_stream,
                "JetStream's stream cannot be made now; booking events wait in the outbox and are retried"
            ),
        }
    }
}

/// Whether JetStream is positively absent: the server's INFO says it runs without it, and
/// JetStream's API has no responder (nobody reachable serves it) or says it is not enabled for
/// this account. A node without JetStream in a cluster (or a leaf node) whose API is served
/// elsewhere is not absent; neither is a JetStream that does not answer in time or answers 503.
async fn jetstream_absent(nats: &async_nats::Client) -> bool {
    if nats.server_info().jetstream {
        return false;
    }
    let asked = tokio::time::timeout(
        Duration::from_secs(5),
        nats.request("$JS.API.INFO", bytes::Bytes::new()),
    )
    .await;
    match asked {
        Ok(Err(e)) => e.kind() == async_nats::RequestErrorKind::NoResponders,
        Ok(Ok(reply)) => {
            serde_json::from_slice::<Value>(&reply.payload)
                .ok()
                .and_then(|v| v["error"]["err_code"].as_u64())
                == Some(JETSTREAM_NOT_ENABLED)
        }
        Err(_) => false,
    }
}

/// JetStream's error code for "JetStream not enabled for account".
const JETSTREAM_NOT_ENABLED: u64 = 10039;

/// Whether the server answers JetStream's account-info request. Read liberally: the typed
/// `query_account` of async-nats 0.51 cannot parse the answer of nats-server 2.9 (the version
/// Debian ships), which once made every JetStream server look like a core one.
async fn jetstream_enabled(nats: &async_nats::Client) -> anyhow::Result<()> {
    let reply = tokio::time::timeout(
        Duration::from_secs(5),
        nats.request("$JS.API.INFO", bytes::Bytes::new()),
    )
    .await
    .map_err(|_| anyhow::anyhow!("no answer to $JS.API.INFO within 5 s"))??;
    let info: Value = serde_json::from_slice(&reply.payload)?;
    match info.get("error") {
        None if info.get("type").is_some() || info.get("limits").is_some() => Ok(()),
        None => anyhow::bail!("unexpected answer to $JS.API.INFO"),
        Some(error) => anyhow::bail!("JetStream refused: {error}"),
    }
}

/// Creates the booking-events stream if it is missing.
async fn ensure_stream(app: &App, js: &async_nats::jetstream::Context) -> bool {
    let window = duplicate_window(
        app.config.outbox_max_attempts,
        app.config.outbox_retry_cap,
        app.config.outbox_lease,
    );
    let config = async_nats::jetstream::stream::Config {
        name: app.config.events_stream.clone(),
        subjects: vec![
            subjects::BOOKING_CONFIRMED.into(),
            subjects::BOOKING_CANCELLED.into(),
        ],
        duplicate_window: window,
        // Bounded: a stream without limits grows until the disk is full.
        max_age: app.config.events_max_age.max(window),
        max_bytes: app.config.events_max_bytes,
        num_replicas: app.config.events_replicas,
        ..Default::default()
    };
    // Create it, or bring an existing stream's limits up to date.
    let result = match js.get_stream(&config.name).await {
        Ok(_) => js
            .update_stream(config)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(_) => js
            .create_stream(config)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "JetStream stream unavailable");
            false
        }
    }
}

impl EventSink {
    /// Publishes one booking event: to JetStream, done only once its ack comes back; as a core
    /// NATS message (a flush proves it left) only on the core route; an error while JetStream's
    /// stream is not there.
    pub(super) async fn publish(
        &self,
        app: &App,
        subject: String,
        headers: async_nats::HeaderMap,
        body: Vec<u8>,
    ) -> Result<()> {
        self.refresh(app, false).await;
        match self.route() {
            Route::JetStream => {
                let ack = self
                    .js
                    .publish_with_headers(subject.clone(), headers, body.into())
                    .await
                    .map_err(|e| ServiceError::Unavailable(format!("publishing {subject}: {e}")))?;
                ack.await.map_err(|e| {
                    ServiceError::Unavailable(format!("JetStream ack for {subject}: {e}"))
                })?;
            }
            Route::Core => {
                app.nats
                    .publish_with_headers(subject, headers, body.into())
                    .await
                    .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
                app.nats
                    .flush()
                    .await
                    .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
            }
            Route::Waiting => {
                return Err(ServiceError::Unavailable(format!(
                    "{subject}: JetStream's stream {} is not available yet",
                    app.config.events_stream
                )))
            }
        }
        Ok(())
    }
}

/// JetStream's dedup window must outlast the retries of one event that JetStream may already
/// hold (an ack lost on the way back): `attempts` waits of at most `cap` and `attempts` leases,
/// with an hour as the floor.
fn duplicate_window(attempts: i32, cap: Duration, lease: Duration) -> Duration {
    let attempts = u32::try_from(attempts.max(1)).unwrap_or(u32::MAX);
    let horizon = (cap + lease).saturating_mul(attempts);
    horizon.max(Duration::from_secs(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default `OUTBOX_RETRY_CAP_MS`.
    const MAX_BACKOFF: Duration = Duration::from_secs(60);

    #[test]
    fn the_dedup_window_outlasts_every_retry() {
        let lease = Duration::from_secs(30);
        assert_eq!(
            duplicate_window(5, MAX_BACKOFF, lease),
            Duration::from_secs(3600)
        );
        assert!(duplicate_window(100, MAX_BACKOFF, lease) > (MAX_BACKOFF + lease) * 100 - lease);
    }
}
