//! Every setting the service reads, with its default and a line of help: the one list that
//! `booking-service --help` prints and that `Config::from_lookup` takes its defaults from.

/// One setting: its environment variable, its default (none: unset), and what it does.
pub(crate) struct Knob {
    pub(crate) env: &'static str,
    pub(crate) default: Option<&'static str>,
    pub(crate) help: &'static str,
}

const fn knob(env: &'static str, default: Option<&'static str>, help: &'static str) -> Knob {
    Knob { env, default, help }
}

/// The settings, in the order `--help` lists them.
pub(crate) const KNOBS: &[Knob] = &[
    knob("DATABASE_URL", None, "PostgreSQL database, postgres://user:password@host:port/db (required)"),
    knob("NATS_URL", Some("nats://127.0.0.1:4222"), "NATS server(s), comma-separated"),
    knob("SERVICE_NAME", Some("booking-service"), "NATS client name and log field"),
    knob("QUEUE_GROUP", Some("booking-service"), "replicas in one queue group share requests"),
    knob("HTTP_ADDR", Some("0.0.0.0:8080"), "/metrics, /healthz, /readyz (port 0 picks one)"),
    knob("ADMIN_ADDR", Some("127.0.0.1:8081"), "the operator's /outbox and /outbox/redrive (port 0 picks one); an address other than loopback requires ADMIN_TOKEN"),
    knob("ADMIN_TOKEN", None, "when set, ADMIN_ADDR's requests must carry Authorization: Bearer <token> (else 401)"),
    knob("DB_POOL_SIZE", Some("16"), "PostgreSQL connections for requests (1-1000); the relay adds up to 6 of its own"),
    knob("DB_ACQUIRE_TIMEOUT_MS", Some("5000"), "longest wait for a pooled connection"),
    knob("DB_STATEMENT_TIMEOUT_MS", Some("5000"), "PostgreSQL statement_timeout on every pooled connection; a create batch's worker gives up on its transaction after three times this (its callers hear outcome unknown)"),
    knob("DB_KEEPALIVE_SECS", Some("10"), "TCP keepalive on the database connections (the server's side): idle seconds before the first probe"),
    knob("REQUEST_DEADLINE_MS", Some("10000"), "longest a request is worked on; past it the caller gets SYS_002 at once (the database, or course-service, did not answer), though the work may still complete"),
    knob("SHUTDOWN_GRACE_MS", Some("20000"), "on SIGTERM, the longest wait for requests in flight, the relay, the NATS drain and the pools to finish; then the process exits and logs what was unfinished (keep below Kubernetes' terminationGracePeriodSeconds)"),
    knob("COURSE_TIMEOUT_MS", Some("5000"), "per-call timeout to course-service (shorter than REQUEST_DEADLINE_MS)"),
    knob("COURSE_RETRIES", Some("2"), "extra attempts after a failed course-service call (0-10)"),
    knob("BREAKER_THRESHOLD", Some("5"), "consecutive failed course-service attempts that open the breaker"),
    knob("BREAKER_OPEN_MS", Some("10000"), "how long an open breaker fails fast before a probe"),
    knob("CACHE_TTL_SECS", Some("300"), "a cached slot older than this is fetched again from course-service when booked"),
    knob("CREATE_BATCH_MAX", Some("64"), "most creates committed in one transaction (1 turns group commit off)"),
    knob("CREATE_BATCH_WAIT_US", Some("0"), "longest wait for more creates once one is queued (0: only what arrived meanwhile, and a create that finds nothing committing goes straight through; above 0 every create queues)"),
    knob("CREATE_BATCH_WORKERS", Some("2"), "create transactions running at once per replica"),
    knob("CREATE_QUEUE_MAX", Some("1024"), "creates waiting for a group-commit worker; past it a create is refused SYS_004 at once"),
    knob("CANCEL_CUTOFF_DAYS", Some("3"), "cancelling is refused closer than this to the booking date"),
    knob("MAX_IN_FLIGHT", Some("512"), "requests handled at once; more wait in the queue"),
    knob("MAX_QUEUED_MIB", Some("32"), "request bodies waiting for a handler; past it a request is refused SYS_004 at once"),
    knob("MAX_REPLY_MIB", Some("16"), "replies being built or sent at once, by the most each may take (a full findByUserId page: 900 KiB); more wait their turn"),
    knob("UPDATE_REQUIRES_CALLER", Some("false"), "refuse a booking.update without the caller's userId (BUS_001)"),
    knob("IDEMPOTENCY_TTL_SECS", Some("86400"), "how long an idempotency key is remembered"),
    knob("NATS_USER", None, "NATS user (with NATS_PASSWORD); at most one of user, token, nkey, creds"),
    knob("NATS_PASSWORD", None, "NATS password (with NATS_USER)"),
    knob("NATS_TOKEN", None, "NATS token"),
    knob("NATS_NKEY", None, "NATS nkey user seed"),
    knob("NATS_CREDS", None, "NATS .creds file"),
    knob("NATS_TLS_CA", None, "PEM root certificate(s) for NATS (implies TLS)"),
    knob("NATS_TLS_CERT", None, "client certificate for NATS (with NATS_TLS_KEY; implies TLS)"),
    knob("NATS_TLS_KEY", None, "client key for NATS (with NATS_TLS_CERT)"),
    knob("NATS_TLS_REQUIRED", Some("false"), "refuse a plaintext NATS connection"),
    knob("OUTBOX_POLL_MS", Some("1000"), "relay poll interval, a back-up to its wake-ups"),
    knob("OUTBOX_BATCH", Some("256"), "outbox rows a relay loop has in flight at most"),
    knob("OUTBOX_CLAIM_GAP_MS", Some("20"), "shortest time between two claims of one relay loop (0: none)"),
    knob("OUTBOX_LEASE_MS", Some("30000"), "how long a claimed row is reserved for its relay (longer than COURSE_TIMEOUT_MS)"),
    knob("OUTBOX_HANDOFF_LEASE_MS", Some("2000"), "how long a booking event handed to its own relay is reserved for it (at most OUTBOX_LEASE_MS)"),
    knob("OUTBOX_MAX_ATTEMPTS", Some("50"), "attempts after which a row counts as stuck (logged, gauged, still retried)"),
    knob("OUTBOX_RETRY_CAP_MS", Some("60000"), "longest wait between two attempts of one row"),
    knob("OUTBOX_KEEP_SENT_HOURS", Some("168"), "delivered outbox rows are kept this long, then pruned"),
    knob("PRUNE_INTERVAL_SECS", Some("600"), "how often delivered rows and expired idempotency keys are pruned"),
    knob("EVENTS_STREAM", Some("BOOKING_EVENTS"), "JetStream stream for booking events"),
    knob("EVENTS_DELIVERY", Some("auto"), "booking events: auto (JetStream; core NATS only when the server says it has no JetStream), jetstream (never core) or core"),
    knob("EVENTS_MAX_AGE_HOURS", Some("168"), "the events stream keeps a message this long"),
    knob("EVENTS_MAX_MIB", Some("1024"), "the events stream's size limit; the oldest go first"),
    knob("EVENTS_REPLICAS", Some("1"), "copies of the events stream on a NATS cluster (1-5; 3 survives the loss of a node)"),
    knob("FAULT_POINT", None, "chaos runs only: abort at after-commit or before-mark-sent"),
    knob("FAULT_AFTER", Some("1"), "chaos runs only: abort the Nth time FAULT_POINT is reached"),
    knob("PLANTED_BUG", None, "checker proofs only: skip-row-lock, drop-outbox, accept-refusals, refuse-keyed-retry, batch-shares-seats"),
];

/// The default of `env`, if it has one.
pub(crate) fn default_of(env: &str) -> Option<&'static str> {
    KNOBS.iter().find(|k| k.env == env).and_then(|k| k.default)
}

/// `booking-service`'s command line: `--help` lists every setting with its default, `--version`
/// the version; each setting is also a flag (`--db-pool-size 32`), which wins over the
/// environment.
pub fn command() -> clap::Command {
    let mut cmd = clap::Command::new("booking-service")
        .version(env!("CARGO_PKG_VERSION"))
        .about(
            "Park-golf booking-service: booking.* requests over NATS, PostgreSQL, an outbox relay",
        )
        .after_help(
            "Every setting is read from its environment variable or its flag; the flag wins. \
             RUST_LOG sets the log filter (default info).",
        );
    for k in KNOBS {
        let long = k.env.to_ascii_lowercase().replace('_', "-");
        let mut arg = clap::Arg::new(k.env)
            .long(long)
            .env(k.env)
            .value_name("VALUE")
            .help(k.help);
        // URLs may carry passwords.
        if ["PASSWORD", "TOKEN", "NKEY", "URL"]
            .iter()
            .any(|s| k.env.contains(s))
        {
            arg = arg.hide_env_values(true);
        }
        if let Some(default) = k.default {
            arg = arg.default_value(default);
        }
        cmd = cmd.arg(arg);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_well_formed() {
        command().debug_assert();
    }

    #[test]
    fn help_lists_every_setting_with_its_default() {
        let help = command().render_long_help().to_string();
        for k in KNOBS {
            assert!(help.contains(k.env), "{} missing from --help", k.env);
        }
        assert!(help.contains("[default: 16]"), "{help}");
    }
}
