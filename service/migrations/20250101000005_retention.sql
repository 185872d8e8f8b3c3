-- no-transaction
-- Retention: delivered outbox rows are pruned after OUTBOX_KEEP_SENT_HOURS, found through this
-- partial index rather than a scan of the whole table. Built concurrently so a large outbox keeps
-- taking writes while it is built.
CREATE INDEX CONCURRENTLY IF NOT EXISTS outbox_events_sent_idx
    ON outbox_events (processed_at) WHERE status = 'SENT';
