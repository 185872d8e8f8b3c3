//! The trace: a scenario and a seed expanded into every operation (time, user, slot, counts) and
//! every fault event, as JSONL. Expansion uses only the seeded RNG and integer milliseconds, so the
//! same scenario and seed give the same bytes on every machine; the SHA-256 of those bytes names
//! the run. `sim replay` executes a saved trace without the scenario file.

use std::fmt::Write as _;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::scenario::{FaultKind, Scenario};

mod expand;
pub use expand::catalog;

/// Bump when the line format changes.
pub const FORMAT: u32 = 1;

/// One line of the trace file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Line {
    /// First line: what the rest was expanded from.
    Header(Box<Header>),
    /// A client operation.
    Op(Op),
    /// A fault starting or ending.
    Fault(FaultEvent),
}

/// The first line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    /// [`FORMAT`].
    pub format: u32,
    /// The seed.
    pub seed: u64,
    /// The scenario, whole.
    pub scenario: Scenario,
    /// Parameters derived during expansion.
    pub derived: Derived,
}

/// Figures derived from the scenario and the seed, printed before a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Derived {
    /// Operations in all.
    pub ops: usize,
    /// Creates (rush included).
    pub creates: usize,
    /// Rush creates.
    pub rush: usize,
    /// Cancels.
    pub cancels: usize,
    /// Updates.
    pub updates: usize,
    /// Reads.
    pub reads: usize,
    /// Slots in the catalogue.
    pub slots: usize,
    /// Seats in the catalogue.
    pub seats: usize,
    /// Slots taking the hot share of creates.
    pub hot_slots: usize,
    /// Creates carrying an idempotency key.
    pub keyed: usize,
    /// Time of the last operation, ms.
    pub last_op_ms: u64,
    /// Fault events.
    pub fault_events: usize,
}

/// One client operation, scheduled at `t_ms` from the start of the load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Index in the trace (0-based, in time order).
    pub i: u32,
    /// Scheduled time, ms.
    pub t_ms: u64,
    /// What it does.
    #[serde(flatten)]
    pub action: Action,
}

/// What an operation does. Operations on an earlier booking name the create (`of`) that made it;
/// if that create has not succeeded by then, the operation is skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "camelCase")]
pub enum Action {
    /// `booking.create`.
    Create {
        /// User.
        user: i32,
        /// Slot.
        slot: i32,
        /// Players.
        players: i32,
        /// Idempotency key, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
        /// Part of the opening rush.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        rush: bool,
    },
    /// `booking.cancel` of the booking made by create `of`.
    Cancel {
        /// The create.
        of: u32,
    },
    /// `booking.update` of the player count.
    Update {
        /// The create.
        of: u32,
        /// New player count.
        players: i32,
    },
    /// `booking.findById`.
    FindById {
        /// The create.
        of: u32,
    },
    /// `booking.findByUserId`.
    FindByUserId {
        /// User.
        user: i32,
    },
    /// `booking.gameTimeSlots.availability` for a game on a catalogue day.
    Availability {
        /// Game.
        game: i32,
        /// Day index from the catalogue's first day.
        day: u32,
    },
    /// `booking.search` of upcoming bookings.
    Search,
}

impl Action {
    /// Name used in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Create { .. } => "create",
            Action::Cancel { .. } => "cancel",
            Action::Update { .. } => "update",
            Action::FindById { .. } => "findById",
            Action::FindByUserId { .. } => "findByUserId",
            Action::Availability { .. } => "availability",
            Action::Search => "search",
        }
    }
}

/// A fault starting or ending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultEvent {
    /// Time, ms.
    pub t_ms: u64,
    /// Index of the fault in the scenario.
    pub fault: usize,
    /// `start` or `end`.
    pub phase: Phase,
    /// The fault.
    pub kind: FaultKind,
}

/// Start or end of a fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// It begins.
    Start,
    /// It heals.
    End,
}

/// An expanded trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    /// First line.
    pub header: Header,
    /// Operations in time order.
    pub ops: Vec<Op>,
    /// Fault events in time order.
    pub faults: Vec<FaultEvent>,
}

impl Trace {
    /// The JSONL text: the header, then operations and fault events merged in time order.
    pub fn to_jsonl(&self) -> String {
        let mut out = String::new();
        let mut push = |line: Line| {
            // Serializing these plain types cannot fail.
            let text = serde_json::to_string(&line).unwrap_or_default();
            let _ = writeln!(out, "{text}");
        };
        push(Line::Header(Box::new(self.header.clone())));
        let mut faults = self.faults.iter().peekable();
        for op in &self.ops {
            while let Some(f) = faults.next_if(|f| f.t_ms <= op.t_ms) {
                push(Line::Fault(f.clone()));
            }
            push(Line::Op(op.clone()));
        }
        for f in faults {
            push(Line::Fault(f.clone()));
        }
        out
    }

    /// SHA-256 of [`Trace::to_jsonl`], hex.
    pub fn hash(&self) -> String {
        hex(&Sha256::digest(self.to_jsonl().as_bytes()))
    }

    /// Reads a trace written by [`Trace::to_jsonl`].
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut lines = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty());
        let header = match lines.next() {
            Some((_, first)) => match serde_json::from_str(first).context("line 1")? {
                Line::Header(h) => *h,
                _ => bail!("line 1 is not a trace header"),
            },
            None => bail!("empty trace"),
        };
        if header.format != FORMAT {
            bail!(
                "trace format {} is not the supported {FORMAT}",
                header.format
            );
        }
        header.scenario.check()?;
        let mut ops = Vec::new();
        let mut faults = Vec::new();
        for (n, line) in lines {
            match serde_json::from_str(line).with_context(|| format!("line {}", n + 1))? {
                Line::Header(_) => bail!("line {}: a second header", n + 1),
                Line::Op(op) => ops.push(op),
                Line::Fault(f) => faults.push(f),
            }
        }
        Ok(Trace {
            header,
            ops,
            faults,
        })
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[cfg(test)]
mod tests;
