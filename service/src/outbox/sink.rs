//! Where booking events go: JetStream when the server has it (the stream created or brought up to
//! date, with a dedup window that outlasts every retry), core NATS otherwise, checked again every
//! few seconds and after a failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use contracts::subjects;
use serde_json::Value;

use crate::app::App;
use crate::error::{Result, ServiceError};

/// How often the events loop asks the server again whether it has JetStream.
const JETSTREAM_RECHECK: Duration = Duration::from_secs(10);

/// Where booking events go: JetStream when the server has it, core NATS otherwise.
pub(super) struct EventSink {
    js: async_nats::jetstream::Context,
    /// JetStream answered the last check and the stream exists.
    jetstream: AtomicBool,
    /// When JetStream was last checked.
    checked: Mutex<Option<Instant>>,
}

impl EventSink {
    pub(super) fn new(app: &App) -> Self {
        Self {
            js: async_nats::jetstream::new(app.nats.clone()),
            jetstream: AtomicBool::new(false),
            checked: Mutex::new(None),
        }
    }

    /// Asks the server whether it has JetStream (and creates the stream) when `force`d or when the
    /// last answer is older than [`JETSTREAM_RECHECK`]: after a reconnect the server may differ.
    pub(super) async fn refresh(&self, app: &App, force: bool) {
        {
            let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
            let due = force || checked.is_none_or(|at| at.elapsed() >= JETSTREAM_RECHECK);
            if !due {
                return;
            }
            *checked = Some(Instant::now());
        }
        let available = match jetstream_enabled(&app.nats).await {
            Ok(()) => ensure_stream(app, &self.js).await,
            Err(e) => {
                tracing::debug!(error = %e, "no JetStream on this server");
                false
            }
        };
        let before = self.jetstream.swap(available, Ordering::SeqCst);
        if before != available || force {
            if available {
                tracing::info!(stream = %app.config.events_stream, "booking events go to JetStream");
            } else {
                tracing::warn!("the NATS server has no JetStream: booking events go out as core NATS messages (no server-side dedup)");
            }
        }
    }
}

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
    /// Publishes one booking event: to JetStream (awaiting its ack) when the server has it, else
    /// as a core NATS message, delivered to whoever listens now (a flush proves it left).
    pub(super) async fn publish(
        &self,
        app: &App,
        subject: String,
        headers: async_nats::HeaderMap,
        body: Vec<u8>,
    ) -> Result<()> {
        self.refresh(app, false).await;
        if self.jetstream.load(Ordering::SeqCst) {
            let ack = self
                .js
                .publish_with_headers(subject.clone(), headers, body.into())
                .await
                .map_err(|e| ServiceError::Unavailable(format!("publishing {subject}: {e}")))?;
            ack.await.map_err(|e| {
                ServiceError::Unavailable(format!("JetStream ack for {subject}: {e}"))
            })?;
        } else {
            app.nats
                .publish_with_headers(subject, headers, body.into())
                .await
                .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
            app.nats
                .flush()
                .await
                .map_err(|e| ServiceError::Unavailable(e.to_string()))?;
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
