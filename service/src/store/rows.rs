//! Rows of the reference tables as sqlx reads them, and their wire forms.

use chrono::{NaiveDate, NaiveDateTime};
use contracts::booking::{
    BookingHistoryEntry, BookingResponse, BookingStatus, Payment, PaymentStatus, SlotAvailability,
};
use contracts::course::SlotStatus;
use contracts::Won;
use sqlx::FromRow;

use super::{now, utc};
use crate::error::Result;

/// The columns of a booking, money as integers and status as text.
pub(crate) const BOOKING_COLUMNS: &str = "b.id, b.booking_number, b.user_id, b.game_id, b.game_time_slot_id, \
    b.game_name, b.game_code, b.front_nine_course_id, b.front_nine_course_name, b.back_nine_course_id, \
    b.back_nine_course_name, b.club_id, b.club_name, b.booking_date, b.start_time, b.end_time, b.player_count, \
    b.price_per_person::int8 AS price_per_person, b.service_fee::int8 AS service_fee, \
    b.total_price::int8 AS total_price, b.status::text AS status, b.payment_method, b.special_requests, \
    b.user_email, b.user_name, b.user_phone, b.created_at, b.updated_at";

/// A `bookings` row.
#[derive(Debug, Clone, FromRow)]
pub(crate) struct BookingRow {
    pub(crate) id: i32,
    pub(crate) booking_number: String,
    pub(crate) user_id: i32,
    pub(crate) game_id: i32,
    pub(crate) game_time_slot_id: i32,
    pub(crate) game_name: Option<String>,
    pub(crate) game_code: Option<String>,
    pub(crate) front_nine_course_id: Option<i32>,
    pub(crate) front_nine_course_name: Option<String>,
    pub(crate) back_nine_course_id: Option<i32>,
    pub(crate) back_nine_course_name: Option<String>,
    pub(crate) club_id: Option<i32>,
    pub(crate) club_name: Option<String>,
    pub(crate) booking_date: NaiveDateTime,
    pub(crate) start_time: String,
    pub(crate) end_time: String,
    pub(crate) player_count: i32,
    pub(crate) price_per_person: i64,
    pub(crate) service_fee: i64,
    pub(crate) total_price: i64,
    pub(crate) status: String,
    pub(crate) payment_method: Option<String>,
    pub(crate) special_requests: Option<String>,
    pub(crate) user_email: Option<String>,
    pub(crate) user_name: Option<String>,
    pub(crate) user_phone: Option<String>,
    pub(crate) created_at: NaiveDateTime,
    pub(crate) updated_at: NaiveDateTime,
}

impl BookingRow {
    /// The status, or an error for a label this service does not know.
    pub(crate) fn status(&self) -> Result<BookingStatus> {
        BookingStatus::parse(&self.status).ok_or_else(|| {
            anyhow::anyhow!("booking {} has unknown status {}", self.id, self.status).into()
        })
    }

    /// Whether the owner may still cancel: it holds seats and the date is beyond the cut-off.
    pub(crate) fn can_cancel(&self, cutoff_days: i64) -> bool {
        let holds = self
            .status()
            .map(BookingStatus::holds_seats)
            .unwrap_or(false);
        holds && self.booking_date >= now() + chrono::Duration::days(cutoff_days)
    }

    /// The wire form, with payments and history attached; `history_total` is how many entries
    /// the booking has when `histories` were loaded.
    pub(crate) fn into_response(
        self,
        payments: Vec<Payment>,
        histories: Vec<BookingHistoryEntry>,
        history_total: Option<i64>,
    ) -> Result<BookingResponse> {
        let status = self.status()?;
        Ok(BookingResponse {
            id: self.id,
            booking_number: self.booking_number,
            user_id: self.user_id,
            game_id: self.game_id,
            game_time_slot_id: self.game_time_slot_id,
            game_name: self.game_name,
            game_code: self.game_code,
            front_nine_course_id: self.front_nine_course_id,
            front_nine_course_name: self.front_nine_course_name,
            back_nine_course_id: self.back_nine_course_id,
            back_nine_course_name: self.back_nine_course_name,
            club_id: self.club_id,
            club_name: self.club_name,
            booking_date: utc(self.booking_date),
            start_time: self.start_time,
            end_time: self.end_time,
            player_count: self.player_count,
            price_per_person: Won(self.price_per_person),
            service_fee: Won(self.service_fee),
            total_price: Won(self.total_price),
            status,
            payment_method: self.payment_method,
            special_requests: self.special_requests,
            user_email: self.user_email,
            user_name: self.user_name,
            user_phone: self.user_phone,
            payments,
            histories,
            history_total,
            created_at: utc(self.created_at),
            updated_at: utc(self.updated_at),
            can_cancel: None,
        })
    }
}

/// A `payments` row.
#[derive(Debug, Clone, FromRow)]
pub(crate) struct PaymentRow {
    id: i32,
    pub(crate) booking_id: i32,
    amount: i64,
    payment_method: String,
    payment_status: String,
    transaction_id: Option<String>,
    paid_at: Option<NaiveDateTime>,
    created_at: NaiveDateTime,
    updated_at: NaiveDateTime,
}

impl PaymentRow {
    /// A PENDING payment as `store::batch` writes it.
    pub(crate) fn pending(
        id: i32,
        booking_id: i32,
        amount: i64,
        method: String,
        at: NaiveDateTime,
    ) -> Self {
        Self {
            id,
            booking_id,
            amount,
            payment_method: method,
            payment_status: "PENDING".into(),
            transaction_id: None,
            paid_at: None,
            created_at: at,
            updated_at: at,
        }
    }

    pub(crate) fn into_wire(self) -> Result<Payment> {
        Ok(Payment {
            id: self.id,
            booking_id: self.booking_id,
            amount: Won(self.amount),
            payment_method: self.payment_method,
            payment_status: PaymentStatus::parse(&self.payment_status)
                .ok_or_else(|| anyhow::anyhow!("payment {} has unknown status", self.id))?,
            transaction_id: self.transaction_id,
            paid_at: self.paid_at.map(utc),
            created_at: utc(self.created_at),
            updated_at: utc(self.updated_at),
        })
    }
}

/// A `booking_history` row.
#[derive(Debug, Clone, FromRow)]
pub(crate) struct HistoryRow {
    pub(crate) id: i32,
    pub(crate) booking_id: i32,
    action: String,
    details: Option<serde_json::Value>,
    user_id: i32,
    created_at: NaiveDateTime,
}

impl HistoryRow {
    /// The CREATED entry as `store::batch` writes it.
    pub(crate) fn created(
        id: i32,
        booking_id: i32,
        details: serde_json::Value,
        user_id: i32,
        at: NaiveDateTime,
    ) -> Self {
        Self {
            id,
            booking_id,
            action: "CREATED".into(),
            details: Some(details),
            user_id,
            created_at: at,
        }
    }

    pub(crate) fn into_wire(self) -> BookingHistoryEntry {
        BookingHistoryEntry {
            id: self.id,
            booking_id: self.booking_id,
            action: self.action,
            details: self.details,
            user_id: self.user_id,
            created_at: utc(self.created_at),
        }
    }
}

/// A `game_time_slot_cache` row.
#[derive(Debug, Clone, FromRow)]
pub(crate) struct SlotRow {
    pub(crate) id: i32,
    pub(crate) game_time_slot_id: i32,
    pub(crate) game_id: i32,
    pub(crate) game_name: Option<String>,
    pub(crate) game_code: Option<String>,
    pub(crate) front_nine_course_name: Option<String>,
    pub(crate) back_nine_course_name: Option<String>,
    pub(crate) club_id: Option<i32>,
    pub(crate) club_name: Option<String>,
    pub(crate) date: NaiveDate,
    pub(crate) start_time: String,
    pub(crate) end_time: String,
    pub(crate) max_players: i32,
    pub(crate) booked_players: i32,
    pub(crate) available_players: i32,
    pub(crate) is_available: bool,
    pub(crate) price: i64,
    pub(crate) is_premium: bool,
    pub(crate) status: String,
    pub(crate) last_sync_at: NaiveDateTime,
}

/// The columns of a slot cache row.
pub(crate) const SLOT_COLUMNS: &str = "id, game_time_slot_id, game_id, game_name, game_code, \
    front_nine_course_name, back_nine_course_name, club_id, club_name, date, start_time, end_time, \
    max_players, booked_players, available_players, is_available, price::int8 AS price, is_premium, status, \
    last_sync_at";

impl SlotRow {
    /// The wire form of `booking.gameTimeSlots.availability`.
    pub(crate) fn into_availability(self) -> SlotAvailability {
        SlotAvailability {
            id: self.id,
            game_time_slot_id: self.game_time_slot_id,
            game_id: self.game_id,
            game_name: self.game_name,
            game_code: self.game_code,
            front_nine_course_name: self.front_nine_course_name,
            back_nine_course_name: self.back_nine_course_name,
            club_id: self.club_id,
            club_name: self.club_name,
            date: self.date,
            start_time: self.start_time,
            end_time: self.end_time,
            max_players: self.max_players,
            booked_players: self.booked_players,
            available_players: self.available_players,
            is_available: self.is_available,
            price: Won(self.price),
            is_premium: self.is_premium,
            status: SlotStatus::parse(&self.status).unwrap_or(SlotStatus::Closed),
        }
    }
}
