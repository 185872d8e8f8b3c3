//! Payloads of booking-service's own request handlers (`booking.*`) and the booking it returns.
//!
//! Field names are the reference's DTOs (`CreateBookingRequestDto`, `UpdateBookingDto`,
//! `SearchBookingDto`, `BookingResponseDto`, `GameTimeSlotAvailabilityDto`), camelCase on the wire.

use chrono::{DateTime, NaiveDate, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::money::Won;
use crate::time::{iso_millis, iso_millis_opt};
use crate::validate::{limits, Checker, Validate};

/// A booking's status (`"BookingStatus"` enum in PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BookingStatus {
    /// Created, payment not yet settled. Holds seats.
    Pending,
    /// Confirmed. Holds seats.
    Confirmed,
    /// Cancelled. Releases seats.
    Cancelled,
    /// Played.
    Completed,
    /// The players did not show up.
    NoShow,
}

impl BookingStatus {
    /// Whether a booking in this status holds seats in its slot (invariant I1 counts these).
    pub fn holds_seats(self) -> bool {
        matches!(self, BookingStatus::Pending | BookingStatus::Confirmed)
    }

    /// Parses a PostgreSQL enum label.
    pub fn parse(label: &str) -> Option<BookingStatus> {
        [
            BookingStatus::Pending,
            BookingStatus::Confirmed,
            BookingStatus::Cancelled,
            BookingStatus::Completed,
            BookingStatus::NoShow,
        ]
        .into_iter()
        .find(|s| s.as_str() == label)
    }

    /// The PostgreSQL enum label.
    pub fn as_str(self) -> &'static str {
        match self {
            BookingStatus::Pending => "PENDING",
            BookingStatus::Confirmed => "CONFIRMED",
            BookingStatus::Cancelled => "CANCELLED",
            BookingStatus::Completed => "COMPLETED",
            BookingStatus::NoShow => "NO_SHOW",
        }
    }
}

/// A payment's status (`"PaymentStatus"` enum in PostgreSQL).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    /// Not yet paid.
    Pending,
    /// Paid.
    Paid,
    /// Payment failed.
    Failed,
    /// Paid and refunded.
    Refunded,
}

impl PaymentStatus {
    /// Parses a PostgreSQL enum label.
    pub fn parse(label: &str) -> Option<PaymentStatus> {
        match label {
            "PENDING" => Some(PaymentStatus::Pending),
            "PAID" => Some(PaymentStatus::Paid),
            "FAILED" => Some(PaymentStatus::Failed),
            "REFUNDED" => Some(PaymentStatus::Refunded),
            _ => None,
        }
    }
}

/// `booking.create` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateBookingRequest {
    /// The user booking.
    pub user_id: i32,
    /// The course-service time slot.
    pub game_time_slot_id: i32,
    /// Players in this booking, `1..=maxPlayers` of the slot.
    pub player_count: i32,
    /// Payment method, e.g. `card`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_method: Option<String>,
    /// Free-text request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub special_requests: Option<String>,
    /// The user's e-mail.
    pub user_email: String,
    /// The user's name.
    pub user_name: String,
    /// The user's phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_phone: Option<String>,
    /// Client-chosen key: a retry with the same key and user returns the first booking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

impl Validate for CreateBookingRequest {
    fn check(&self, c: &mut Checker) {
        c.id("userId", self.user_id);
        c.id("gameTimeSlotId", self.game_time_slot_id);
        c.range(
            "playerCount",
            self.player_count.into(),
            1,
            limits::MAX_PLAYERS,
        );
        c.opt_text(
            "paymentMethod",
            self.payment_method.as_deref(),
            limits::PAYMENT_METHOD,
        );
        c.opt_text(
            "specialRequests",
            self.special_requests.as_deref(),
            limits::FREE_TEXT,
        );
        c.email("userEmail", &self.user_email);
        c.text("userName", &self.user_name, true, limits::NAME);
        c.opt_text("userPhone", self.user_phone.as_deref(), limits::PHONE);
        if let Some(key) = &self.idempotency_key {
            c.text("idempotencyKey", key, true, limits::IDEMPOTENCY_KEY);
        }
    }
}

/// `booking.findById` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FindById {
    /// The booking id.
    pub id: i32,
}

impl Validate for FindById {
    fn check(&self, c: &mut Checker) {
        c.id("id", self.id);
    }
}

/// `booking.findByNumber` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FindByNumber {
    /// The booking number, `BK-XXXXXXXX-XXXX`.
    pub booking_number: String,
}

impl Validate for FindByNumber {
    fn check(&self, c: &mut Checker) {
        c.text(
            "bookingNumber",
            &self.booking_number,
            true,
            limits::BOOKING_NUMBER,
        );
    }
}

/// `booking.findByUserId` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FindByUserId {
    /// The user id.
    pub user_id: i32,
    /// 1-based page, newest bookings first (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<i64>,
    /// Bookings per page (default and most: [`limits::MAX_USER_BOOKINGS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

impl Validate for FindByUserId {
    fn check(&self, c: &mut Checker) {
        c.id("userId", self.user_id);
        if let Some(page) = self.page {
            c.range("page", page, 1, i64::from(i32::MAX));
        }
        if let Some(limit) = self.limit {
            c.range("limit", limit, 1, limits::MAX_USER_BOOKINGS);
        }
    }
}

/// Sort key of `booking.search`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SortBy {
    /// By the day played.
    BookingDate,
    /// By creation time (the default).
    CreatedAt,
    /// By total price.
    TotalPrice,
}

/// Sort direction of `booking.search`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    /// Ascending.
    Asc,
    /// Descending (the default).
    Desc,
}

/// Time window of `booking.search`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TimeFilter {
    /// Booking date today or later.
    Upcoming,
    /// Booking date before today.
    Past,
    /// No time window (the default).
    All,
}

/// `booking.search` request; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SearchBookings {
    /// Page number from 1 (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<i64>,
    /// Page size (default 10, at most 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// Only bookings in this status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<BookingStatus>,
    /// Only this game.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub game_id: Option<i32>,
    /// Only this club.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub club_id: Option<i32>,
    /// Only this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i32>,
    /// Booking date on or after (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_date: Option<NaiveDate>,
    /// Booking date on or before (`YYYY-MM-DD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<NaiveDate>,
    /// Sort key (default `createdAt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_by: Option<SortBy>,
    /// Sort direction (default `desc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort_order: Option<SortOrder>,
    /// Time window (default `all`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_filter: Option<TimeFilter>,
}

impl Validate for SearchBookings {
    fn check(&self, c: &mut Checker) {
        if let Some(page) = self.page {
            c.range("page", page, 1, i64::from(i32::MAX));
        }
        if let Some(limit) = self.limit {
            c.range("limit", limit, 1, limits::MAX_PAGE_SIZE);
        }
        for (field, id) in [
            ("gameId", self.game_id),
            ("clubId", self.club_id),
            ("userId", self.user_id),
        ] {
            if let Some(id) = id {
                c.id(field, id);
            }
        }
        if let Some(start) = self.start_date {
            c.day("startDate", start);
        }
        if let Some(end) = self.end_date {
            c.day("endDate", end);
        }
        if let (Some(start), Some(end)) = (self.start_date, self.end_date) {
            if start > end {
                c.fail("startDate", "must not be after endDate");
            }
        }
    }
}

/// The changes of `booking.update`; absent fields stay as they are. Only what a user may change is
/// accepted: any other field (`status`, `totalPrice`, `userId`, …) is refused, not ignored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateBookingDto {
    /// New number of players; capacity is re-checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub player_count: Option<i32>,
    /// New free-text request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub special_requests: Option<String>,
    /// New phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_phone: Option<String>,
}

impl Validate for UpdateBookingDto {
    fn check(&self, c: &mut Checker) {
        if let Some(count) = self.player_count {
            c.range("playerCount", count.into(), 1, limits::MAX_PLAYERS);
        }
        c.opt_text(
            "specialRequests",
            self.special_requests.as_deref(),
            limits::FREE_TEXT,
        );
        c.opt_text("userPhone", self.user_phone.as_deref(), limits::PHONE);
    }
}

/// `booking.update` request: `{id, dto}` as the reference's gateway sends it, plus the caller's
/// `userId` at the top level (as in `booking.cancel`): when given, only the owner may update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct UpdateBookingRequest {
    /// The booking id.
    pub id: i32,
    /// The user asking; when present it must own the booking.
    #[serde(rename = "userId", default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i32>,
    /// The changes.
    pub dto: UpdateBookingDto,
}

impl Validate for UpdateBookingRequest {
    fn check(&self, c: &mut Checker) {
        c.id("id", self.id);
        if let Some(user) = self.user_id {
            c.id("userId", user);
        }
        c.nested("dto", &self.dto);
    }
}

/// `booking.cancel` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CancelBookingRequest {
    /// The booking id.
    pub id: i32,
    /// The user asking; must own the booking.
    pub user_id: i32,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Validate for CancelBookingRequest {
    fn check(&self, c: &mut Checker) {
        c.id("id", self.id);
        c.id("userId", self.user_id);
        c.opt_text("reason", self.reason.as_deref(), limits::FREE_TEXT);
    }
}

/// `booking.gameTimeSlots.availability` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AvailabilityRequest {
    /// The game.
    pub game_id: i32,
    /// The day, `YYYY-MM-DD`.
    pub date: NaiveDate,
}

impl Validate for AvailabilityRequest {
    fn check(&self, c: &mut Checker) {
        c.id("gameId", self.game_id);
        c.day("date", self.date);
    }
}

/// A payment row of a booking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Payment {
    /// Payment id.
    pub id: i32,
    /// The booking paid for.
    pub booking_id: i32,
    /// Amount in whole won.
    pub amount: Won,
    /// Payment method.
    pub payment_method: String,
    /// Status.
    pub payment_status: PaymentStatus,
    /// Payment gateway transaction id.
    #[serde(default)]
    pub transaction_id: Option<String>,
    /// When it was paid.
    #[serde(default, with = "iso_millis_opt")]
    #[schemars(with = "Option<String>")]
    pub paid_at: Option<DateTime<Utc>>,
    /// Created.
    #[serde(with = "iso_millis")]
    #[schemars(with = "String")]
    pub created_at: DateTime<Utc>,
    /// Last changed.
    #[serde(with = "iso_millis")]
    #[schemars(with = "String")]
    pub updated_at: DateTime<Utc>,
}

/// A history row of a booking.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BookingHistoryEntry {
    /// History id.
    pub id: i32,
    /// The booking.
    pub booking_id: i32,
    /// `CREATED`, `UPDATED`, `CANCELLED`, ...
    pub action: String,
    /// What changed.
    #[serde(default)]
    pub details: Option<serde_json::Value>,
    /// Who did it.
    pub user_id: i32,
    /// When.
    #[serde(with = "iso_millis")]
    #[schemars(with = "String")]
    pub created_at: DateTime<Utc>,
}

/// Most bytes a booking takes in a reply without its history: every text the service writes at
/// its limit in four-byte characters, with its payment.
pub const LISTED_BOOKING_BYTES: usize = 9 * 1024;

/// Most bytes one history entry takes in a reply: an update's free text and phone, or a cancel's
/// reason, in four-byte characters.
pub const HISTORY_ENTRY_BYTES: usize = 4608;

/// Most bytes a booking takes in a reply with its newest history entries.
pub const BOOKING_BYTES: usize =
    LISTED_BOOKING_BYTES + limits::HISTORY_IN_REPLY as usize * HISTORY_ENTRY_BYTES;

/// A booking as every `booking.*` handler returns it (`BookingResponseDto`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BookingResponse {
    /// Booking id.
    pub id: i32,
    /// `BK-XXXXXXXX-XXXX`.
    pub booking_number: String,
    /// Owner.
    pub user_id: i32,
    /// Game.
    pub game_id: i32,
    /// Time slot.
    pub game_time_slot_id: i32,
    /// Game name.
    pub game_name: Option<String>,
    /// Game code.
    pub game_code: Option<String>,
    /// Front nine course id.
    pub front_nine_course_id: Option<i32>,
    /// Front nine course name.
    pub front_nine_course_name: Option<String>,
    /// Back nine course id.
    pub back_nine_course_id: Option<i32>,
    /// Back nine course name.
    pub back_nine_course_name: Option<String>,
    /// Club id.
    pub club_id: Option<i32>,
    /// Club name.
    pub club_name: Option<String>,
    /// The day played, midnight UTC, ISO 8601.
    #[serde(with = "iso_millis")]
    #[schemars(with = "String")]
    pub booking_date: DateTime<Utc>,
    /// Tee time `HH:MM`.
    pub start_time: String,
    /// End time `HH:MM`.
    pub end_time: String,
    /// Players.
    pub player_count: i32,
    /// Price per player.
    pub price_per_person: Won,
    /// `floor(pricePerPerson * playerCount * 3%)`.
    pub service_fee: Won,
    /// `pricePerPerson * playerCount + serviceFee`.
    pub total_price: Won,
    /// Status.
    pub status: BookingStatus,
    /// Payment method.
    pub payment_method: Option<String>,
    /// Free-text request.
    pub special_requests: Option<String>,
    /// E-mail.
    pub user_email: Option<String>,
    /// Name.
    pub user_name: Option<String>,
    /// Phone.
    pub user_phone: Option<String>,
    /// Payments, newest last.
    #[serde(default)]
    pub payments: Vec<Payment>,
    /// History, newest first: the newest 50 entries (`limits::HISTORY_IN_REPLY`), fewer when the
    /// connection's `max_payload` cannot carry that many; lists carry none.
    #[serde(default)]
    pub histories: Vec<BookingHistoryEntry>,
    /// How many history entries the booking has, of which `histories` carries the newest; present
    /// wherever `histories` is loaded (not in lists).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_total: Option<i64>,
    /// Created.
    #[serde(with = "iso_millis")]
    #[schemars(with = "String")]
    pub created_at: DateTime<Utc>,
    /// Last changed.
    #[serde(with = "iso_millis")]
    #[schemars(with = "String")]
    pub updated_at: DateTime<Utc>,
    /// Whether the owner may still cancel it (status and cut-off); set by `booking.search` and
    /// `booking.findByUserId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub can_cancel: Option<bool>,
}

impl Validate for BookingResponse {
    fn check(&self, c: &mut Checker) {
        c.id("id", self.id);
        c.text(
            "bookingNumber",
            &self.booking_number,
            true,
            limits::BOOKING_NUMBER,
        );
        c.range(
            "playerCount",
            self.player_count.into(),
            1,
            limits::MAX_PLAYERS,
        );
    }
}

/// One slot of `booking.gameTimeSlots.availability`, from the local cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlotAvailability {
    /// Cache row id.
    pub id: i32,
    /// Course-service slot id.
    pub game_time_slot_id: i32,
    /// Game.
    pub game_id: i32,
    /// Game name.
    pub game_name: Option<String>,
    /// Game code.
    pub game_code: Option<String>,
    /// Front nine course name.
    pub front_nine_course_name: Option<String>,
    /// Back nine course name.
    pub back_nine_course_name: Option<String>,
    /// Club id.
    pub club_id: Option<i32>,
    /// Club name.
    pub club_name: Option<String>,
    /// Day.
    pub date: NaiveDate,
    /// Tee time.
    pub start_time: String,
    /// End time.
    pub end_time: String,
    /// Capacity.
    pub max_players: i32,
    /// Seats held by PENDING and CONFIRMED bookings.
    pub booked_players: i32,
    /// `maxPlayers - bookedPlayers`.
    pub available_players: i32,
    /// Whether it can be booked now.
    pub is_available: bool,
    /// Price per player.
    pub price: Won,
    /// Premium slot.
    pub is_premium: bool,
    /// `AVAILABLE`, `FULLY_BOOKED` or `CLOSED`.
    pub status: crate::course::SlotStatus,
}

impl Validate for SlotAvailability {
    fn check(&self, c: &mut Checker) {
        c.id("gameTimeSlotId", self.game_time_slot_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` four-byte characters: the longest text of `n` characters in UTF-8.
    fn widest(n: usize) -> String {
        "😀".repeat(n)
    }

    /// A booking with every text at its limit in four-byte characters, its payment, and
    /// [`limits::HISTORY_IN_REPLY`] entries each as large as an update or a cancel records.
    fn largest_booking() -> BookingResponse {
        let at = DateTime::<Utc>::MAX_UTC;
        let name = || Some(widest(limits::NAME));
        let entry = |id| BookingHistoryEntry {
            id,
            booking_id: i32::MAX,
            action: "UPDATED".into(),
            details: Some(serde_json::json!({
                "playerCount": limits::MAX_PLAYERS,
                "specialRequests": widest(limits::FREE_TEXT),
                "userPhone": widest(limits::PHONE),
            })),
            user_id: i32::MAX,
            created_at: at,
        };
        BookingResponse {
            id: i32::MAX,
            booking_number: widest(limits::BOOKING_NUMBER),
            user_id: i32::MAX,
            game_id: i32::MAX,
            game_time_slot_id: i32::MAX,
            game_name: name(),
            game_code: Some(widest(limits::CODE)),
            front_nine_course_id: Some(i32::MAX),
            front_nine_course_name: name(),
            back_nine_course_id: Some(i32::MAX),
            back_nine_course_name: name(),
            club_id: Some(i32::MAX),
            club_name: name(),
            booking_date: at,
            start_time: "23:59".into(),
            end_time: "23:59".into(),
            player_count: i32::MAX,
            price_per_person: Won(crate::money::MAX_WON),
            service_fee: Won(crate::money::MAX_WON),
            total_price: Won(crate::money::MAX_WON),
            status: BookingStatus::NoShow,
            payment_method: Some(widest(limits::PAYMENT_METHOD)),
            special_requests: Some(widest(limits::FREE_TEXT)),
            user_email: Some(widest(limits::EMAIL)),
            user_name: name(),
            user_phone: Some(widest(limits::PHONE)),
            payments: vec![Payment {
                id: i32::MAX,
                booking_id: i32::MAX,
                amount: Won(crate::money::MAX_WON),
                payment_method: widest(limits::PAYMENT_METHOD),
                payment_status: PaymentStatus::Refunded,
                transaction_id: Some(widest(limits::FREE_TEXT)),
                paid_at: Some(at),
                created_at: at,
                updated_at: at,
            }],
            histories: (0..limits::HISTORY_IN_REPLY as i32).map(entry).collect(),
            history_total: Some(i64::MAX),
            created_at: at,
            updated_at: at,
            can_cancel: Some(false),
        }
    }

    #[test]
    fn the_largest_booking_reply_fits_well_within_nats_default_max_payload() {
        let reply = crate::Success::new(largest_booking());
        let bytes = serde_json::to_vec(&reply).unwrap().len();
        assert!(bytes <= BOOKING_BYTES, "{bytes} bytes");
        const { assert!(BOOKING_BYTES < 300 * 1024) };
    }

    #[test]
    fn a_listed_booking_and_a_history_entry_stay_within_their_bounds() {
        let mut booking = largest_booking();
        let entry = serde_json::to_vec(&booking.histories[0]).unwrap().len();
        assert!(entry <= HISTORY_ENTRY_BYTES, "an entry of {entry} bytes");
        booking.histories.clear();
        // The service never writes a transaction id; a payment gateway's is not bounded.
        booking.payments[0].transaction_id = None;
        let listed = serde_json::to_vec(&booking).unwrap().len();
        assert!(
            listed <= LISTED_BOOKING_BYTES,
            "a booking of {listed} bytes"
        );
        let page = limits::MAX_USER_BOOKINGS as usize * LISTED_BOOKING_BYTES;
        assert!(page < 1024 * 1024 - 1024, "a full page of {page} bytes");
    }
}
