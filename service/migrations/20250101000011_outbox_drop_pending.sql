-- no-transaction
-- Nothing reads PENDING rows by due time any more (claims read a window of the channel-led unsent
-- index). While `next_attempt_at` was indexed, every lease was a non-HOT update that wrote an entry
-- into every index of the table.
DROP INDEX CONCURRENTLY IF EXISTS outbox_events_pending_idx;
