//! The simulator and the throwaway worlds it runs in.
//!
//! Tests, `cargo xtask e2e` and the `sim` binary all need the same thing first: a PostgreSQL and a
//! NATS server of their own, on free ports, that can be killed and restarted at will and that
//! disappear when the run ends. [`world`] provides that. The workload generator, fault schedules,
//! invariant checker and reports build on it (simulator issue).
//!
//! # Layout
//! - [`world`]: the [`World`] and its builder, per-test databases, chaos verbs.
//! - [`stack`]: the whole stack as processes (world + booking-service + course-stub).
//! - [`e2e`]: the default end-to-end scenario behind `cargo xtask e2e`, its checks and summary.
//!   - `world/binaries.rs`: finding `initdb`, `postgres` and `nats-server`.
//!   - `world/process.rs`: spawning servers that die with us, killing process groups.
//!   - `world/postgres.rs`, `world/nats.rs`: one server each.

pub mod e2e;
pub mod stack;
pub mod world;

pub use world::{TestDatabase, World, WorldBuilder, WorldError};
