//! I7 on the final state: which creates and cancels answered only with definite errors left
//! their effect in the database all the same (`checker::check_phantoms` keeps the verdict).

use std::collections::HashMap;

use super::judge::Stored;
use super::load::{Attempt, Outcome};
use crate::checker::{self, Verdict};
use crate::trace::{Action, Trace};

/// I7: a create or cancel whose every attempt was answered with a definite error (not "outcome
/// unknown", not without an answer) left no booking, cancelled nothing.
pub(crate) fn phantoms(trace: &Trace, history: &[Attempt], stored: &[Stored]) -> Verdict {
    let mut by_op: HashMap<u32, Vec<&Attempt>> = HashMap::new();
    for a in history {
        by_op.entry(a.i).or_default().push(a);
    }
    // The last code of an operation answered only with errors.
    let refused = |op: u32| -> Option<String> {
        let attempts = by_op.get(&op)?;
        if attempts.iter().any(|a| a.outcome != Outcome::Fail) {
            return None;
        }
        attempts
            .iter()
            .max_by_key(|a| a.attempt)
            .map(|a| a.code.clone().unwrap_or_default())
    };
    let mut made: HashMap<u32, Vec<(&str, &str)>> = HashMap::new();
    for (number, status, tag, _) in stored {
        if let Some(op) = tag
            .as_deref()
            .and_then(|t| t.strip_prefix("sim-op-"))
            .and_then(|t| t.parse::<u32>().ok())
        {
            made.entry(op).or_default().push((number, status));
        }
    }
    // A cancel counts against I7 only if no other cancel of its booking may have done it.
    let mut cancels_of: HashMap<u32, Vec<u32>> = HashMap::new();
    for op in &trace.ops {
        if let Action::Cancel { of } = &op.action {
            cancels_of.entry(*of).or_default().push(op.i);
        }
    }
    let mut checked = 0;
    let mut found = Vec::new();
    for op in &trace.ops {
        match &op.action {
            Action::Create { .. } => {
                let Some(code) = refused(op.i) else { continue };
                checked += 1;
                if let Some((number, _)) = made.get(&op.i).and_then(|m| m.first()) {
                    found.push(checker::Phantom {
                        op: op.i,
                        kind: "create",
                        code,
                        left: format!("its booking {number} exists"),
                    });
                }
            }
            Action::Cancel { of } => {
                let Some(code) = refused(op.i) else { continue };
                checked += 1;
                // Another cancel may have done it unless it too was refused or never sent.
                let never_sent = |c: u32| {
                    by_op
                        .get(&c)
                        .is_some_and(|a| a.iter().all(|a| a.outcome == Outcome::Skipped))
                };
                let others_failed = cancels_of.get(of).is_none_or(|all| {
                    all.iter()
                        .all(|c| *c == op.i || refused(*c).is_some() || never_sent(*c))
                });
                let cancelled = made
                    .get(of)
                    .and_then(|m| m.iter().find(|(_, s)| *s == "CANCELLED"));
                if let (true, Some((number, _))) = (others_failed, cancelled) {
                    found.push(checker::Phantom {
                        op: op.i,
                        kind: "cancel",
                        code,
                        left: format!("booking {number} is cancelled"),
                    });
                }
            }
            _ => {}
        }
    }
    checker::check_phantoms(checked, &found)
}
