//! The simulator: turns a scenario and a seed into a run on a throwaway stack (the `world`
//! crate), judges it against the invariants and reports it.
//!
//! # Layout
//! - [`scenario`]: scenarios in TOML (`simulator/scenarios/`, compiled in).
//! - [`trace`]: a scenario and a seed expanded into the exact operations and faults (JSONL + hash).
//! - [`run`]: executes a trace phase by phase (setup; open-model load with the nemesis's faults
//!   and the probes; liveness; the judge) and writes the report.
//! - [`checker`]: invariants I1–I7 with witnesses and notes.
//! - `delivery`: what the run reads of the outbox, course-stub and the event subscriber for I3/I6.
//! - [`report`], [`charts`]: `report.json`, `summary.md`, `index.html`; `sim compare`.
//! - [`scrape`]: the `/metrics` reader.
//! - [`capacity`]: rate × replicas sweeps, the knee, replicas for a target.
//! - [`manual`]: `sim up` and `sim req`, the stack by hand.
//! - [`tap`]: the wire tap that checks every message against its subject's contract (C1).

pub mod capacity;
pub mod charts;
pub mod checker;
mod delivery;
pub mod manual;
pub mod report;
pub mod run;
pub mod scenario;
pub mod scrape;
pub mod tap;
pub mod trace;
