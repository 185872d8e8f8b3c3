-- no-transaction
-- A claim reads one channel's unsent rows. The old partial index led with the booking, so a
-- claim walked every unsent entry of both channels (and every dead entry of rows just marked
-- SENT); this one leads with the channel. Built concurrently so a large outbox keeps taking
-- writes. (One statement per file: CONCURRENTLY cannot share a transaction.)
CREATE INDEX CONCURRENTLY IF NOT EXISTS outbox_events_channel_unsent_idx
    ON outbox_events (channel, id) WHERE status <> 'SENT';
