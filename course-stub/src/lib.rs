//! A stand-in course-service for tests, `cargo xtask e2e` and the simulator.
//!
//! It speaks the NestJS NATS envelope and answers exactly as the real course-service does (its
//! codes, its `success:false` answers inside `response`, its refusals and clamps; see [`stub`]):
//! `gameTimeSlots.get` and `games.get` from a seeded (or loaded) catalogue,
//! `gameTimeSlots.book`/`release` as events or requests (answered with the updated slot row),
//! applied at most once per `Nats-Msg-Id`; seats booked at the club's own desk (`courseStub.drift`);
//! proactive
//! `booking.game.sync`/`booking.gameTimeSlot.sync`; and fault knobs (outage, latency, dropped and
//! duplicated book/release, stale sync, lenient) changed at run time over `courseStub.*` control subjects.
//! `courseStub.state` returns its `bookedPlayers` per slot and its message counters, which the
//! simulator compares with booking-service's sums.
//!
//! # Layout
//! - [`catalog`]: seeded catalogue generation and loading.
//! - [`control`]: control subjects and their payloads (faults, state, sync).
//! - [`stub`]: the handlers, fault decisions (one seeded RNG) and dedup.

pub mod catalog;
pub mod control;
pub mod stub;

pub use catalog::{Catalog, CatalogSpec};
pub use control::{Counts, Faults, StubState};
pub use stub::{start, RunningStub, StubConfig};
