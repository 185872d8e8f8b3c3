//! The message catalogue: for every subject, its style, its sender and receiver, and the Rust types
//! of its payload and reply. Fixtures, schema snapshots and the AsyncAPI document are all driven
//! from [`SUBJECTS`], so a subject cannot be added without its contract.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::booking::{
    AvailabilityRequest, BookingResponse, CancelBookingRequest, CreateBookingRequest, FindById,
    FindByNumber, FindByUserId, SearchBookings, SlotAvailability, UpdateBookingRequest,
};
use crate::codec::{Codec, CodecError};
use crate::course::{CourseReply, Game, GameQuery, SeatsSlot, SlotSeats, TimeSlot, TimeSlotQuery};
use crate::error::ErrorValue;
use crate::events::{BookingCancelled, BookingConfirmed};
use crate::reply::{Page, Success, SyncAck};
use crate::subjects::{self as s, Service, Style};
use crate::sync::{GameSync, GameTimeSlotSync};
use crate::validate::Validate;

/// A payload type, reachable without naming it: its schema name, its schema, and a round trip.
#[derive(Clone, Copy)]
pub struct TypeSpec {
    /// The JSON Schema name of the type.
    pub name: fn() -> String,
    /// A `$ref` to the type's schema, registering it in the generator.
    pub subschema: fn(&mut SchemaGenerator) -> Schema,
    /// The type's stand-alone JSON Schema.
    pub root_schema: fn() -> Schema,
    /// Decodes (with validation) and re-encodes a value of the type.
    pub roundtrip: fn(Value) -> Result<Value, CodecError>,
}

impl std::fmt::Debug for TypeSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&(self.name)())
    }
}

fn schema_name<T: JsonSchema>() -> String {
    T::schema_name().into_owned()
}

fn subschema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

fn root_schema<T: JsonSchema>() -> Schema {
    schemars::schema_for!(T)
}

fn roundtrip<T: Serialize + DeserializeOwned + Validate>(
    value: Value,
) -> Result<Value, CodecError> {
    let typed: T = Codec::decode_data(value)?;
    serde_json::to_value(&typed).map_err(|e| CodecError::Encode(e.to_string()))
}

impl TypeSpec {
    /// The spec of `T`.
    pub const fn of<T: JsonSchema + Serialize + DeserializeOwned + Validate>() -> Self {
        Self {
            name: schema_name::<T>,
            subschema: subschema::<T>,
            root_schema: root_schema::<T>,
            roundtrip: roundtrip::<T>,
        }
    }
}

/// One subject's contract.
#[derive(Debug, Clone, Copy)]
pub struct SubjectSpec {
    /// The NATS subject (= NestJS pattern).
    pub subject: &'static str,
    /// One line on what it does.
    pub summary: &'static str,
    /// Request, event, or either.
    pub style: Style,
    /// Who sends it.
    pub from: Service,
    /// Who handles it.
    pub to: Service,
    /// The `data` type.
    pub payload: TypeSpec,
    /// The `response` type of a successful reply, for subjects that reply.
    pub reply: Option<TypeSpec>,
}

/// The `err` type of every failed reply.
pub const ERROR: TypeSpec = TypeSpec::of::<ErrorValue>();

const fn request(
    subject: &'static str,
    summary: &'static str,
    payload: TypeSpec,
    reply: TypeSpec,
) -> SubjectSpec {
    SubjectSpec {
        subject,
        summary,
        style: Style::Request,
        from: Service::UserApi,
        to: Service::BookingService,
        payload,
        reply: Some(reply),
    }
}

/// Every subject, booking-service's handlers first.
pub const SUBJECTS: [SubjectSpec; 16] = [
    request(
        s::BOOKING_CREATE,
        "Create a booking: validate, lock the slot, re-check capacity, write booking, payment, history and outbox in one transaction.",
        TypeSpec::of::<CreateBookingRequest>(),
        TypeSpec::of::<Success<BookingResponse>>(),
    ),
    request(
        s::BOOKING_FIND_BY_ID,
        "One booking by id, with payments and history.",
        TypeSpec::of::<FindById>(),
        TypeSpec::of::<Success<BookingResponse>>(),
    ),
    request(
        s::BOOKING_FIND_BY_NUMBER,
        "One booking by booking number, with payments and history.",
        TypeSpec::of::<FindByNumber>(),
        TypeSpec::of::<Success<BookingResponse>>(),
    ),
    request(
        s::BOOKING_FIND_BY_USER_ID,
        "A user's bookings, newest first.",
        TypeSpec::of::<FindByUserId>(),
        TypeSpec::of::<Success<Vec<BookingResponse>>>(),
    ),
    request(
        s::BOOKING_SEARCH,
        "Bookings by status, game, club, user and date range; sorted and paged.",
        TypeSpec::of::<SearchBookings>(),
        TypeSpec::of::<Page<BookingResponse>>(),
    ),
    request(
        s::BOOKING_UPDATE,
        "Change players (capacity re-checked), special requests or phone.",
        TypeSpec::of::<UpdateBookingRequest>(),
        TypeSpec::of::<Success<BookingResponse>>(),
    ),
    request(
        s::BOOKING_CANCEL,
        "Cancel a booking (owner only, before the cut-off) and give its seats back.",
        TypeSpec::of::<CancelBookingRequest>(),
        TypeSpec::of::<Success<BookingResponse>>(),
    ),
    request(
        s::BOOKING_AVAILABILITY,
        "A game's time slots on one day, from the local cache.",
        TypeSpec::of::<AvailabilityRequest>(),
        TypeSpec::of::<Success<Vec<SlotAvailability>>>(),
    ),
    SubjectSpec {
        subject: s::BOOKING_GAME_SYNC,
        summary: "Course-service pushes a game into the local game cache.",
        style: Style::RequestOrEvent,
        from: Service::CourseService,
        to: Service::BookingService,
        payload: TypeSpec::of::<GameSync>(),
        reply: Some(TypeSpec::of::<Success<SyncAck>>()),
    },
    SubjectSpec {
        subject: s::BOOKING_SLOT_SYNC,
        summary: "Course-service pushes a time slot into the local slot cache; local booked counts are never lowered.",
        style: Style::RequestOrEvent,
        from: Service::CourseService,
        to: Service::BookingService,
        payload: TypeSpec::of::<GameTimeSlotSync>(),
        reply: Some(TypeSpec::of::<Success<SyncAck>>()),
    },
    SubjectSpec {
        subject: s::SLOTS_GET,
        summary: "Booking-service asks course-service for a time slot on a cache miss.",
        style: Style::Request,
        from: Service::BookingService,
        to: Service::CourseService,
        payload: TypeSpec::of::<TimeSlotQuery>(),
        reply: Some(TypeSpec::of::<CourseReply<TimeSlot>>()),
    },
    SubjectSpec {
        subject: s::GAMES_GET,
        summary: "Booking-service asks course-service for a game on a cache miss.",
        style: Style::Request,
        from: Service::BookingService,
        to: Service::CourseService,
        payload: TypeSpec::of::<GameQuery>(),
        reply: Some(TypeSpec::of::<CourseReply<Game>>()),
    },
    SubjectSpec {
        subject: s::SLOTS_BOOK,
        summary: "Seats were taken: course-service adds them to the slot (deduplicated by Nats-Msg-Id).",
        style: Style::RequestOrEvent,
        from: Service::BookingService,
        to: Service::CourseService,
        payload: TypeSpec::of::<SlotSeats>(),
        reply: Some(TypeSpec::of::<CourseReply<SeatsSlot>>()),
    },
    SubjectSpec {
        subject: s::SLOTS_RELEASE,
        summary: "Seats were given back: course-service removes them from the slot (deduplicated by Nats-Msg-Id).",
        style: Style::RequestOrEvent,
        from: Service::BookingService,
        to: Service::CourseService,
        payload: TypeSpec::of::<SlotSeats>(),
        reply: Some(TypeSpec::of::<CourseReply<SeatsSlot>>()),
    },
    SubjectSpec {
        subject: s::BOOKING_CONFIRMED,
        summary: "A booking was created; notification-service tells the user.",
        style: Style::Event,
        from: Service::BookingService,
        to: Service::NotificationService,
        payload: TypeSpec::of::<BookingConfirmed>(),
        reply: None,
    },
    SubjectSpec {
        subject: s::BOOKING_CANCELLED,
        summary: "A booking was cancelled; notification-service tells the user.",
        style: Style::Event,
        from: Service::BookingService,
        to: Service::NotificationService,
        payload: TypeSpec::of::<BookingCancelled>(),
        reply: None,
    },
];

/// The spec of `subject`, if it is one of ours.
pub fn spec(subject: &str) -> Option<&'static SubjectSpec> {
    SUBJECTS.iter().find(|spec| spec.subject == subject)
}

/// Every distinct payload, reply and error type, sorted by schema name.
pub fn all_types() -> Vec<TypeSpec> {
    let mut types: Vec<TypeSpec> = SUBJECTS
        .iter()
        .flat_map(|spec| std::iter::once(spec.payload).chain(spec.reply))
        .chain(std::iter::once(ERROR))
        .collect();
    types.sort_by_key(|t| (t.name)());
    types.dedup_by_key(|t| (t.name)());
    types
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_booking_handler_is_in_the_catalogue_and_handled_by_booking_service() {
        for subject in s::BOOKING_HANDLERS {
            let spec = spec(subject).unwrap_or_else(|| panic!("{subject} missing"));
            assert_eq!(spec.to, Service::BookingService);
            assert!(spec.reply.is_some());
        }
    }

    #[test]
    fn subjects_are_unique() {
        let mut names: Vec<_> = SUBJECTS.iter().map(|s| s.subject).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SUBJECTS.len());
    }

    #[test]
    fn events_have_no_reply_type_and_requests_do() {
        for spec in SUBJECTS {
            assert_eq!(
                spec.style.replies(),
                spec.reply.is_some(),
                "{}",
                spec.subject
            );
        }
    }
}
