-- The relay is woken in process by its own replica's commits (service/src/wake.rs). A NOTIFY
-- from every transaction that writes an outbox row takes PostgreSQL's database-wide notify lock
-- at commit and holds it across the WAL flush, so concurrent bookings committed one at a time.
-- `NOTIFY outbox_events` sent by anything else still wakes every relay.
DROP TRIGGER IF EXISTS outbox_events_notify ON outbox_events;
DROP FUNCTION IF EXISTS outbox_events_notify();
