//! The booking events for notification consumers, built from the booking row as written, the
//! way the NestJS service fills them: `booking.confirmed` after a create, `booking.cancelled`
//! after a cancel.

use chrono::NaiveDateTime;
use contracts::events::{BookingCancelled, BookingConfirmed};
use contracts::time::iso_millis;
use contracts::Won;

use crate::store::{utc, BookingRow};

/// `booking.confirmed` for a booking just written.
pub(crate) fn confirmed(b: &BookingRow) -> BookingConfirmed {
    BookingConfirmed {
        booking_id: b.id,
        booking_number: b.booking_number.clone(),
        user_id: b.user_id,
        game_id: b.game_id,
        game_name: b.game_name.clone().unwrap_or_default(),
        front_nine_course_name: b.front_nine_course_name.clone().unwrap_or_default(),
        back_nine_course_name: b.back_nine_course_name.clone().unwrap_or_default(),
        booking_date: iso_millis::format(&utc(b.booking_date)),
        time_slot: b.start_time.clone(),
        player_count: b.player_count,
        total_price: Won(b.total_price),
        user_email: b.user_email.clone().unwrap_or_default(),
        user_name: b.user_name.clone().unwrap_or_default(),
    }
}

/// `booking.cancelled` for a booking cancelled at `at` with the caller's `reason`, if any.
pub(crate) fn cancelled(
    b: &BookingRow,
    reason: Option<&str>,
    at: NaiveDateTime,
) -> BookingCancelled {
    BookingCancelled {
        booking_id: b.id,
        booking_number: b.booking_number.clone(),
        user_id: b.user_id,
        game_id: b.game_id,
        game_name: b.game_name.clone().unwrap_or_default(),
        booking_date: iso_millis::format(&utc(b.booking_date)),
        time_slot: b.start_time.clone(),
        reason: reason.unwrap_or("No reason provided").to_owned(),
        cancelled_at: iso_millis::format(&utc(at)),
        user_email: b.user_email.clone().unwrap_or_default(),
        user_name: b.user_name.clone().unwrap_or_default(),
    }
}
