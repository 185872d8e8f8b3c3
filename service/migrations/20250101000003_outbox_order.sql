-- The relay delivers one aggregate's course-service messages in order (a booking's release never
-- overtakes its book): a row is claimable only when no earlier row of the same aggregate and
-- channel is still pending. This index answers that question.
CREATE INDEX IF NOT EXISTS outbox_events_aggregate_pending_idx
    ON outbox_events (aggregate_type, aggregate_id, id) WHERE status = 'PENDING';
