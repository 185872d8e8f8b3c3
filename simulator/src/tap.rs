//! The wire tap (DESIGN.md §7): during a run it listens to every subject and checks each message
//! that booking-service, course-stub or the clients put on the wire against the contract of its
//! subject. Requests and events are checked with the payload type, and replies (matched through
//! their inbox) with the reply type or the error type. The verdict joins the invariants as `C1`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use contracts::catalog::{SubjectSpec, TypeSpec, ERROR, SUBJECTS};
use contracts::{Codec, ReplyOutcome};
use futures::StreamExt as _;

use crate::checker::Verdict;

/// What the tap saw.
#[derive(Debug)]
struct Seen {
    verdict: Verdict,
    /// Inbox → the reply type expected on it.
    pending: HashMap<String, (&'static str, TypeSpec)>,
    /// Messages checked per subject.
    per_subject: BTreeMap<String, u64>,
}

/// A running tap.
pub struct Tap {
    task: tokio::task::JoinHandle<()>,
    seen: Arc<Mutex<Seen>>,
}

impl Seen {
    fn new() -> Self {
        Self {
            verdict: Verdict::new(
                "C1",
                "every message on the wire matches its subject's contract",
            ),
            pending: HashMap::new(),
            per_subject: BTreeMap::new(),
        }
    }
}

fn spec(subject: &str) -> Option<&'static SubjectSpec> {
    SUBJECTS.iter().find(|s| s.subject == subject)
}

/// Checks one message. `Ok(Some(label))` when it is part of the contract (the subject, or
/// `reply to <subject>`), `Ok(None)` when it is not, `Err` naming what is wrong with it.
fn check(
    seen: &mut Seen,
    subject: &str,
    reply: Option<&str>,
    payload: &[u8],
) -> Result<Option<String>, String> {
    let codec = Codec::with_max_len(16 << 20);
    if subject.starts_with("_INBOX.") {
        let Some((asked, expected)) = seen.pending.remove(subject) else {
            return Ok(None);
        };
        let label = Some(format!("reply to {asked}"));
        let decoded = codec
            .decode_reply(payload)
            .map_err(|e| format!("reply to {asked}: {e}"))?;
        match decoded.outcome {
            ReplyOutcome::Response(v) => (expected.roundtrip)(v)
                .map(|_| label)
                .map_err(|e| format!("reply to {asked} is not a {expected:?}: {e}")),
            ReplyOutcome::Err(v) => (ERROR.roundtrip)(v)
                .map(|_| label)
                .map_err(|e| format!("error reply to {asked}: {e}")),
            ReplyOutcome::NoHandler(text) => Err(format!("{asked} answered \"{text}\"")),
        }
    } else if let Some(spec) = spec(subject) {
        let inbound = codec
            .decode_inbound(payload)
            .map_err(|e| format!("{subject}: {e}"))?;
        (spec.payload.roundtrip)(inbound.data)
            .map_err(|e| format!("{subject}: payload is not a {:?}: {e}", spec.payload))?;
        if let (Some(inbox), Some(expected)) = (reply, spec.reply) {
            if matches!(inbound.kind, contracts::InboundKind::Request(_)) {
                seen.pending
                    .insert(inbox.to_owned(), (spec.subject, expected));
            }
        }
        Ok(Some(subject.to_owned()))
    } else {
        // JetStream's API, the stub's control plane, anything else: not part of the contract.
        Ok(None)
    }
}

impl Tap {
    /// Subscribes to every subject on `client`'s server.
    pub async fn start(client: &async_nats::Client) -> anyhow::Result<Self> {
        let mut sub = client.subscribe(">").await?;
        client.flush().await?;
        let seen = Arc::new(Mutex::new(Seen::new()));
        let shared = seen.clone();
        let task = tokio::spawn(async move {
            while let Some(msg) = sub.next().await {
                let Ok(mut guard) = shared.lock() else { return };
                let seen = &mut *guard;
                let subject = msg.subject.to_string();
                let result = check(
                    seen,
                    &subject,
                    msg.reply.as_ref().map(|r| r.as_str()),
                    &msg.payload,
                );
                match result {
                    Ok(Some(label)) => {
                        seen.verdict.checked += 1;
                        *seen.per_subject.entry(label).or_default() += 1;
                    }
                    Ok(None) => {}
                    Err(why) => {
                        seen.verdict.checked += 1;
                        seen.verdict.violate(why);
                    }
                }
                // Replies that never came (timeouts) must not pile up.
                if seen.pending.len() > 100_000 {
                    seen.pending.clear();
                }
            }
        });
        Ok(Self { task, seen })
    }

    /// Stops listening and returns the verdict and the count per subject.
    pub fn finish(&self) -> (Verdict, BTreeMap<String, u64>) {
        self.task.abort();
        let mut seen = match self.seen.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let seen = std::mem::replace(&mut *seen, Seen::new());
        (seen.verdict, seen.per_subject)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use contracts::{subjects, MessageId};

    #[test]
    fn a_request_and_its_reply_are_checked_against_their_types() {
        let codec = Codec::default();
        let mut seen = Seen::new();
        let id = MessageId::fresh();
        let body = codec
            .encode_request(
                subjects::BOOKING_FIND_BY_ID,
                &serde_json::json!({"id": 7}),
                &id,
            )
            .unwrap();
        assert_eq!(
            check(
                &mut seen,
                subjects::BOOKING_FIND_BY_ID,
                Some("_INBOX.a.1"),
                &body
            ),
            Ok(Some(subjects::BOOKING_FIND_BY_ID.to_owned()))
        );
        // A reply of the wrong shape is a violation that names the subject.
        let wrong = codec
            .encode_response(
                &id,
                &serde_json::json!({"success": true, "data": {"id": "x"}}),
            )
            .unwrap();
        let err = check(&mut seen, "_INBOX.a.1", None, &wrong).unwrap_err();
        assert!(err.contains("booking.findById"), "{err}");
        // An inbox nobody asked on is ignored.
        assert_eq!(check(&mut seen, "_INBOX.b.2", None, &wrong), Ok(None));
    }

    #[test]
    fn a_payload_that_breaks_its_contract_is_named() {
        let codec = Codec::default();
        let mut seen = Seen::new();
        let body = codec
            .encode_event(
                subjects::SLOTS_BOOK,
                &serde_json::json!({"timeSlotId": "seven"}),
            )
            .unwrap();
        let err = check(&mut seen, subjects::SLOTS_BOOK, None, &body).unwrap_err();
        assert!(err.starts_with("gameTimeSlots.book"), "{err}");
        assert_eq!(check(&mut seen, "$JS.API.INFO", None, b"{}"), Ok(None));
    }
}
