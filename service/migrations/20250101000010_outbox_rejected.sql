-- no-transaction
-- A claim looks at a bounded window of a channel's first PENDING rows and asks, of each, whether an
-- earlier row of its booking was refused. Refused (REJECTED) rows are few and wait for an operator;
-- this small index answers that question without reading the backlog.
CREATE INDEX CONCURRENTLY IF NOT EXISTS outbox_events_rejected_idx
    ON outbox_events (aggregate_type, aggregate_id, channel, id) WHERE status = 'REJECTED';
