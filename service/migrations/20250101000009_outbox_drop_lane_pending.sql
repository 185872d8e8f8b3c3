-- no-transaction
-- It answered "is an earlier row of this lane pending?" per row; the claim sorts the channel's
-- unsent rows once instead, so the index only cost an update per outbox row change.
DROP INDEX CONCURRENTLY IF EXISTS outbox_events_lane_pending_idx;
