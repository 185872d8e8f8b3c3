//! Service configuration, read once from the environment (or the command line); invalid values
//! stop the start with a message naming the variable. Every setting and its default is listed in
//! `knobs` (`booking-service --help`).

pub use crate::faults::{FaultPoint, PlantedBug};
pub use contracts::NatsLogin;
use std::time::Duration;

/// Everything the service can be told. Defaults are in each field's doc.
#[derive(Clone)]
pub struct Config {
    /// `DATABASE_URL` (required): the PostgreSQL database.
    pub database_url: String,
    /// `NATS_URL` (default `nats://127.0.0.1:4222`).
    pub nats_url: String,
    /// `SERVICE_NAME` (default `booking-service`): NATS client name and log field.
    pub service_name: String,
    /// `QUEUE_GROUP` (default `booking-service`): replicas in one group share requests.
    pub queue_group: String,
    /// `DB_POOL_SIZE` (default 16): PostgreSQL connections for requests and create batches (the
    /// relay has up to four more of its own, and one per channel it listens on).
    pub db_pool_size: u32,
    /// `DB_ACQUIRE_TIMEOUT_MS` (default 5000): longest wait for a pooled connection.
    pub db_acquire_timeout: Duration,
    /// `DB_STATEMENT_TIMEOUT_MS` (default 5000): PostgreSQL's `statement_timeout` on every pooled
    /// connection, and (three times over) the longest a create batch's worker waits for its
    /// transaction before giving its callers "outcome unknown".
    pub db_statement_timeout: Duration,
    /// `DB_KEEPALIVE_SECS` (default 10): the server's TCP keepalive on our connections (idle time
    /// before the first probe; probes every third of it, three lost end the session), so a
    /// connection whose client vanished does not hold its locks for the kernel's two hours.
    pub db_keepalive_secs: u64,
    /// `CREATE_QUEUE_MAX` (default 1024): creates waiting for a group-commit worker; past it a
    /// create is answered `SYS_004` at once and counted (`create_queue_full_total`).
    pub create_queue_max: usize,
    /// `REQUEST_DEADLINE_MS` (default 10000): longest a request is worked on before its caller
    /// gets `SYS_002`; a hung database (a blackholed connection) is answered within it.
    pub request_deadline: Duration,
    /// `SHUTDOWN_GRACE_MS` (default 20000): on SIGTERM, the longest wait for in-flight requests,
    /// the relay, the NATS drain and the pools; then the process exits, logging what was left
    /// unfinished. Below Kubernetes' default 30 s, so the pod is never killed mid-stop.
    pub shutdown_grace: Duration,
    /// `COURSE_TIMEOUT_MS` (default 5000, shorter than `REQUEST_DEADLINE_MS`): per-call timeout to
    /// course-service.
    pub course_timeout: Duration,
    /// `COURSE_RETRIES` (default 2): extra attempts after a failed course-service call.
    pub course_retries: u32,
    /// `BREAKER_THRESHOLD` (default 5): consecutive failed attempts that open the breaker.
    pub breaker_threshold: u32,
    /// `BREAKER_OPEN_MS` (default 10000): how long an open breaker fails fast before a probe.
    pub breaker_open: Duration,
    /// `CACHE_TTL_SECS` (default 300): a cached slot older than this is refreshed on booking.
    pub cache_ttl: Duration,
    /// `CREATE_BATCH_MAX` (default 64): most creates committed in one transaction (1 turns group
    /// commit off).
    pub create_batch_max: usize,
    /// `CREATE_BATCH_WAIT_US` (default 0): longest wait for more creates once one is queued; 0
    /// batches only what arrived while earlier batches committed (and lets a create that finds
    /// nothing committing skip the queue); above 0 every create queues.
    pub create_batch_wait: Duration,
    /// `CREATE_BATCH_WORKERS` (default 2): batches committing at once per replica. Two keep one
    /// batch filling while the other commits; at 16 clients the bench measured 3.5 creates per
    /// commit and about 12 % more bookings than with 4 (2.1 per commit), the same at 64.
    pub create_batch_workers: usize,
    /// `CANCEL_CUTOFF_DAYS` (default 3): cancelling is refused closer than this to the booking date.
    pub cancel_cutoff_days: i64,
    /// `MAX_IN_FLIGHT` (default 512): requests handled at once; more wait in the queue. Each
    /// subscription's client buffer holds as many messages.
    pub max_in_flight: usize,
    /// `MAX_QUEUED_MIB` (default 32): bytes of request bodies waiting for a handler; past it a
    /// request is answered `SYS_004` (overloaded) at once and counted, so memory stays bounded
    /// whatever arrives.
    pub max_queued_bytes: usize,
    /// `MAX_REPLY_MIB` (default 16): bytes of replies being built or sent at once, each counted
    /// at the most its subject may need until it is encoded, then at its size until NATS has it;
    /// more wait their turn, so many large answers at once keep memory bounded.
    pub max_reply_bytes: usize,
    /// How the NATS connection authenticates: `NATS_USER` + `NATS_PASSWORD`, `NATS_TOKEN`,
    /// `NATS_NKEY` (a user seed) or `NATS_CREDS` (a `.creds` file); at most one.
    pub nats_auth: NatsLogin,
    /// `NATS_TLS_CA` (a PEM root), `NATS_TLS_CERT` + `NATS_TLS_KEY` (a client certificate),
    /// `NATS_TLS_REQUIRED` (default false; implied by any of the others or a `tls://` URL).
    pub nats_tls: NatsTls,
    /// `UPDATE_REQUIRES_CALLER` (default false): refuse a `booking.update` without the caller's
    /// top-level `userId` (`BUS_001`). Off by default because the reference user-api sends only
    /// `{id, dto}`; without the caller anyone who can publish `booking.update` changes any booking.
    pub update_requires_caller: bool,
    /// `IDEMPOTENCY_TTL_SECS` (default 86400): how long an idempotency key is remembered.
    pub idempotency_ttl: Duration,
    /// `OUTBOX_POLL_MS` (default 1000): relay poll interval, a back-up to LISTEN/NOTIFY.
    pub outbox_poll: Duration,
    /// `OUTBOX_BATCH` (default 256): rows a relay loop has in flight at most.
    pub outbox_batch: i64,
    /// `OUTBOX_CLAIM_GAP_MS` (default 20, 0 = none): the shortest time between two claims of one
    /// relay loop, so rows committed together are claimed, sent and recorded together instead of
    /// one claim per commit. It adds at most this much to a delivery; at 16 clients the bench
    /// books about 10 % more with 20 than with 5 (the relay's statements compete with creates).
    pub outbox_claim_gap: Duration,
    /// `OUTBOX_LEASE_MS` (default 30000): how long a claimed row is reserved for its relay; a crashed
    /// relay's rows are retried by another once it runs out.
    pub outbox_lease: Duration,
    /// `OUTBOX_HANDOFF_LEASE_MS` (default 2000, at most `OUTBOX_LEASE_MS`): how long a booking
    /// event that a one-statement create hands to its own relay is reserved for it. Short, because
    /// a write that committed while its answer was lost (the database link hung) was handed to
    /// nobody: its row waits this long for any relay's claim. A handed row still in hand when it
    /// runs out may be sent twice (deduplicated by its Nats-Msg-Id).
    pub outbox_handoff_lease: Duration,
    /// `OUTBOX_MAX_ATTEMPTS` (default 50): attempts after which a row counts as stuck: it is logged
    /// once at ERROR, shown by the `outbox_stuck` gauge, and still retried every
    /// `OUTBOX_RETRY_CAP_MS`. No row is ever given up.
    pub outbox_max_attempts: i32,
    /// `OUTBOX_RETRY_CAP_MS` (default 60000): the longest wait between two attempts of one row.
    pub outbox_retry_cap: Duration,
    /// `OUTBOX_KEEP_SENT_HOURS` (default 168): delivered outbox rows are kept this long (for
    /// audits and `/outbox`), then pruned.
    pub outbox_keep_sent: Duration,
    /// `PRUNE_INTERVAL_SECS` (default 600): how often delivered rows and expired idempotency keys
    /// are pruned.
    pub prune_interval: Duration,
    /// `EVENTS_MAX_AGE_HOURS` (default 168): the events stream keeps a message this long (never
    /// less than its deduplication window).
    pub events_max_age: Duration,
    /// `EVENTS_MAX_MIB` (default 1024): the events stream's size limit; the oldest go first.
    pub events_max_bytes: i64,
    /// `EVENTS_REPLICAS` (default 1): copies of the events stream on a NATS cluster (1-5).
    pub events_replicas: usize,
    /// `EVENTS_STREAM` (default `BOOKING_EVENTS`): JetStream stream for booking events.
    pub events_stream: String,
    /// `EVENTS_DELIVERY` (default `auto`): `auto` sends booking events to JetStream when the
    /// server has it and as core NATS messages when the server says it has none; `jetstream`
    /// never falls back (without it events wait in the outbox); `core` never uses JetStream.
    pub events_delivery: EventsDelivery,
    /// `FAULT_POINT` (default none): for chaos runs only, abort the process at this point:
    /// `after-commit` (a booking is committed, its reply not yet sent) or `before-mark-sent` (an
    /// event is delivered, its outbox row not yet marked).
    pub fault_point: Option<FaultPoint>,
    /// `FAULT_AFTER` (default 1): abort on the Nth time `FAULT_POINT` is reached, so a chaos run can
    /// let some work through and crash with more in flight.
    pub fault_after: u64,
    /// `PLANTED_BUG` (default none): for proving the simulator's checker only, re-introduce a known
    /// defect: `skip-row-lock` (the reference's missing slot lock: oversells), `drop-outbox` (no
    /// `gameTimeSlots.book` for new bookings: course-service drifts), `accept-refusals` (a
    /// course-service refusal marked SENT) or `refuse-keyed-retry` (a keyed create refused without
    /// looking at its key again). Logged loudly at start.
    pub planted_bug: Option<PlantedBug>,
    /// `HTTP_ADDR` (default `0.0.0.0:8080`): `/metrics`, `/healthz`, `/readyz`; port 0 picks one.
    pub http_addr: std::net::SocketAddr,
    /// `ADMIN_ADDR` (default `127.0.0.1:8081`): the operator's `/outbox` and `/outbox/redrive`,
    /// which show customers' bookings and move events; port 0 picks one. An address other than
    /// loopback is refused without `ADMIN_TOKEN`.
    pub admin_addr: std::net::SocketAddr,
    /// `ADMIN_TOKEN` (default none): when set, requests to `ADMIN_ADDR` must carry
    /// `Authorization: Bearer <token>`, or are answered 401.
    pub admin_token: Option<String>,
}

/// A configuration value that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl Config {
    /// A configuration for `database_url` and `nats_url` with every other value at its default.
    pub fn new(database_url: &str, nats_url: &str) -> Result<Self, ConfigError> {
        Self::from_lookup(|name| match name {
            "DATABASE_URL" => Some(database_url.to_owned()),
            "NATS_URL" => Some(nats_url.to_owned()),
            _ => None,
        })
    }

    /// Reads through `lookup`: the binary's parsed flags and environment (`command()`), or a
    /// map in tests.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        // A setting not given takes its default from the one list `--help` prints.
        let get = |name: &str| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .or_else(|| knobs::default_of(name).map(str::to_owned))
        };
        let database_url = get("DATABASE_URL").ok_or_else(|| {
            ConfigError("DATABASE_URL is required (postgres://user@host:port/db)".into())
        })?;
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(ConfigError(format!(
                "DATABASE_URL must start with postgres:// (got {})",
                redact(&database_url)
            )));
        }
        let nats_url = get("NATS_URL").unwrap_or_default();
        contracts::client::servers(&nats_url).map_err(|e| ConfigError(format!("NATS_URL: {e}")))?;
        let number = |name: &str, min: u64, max: u64| -> Result<u64, ConfigError> {
            match get(name) {
                None => Err(ConfigError(format!("{name} is required"))),
                Some(text) => match text.trim().parse::<u64>() {
                    Ok(v) if (min..=max).contains(&v) => Ok(v),
                    _ => Err(ConfigError(format!(
                        "{name}={text:?} must be a whole number between {min} and {max}"
                    ))),
                },
            }
        };
        let flag = |name: &str| -> Result<bool, ConfigError> {
            match get(name).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
                None | Some("false" | "0" | "no" | "off") => Ok(false),
                Some("true" | "1" | "yes" | "on") => Ok(true),
                Some(other) => Err(ConfigError(format!(
                    "{name}={other:?} must be true or false"
                ))),
            }
        };
        let millis = |name: &str| number(name, 1, 3_600_000).map(Duration::from_millis);
        let address = |name: &str, example: &str| -> Result<std::net::SocketAddr, ConfigError> {
            let text = get(name).unwrap_or_default();
            text.trim().parse().map_err(|_| {
                ConfigError(format!("{name}={text:?} must be host:port, e.g. {example}"))
            })
        };
        let config = Self {
            database_url,
            nats_url,
            service_name: get("SERVICE_NAME").unwrap_or_default(),
            queue_group: get("QUEUE_GROUP").unwrap_or_default(),
            db_pool_size: number("DB_POOL_SIZE", 1, 1000)? as u32,
            db_acquire_timeout: millis("DB_ACQUIRE_TIMEOUT_MS")?,
            db_statement_timeout: millis("DB_STATEMENT_TIMEOUT_MS")?,
            db_keepalive_secs: number("DB_KEEPALIVE_SECS", 1, 7200)?,
            create_queue_max: number("CREATE_QUEUE_MAX", 1, 1_000_000)? as usize,
            request_deadline: millis("REQUEST_DEADLINE_MS")?,
            shutdown_grace: millis("SHUTDOWN_GRACE_MS")?,
            course_timeout: millis("COURSE_TIMEOUT_MS")?,
            course_retries: number("COURSE_RETRIES", 0, 10)? as u32,
            breaker_threshold: number("BREAKER_THRESHOLD", 1, 10_000)? as u32,
            breaker_open: millis("BREAKER_OPEN_MS")?,
            cache_ttl: Duration::from_secs(number("CACHE_TTL_SECS", 0, 86_400 * 30)?),
            create_batch_max: number("CREATE_BATCH_MAX", 1, 10_000)? as usize,
            create_batch_wait: Duration::from_micros(number("CREATE_BATCH_WAIT_US", 0, 1_000_000)?),
            create_batch_workers: number("CREATE_BATCH_WORKERS", 1, 256)? as usize,
            cancel_cutoff_days: number("CANCEL_CUTOFF_DAYS", 0, 365)? as i64,
            max_in_flight: number("MAX_IN_FLIGHT", 1, 100_000)? as usize,
            update_requires_caller: flag("UPDATE_REQUIRES_CALLER")?,
            max_queued_bytes: number("MAX_QUEUED_MIB", 1, 65_536)? as usize * 1024 * 1024,
            max_reply_bytes: number("MAX_REPLY_MIB", 1, 65_536)? as usize * 1024 * 1024,
            nats_auth: {
                let mut given = Vec::new();
                match (get("NATS_USER"), get("NATS_PASSWORD")) {
                    (Some(user), Some(password)) => {
                        given.push(NatsLogin::UserPassword { user, password })
                    }
                    (None, None) => {}
                    _ => {
                        return Err(ConfigError(
                            "NATS_USER and NATS_PASSWORD must be given together".into(),
                        ))
                    }
                }
                given.extend(get("NATS_TOKEN").map(NatsLogin::Token));
                given.extend(get("NATS_NKEY").map(NatsLogin::Nkey));
                given.extend(get("NATS_CREDS").map(|p| NatsLogin::Creds(p.into())));
                if given.len() > 1 {
                    return Err(ConfigError(
                        "give at most one of NATS_USER/NATS_PASSWORD, NATS_TOKEN, NATS_NKEY, NATS_CREDS"
                            .into(),
                    ));
                }
                given.pop().unwrap_or_default()
            },
            nats_tls: {
                let ca = get("NATS_TLS_CA").map(std::path::PathBuf::from);
                let client = match (get("NATS_TLS_CERT"), get("NATS_TLS_KEY")) {
                    (Some(cert), Some(key)) => Some((cert.into(), key.into())),
                    (None, None) => None,
                    _ => {
                        return Err(ConfigError(
                            "NATS_TLS_CERT and NATS_TLS_KEY must be given together".into(),
                        ))
                    }
                };
                NatsTls {
                    required: flag("NATS_TLS_REQUIRED")? || ca.is_some() || client.is_some(),
                    ca,
                    client,
                }
            },
            idempotency_ttl: Duration::from_secs(number("IDEMPOTENCY_TTL_SECS", 1, 86_400 * 365)?),
            outbox_poll: millis("OUTBOX_POLL_MS")?,
            outbox_batch: number("OUTBOX_BATCH", 1, 10_000)? as i64,
            outbox_claim_gap: Duration::from_millis(number("OUTBOX_CLAIM_GAP_MS", 0, 10_000)?),
            outbox_lease: millis("OUTBOX_LEASE_MS")?,
            outbox_handoff_lease: millis("OUTBOX_HANDOFF_LEASE_MS")?,
            outbox_max_attempts: number("OUTBOX_MAX_ATTEMPTS", 1, 1_000_000)? as i32,
            outbox_retry_cap: millis("OUTBOX_RETRY_CAP_MS")?,
            outbox_keep_sent: Duration::from_secs(
                3600 * number("OUTBOX_KEEP_SENT_HOURS", 0, 24 * 3650)?,
            ),
            prune_interval: Duration::from_secs(number("PRUNE_INTERVAL_SECS", 1, 86_400)?),
            events_max_age: Duration::from_secs(
                3600 * number("EVENTS_MAX_AGE_HOURS", 1, 24 * 3650)?,
            ),
            events_max_bytes: number("EVENTS_MAX_MIB", 1, 1 << 20)? as i64 * 1024 * 1024,
            events_replicas: number("EVENTS_REPLICAS", 1, 5)? as usize,
            events_stream: get("EVENTS_STREAM").unwrap_or_default(),
            events_delivery: match get("EVENTS_DELIVERY").as_deref() {
                None | Some("") | Some("auto") => EventsDelivery::Auto,
                Some("jetstream") => EventsDelivery::JetStream,
                Some("core") => EventsDelivery::Core,
                Some(other) => {
                    return Err(ConfigError(format!(
                        "EVENTS_DELIVERY={other:?} must be auto, jetstream or core"
                    )))
                }
            },
            fault_point: match get("FAULT_POINT").as_deref() {
                None => None,
                Some("after-commit") => Some(FaultPoint::AfterCommit),
                Some("before-mark-sent") => Some(FaultPoint::BeforeMarkSent),
                Some(other) => {
                    return Err(ConfigError(format!(
                        "FAULT_POINT={other:?} must be after-commit or before-mark-sent"
                    )))
                }
            },
            fault_after: number("FAULT_AFTER", 1, u64::MAX)?,
            planted_bug: match get("PLANTED_BUG").as_deref() {
                None | Some("") => None,
                Some("skip-row-lock") => Some(PlantedBug::SkipRowLock),
                Some("drop-outbox") => Some(PlantedBug::DropOutbox),
                Some("accept-refusals") => Some(PlantedBug::AcceptRefusals),
                Some("refuse-keyed-retry") => Some(PlantedBug::RefuseKeyedRetry),
                Some("batch-shares-seats") => Some(PlantedBug::BatchSharesSeats),
                Some("one-nats-server") => Some(PlantedBug::OneNatsServer),
                Some("rerun-lost-commit") => Some(PlantedBug::RerunLostCommit),
                Some("write-abandoned") => Some(PlantedBug::WriteAbandoned),
                Some("jetstream-fallback") => Some(PlantedBug::JetstreamFallback),
                Some("probe-leak") => Some(PlantedBug::ProbeLeak),
                Some(other) => {
                    return Err(ConfigError(format!(
                        "PLANTED_BUG={other:?} must be skip-row-lock, drop-outbox, \
                         accept-refusals, refuse-keyed-retry, batch-shares-seats, one-nats-server, rerun-lost-commit, write-abandoned, jetstream-fallback or probe-leak"
                    )))
                }
            },
            http_addr: address("HTTP_ADDR", "0.0.0.0:8080")?,
            admin_addr: address("ADMIN_ADDR", "127.0.0.1:8081")?,
            admin_token: get("ADMIN_TOKEN"),
        };
        if !config.admin_addr.ip().is_loopback() && config.admin_token.is_none() {
            return Err(ConfigError(format!(
                "ADMIN_ADDR {} is reachable from other hosts: set ADMIN_TOKEN too, or keep it \
                 on loopback (127.0.0.1), since /outbox shows customers' bookings and redrive \
                 moves events",
                config.admin_addr
            )));
        }
        if config.admin_addr == config.http_addr && config.http_addr.port() != 0 {
            return Err(ConfigError(format!(
                "ADMIN_ADDR and HTTP_ADDR must differ (both {})",
                config.http_addr
            )));
        }
        if config.course_timeout >= config.request_deadline {
            return Err(ConfigError(format!(
                "COURSE_TIMEOUT_MS ({} ms) must be shorter than REQUEST_DEADLINE_MS ({} ms), or a \
                 course-service call outlives the request that made it",
                config.course_timeout.as_millis(),
                config.request_deadline.as_millis()
            )));
        }
        if config.outbox_lease <= config.course_timeout {
            return Err(ConfigError(format!(
                "OUTBOX_LEASE_MS ({} ms) must be longer than COURSE_TIMEOUT_MS ({} ms), or a slow delivery is sent twice",
                config.outbox_lease.as_millis(),
                config.course_timeout.as_millis()
            )));
        }
        if config.outbox_handoff_lease > config.outbox_lease {
            return Err(ConfigError(format!(
                "OUTBOX_HANDOFF_LEASE_MS ({} ms) must not be longer than OUTBOX_LEASE_MS ({} ms)",
                config.outbox_handoff_lease.as_millis(),
                config.outbox_lease.as_millis()
            )));
        }
        Ok(config)
    }
}

mod knobs;
mod parts;
pub use knobs::command;
pub use parts::{redact, EventsDelivery, NatsTls};

#[cfg(test)]
mod tests;
