//! The real course-service's answer shapes: successes inside `response`, its own failure codes
//! without a timestamp, found items with the fields it adds, and the bare row `book`/`release`
//! answer with.

use contracts::course::{CourseReply, PeerError, PeerErrorDetail, TimeSlot};
use contracts::Success;
use serde::Serialize;
use serde_json::Value;

/// course-service's failure answer: its own code, the exception's message, no timestamp.
pub(super) fn refusal(code: &str, message: String) -> Value {
    let reply = CourseReply::<Value>::Failed(PeerError {
        success: false,
        error: PeerErrorDetail {
            code: code.into(),
            message,
            details: None,
        },
        timestamp: None,
    });
    serde_json::to_value(reply).unwrap_or(Value::Null)
}

pub(super) fn success(data: Value) -> Value {
    serde_json::to_value(Success::new(data)).unwrap_or(Value::Null)
}

/// A found item as course-service maps it, with the fields it adds beyond the seed's table.
pub(super) fn found<T: Serialize>(item: Option<&T>, code: &str, missing: String) -> Value {
    let Some(item) = item else {
        return refusal(code, missing);
    };
    let mut data = serde_json::to_value(item).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut data {
        if let (Some(max), Some(booked)) = (
            map.get("maxPlayers").and_then(Value::as_i64),
            map.get("bookedPlayers").and_then(Value::as_i64),
        ) {
            map.insert("availablePlayers".into(), Value::from(max - booked));
        }
        map.insert("createdAt".into(), Value::from("2025-01-01T00:00:00.000Z"));
        map.insert("updatedAt".into(), Value::Null);
    }
    success(data)
}

/// The `book`/`release` answer: the updated row, without the game relation the real handler
/// does not load (so no game, course or club names).
pub(super) fn updated_row(slot: &TimeSlot) -> Value {
    success(serde_json::json!({
        "id": slot.id,
        "gameId": slot.game_id,
        "date": slot.date,
        "startTime": slot.start_time,
        "endTime": slot.end_time,
        "maxPlayers": slot.max_players,
        "bookedPlayers": slot.booked_players,
        "availablePlayers": slot.max_players - slot.booked_players,
        "price": slot.price,
        "isPremium": slot.is_premium,
        "status": slot.status,
        "isActive": slot.is_active,
        "createdAt": "2025-01-01T00:00:00.000Z",
        "updatedAt": null,
    }))
}

pub(super) fn not_found_slot(id: i32) -> String {
    format!("GameTimeSlot with ID {id} not found")
}
