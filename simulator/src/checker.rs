//! The invariant checker (DESIGN.md §4). It judges a run from three sources: the client history
//! (what each caller saw: ok, fail, or unknown when no answer came), the database, and
//! course-stub's state. Each verdict carries how much was checked and a few witnesses.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// How many witnesses a verdict keeps.
pub const WITNESSES: usize = 5;

/// One invariant's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// `I1` … `I6`.
    pub id: String,
    /// What it says.
    pub name: String,
    /// Whether it held.
    pub held: bool,
    /// Things checked (slots, acknowledgements, keys, events).
    pub checked: usize,
    /// Things that broke it.
    pub violations: usize,
    /// Up to [`WITNESSES`] of them, readable.
    pub witnesses: Vec<String>,
    /// Things that did not break it but a reader must see: divergences accounted for by recorded
    /// refusals, rows an operator must look at (up to [`WITNESSES`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// When the first violations were seen, ms from the start of the load, where the check has a
    /// time (snapshots do; end-of-run checks do not). Up to [`WITNESSES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub at_ms: Vec<u64>,
}

impl Verdict {
    /// A verdict that holds until [`Verdict::violate`] is called.
    pub fn new(id: &str, name: &str) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            held: true,
            checked: 0,
            violations: 0,
            witnesses: Vec::new(),
            notes: Vec::new(),
            at_ms: Vec::new(),
        }
    }

    /// Records something seen that holds but must be shown.
    pub fn note(&mut self, what: String) {
        if self.notes.len() < WITNESSES {
            self.notes.push(what);
        }
    }

    /// Records one violation.
    pub fn violate(&mut self, witness: String) {
        self.held = false;
        self.violations += 1;
        if self.witnesses.len() < WITNESSES {
            self.witnesses.push(witness);
        }
    }

    /// Records one violation seen at `t_ms`, which the report marks on its charts.
    pub fn violate_at(&mut self, t_ms: u64, witness: String) {
        if self.at_ms.len() < WITNESSES && self.at_ms.last() != Some(&t_ms) {
            self.at_ms.push(t_ms);
        }
        self.violate(witness);
    }
}

/// A slot as the database holds it at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotSnapshot {
    /// Slot id.
    pub id: i32,
    /// Capacity.
    pub max_players: i32,
    /// The cache's count.
    pub cached: i32,
    /// Σ players of PENDING + CONFIRMED bookings.
    pub sum: i64,
}

/// I1 and I2 on one snapshot, taken at `t_ms`; adds to the running verdicts.
pub fn check_slots(t_ms: u64, slots: &[SlotSnapshot], i1: &mut Verdict, i2: &mut Verdict) {
    i1.checked += slots.len();
    i2.checked += slots.len();
    for s in slots {
        if s.sum > i64::from(s.max_players) {
            i1.violate_at(
                t_ms,
                format!(
                    "t={:.2}s slot {}: {} players on {} seats",
                    t_ms as f64 / 1000.0,
                    s.id,
                    s.sum,
                    s.max_players
                ),
            );
        }
        if s.sum != i64::from(s.cached) {
            i2.violate_at(
                t_ms,
                format!(
                    "t={:.2}s slot {}: cache says {}, bookings sum to {}",
                    t_ms as f64 / 1000.0,
                    s.id,
                    s.cached,
                    s.sum
                ),
            );
        }
    }
}

/// Why course-service's count for one slot may rightly differ from booking-service's sum.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounted {
    /// Seats course-service booked on its own (its desk), which booking-service never sold.
    pub external: i64,
    /// Net seats of outbox rows not delivered because course-service refused them (or a row of
    /// the same booking before them): refused books count negative, refused releases positive.
    pub undelivered: i64,
    /// The first refusal's answer, for the reader.
    pub why: Option<String>,
}

/// I3: once everything healed, course-stub's count for every slot equals booking-service's sum,
/// plus exactly what is accounted for: seats course-service booked itself and rows it refused,
/// which the outbox holds as REJECTED (those slots are listed as notes, not hidden).
pub fn check_convergence(
    stub: &BTreeMap<i32, i32>,
    sums: &HashMap<i32, i64>,
    accounted: &HashMap<i32, Accounted>,
    converged_after_s: Option<f64>,
) -> Verdict {
    let mut v = Verdict::new(
        "I3",
        "course-service bookedPlayers = booking sums after the faults heal (refusals accounted)",
    );
    v.checked = stub.len();
    for (slot, theirs) in stub {
        let theirs = i64::from(*theirs);
        let ours = sums.get(slot).copied().unwrap_or(0);
        let a = accounted.get(slot).cloned().unwrap_or_default();
        let expected = ours + a.external + a.undelivered;
        if theirs != expected {
            if a == Accounted::default() {
                v.violate(format!(
                    "slot {slot}: course-stub {theirs}, bookings {ours}"
                ));
            } else {
                v.violate(format!(
                    "slot {slot}: course-stub {theirs}, expected {expected} (bookings {ours}, \
                     {} booked by course-service itself, {:+} in refused rows)",
                    a.external, a.undelivered
                ));
            }
        } else if a != Accounted::default() {
            v.note(format!(
                "slot {slot}: course-stub {theirs}, bookings {ours}: {} booked by course-service \
                 itself, {:+} in rows it refused ({})",
                a.external,
                a.undelivered,
                a.why.as_deref().unwrap_or("no refusal")
            ));
        }
    }
    if converged_after_s.is_none() && v.held {
        v.violate("the outbox never drained".into());
    }
    v
}

/// An acknowledged create or cancel, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledged {
    /// Operation index.
    pub op: u32,
    /// `create` or `cancel`.
    pub kind: &'static str,
    /// Booking number from the reply (creates) or of the cancelled booking.
    pub number: String,
}

/// I4: every acknowledged create exists and every acknowledged cancel is stored as cancelled.
/// `stored` maps booking number → status.
pub fn check_acknowledged(acks: &[Acknowledged], stored: &HashMap<String, String>) -> Verdict {
    let mut v = Verdict::new("I4", "no acknowledged create or cancel lost");
    v.checked = acks.len();
    for a in acks {
        match (a.kind, stored.get(&a.number)) {
            (_, None) => v.violate(format!(
                "op {} ({}): booking {} acknowledged but not stored",
                a.op, a.kind, a.number
            )),
            ("cancel", Some(status)) if status != "CANCELLED" => v.violate(format!(
                "op {}: cancel of {} acknowledged but the booking is {status}",
                a.op, a.number
            )),
            _ => {}
        }
    }
    v
}

/// A keyed attempt refused after its operation's booking was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LateRefusal {
    /// Operation index.
    pub op: u32,
    /// Which attempt.
    pub attempt: u32,
    /// The refusal's code.
    pub code: String,
    /// How long after the booking was written the service decided the refusal.
    pub after_ms: i64,
}

/// I5: no operation (however often retried with its key) made more than one booking, every
/// successful attempt of one operation saw the same booking, and no keyed attempt was refused
/// while its key owns a booking. `refusals` lists every keyed attempt answered with a `BUS_*`
/// refusal decided after the operation's booking was written. `per_op` maps operation index → the
/// booking numbers stored for it; `replies` maps operation index → numbers its replies carried.
pub fn check_retries(
    per_op: &HashMap<u32, Vec<String>>,
    replies: &HashMap<u32, Vec<String>>,
    refusals: &[LateRefusal],
    keyed_ops: usize,
) -> Verdict {
    let mut v = Verdict::new("I5", "a retried create never makes a second booking");
    v.checked = keyed_ops;
    let mut ops: Vec<_> = per_op.iter().collect();
    ops.sort();
    for (op, numbers) in ops {
        if numbers.len() > 1 {
            v.violate(format!("op {op}: {} bookings {numbers:?}", numbers.len()));
        }
    }
    let mut seen: Vec<_> = replies.iter().collect();
    seen.sort();
    for (op, numbers) in seen {
        if numbers.windows(2).any(|w| w[0] != w[1]) {
            v.violate(format!(
                "op {op}: replies named different bookings {numbers:?}"
            ));
        }
    }
    for r in refusals {
        if let Some(numbers) = per_op.get(&r.op).filter(|n| !n.is_empty()) {
            v.violate(format!(
                "op {} attempt {}: refused with {}, decided {} ms after its key made booking {}",
                r.op, r.attempt, r.code, r.after_ms, numbers[0]
            ));
        }
    }
    v
}

/// A booking event's row, with how often a core subscriber saw its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSeen {
    /// Event id (`Nats-Msg-Id`).
    pub id: String,
    /// Times a subscriber received it.
    pub seen: u64,
    /// Delivery attempts on the row.
    pub attempts: i32,
    /// Whether the row is SENT.
    pub sent: bool,
}

/// What I6 compares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Deliveries {
    /// book/release rows marked sent.
    pub seat_rows: u64,
    /// Messages course-stub applied.
    pub applied: u64,
    /// Duplicates course-stub made.
    pub duplicated: u64,
    /// Duplicates it recognised by `Nats-Msg-Id`.
    pub deduplicated: u64,
    /// Booking events marked sent.
    pub event_rows: u64,
    /// Messages in the JetStream stream, when there is one.
    pub stream_messages: Option<u64>,
    /// Without JetStream: every booking event row and how often a subscriber saw it.
    pub events_seen: Option<Vec<EventSeen>>,
    /// Rows left PENDING at the end that nothing holds back: (subject, attempts, last error).
    pub stranded: Vec<(String, i32, String)>,
    /// Messages course-stub refused whose rows are not REJECTED: (event id, row status).
    pub refusals_unrecorded: Vec<(String, String)>,
    /// Rows REJECTED (recorded refusals): (subject, course-service's answer).
    pub rejected: Vec<(String, String)>,
}

/// I6: each book/release applied exactly once, each refusal recorded (never marked sent), each
/// booking event delivered (stored once in the stream, or seen by a subscriber no more often than
/// it was sent), and no row stranded.
pub fn check_deliveries(d: &Deliveries) -> Verdict {
    let mut v = Verdict::new(
        "I6",
        "each book/release applied once, each refusal recorded; each booking event delivered with a stable id",
    );
    v.checked = usize::try_from(d.seat_rows + d.event_rows).unwrap_or(usize::MAX);
    if d.applied != d.seat_rows {
        v.violate(format!(
            "course-stub applied {} book/release messages for {} sent outbox rows",
            d.applied, d.seat_rows
        ));
    }
    if d.deduplicated < d.duplicated {
        v.violate(format!(
            "{} duplicates made, only {} recognised",
            d.duplicated, d.deduplicated
        ));
    }
    if let Some(messages) = d.stream_messages {
        if messages != d.event_rows {
            v.violate(format!(
                "JetStream holds {messages} booking events for {} sent outbox rows",
                d.event_rows
            ));
        }
    }
    for e in d.events_seen.iter().flatten() {
        if e.sent && e.seen == 0 {
            v.violate(format!("event {} is SENT but no subscriber saw it", e.id));
        } else if e.seen > u64::try_from(e.attempts.max(1)).unwrap_or(0) {
            v.violate(format!(
                "event {} seen {} times in {} attempts ({})",
                e.id,
                e.seen,
                e.attempts,
                if e.sent { "sent" } else { "still not sent" }
            ));
        }
    }
    for (subject, attempts, error) in &d.stranded {
        v.violate(format!(
            "{subject} still PENDING after {attempts} attempts: {error}"
        ));
    }
    for (id, status) in &d.refusals_unrecorded {
        v.violate(format!(
            "course-service refused event {id}, but its row is {status}, not REJECTED"
        ));
    }
    for (subject, answer) in &d.rejected {
        v.note(format!("{subject} REJECTED by course-service: {answer}"));
    }
    v
}

mod phantom;
pub use phantom::{check_phantoms, Phantom};

#[cfg(test)]
mod tests;
