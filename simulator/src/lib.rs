//! The simulator and the throwaway worlds it runs in.
//!
//! Tests, `cargo xtask e2e` and the `sim` binary all need the same thing first: a PostgreSQL and a
//! NATS server of their own, on free ports, that can be killed and restarted at will and that
//! disappear when the run ends. [`world`] provides that; the rest turns a scenario and a seed into
//! a run that is judged against the invariants and reported.
//!
//! # Layout
//! - [`world`]: the [`World`] and its builder, per-test databases, chaos verbs.
//! - [`stack`]: the whole stack as processes (world + booking-service replicas + course-stub).
//! - [`scenario`]: scenarios in TOML (`simulator/scenarios/`, compiled in).
//! - [`trace`]: a scenario and a seed expanded into the exact operations and faults (JSONL + hash).
//! - [`run`]: executes a trace (open-model load, faults, probes, scraping) and judges it.
//! - [`checker`]: invariants I1–I6 with witnesses and notes.
//! - `delivery`: what the run reads of the outbox, course-stub and the event subscriber for I3/I6.
//! - [`report`], [`charts`]: `report.json`, `summary.md`, `index.html`; `sim compare`.
//! - [`scrape`]: the `/metrics` reader.
//! - [`capacity`]: rate × replicas sweeps, the knee, replicas for a target.
//! - [`tap`]: the wire tap that checks every message against its subject's contract (C1).

pub mod capacity;
pub mod charts;
pub mod checker;
mod delivery;
pub mod report;
pub mod run;
pub mod scenario;
pub mod scrape;
pub mod stack;
pub mod tap;
pub mod trace;
pub mod world;

pub use world::{NatsRole, TestDatabase, World, WorldBuilder, WorldError};
