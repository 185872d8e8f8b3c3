-- no-transaction
-- The second index on `next_attempt_at` (see the previous migration), dropped for the same reason.
DROP INDEX CONCURRENTLY IF EXISTS outbox_events_channel_pending_idx;
