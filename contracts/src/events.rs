//! Notification events booking-service publishes after a commit (seed §2.2, §6.5):
//! `booking.confirmed` and `booking.cancelled`. Each carries a stable event id in the
//! `Nats-Msg-Id` header so consumers can deduplicate.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::money::Won;
use crate::validate::{limits, Checker, Validate};

/// `booking.confirmed` payload (`BookingConfirmedEvent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BookingConfirmed {
    /// Booking id.
    pub booking_id: i32,
    /// Booking number.
    pub booking_number: String,
    /// Owner.
    pub user_id: i32,
    /// Game.
    pub game_id: i32,
    /// Game name.
    pub game_name: String,
    /// Front nine course name.
    pub front_nine_course_name: String,
    /// Back nine course name.
    pub back_nine_course_name: String,
    /// The day played, ISO 8601.
    pub booking_date: String,
    /// Tee time `HH:MM`.
    pub time_slot: String,
    /// Players.
    pub player_count: i32,
    /// Total price.
    pub total_price: Won,
    /// E-mail.
    pub user_email: String,
    /// Name.
    pub user_name: String,
}

impl Validate for BookingConfirmed {
    fn check(&self, c: &mut Checker) {
        c.id("bookingId", self.booking_id);
        c.text(
            "bookingNumber",
            &self.booking_number,
            true,
            limits::BOOKING_NUMBER,
        );
        c.id("userId", self.user_id);
        c.id("gameId", self.game_id);
        c.text("gameName", &self.game_name, false, limits::NAME);
        c.text(
            "frontNineCourseName",
            &self.front_nine_course_name,
            false,
            limits::NAME,
        );
        c.text(
            "backNineCourseName",
            &self.back_nine_course_name,
            false,
            limits::NAME,
        );
        c.instant("bookingDate", &self.booking_date);
        c.clock("timeSlot", &self.time_slot);
        c.range(
            "playerCount",
            self.player_count.into(),
            1,
            limits::MAX_PLAYERS,
        );
        c.email("userEmail", &self.user_email);
        c.text("userName", &self.user_name, true, limits::NAME);
    }
}

/// `booking.cancelled` payload (`BookingCancelledEvent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BookingCancelled {
    /// Booking id.
    pub booking_id: i32,
    /// Booking number.
    pub booking_number: String,
    /// Owner.
    pub user_id: i32,
    /// Game.
    pub game_id: i32,
    /// Game name.
    pub game_name: String,
    /// The day played, ISO 8601.
    pub booking_date: String,
    /// Tee time `HH:MM`.
    pub time_slot: String,
    /// Why.
    pub reason: String,
    /// When, ISO 8601.
    pub cancelled_at: String,
    /// E-mail.
    pub user_email: String,
    /// Name.
    pub user_name: String,
}

impl Validate for BookingCancelled {
    fn check(&self, c: &mut Checker) {
        c.id("bookingId", self.booking_id);
        c.text(
            "bookingNumber",
            &self.booking_number,
            true,
            limits::BOOKING_NUMBER,
        );
        c.id("userId", self.user_id);
        c.id("gameId", self.game_id);
        c.text("gameName", &self.game_name, false, limits::NAME);
        c.instant("bookingDate", &self.booking_date);
        c.clock("timeSlot", &self.time_slot);
        c.text("reason", &self.reason, false, limits::FREE_TEXT);
        c.instant("cancelledAt", &self.cancelled_at);
        c.email("userEmail", &self.user_email);
        c.text("userName", &self.user_name, true, limits::NAME);
    }
}
