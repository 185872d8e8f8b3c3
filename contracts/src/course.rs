//! Payloads of course-service's handlers that booking-service calls (seed §6.1–6.4).
//!
//! Every course-service handler wraps its work in try/catch and answers inside the NestJS
//! `response` field: `{"success":true,"data":..}`, or `{"success":false,"error":{"code","message"}}`
//! with course-service's own codes (`GAME_TIMESLOT_GET_FAILED`, `GAME_GET_FAILED`,
//! `GAME_TIMESLOT_BOOK_FAILED`, `GAME_TIMESLOT_RELEASE_FAILED`) and no timestamp. [`CourseReply`]
//! covers both, and [`PeerError`] reads any such refusal liberally: any code string, an optional
//! timestamp and details, extra fields ignored. A refusal is the peer saying no, never an outage.
//!
//! `gameTimeSlots.book` and `gameTimeSlots.release` carry `{timeSlotId, playerCount}`; the real
//! course-service registers them as message handlers and answers with the updated slot row, without
//! the game's names (it does not load the game there), so [`SeatsSlot`] asks only for what it sends.

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
        c.day("date", self.date);
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

/// The slot row that `gameTimeSlots.book`/`release` answer with: the real course-service returns the
/// updated row without the game relation, so the game's names are absent there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeatsSlot {
    /// Slot id.
    pub id: i32,
    /// Capacity.
    pub max_players: i32,
    /// Seats course-service now counts as booked.
    pub booked_players: i32,
    /// Status label (`AVAILABLE`, `FULLY_BOOKED`, ...); read as text, any label accepted.
    pub status: String,
}

impl Validate for SeatsSlot {
    fn check(&self, c: &mut Checker) {
        c.id("id", self.id);
    }
}

/// The inner `error` of a course-service refusal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PeerErrorDetail {
    /// The peer's own code, e.g. `GAME_TIMESLOT_BOOK_FAILED`; any string is accepted.
    pub code: String,
    /// The peer's message, e.g. `GameTimeSlot with ID 424242 not found`.
    #[serde(default)]
    pub message: String,
    /// Optional structured details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// A peer's `{"success":false,"error":{..}}` answer, read liberally (DESIGN §2): course-service sends
/// no timestamp, booking-service's own errors do; both are accepted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PeerError {
    /// Always `false`.
    pub success: bool,
    /// What the peer said.
    pub error: PeerErrorDetail,
    /// When, if the peer says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error.code, self.error.message)
    }
}

/// A course-service reply value: success with data, or `success:false` with the peer's error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
#[schemars(rename = "CourseReply_of_{T}")]
pub enum CourseReply<T> {
    /// `{"success":true,"data":..}`.
    Found(Success<T>),
    /// `{"success":false,"error":..}`: unknown id, or course-service's own rules refused it.
    Failed(PeerError),
}

impl<T: Validate> Validate for CourseReply<T> {
    fn check(&self, c: &mut Checker) {
        match self {
            CourseReply::Found(found) => {
                if !found.success {
                    c.fail("success", "must be true with data");
                }
                c.nested("data", &found.data);
            }
            CourseReply::Failed(err) => {
                if err.success {
                    c.fail("success", "must be false in an error value");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn course_services_own_refusal_reads_without_a_timestamp() {
        let v = serde_json::json!({"success": false, "error": {"code": "GAME_TIMESLOT_GET_FAILED",
            "message": "GameTimeSlot with ID 424242 not found"}});
        let reply: CourseReply<TimeSlot> = serde_json::from_value(v).unwrap();
        let CourseReply::Failed(err) = reply else {
            panic!("read as found")
        };
        assert_eq!(err.error.code, "GAME_TIMESLOT_GET_FAILED");
        assert_eq!(err.timestamp, None);
    }

    #[test]
    fn a_book_reply_without_the_games_names_reads() {
        let v = serde_json::json!({"success": true, "data": {"id": 7, "gameId": 1, "date": "2025-01-15",
            "startTime": "09:00", "endTime": "12:00", "maxPlayers": 4, "bookedPlayers": 3,
            "availablePlayers": 1, "price": 15000, "isPremium": false, "status": "AVAILABLE",
            "isActive": true, "createdAt": null}});
        let reply: CourseReply<SeatsSlot> = serde_json::from_value(v).unwrap();
        assert!(matches!(reply, CourseReply::Found(ref f) if f.data.booked_players == 3));
    }
}
