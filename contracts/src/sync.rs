//! Proactive cache sync from course-service (seed §4.2, §10.1): `booking.game.sync` and
//! `booking.gameTimeSlot.sync`. Both arrive as events or as requests; a request gets
//! `{"success":true,"data":{"synced":true}}`.

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::course::{Game, SlotStatus, TimeSlot};
use crate::money::Won;
use crate::validate::{limits, Checker, Validate};

/// `booking.game.sync` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GameSync {
    /// Game id.
    pub game_id: i32,
    /// Name.
    pub name: String,
    /// Code.
    pub code: String,
    /// Description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Front nine course id.
    pub front_nine_course_id: i32,
    /// Front nine course name.
    pub front_nine_course_name: String,
    /// Back nine course id.
    pub back_nine_course_id: i32,
    /// Back nine course name.
    pub back_nine_course_name: String,
    /// Holes.
    pub total_holes: i32,
    /// Minutes to play.
    pub estimated_duration: i32,
    /// Minutes of break.
    pub break_duration: i32,
    /// Players per slot.
    pub max_players: i32,
    /// Weekday price.
    pub base_price: Won,
    /// Weekend price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weekend_price: Option<Won>,
    /// Holiday price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holiday_price: Option<Won>,
    /// Club id.
    pub club_id: i32,
    /// Club name.
    pub club_name: String,
    /// Whether the game is active.
    pub is_active: bool,
}

impl Validate for GameSync {
    fn check(&self, c: &mut Checker) {
        c.id("gameId", self.game_id);
        c.text("name", &self.name, true, limits::NAME);
        c.text("code", &self.code, true, limits::CODE);
        c.opt_text(
            "description",
            self.description.as_deref(),
            limits::FREE_TEXT,
        );
        c.id("frontNineCourseId", self.front_nine_course_id);
        c.text(
            "frontNineCourseName",
            &self.front_nine_course_name,
            true,
            limits::NAME,
        );
        c.id("backNineCourseId", self.back_nine_course_id);
        c.text(
            "backNineCourseName",
            &self.back_nine_course_name,
            true,
            limits::NAME,
        );
        c.range(
            "maxPlayers",
            self.max_players.into(),
            1,
            limits::MAX_PLAYERS,
        );
        c.id("clubId", self.club_id);
        c.text("clubName", &self.club_name, true, limits::NAME);
    }
}

/// `booking.gameTimeSlot.sync` payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GameTimeSlotSync {
    /// Slot id.
    pub game_time_slot_id: i32,
    /// Game id.
    pub game_id: i32,
    /// Game name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub game_name: Option<String>,
    /// Game code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub game_code: Option<String>,
    /// Front nine course name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub front_nine_course_name: Option<String>,
    /// Back nine course name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_nine_course_name: Option<String>,
    /// Club id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub club_id: Option<i32>,
    /// Club name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub club_name: Option<String>,
    /// Day.
    pub date: NaiveDate,
    /// Tee time.
    pub start_time: String,
    /// End time.
    pub end_time: String,
    /// Capacity.
    pub max_players: i32,
    /// Course-service's count; booking-service never lowers its own count to it.
    pub booked_players: i32,
    /// Course-service's `maxPlayers - bookedPlayers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available_players: Option<i32>,
    /// Course-service's view of availability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_available: Option<bool>,
    /// Price per player. Any price up to 99,999,999 won is kept as course-service sets it; a
    /// booking whose total (players' total and fee) would pass that is refused at create.
    pub price: Won,
    /// Premium slot.
    pub is_premium: bool,
    /// Status.
    pub status: SlotStatus,
}

impl Validate for GameTimeSlotSync {
    fn check(&self, c: &mut Checker) {
        c.id("gameTimeSlotId", self.game_time_slot_id);
        c.id("gameId", self.game_id);
        c.opt_text("gameName", self.game_name.as_deref(), limits::NAME);
        c.opt_text("gameCode", self.game_code.as_deref(), limits::CODE);
        c.opt_text(
            "frontNineCourseName",
            self.front_nine_course_name.as_deref(),
            limits::NAME,
        );
        c.opt_text(
            "backNineCourseName",
            self.back_nine_course_name.as_deref(),
            limits::NAME,
        );
        if let Some(club) = self.club_id {
            c.id("clubId", club);
        }
        c.opt_text("clubName", self.club_name.as_deref(), limits::NAME);
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

impl From<&Game> for GameSync {
    /// The sync message course-service sends for a game.
    fn from(game: &Game) -> Self {
        Self {
            game_id: game.id,
            name: game.name.clone(),
            code: game.code.clone(),
            description: game.description.clone(),
            front_nine_course_id: game.front_nine_course_id,
            front_nine_course_name: game.front_nine_course_name.clone(),
            back_nine_course_id: game.back_nine_course_id,
            back_nine_course_name: game.back_nine_course_name.clone(),
            total_holes: game.total_holes,
            estimated_duration: game.estimated_duration,
            break_duration: game.break_duration,
            max_players: game.max_players,
            base_price: game.base_price,
            weekend_price: game.weekend_price,
            holiday_price: game.holiday_price,
            club_id: game.club_id,
            club_name: game.club_name.clone(),
            is_active: game.is_active,
        }
    }
}

impl From<&TimeSlot> for GameTimeSlotSync {
    /// The sync message course-service sends for a slot; an inactive slot is sent as CLOSED.
    fn from(slot: &TimeSlot) -> Self {
        let status = if slot.is_active {
            slot.status
        } else {
            SlotStatus::Closed
        };
        Self {
            game_time_slot_id: slot.id,
            game_id: slot.game_id,
            game_name: Some(slot.game_name.clone()),
            game_code: Some(slot.game_code.clone()),
            front_nine_course_name: Some(slot.front_nine_course_name.clone()),
            back_nine_course_name: Some(slot.back_nine_course_name.clone()),
            club_id: slot.club_id,
            club_name: Some(slot.club_name.clone()),
            date: slot.date,
            start_time: slot.start_time.clone(),
            end_time: slot.end_time.clone(),
            max_players: slot.max_players,
            booked_players: slot.booked_players,
            available_players: Some((slot.max_players - slot.booked_players).max(0)),
            is_available: Some(
                status == SlotStatus::Available && slot.booked_players < slot.max_players,
            ),
            price: slot.price,
            is_premium: slot.is_premium,
            status,
        }
    }
}
