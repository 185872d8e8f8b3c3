//! The safety phase's load: every operation of the trace sent at its scheduled time (an open
//! model: a slow system does not slow the senders, and latency counts from the scheduled time, so
//! coordinated omission cannot hide queueing), keyed creates retried on transient failures, and
//! every attempt recorded in the history the judge reads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use contracts::{subjects, CallError, NestClient, ReplyOutcome};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::live::live_line;
use super::setup::World;
use super::Journal;
use crate::trace::{Action, Op, Trace};

/// How one attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Succeeded.
    Ok,
    /// Answered with an error.
    Fail,
    /// No answer, or an answer saying the outcome is unknown (its code kept): it may or may
    /// not have happened.
    Unknown,
    /// Not sent: the booking it refers to does not exist.
    Skipped,
}

/// One attempt of one operation, as the history records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    /// Operation index.
    pub i: u32,
    /// Operation kind.
    pub op: String,
    /// 0 for the first attempt.
    pub attempt: u32,
    /// When it was sent, ms from the start.
    pub invoke_ms: f64,
    /// When it ended, ms from the start.
    pub end_ms: f64,
    /// How.
    pub outcome: Outcome,
    /// Wire code of a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// Booking number the reply named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// The `timestamp` the service put on its error reply: when it decided, as the service's
    /// clock read it. The answer may reach the client much later (a reply buffered through a
    /// NATS reconnect), so I5 judges a refusal by this, not by `end_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamped: Option<chrono::DateTime<chrono::Utc>>,
}

/// What an answer said, as an attempt records it (see [`Attempt`]).
#[derive(Debug, Default)]
struct Said {
    code: Option<String>,
    number: Option<String>,
    stamped: Option<chrono::DateTime<chrono::Utc>>,
}

/// A booking a create made, for later operations on it.
#[derive(Debug, Clone)]
struct Made {
    id: i64,
    user: i64,
    number: String,
}

/// The load's state, shared by the operation tasks.
pub(crate) struct Load {
    users: NestClient,
    journal: Arc<Journal>,
    retries: u32,
    start_date: chrono::NaiveDate,
    made: Mutex<HashMap<u32, Made>>,
    history: Mutex<Vec<Attempt>>,
}

/// A call's result: the response, a wire error code, or no answer.
enum Answer {
    Ok(Value),
    /// The code, and the error value's own timestamp when it has one.
    Fail(String, Option<chrono::DateTime<chrono::Utc>>),
    /// No answer, an unreadable one, or an error answer that says its outcome
    /// (`error.details.outcome`, with its code): it may or may not have happened.
    Unknown(Option<String>),
}

impl Load {
    pub fn new(world: &World, trace: &Trace, journal: Arc<Journal>) -> Arc<Self> {
        Arc::new(Load {
            users: world.users.clone(),
            journal,
            retries: trace.header.scenario.workload.retries,
            start_date: world.start_date,
            made: Mutex::new(HashMap::new()),
            history: Mutex::new(Vec::new()),
        })
    }

    /// Sends every operation at its time, waits for the last answer, and returns the history;
    /// with `progress`, a line a second on stderr says how it goes.
    pub async fn run(self: Arc<Self>, trace: &Trace, progress: bool) -> Vec<Attempt> {
        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        let live = progress.then(|| tokio::spawn(self.clone().live(trace.ops.len(), done_rx)));
        let mut tasks = tokio::task::JoinSet::new();
        for op in trace.ops.iter().cloned() {
            tokio::time::sleep_until((self.journal.t0 + Duration::from_millis(op.t_ms)).into())
                .await;
            let load = self.clone();
            tasks.spawn(async move { load.perform(op).await });
        }
        while tasks.join_next().await.is_some() {}
        let _ = done_tx.send(true);
        if let Some(live) = live {
            let _ = live.await;
        }
        self.history.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Each second until `done`: the attempts that ended in that second (per second, their p99
    /// latency, failures by code, answers that never came), the outbox backlog at the latest
    /// probe, and how many of the `ops` operations have ended.
    async fn live(self: Arc<Self>, ops: usize, mut done: tokio::sync::watch::Receiver<bool>) {
        let mut seen = 0;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = done.changed() => return,
            }
            let (line, now_seen) = {
                let Ok(history) = self.history.lock() else {
                    return;
                };
                let fresh = history.get(seen..).unwrap_or_default();
                (
                    live_line(
                        self.journal.now_ms(),
                        fresh,
                        history.len(),
                        ops,
                        self.journal.backlog(),
                    ),
                    history.len(),
                )
            };
            seen = now_seen;
            eprintln!("{line}");
        }
    }

    async fn call(&self, subject: &'static str, data: &Value) -> Answer {
        match self.users.request(subject, data).await {
            Ok(reply) => match reply.outcome {
                ReplyOutcome::Response(v) => Answer::Ok(v),
                // "unknown", or "applied" without the booking to show: either way the client
                // cannot say what happened.
                ReplyOutcome::Err(e) if e["error"]["details"]["outcome"].is_string() => {
                    Answer::Unknown(e["error"]["code"].as_str().map(str::to_owned))
                }
                ReplyOutcome::Err(e) => Answer::Fail(
                    e["error"]["code"].as_str().unwrap_or("UNKNOWN").to_owned(),
                    e["timestamp"]
                        .as_str()
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| t.with_timezone(&chrono::Utc)),
                ),
                ReplyOutcome::NoHandler(_) => Answer::Fail("NO_HANDLER".into(), None),
            },
            // Nobody received it: a definite failure, safe to retry.
            Err(CallError::NoResponders(_)) => Answer::Fail("NO_RESPONDERS".into(), None),
            // An answer that could not be read says nothing of what happened.
            Err(CallError::Unreadable(..) | CallError::WrongId(_)) => {
                Answer::Unknown(Some("DECODE".into()))
            }
            Err(_) => Answer::Unknown(None),
        }
    }

    /// The request an operation sends, how many attempts it may make, and (for a cancel) the
    /// booking number its acknowledgement names; `None` when the booking it refers to was never
    /// made.
    fn request(&self, op: &Op) -> Option<(&'static str, Value, u32, Option<String>)> {
        let made = |of: &u32| self.made.lock().ok().and_then(|m| m.get(of).cloned());
        Some(match &op.action {
            Action::Create {
                user,
                slot,
                players,
                key,
                ..
            } => {
                let mut data = json!({"userId": user, "gameTimeSlotId": slot,
                    "playerCount": players, "paymentMethod": "card",
                    "userEmail": format!("user{user}@example.com"), "userName": "시뮬레이터",
                    "specialRequests": format!("sim-op-{}", op.i)});
                if let Some(key) = key {
                    data["idempotencyKey"] = Value::from(key.clone());
                }
                // Only a keyed create may be retried safely.
                let attempts = if key.is_some() { 1 + self.retries } else { 1 };
                (subjects::BOOKING_CREATE, data, attempts, None)
            }
            Action::Cancel { of } => {
                let made = made(of)?;
                (
                    subjects::BOOKING_CANCEL,
                    json!({"id": made.id, "userId": made.user, "reason": "simulator"}),
                    1,
                    Some(made.number),
                )
            }
            Action::Update { of, players } => (
                subjects::BOOKING_UPDATE,
                json!({"id": made(of)?.id, "dto": {"playerCount": players}}),
                1,
                None,
            ),
            Action::FindById { of } => (
                subjects::BOOKING_FIND_BY_ID,
                json!({"id": made(of)?.id}),
                1,
                None,
            ),
            Action::FindByUserId { user } => (
                subjects::BOOKING_FIND_BY_USER_ID,
                json!({"userId": user}),
                1,
                None,
            ),
            Action::Availability { game, day } => {
                let date = self.start_date + chrono::Duration::days(i64::from(*day));
                (
                    subjects::BOOKING_AVAILABILITY,
                    json!({"gameId": game, "date": date.to_string()}),
                    1,
                    None,
                )
            }
            Action::Search => (
                subjects::BOOKING_SEARCH,
                json!({"timeFilter": "upcoming", "limit": 20}),
                1,
                None,
            ),
        })
    }

    /// Runs one operation (with its retries) and records every attempt.
    async fn perform(&self, op: Op) {
        let Some((subject, data, attempts, cancels)) = self.request(&op) else {
            let now = self.journal.now_ms();
            self.record(&op, 0, now, Outcome::Skipped, Said::default());
            return;
        };
        for attempt in 0..attempts {
            let invoke = self.journal.now_ms();
            let last = attempt + 1 == attempts;
            match self.call(subject, &data).await {
                Answer::Ok(v) => {
                    let number = v["data"]["bookingNumber"].as_str().map(str::to_owned);
                    if let (Action::Create { .. }, Some(id), Some(user), Some(n)) = (
                        &op.action,
                        v["data"]["id"].as_i64(),
                        v["data"]["userId"].as_i64(),
                        number.clone(),
                    ) {
                        if let Ok(mut m) = self.made.lock() {
                            m.insert(
                                op.i,
                                Made {
                                    id,
                                    user,
                                    number: n,
                                },
                            );
                        }
                    }
                    let number = cancels.or(number);
                    let said = Said {
                        number,
                        ..Said::default()
                    };
                    self.record(&op, attempt, invoke, Outcome::Ok, said);
                    return;
                }
                Answer::Fail(code, stamped) => {
                    // Unavailable or database trouble: a keyed create tries again with its key.
                    let transient = code.starts_with("SYS_") || code == "NO_RESPONDERS";
                    let said = Said {
                        code: Some(code),
                        stamped,
                        ..Said::default()
                    };
                    self.record(&op, attempt, invoke, Outcome::Fail, said);
                    if !transient || last {
                        return;
                    }
                }
                Answer::Unknown(code) => {
                    let said = Said {
                        code,
                        ..Said::default()
                    };
                    self.record(&op, attempt, invoke, Outcome::Unknown, said);
                    if last {
                        return;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt + 1))).await;
        }
    }

    fn record(&self, op: &Op, attempt: u32, invoke_ms: f64, outcome: Outcome, said: Said) {
        let end_ms = self.journal.now_ms();
        if let Ok(mut h) = self.history.lock() {
            h.push(Attempt {
                i: op.i,
                op: op.action.name().to_owned(),
                attempt,
                invoke_ms,
                end_ms,
                outcome,
                code: said.code,
                number: said.number,
                stamped: said.stamped,
            });
        }
    }
}

/// Writes `history.jsonl`, one attempt per line, in operation order.
pub(crate) fn write_history(dir: &std::path::Path, history: &[Attempt]) -> anyhow::Result<()> {
    let mut sorted: Vec<&Attempt> = history.iter().collect();
    sorted.sort_by_key(|a| (a.i, a.attempt));
    let mut text = String::new();
    for a in sorted {
        text.push_str(&serde_json::to_string(a)?);
        text.push('\n');
    }
    std::fs::write(dir.join("history.jsonl"), text)?;
    Ok(())
}
