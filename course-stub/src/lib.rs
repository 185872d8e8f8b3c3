//! A stand-in course-service for tests and the simulator.
//!
//! Filled in by the course-stub issue: a seeded catalog, `gameTimeSlots.get`/`games.get`, book and
//! release applied once per `Nats-Msg-Id`, proactive sync and fault knobs.

pub use contracts::subjects::{GAMES_GET, SLOTS_BOOK, SLOTS_GET, SLOTS_RELEASE};
