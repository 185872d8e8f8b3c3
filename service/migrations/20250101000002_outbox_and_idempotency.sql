-- Our additions (new tables only, so the reference tables stay untouched):
-- the transactional outbox (seed §10.2) and idempotency keys for booking.create.

CREATE TABLE IF NOT EXISTS outbox_events (
    id              BIGSERIAL PRIMARY KEY,
    -- Stable event id, sent as the Nats-Msg-Id header; consumers deduplicate on it.
    event_id        UUID NOT NULL UNIQUE,
    aggregate_type  TEXT NOT NULL,
    aggregate_id    TEXT NOT NULL,
    -- The NATS subject (= NestJS pattern) to deliver to.
    event_type      TEXT NOT NULL,
    payload         JSONB NOT NULL,
    -- PENDING until delivered, then SENT; FAILED after too many attempts.
    status          TEXT NOT NULL DEFAULT 'PENDING' CHECK (status IN ('PENDING', 'SENT', 'FAILED')),
    retry_count     INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    -- A relay claims a row by pushing this forward (a lease); a crashed relay's rows come back.
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    processed_at    TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS outbox_events_pending_idx
    ON outbox_events (next_attempt_at, id) WHERE status = 'PENDING';

-- Wake relays right after a commit that wrote events.
CREATE OR REPLACE FUNCTION outbox_events_notify() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('outbox_events', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DROP TRIGGER IF EXISTS outbox_events_notify ON outbox_events;
CREATE TRIGGER outbox_events_notify AFTER INSERT ON outbox_events
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_events_notify();

CREATE TABLE IF NOT EXISTS idempotency_keys (
    user_id      INTEGER NOT NULL,
    key          TEXT NOT NULL,
    -- Hash of the request body: the same key with another body is refused (BUS_003).
    request_hash TEXT NOT NULL,
    booking_id   INTEGER NOT NULL REFERENCES bookings (id),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (user_id, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_expires_at_idx ON idempotency_keys (expires_at);
