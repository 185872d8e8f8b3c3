-- The reference booking-service schema (Prisma, PostgreSQL): table, column, type and enum names
-- are kept exactly so this service can run on an existing database. Timestamps are
-- `timestamp(3) without time zone` holding UTC, as Prisma writes them; money is numeric(10,2)
-- holding whole won.

DO $$ BEGIN
    CREATE TYPE "BookingStatus" AS ENUM ('PENDING', 'CONFIRMED', 'CANCELLED', 'COMPLETED', 'NO_SHOW');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

DO $$ BEGIN
    CREATE TYPE "PaymentStatus" AS ENUM ('PENDING', 'PAID', 'FAILED', 'REFUNDED');
EXCEPTION WHEN duplicate_object THEN NULL; END $$;

CREATE TABLE IF NOT EXISTS bookings (
    id                     SERIAL PRIMARY KEY,
    booking_number         TEXT NOT NULL,
    user_id                INTEGER NOT NULL,
    game_id                INTEGER NOT NULL,
    game_time_slot_id      INTEGER NOT NULL,
    game_name              TEXT,
    game_code              TEXT,
    front_nine_course_id   INTEGER,
    front_nine_course_name TEXT,
    back_nine_course_id    INTEGER,
    back_nine_course_name  TEXT,
    club_id                INTEGER,
    club_name              TEXT,
    booking_date           TIMESTAMP(3) NOT NULL,
    start_time             TEXT NOT NULL,
    end_time               TEXT NOT NULL,
    player_count           INTEGER NOT NULL DEFAULT 1,
    price_per_person       DECIMAL(10,2) NOT NULL,
    service_fee            DECIMAL(10,2) NOT NULL DEFAULT 0,
    total_price            DECIMAL(10,2) NOT NULL,
    status                 "BookingStatus" NOT NULL DEFAULT 'PENDING',
    payment_method         TEXT,
    special_requests       TEXT,
    notes                  TEXT,
    user_email             TEXT,
    user_name              TEXT,
    user_phone             TEXT,
    created_at             TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at             TIMESTAMP(3) NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS bookings_booking_number_key ON bookings (booking_number);
CREATE INDEX IF NOT EXISTS bookings_user_id_idx ON bookings (user_id);
CREATE INDEX IF NOT EXISTS bookings_game_time_slot_id_idx ON bookings (game_time_slot_id);
CREATE INDEX IF NOT EXISTS bookings_booking_date_idx ON bookings (booking_date);

CREATE TABLE IF NOT EXISTS payments (
    id             SERIAL PRIMARY KEY,
    booking_id     INTEGER NOT NULL REFERENCES bookings (id) ON UPDATE CASCADE ON DELETE RESTRICT,
    amount         DECIMAL(10,2) NOT NULL,
    payment_method TEXT NOT NULL,
    payment_status "PaymentStatus" NOT NULL DEFAULT 'PENDING',
    transaction_id TEXT,
    paid_at        TIMESTAMP(3),
    created_at     TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at     TIMESTAMP(3) NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_booking_id_idx ON payments (booking_id);

CREATE TABLE IF NOT EXISTS booking_history (
    id         SERIAL PRIMARY KEY,
    booking_id INTEGER NOT NULL REFERENCES bookings (id) ON UPDATE CASCADE ON DELETE RESTRICT,
    action     TEXT NOT NULL,
    details    JSONB,
    user_id    INTEGER NOT NULL,
    created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE INDEX IF NOT EXISTS booking_history_booking_id_idx ON booking_history (booking_id);

CREATE TABLE IF NOT EXISTS game_cache (
    id                     SERIAL PRIMARY KEY,
    game_id                INTEGER NOT NULL,
    name                   TEXT NOT NULL,
    code                   TEXT NOT NULL,
    description            TEXT,
    front_nine_course_id   INTEGER NOT NULL,
    front_nine_course_name TEXT NOT NULL,
    back_nine_course_id    INTEGER NOT NULL,
    back_nine_course_name  TEXT NOT NULL,
    total_holes            INTEGER NOT NULL DEFAULT 18,
    estimated_duration     INTEGER NOT NULL DEFAULT 180,
    break_duration         INTEGER NOT NULL DEFAULT 10,
    max_players            INTEGER NOT NULL DEFAULT 4,
    base_price             DECIMAL(10,2) NOT NULL,
    weekend_price          DECIMAL(10,2),
    holiday_price          DECIMAL(10,2),
    club_id                INTEGER NOT NULL,
    club_name              TEXT NOT NULL,
    is_active              BOOLEAN NOT NULL DEFAULT true,
    last_sync_at           TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    created_at             TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at             TIMESTAMP(3) NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS game_cache_game_id_key ON game_cache (game_id);

CREATE TABLE IF NOT EXISTS game_time_slot_cache (
    id                     SERIAL PRIMARY KEY,
    game_time_slot_id      INTEGER NOT NULL,
    game_id                INTEGER NOT NULL,
    game_name              TEXT,
    game_code              TEXT,
    front_nine_course_name TEXT,
    back_nine_course_name  TEXT,
    club_id                INTEGER,
    club_name              TEXT,
    date                   DATE NOT NULL,
    start_time             TEXT NOT NULL,
    end_time               TEXT NOT NULL,
    max_players            INTEGER NOT NULL DEFAULT 4,
    booked_players         INTEGER NOT NULL DEFAULT 0,
    available_players      INTEGER NOT NULL DEFAULT 4,
    is_available           BOOLEAN NOT NULL DEFAULT true,
    price                  DECIMAL(10,2) NOT NULL,
    is_premium             BOOLEAN NOT NULL DEFAULT false,
    status                 TEXT NOT NULL DEFAULT 'AVAILABLE',
    last_sync_at           TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    created_at             TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at             TIMESTAMP(3) NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS game_time_slot_cache_game_time_slot_id_key ON game_time_slot_cache (game_time_slot_id);
CREATE INDEX IF NOT EXISTS game_time_slot_cache_game_id_date_idx ON game_time_slot_cache (game_id, date);
