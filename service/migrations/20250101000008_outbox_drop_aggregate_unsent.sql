-- no-transaction
-- Replaced by outbox_events_channel_unsent_idx: one index fewer to update per outbox row change.
DROP INDEX CONCURRENTLY IF EXISTS outbox_events_aggregate_unsent_idx;
