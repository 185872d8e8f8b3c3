//! The configuration's parts that are types of their own: TLS towards NATS, where booking events
//! go, and how the configuration prints (URLs without their passwords).

use super::Config;

/// How booking events are delivered (`EVENTS_DELIVERY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventsDelivery {
    /// JetStream when the server has it, core NATS when the server says it has none.
    #[default]
    Auto,
    /// JetStream only: without it, events wait in the outbox.
    JetStream,
    /// Core NATS only (no stream, no server-side dedup).
    Core,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // URLs may carry passwords: print only their host part.
        f.debug_struct("Config")
            .field("database_url", &redact(&self.database_url))
            .field("nats_url", &redact(&self.nats_url))
            .field("service_name", &self.service_name)
            .field("queue_group", &self.queue_group)
            .field("db_pool_size", &self.db_pool_size)
            .field("course_timeout", &self.course_timeout)
            .field("cache_ttl", &self.cache_ttl)
            .field("cancel_cutoff_days", &self.cancel_cutoff_days)
            .finish_non_exhaustive()
    }
}

/// `scheme://user:secret@host/db` → `scheme://***@host/db`.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// TLS towards NATS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsTls {
    /// Refuse a plaintext connection.
    pub required: bool,
    /// Extra PEM root certificates.
    pub ca: Option<std::path::PathBuf>,
    /// A client certificate and its key (mutual TLS).
    pub client: Option<(std::path::PathBuf, std::path::PathBuf)>,
}
