//! Phase 4: the judge reads the final state (database, course-stub, the stream, what a subscriber
//! saw) against the history and decides I3–I6 (I1/I2 come from the probes), and checks the
//! scenario's thresholds against the report.

use std::collections::{HashMap, HashSet};

use anyhow::Context as _;
use course_stub::control::{Control, StubState};

use super::load::{Attempt, Outcome};
use super::setup::World;
use super::Journal;
use crate::checker::{
    self, Acknowledged, Deliveries, EventSeen, LateRefusal, SlotSnapshot, Verdict,
};
use crate::delivery::{accounted, stranded, stub_slots, with_external};
use crate::report::{Check, Report};
use crate::trace::{Action, Trace};

/// A stored booking: number, status, the create's tag (`sim-op-<i>`), when it was written.
pub(crate) type Stored = (String, String, Option<String>, chrono::NaiveDateTime);

/// I3, I4, I5 and I6 on the final state; `last` is the final snapshot I1/I2 were checked on.
pub(crate) async fn judge(
    world: &World,
    trace: &Trace,
    history: &[Attempt],
    journal: &Journal,
    converged: Option<f64>,
    last: &[SlotSnapshot],
) -> anyhow::Result<[Verdict; 5]> {
    let stub = Control::new(world.client.clone())
        .state()
        .await
        .context("course-stub did not report its state")?;
    let i3 = convergence(&world.pool, last, &stub, converged).await?;
    let stored: Vec<Stored> = sqlx::query_as(
        "SELECT booking_number, status::text, special_requests, created_at FROM bookings",
    )
    .fetch_all(&world.pool)
    .await?;
    let i4 = acknowledged(history, &stored);
    let i5 = retries(trace, history, &stored, journal);
    let i6 = deliveries(world, trace, &stub).await?;
    let i7 = super::phantoms::phantoms(trace, history, &stored);
    Ok([i3, i4, i5, i6, i7])
}

/// I3: course-stub's counts match the bookings, refusals and the desk's own seats accounted.
async fn convergence(
    pool: &sqlx::PgPool,
    snapshot: &[SlotSnapshot],
    stub: &StubState,
    converged: Option<f64>,
) -> anyhow::Result<Verdict> {
    let sums: HashMap<i32, i64> = snapshot.iter().map(|s| (s.id, s.sum)).collect();
    Ok(checker::check_convergence(
        &stub_slots(stub),
        &sums,
        &with_external(accounted(pool).await?, stub),
        converged,
    ))
}

/// I4: every acknowledged create and cancel is in the database as acknowledged.
fn acknowledged(history: &[Attempt], stored: &[Stored]) -> Verdict {
    let status: HashMap<String, String> = stored
        .iter()
        .map(|(n, s, _, _)| (n.clone(), s.clone()))
        .collect();
    let acks: Vec<Acknowledged> = history
        .iter()
        .filter(|a| a.outcome == Outcome::Ok && (a.op == "create" || a.op == "cancel"))
        .filter_map(|a| {
            Some(Acknowledged {
                op: a.i,
                kind: if a.op == "create" { "create" } else { "cancel" },
                number: a.number.clone()?,
            })
        })
        .collect();
    checker::check_acknowledged(&acks, &status)
}

/// I5: a keyed create makes at most one booking, and every reply to it names that booking.
fn retries(trace: &Trace, history: &[Attempt], stored: &[Stored], journal: &Journal) -> Verdict {
    // Each create tags its booking with its operation index; when the booking was written (under
    // its slot lock, just before the commit) decides which refusals count against I5.
    let mut per_op: HashMap<u32, Vec<String>> = HashMap::new();
    let mut made_at: HashMap<u32, chrono::NaiveDateTime> = HashMap::new();
    for (number, _, tag, at) in stored {
        if let Some(op) = tag
            .as_deref()
            .and_then(|t| t.strip_prefix("sim-op-"))
            .and_then(|t| t.parse::<u32>().ok())
        {
            per_op.entry(op).or_default().push(number.clone());
            made_at.entry(op).or_insert(*at);
        }
    }
    let mut replies: HashMap<u32, Vec<String>> = HashMap::new();
    for a in history.iter().filter(|a| a.op == "create") {
        if let Some(n) = &a.number {
            replies.entry(a.i).or_default().push(n.clone());
        }
    }
    let keyed: HashSet<u32> = trace
        .ops
        .iter()
        .filter(|op| matches!(&op.action, Action::Create { key: Some(_), .. }))
        .map(|op| op.i)
        .collect();
    let refusals = refusals_after_write(history, &keyed, &made_at, journal.t0_wall);
    checker::check_retries(&per_op, &replies, &refusals, trace.header.derived.keyed)
}

/// The keyed attempts refused with a `BUS_*` code after their operation's booking was written
/// (`made_at`, per operation). A refusal counts only if the booking was written before the
/// service decided it: an abandoned attempt that commits after its retry was refused is another
/// story. The decision's time is the stamp the service put on its error reply; only a reply
/// without one is judged by when the client got it. (The arrival can be much later, a reply
/// buffered through a NATS reconnect or a client starved on a busy machine: judged by it, a
/// refusal decided before the booking existed could count against I5.)
fn refusals_after_write(
    history: &[Attempt],
    keyed: &HashSet<u32>,
    made_at: &HashMap<u32, chrono::NaiveDateTime>,
    t0_wall: chrono::NaiveDateTime,
) -> Vec<LateRefusal> {
    history
        .iter()
        .filter(|a| a.outcome == Outcome::Fail && keyed.contains(&a.i))
        .filter_map(|a| {
            let code = a.code.clone().filter(|c| c.starts_with("BUS_"))?;
            let decided = a.stamped.map(|t| t.naive_utc()).unwrap_or_else(|| {
                t0_wall + chrono::Duration::microseconds((a.end_ms * 1000.0) as i64)
            });
            let made = made_at.get(&a.i).filter(|at| **at < decided)?;
            Some(LateRefusal {
                op: a.i,
                attempt: a.attempt,
                code,
                after_ms: (decided - *made).num_milliseconds(),
            })
        })
        .collect()
}

/// I6: every outbox row delivered once in effect: seat changes applied once by course-stub,
/// events in the stream (or, without JetStream, seen by a subscriber as often as sent), refusals
/// recorded as REJECTED, nothing stranded.
async fn deliveries(world: &World, trace: &Trace, stub: &StubState) -> anyhow::Result<Verdict> {
    let pool = &world.pool;
    let jetstream = trace.header.scenario.jetstream;
    let counts: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT event_type, status, count(*) FROM outbox_events GROUP BY 1, 2")
            .fetch_all(pool)
            .await?;
    let rows = |seats: bool, state: &str| -> u64 {
        counts
            .iter()
            .filter(|(t, s, _)| t.starts_with("gameTimeSlots.") == seats && s == state)
            .map(|(_, _, n)| u64::try_from(*n).unwrap_or(0))
            .sum()
    };
    let stream_messages = async {
        let js = async_nats::jetstream::new(world.client.clone());
        let mut stream = js.get_stream("BOOKING_EVENTS").await.ok()?;
        Some(stream.info().await.ok()?.state.messages)
    }
    .await;
    let seen = world.events_seen.finish();
    let events_seen = if jetstream {
        None
    } else {
        let rows: Vec<(uuid::Uuid, i32, String)> = sqlx::query_as(
            "SELECT event_id, retry_count, status FROM outbox_events WHERE channel = 'events' ORDER BY id",
        )
        .fetch_all(pool)
        .await?;
        Some(
            rows.into_iter()
                .map(|(id, retries, status)| {
                    let id = id.to_string();
                    EventSeen {
                        seen: seen.get(&id).copied().unwrap_or(0),
                        // A SENT row's last attempt is not counted in retry_count.
                        attempts: retries + i32::from(status == "SENT"),
                        sent: status == "SENT",
                        id,
                    }
                })
                .collect(),
        )
    };
    let refused_ids: Vec<uuid::Uuid> = stub
        .refused_ids
        .iter()
        .filter_map(|id| id.parse().ok())
        .collect();
    let refusals_unrecorded: Vec<(String, String)> = sqlx::query_as(
        "SELECT DISTINCT event_id::text, status FROM outbox_events \
         WHERE event_id = ANY($1) AND status <> 'REJECTED' ORDER BY 1",
    )
    .bind(&refused_ids)
    .fetch_all(pool)
    .await?;
    let rejected: Vec<(String, String)> = sqlx::query_as(
        "SELECT event_type, COALESCE(last_error, '') FROM outbox_events WHERE status = 'REJECTED' ORDER BY id",
    )
    .fetch_all(pool)
    .await?;
    Ok(checker::check_deliveries(&Deliveries {
        seat_rows: rows(true, "SENT"),
        applied: stub.counts.applied,
        duplicated: stub.counts.duplicated,
        deduplicated: stub.counts.deduplicated,
        event_rows: rows(false, "SENT"),
        stream_messages: stream_messages.filter(|_| jetstream),
        events_seen,
        stranded: stranded(pool).await?,
        refusals_unrecorded,
        rejected,
    }))
}

/// The scenario's thresholds against the report.
pub(crate) fn thresholds(trace: &Trace, report: &Report) -> Vec<Check> {
    let t = &trace.header.scenario.thresholds;
    let mut out = Vec::new();
    if let Some(bound) = t.min_throughput {
        out.push(Check {
            name: "min throughput ops/s".into(),
            bound,
            actual: report.throughput,
            held: report.throughput >= bound,
        });
    }
    for (op, bound) in &t.max_p99_ms {
        let actual = report.ops.get(op).map_or(0.0, |s| s.latency.p99);
        out.push(Check {
            name: format!("max {op} p99 ms"),
            bound: *bound,
            actual,
            held: actual <= *bound,
        });
    }
    if let Some(bound) = t.max_error_share {
        let sent: u64 = report.ops.values().map(|s| s.count - s.skipped).sum();
        let bad: u64 = report
            .ops
            .values()
            .map(|s| {
                let errors: u64 = s
                    .codes
                    .iter()
                    .filter(|(c, _)| !super::summary::refusal(Some(c.as_str())))
                    .map(|(_, n)| n)
                    .sum();
                errors + s.unknown
            })
            .sum();
        let actual = bad as f64 / sent.max(1) as f64;
        out.push(Check {
            name: "max error share".into(),
            bound,
            actual,
            held: actual <= bound,
        });
    }
    if let Some(bound) = t.max_convergence_s {
        let actual = report.convergence_s.unwrap_or(f64::INFINITY);
        out.push(Check {
            name: "max convergence s".into(),
            bound,
            actual,
            held: actual <= bound,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(i: u32, end_ms: f64, stamped_ms: Option<i64>, t0: chrono::NaiveDateTime) -> Attempt {
        Attempt {
            i,
            op: "create".into(),
            attempt: 1,
            invoke_ms: 0.0,
            end_ms,
            outcome: Outcome::Fail,
            code: Some("BUS_004".into()),
            number: None,
            stamped: stamped_ms.map(|ms| (t0 + chrono::Duration::milliseconds(ms)).and_utc()),
        }
    }

    #[test]
    fn a_refusal_counts_against_i5_by_when_the_service_decided_it_not_when_it_arrived() {
        let t0 = chrono::DateTime::from_timestamp(1_700_000_000, 0)
            .map(|t| t.naive_utc())
            .unwrap_or_default();
        let keyed: HashSet<u32> = [1, 2, 3].into();
        // Every operation's booking was written 100 ms into the run.
        let made_at: HashMap<u32, _> = [1, 2, 3]
            .into_iter()
            .map(|i| (i, t0 + chrono::Duration::milliseconds(100)))
            .collect();
        let history = [
            // Decided at 50 ms, before the booking existed; the answer arrived at 900 ms.
            refusal(1, 900.0, Some(50), t0),
            // Decided at 150 ms, after the booking was written: a refusal of an existing booking.
            refusal(2, 160.0, Some(150), t0),
            // No stamp: judged by its arrival, after the write.
            refusal(3, 120.0, None, t0),
        ];
        let counted: Vec<(u32, i64)> = refusals_after_write(&history, &keyed, &made_at, t0)
            .into_iter()
            .map(|r| (r.op, r.after_ms))
            .collect();
        assert_eq!(counted, [(2, 50), (3, 20)]);
    }
}
