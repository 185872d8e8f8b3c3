//! The booking-service wire: every NATS subject, every payload, the NestJS envelope and its codec.
//!
//! Booking-service must be indistinguishable from the NestJS service it replaces to every other
//! service on the bus. This crate is the single source of truth for what travels: the service,
//! the course-service stand-in and the simulator all encode and decode through it, the fixtures in
//! `contracts/fixtures/` pin one canonical example of every message, snapshot tests pin each
//! fixture's round trip and each type's JSON Schema, and [`asyncapi`] documents it all.
//!
//! # Layout
//! - [`subjects`]: subject constants, services, request/event styles.
//! - [`envelope`]: the NestJS request, event and reply envelopes; message ids.
//! - [`codec`]: bytes ⇄ envelopes ⇄ typed payloads, with size limits and typed errors.
//! - [`error`]: the wire error value and its codes (`SYS_*`, `AUT_*`, `BUS_*`).
//! - [`reply`]: `{"success":true,"data":..}` and the paginated form.
//! - [`booking`], [`course`], [`sync`], [`events`]: payload types, by who handles them.
//! - [`validate`]: value checks every decoded payload passes.
//! - [`money`], [`time`]: whole-won amounts and JavaScript-compatible dates.
//! - [`catalog`]: subject → payload and reply types; drives fixtures, schemas and AsyncAPI.
//! - [`asyncapi`]: the generated AsyncAPI 3.0 document.
//! - `client` (feature `client`): the one NestJS request client over NATS.

pub mod asyncapi;
pub mod booking;
pub mod catalog;
#[cfg(feature = "client")]
pub mod client;
pub mod codec;
pub mod compat;
pub mod course;
pub mod envelope;
pub mod error;
pub mod events;
pub mod money;
pub mod reply;
pub mod subjects;
pub mod sync;
pub mod time;
pub mod validate;

#[cfg(feature = "client")]
pub use client::{CallError, NatsLogin, NestClient};
pub use codec::{Codec, CodecError};
pub use envelope::{Decoded, Inbound, InboundKind, MessageId, Reply, ReplyOutcome, MSG_ID_HEADER};
pub use error::{ErrorCode, ErrorValue};
pub use money::Won;
pub use reply::{Page, Success, SyncAck};
pub use validate::{Validate, Violation};
