-- Strict delivery (issue 11).
--
-- 1. No terminal state: a row that used up its attempts stays PENDING and is retried at a capped
--    interval, so the old FAILED rows are put back in line. A row course-service refused is
--    REJECTED, with the peer's answer in last_error, until an operator re-drives it.
-- 2. Lanes: course-service keeps one count per slot, so its messages for one slot must arrive in
--    the order the slot's transactions committed (a release of booking A before a book of booking
--    B that took A's seats), or the real course-service refuses the book. `lane` is the slot for
--    book/release rows and the booking for booking events; `channel` says which relay loop owns it.
ALTER TABLE outbox_events DROP CONSTRAINT IF EXISTS outbox_events_status_check;
UPDATE outbox_events SET status = 'PENDING' WHERE status = 'FAILED';
ALTER TABLE outbox_events ADD CONSTRAINT outbox_events_status_check
    CHECK (status IN ('PENDING', 'SENT', 'REJECTED'));

ALTER TABLE outbox_events ADD COLUMN IF NOT EXISTS channel TEXT;
ALTER TABLE outbox_events ADD COLUMN IF NOT EXISTS lane TEXT;
UPDATE outbox_events SET
    channel = CASE WHEN event_type LIKE 'gameTimeSlots.%' THEN 'course' ELSE 'events' END,
    lane = CASE WHEN event_type LIKE 'gameTimeSlots.%' THEN 'slot:' || (payload->>'timeSlotId')
                ELSE 'booking:' || aggregate_id END
    WHERE channel IS NULL OR lane IS NULL;
ALTER TABLE outbox_events ALTER COLUMN channel SET NOT NULL;
ALTER TABLE outbox_events ALTER COLUMN lane SET NOT NULL;

-- A replica of the previous version (during a rolling upgrade) writes rows without channel and
-- lane: fill them in the same way. Rows from this version carry both and skip the function.
CREATE OR REPLACE FUNCTION outbox_events_lane() RETURNS trigger AS $$
BEGIN
    IF NEW.channel IS NULL THEN
        NEW.channel := CASE WHEN NEW.event_type LIKE 'gameTimeSlots.%' THEN 'course' ELSE 'events' END;
    END IF;
    IF NEW.lane IS NULL THEN
        NEW.lane := CASE WHEN NEW.channel = 'course' THEN 'slot:' || (NEW.payload->>'timeSlotId')
                         ELSE 'booking:' || NEW.aggregate_id END;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS outbox_events_lane ON outbox_events;
CREATE TRIGGER outbox_events_lane BEFORE INSERT ON outbox_events
    FOR EACH ROW WHEN (NEW.channel IS NULL OR NEW.lane IS NULL)
    EXECUTE FUNCTION outbox_events_lane();

-- Claiming asks two questions of earlier rows: is one in this lane still in flight, and is one of
-- this booking on this channel not yet sent (whatever its state)?
DROP INDEX IF EXISTS outbox_events_aggregate_pending_idx;
CREATE INDEX IF NOT EXISTS outbox_events_lane_pending_idx
    ON outbox_events (lane, id) WHERE status = 'PENDING';
CREATE INDEX IF NOT EXISTS outbox_events_aggregate_unsent_idx
    ON outbox_events (aggregate_type, aggregate_id, channel, id) WHERE status <> 'SENT';
CREATE INDEX IF NOT EXISTS outbox_events_channel_pending_idx
    ON outbox_events (channel, next_attempt_at, id) WHERE status = 'PENDING';
