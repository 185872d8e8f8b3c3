//! Consumer expectations, verified as Pact's provider verification does: each NestJS peer's file
//! (`tests/nestjs/expectations/<peer>.json`) says, per subject, what the peer sends and which
//! fields it reads. booking-service meets them when it accepts what the peer sends (the message
//! decodes and validates with today's types) and sends every field the peer reads, always, with a
//! type the peer knows. A change can look additive in the schema and still break a peer: this
//! catches it.
//!
//! ```json
//! { "peer": "user-api",
//!   "interactions": [
//!     { "subject": "booking.create", "sends": { "userId": 1, "...": "..." },
//!       "reads": { "id": "integer", "bookingNumber": "string" } } ] }
//! ```
//!
//! `sends` is a message the peer sends (to a subject booking-service handles, or as the reply to
//! one it calls); `reads` maps each path the peer reads, in the message booking-service sends
//! (the reply's `response`, or the request's or event's `data`), to the JSON type it expects.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::fields::fields;
use crate::catalog;
use crate::subjects::Service;

/// Where the peers' expectation files are, relative to the workspace root.
pub const DIR: &str = "tests/nestjs/expectations";

/// One peer's expectations.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectations {
    /// The peer's name.
    pub peer: String,
    /// What it does on each subject.
    pub interactions: Vec<Interaction>,
}

/// What a peer does on one subject.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interaction {
    /// The subject.
    pub subject: String,
    /// Where the peer learned it (the reference code's file).
    #[serde(default)]
    pub source: String,
    /// A message the peer sends on it.
    #[serde(default)]
    pub sends: Option<Value>,
    /// Each field it reads from what booking-service sends, with the JSON type it expects.
    #[serde(default)]
    pub reads: std::collections::BTreeMap<String, String>,
}

/// Every way `e` is not met by booking-service's types today, one line each.
pub fn verify(e: &Expectations) -> Vec<String> {
    let mut out = Vec::new();
    for i in &e.interactions {
        let Some(spec) = catalog::spec(&i.subject) else {
            out.push(format!(
                "{}: uses {}, which booking-service does not know",
                e.peer, i.subject
            ));
            continue;
        };
        let ours = spec.to == Service::BookingService;
        // What the peer sends: our request payload, or the reply to our call.
        let (accepts, sends) = if ours {
            (Some(spec.payload), spec.reply)
        } else {
            (spec.reply, Some(spec.payload))
        };
        if let Some(message) = &i.sends {
            match accepts {
                Some(t) => {
                    if let Err(err) = (t.roundtrip)(message.clone()) {
                        out.push(format!(
                            "{}: booking-service refuses what it sends on {}: {err}",
                            e.peer, i.subject
                        ));
                    }
                }
                None => out.push(format!(
                    "{}: sends on {}, where booking-service expects nothing",
                    e.peer, i.subject
                )),
            }
        }
        if i.reads.is_empty() {
            continue;
        }
        let Some(sent) = sends else {
            out.push(format!(
                "{}: reads from {}, where booking-service sends nothing",
                e.peer, i.subject
            ));
            continue;
        };
        let ours_fields = fields(&(sent.root_schema)().to_value());
        for (path, wanted) in &i.reads {
            match ours_fields.get(path) {
                None => out.push(format!(
                    "{}: reads `{path}` from {}, which booking-service does not send",
                    e.peer, i.subject
                )),
                Some(f) if !f.required => out.push(format!(
                    "{}: reads `{path}` from {}, which booking-service may leave out",
                    e.peer, i.subject
                )),
                Some(f) if !f.types.iter().all(|t| compatible(t, wanted)) => out.push(format!(
                    "{}: reads `{path}` from {} as {wanted}, but booking-service sends {:?}",
                    e.peer, i.subject, f.types
                )),
                Some(_) => {}
            }
        }
    }
    out
}

/// Whether a value of JSON type `sent` reads as `wanted` (an integer is a number).
fn compatible(sent: &str, wanted: &str) -> bool {
    sent == wanted || (sent == "integer" && wanted == "number")
}

/// Reads every expectation file under `root`'s [`DIR`].
pub fn load(root: &Path) -> Result<Vec<Expectations>, String> {
    let dir = root.join(DIR);
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn peer(interaction: Value) -> Expectations {
        serde_json::from_value(json!({"peer": "p", "interactions": [interaction]})).unwrap()
    }

    #[test]
    fn a_read_of_a_field_we_do_not_send_is_named() {
        let e = peer(json!({"subject": "booking.confirmed", "reads": {"userPhone": "string"}}));
        let failures = verify(&e);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].contains("reads `userPhone` from booking.confirmed"));
    }

    /// `specialRequests` is optional in a booking: a peer that reads it unconditionally breaks.
    #[test]
    fn a_read_of_a_field_we_may_leave_out_is_named() {
        let e = peer(json!({"subject": "booking.update",
                            "reads": {"data.specialRequests": "string"}}));
        assert!(verify(&e)[0].contains("may leave out"), "{:?}", verify(&e));
    }

    #[test]
    fn a_read_of_the_wrong_type_is_named() {
        let e = peer(json!({"subject": "booking.confirmed", "reads": {"bookingNumber": "number"}}));
        assert!(verify(&e)[0].contains("as number"));
    }

    #[test]
    fn a_message_we_refuse_is_named() {
        let e = peer(json!({"subject": "booking.findById", "sends": {"bookingId": 5}}));
        let failures = verify(&e);
        assert!(
            failures[0].contains("refuses what it sends on booking.findById"),
            "{failures:?}"
        );
    }

    #[test]
    fn what_we_send_and_accept_meets_a_fair_peer() {
        let e = peer(json!({"subject": "booking.findById", "sends": {"id": 5},
                            "reads": {"data.bookingNumber": "string", "data.id": "number"}}));
        assert!(verify(&e).is_empty(), "{:?}", verify(&e));
    }
}
