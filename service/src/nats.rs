//! The NATS connection: credentials and TLS from the configuration, a client buffer per
//! subscription tied to the in-flight limit, and every connection event made visible (slow
//! consumers counted, permission errors logged).

use std::sync::Arc;

use anyhow::Context as _;

use crate::config::{self, Config};
use crate::metrics::Metrics;

/// Connects as `config` says; returns before the connection is up (the caller waits for it).
pub(crate) async fn connect(
    config: &Config,
    metrics: Arc<Metrics>,
) -> anyhow::Result<async_nats::Client> {
    let mut options = async_nats::ConnectOptions::new()
        .name(config.service_name.clone())
        .retry_on_initial_connect()
        // async-nats buffers 65,536 messages per subscription by default, before any size check of
        // ours runs. The serve loop drains these buffers eagerly, but a burst of small requests
        // (a ticket-opening rush) arrives faster than it spawns handlers. The buffer holds as many
        // 2 KiB requests as MAX_QUEUED_MIB admits (at least four times the in-flight limit), so a
        // burst is shed by that byte budget with a visible SYS_004, not dropped unanswered here;
        // an overflow is still counted, never silent.
        .subscription_capacity(subscription_capacity(config))
        .event_callback(move |event| {
            let metrics = metrics.clone();
            async move {
                match event {
                    async_nats::Event::SlowConsumer(sid) => {
                        metrics.nats_slow_consumer.inc();
                        tracing::warn!(sid, "NATS client buffer full: a message was dropped");
                    }
                    async_nats::Event::ServerError(e) => {
                        tracing::error!(error = %e, "NATS server error");
                    }
                    async_nats::Event::Disconnected => tracing::warn!("NATS disconnected"),
                    async_nats::Event::Connected => tracing::info!("NATS connected"),
                    other => tracing::info!(event = %other, "NATS event"),
                }
            }
        });
    options = config
        .nats_auth
        .apply(options)
        .await
        .with_context(|| format!("logging in to NATS as {:?}", config.nats_auth))?;
    let tls = &config.nats_tls;
    if tls.required {
        options = options.require_tls(true);
    }
    if let Some(ca) = &tls.ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &tls.client {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    let mut servers = contracts::client::servers(&config.nats_url)
        .map_err(|e| anyhow::anyhow!("NATS_URL: {e}"))?;
    if config.planted_bug == Some(crate::faults::PlantedBug::OneNatsServer) {
        // The defect: only the first seed, and none the cluster tells of.
        servers.truncate(1);
        options = options.ignore_discovered_servers();
    }
    options
        .connect(servers)
        .await
        .with_context(|| format!("connecting to NATS at {}", config::redact(&config.nats_url)))
}

/// Messages each subscription may buffer before the serve loop takes them.
fn subscription_capacity(config: &Config) -> usize {
    (config.max_queued_bytes / 2048)
        .max(config.max_in_flight * 4)
        .max(1024)
}
