//! The booking-service: the NATS request/reply API on PostgreSQL that replaces the NestJS service.
//!
//! This crate is filled in by the booking-service issue; for now it only names the wire it speaks.

pub use contracts::subjects::BOOKING_HANDLERS;
