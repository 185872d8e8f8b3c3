//! Payloads of course-service's handlers that booking-service calls (seed §6.1–6.4).
//!
//! `gameTimeSlots.get` and `games.get` answer `{"success":true,"data":..}` or, for an unknown id,
//! `{"success":false,"error":..}` in the `response` field; [`CourseReply`] covers both.
//! `gameTimeSlots.book` and `gameTimeSlots.release` carry `{timeSlotId, playerCount}`; the real
//! course-service registers them as message handlers and answers with the updated slot.

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ErrorValue;
use crate::money::Won;
use crate::reply::Success;
use crate::validate::{limits, Checker, Validate};

/// A time slot's status in course-service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SlotStatus {
    /// Open for booking.
    Available,
    /// No seats left.
    FullyBooked,
    /// Closed by the club.
    Closed,
}

impl SlotStatus {
    /// The label stored in `game_time_slot_cache.status`.
    pub fn as_str(self) -> &'static str {
        match self {
            SlotStatus::Available => "AVAILABLE",
            SlotStatus::FullyBooked => "FULLY_BOOKED",
            SlotStatus::Closed => "CLOSED",
        }
    }

    /// Parses a stored label.
    pub fn parse(label: &str) -> Option<SlotStatus> {
        match label {
            "AVAILABLE" => Some(SlotStatus::Available),
            "FULLY_BOOKED" => Some(SlotStatus::FullyBooked),
            "CLOSED" => Some(SlotStatus::Closed),
            _ => None,
        }
    }
}

/// `gameTimeSlots.get` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeSlotQuery {
    /// The slot id.
    pub time_slot_id: i32,
}

impl Validate for TimeSlotQuery {
    fn check(&self, c: &mut Checker) {
        c.id("timeSlotId", self.time_slot_id);
    }
}

/// `games.get` request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GameQuery {
    /// The game id.
    pub game_id: i32,
}

impl Validate for GameQuery {
    fn check(&self, c: &mut Checker) {
        c.id("gameId", self.game_id);
    }
}

/// A time slot as course-service describes it (seed §6.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TimeSlot {
    /// Slot id.
    pub id: i32,
    /// Game.
    pub game_id: i32,
    /// Game name.
    pub game_name: String,
    /// Game code.
    pub game_code: String,
    /// Front nine course name.
    pub front_nine_course_name: String,
    /// Back nine course name.
    pub back_nine_course_name: String,
    /// Club id (not in the seed's table; course-service's sync messages carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub club_id: Option<i32>,
    /// Club name.
    pub club_name: String,
    /// Day, `YYYY-MM-DD`.
    pub date: NaiveDate,
    /// Tee time `HH:MM`.
    pub start_time: String,
    /// End time `HH:MM`.
    pub end_time: String,
    /// Capacity.
    pub max_players: i32,
    /// Seats course-service counts as booked.
    pub booked_players: i32,
    /// Price per player.
    pub price: Won,
    /// Premium slot.
    pub is_premium: bool,
    /// Status.
    pub status: SlotStatus,
    /// Whether the slot is active.
    pub is_active: bool,
}

impl Validate for TimeSlot {
    fn check(&self, c: &mut Checker) {
        c.id("id", self.id);
        c.id("gameId", self.game_id);
        c.text("gameName", &self.game_name, false, limits::NAME);
        c.text("gameCode", &self.game_code, false, limits::CODE);
        c.text("clubName", &self.club_name, false, limits::NAME);
        c.clock("startTime", &self.start_time);
        c.clock("endTime", &self.end_time);
        c.range(
            "maxPlayers",
            self.max_players.into(),
            1,
            limits::MAX_PLAYERS,
        );
        c.range(
            "bookedPlayers",
            self.booked_players.into(),
            0,
            limits::MAX_PLAYERS,
        );
    }
}

/// A game as course-service describes it (seed §6.2).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Game {
    /// Game id.
    pub id: i32,
    /// Name.
    pub name: String,
    /// Code.
    pub code: String,
    /// Description.
    #[serde(default)]
    pub description: Option<String>,
    /// Front nine course id.
    pub front_nine_course_id: i32,
    /// Front nine course name.
    pub front_nine_course_name: String,
    /// Back nine course id.
    pub back_nine_course_id: i32,
    /// Back nine course name.
    pub back_nine_course_name: String,
    /// Holes (18).
    pub total_holes: i32,
    /// Minutes to play.
    pub estimated_duration: i32,
    /// Minutes of break between nines.
    pub break_duration: i32,
    /// Players per slot.
    pub max_players: i32,
    /// Weekday price.
    pub base_price: Won,
    /// Weekend price.
    #[serde(default)]
    pub weekend_price: Option<Won>,
    /// Holiday price.
    #[serde(default)]
    pub holiday_price: Option<Won>,
    /// Club id.
    pub club_id: i32,
    /// Club name.
    pub club_name: String,
    /// Whether the game is active.
    pub is_active: bool,
}

impl Validate for Game {
    fn check(&self, c: &mut Checker) {
        c.id("id", self.id);
        c.text("name", &self.name, true, limits::NAME);
        c.text("code", &self.code, true, limits::CODE);
        c.opt_text(
            "description",
            self.description.as_deref(),
            limits::FREE_TEXT,
        );
        c.id("clubId", self.club_id);
        c.range(
            "maxPlayers",
            self.max_players.into(),
            1,
            limits::MAX_PLAYERS,
        );
    }
}

/// `gameTimeSlots.book` / `gameTimeSlots.release` payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SlotSeats {
    /// The slot.
    pub time_slot_id: i32,
    /// Seats taken (book) or given back (release).
    pub player_count: i32,
}

impl Validate for SlotSeats {
    fn check(&self, c: &mut Checker) {
        c.id("timeSlotId", self.time_slot_id);
        c.range(
            "playerCount",
            self.player_count.into(),
            1,
            limits::MAX_PLAYERS,
        );
    }
}

/// A course-service reply value: success with data, or `success:false` with an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "CourseReply_of_{T}")]
pub enum CourseReply<T> {
    /// `{"success":true,"data":..}`.
    Found(Success<T>),
    /// `{"success":false,"error":..}` (unknown id, or a rule refused it).
    Failed(ErrorValue),
}

impl<T: Validate> Validate for CourseReply<T> {
    fn check(&self, c: &mut Checker) {
        if let CourseReply::Found(found) = self {
            c.nested("data", &found.data);
        }
    }
}
