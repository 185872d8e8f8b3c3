//! The contract gate: the wire as it is now against the last released baseline
//! (`contracts/baseline/contract.json`), each difference classified per subject and direction, as
//! AsyncAPI's diff does (breaking, non-breaking), and consumer expectations verified as Pact's
//! provider verification does ([`expect`]).
//!
//! Directions are booking-service's: on a subject it handles, it *accepts* the request's `data`
//! and *sends* the reply's `response`; on a subject it calls or emits, it *sends* the `data` and
//! *accepts* the reply. What we send may gain fields, never lose one, never let one go missing,
//! never widen its type or its enum (a peer's switch would not know the new value). What we
//! accept may lose requirements, never gain one, never narrow a type or an enum. A subject removed
//! or changed in style or parties is breaking; a new one is not.
//!
//! A breaking change passes only when `contracts/VERSION` has a higher major version than the
//! baseline and `contracts/CHANGELOG.md` has a `## <VERSION>` section naming the subject and the
//! field. `cargo xtask contract --release` then makes the current wire the new baseline (and
//! keeps the AsyncAPI document of that release beside it).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{json, Map, Value};

use crate::catalog::{SubjectSpec, ERROR, SUBJECTS};
use crate::subjects::{Service, Style};

pub mod expect;
pub mod fields;

use fields::{fields, Field};

/// Where the baseline lives, relative to the workspace root.
pub const BASELINE: &str = "contracts/baseline/contract.json";
/// The released AsyncAPI document, relative to the workspace root.
pub const BASELINE_ASYNCAPI: &str = "contracts/baseline/asyncapi.json";
/// The current contract's version, relative to the workspace root.
pub const VERSION: &str = "contracts/VERSION";
/// The changelog that lists accepted breaking changes, relative to the workspace root.
pub const CHANGELOG: &str = "contracts/CHANGELOG.md";

/// What booking-service does with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    /// It sends it: peers read it.
    Sends,
    /// It accepts it: peers write it.
    Accepts,
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Sends => "sends",
            Direction::Accepts => "accepts",
        })
    }
}

/// One difference between the baseline and now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The subject.
    pub subject: String,
    /// Which message of it, from booking-service's side (`None`: the subject itself).
    pub direction: Option<Direction>,
    /// The field's path (empty for the subject or the whole message).
    pub field: String,
    /// What changed and why it matters.
    pub why: String,
    /// Whether a peer built against the baseline can break.
    pub breaking: bool,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = if self.breaking {
            "BREAKING"
        } else {
            "compatible"
        };
        match (self.direction, self.field.is_empty()) {
            (Some(d), false) => write!(
                f,
                "{kind}: {} ({d}) field `{}`: {}",
                self.subject, self.field, self.why
            ),
            (Some(d), true) => write!(f, "{kind}: {} ({d}): {}", self.subject, self.why),
            (None, _) => write!(f, "{kind}: {}: {}", self.subject, self.why),
        }
    }
}

fn schema_of(spec: &crate::catalog::TypeSpec) -> Value {
    (spec.root_schema)().to_value()
}

/// One subject as the gate compares it.
fn subject_entry(spec: &SubjectSpec) -> Value {
    let ours = spec.to == Service::BookingService;
    let reply = spec
        .reply
        .filter(|_| spec.style.replies())
        .map(|r| schema_of(&r));
    let payload = schema_of(&spec.payload);
    let (accepts, sends) = if ours {
        (Some(payload), reply)
    } else {
        (reply, Some(payload))
    };
    json!({
        "style": match spec.style {
            Style::Request => "request",
            Style::Event => "event",
            Style::RequestOrEvent => "request-or-event",
        },
        "from": spec.from.name(),
        "to": spec.to.name(),
        "accepts": accepts,
        "sends": sends,
    })
}

/// The wire as the code defines it now, with `version`.
pub fn current(version: &str) -> Value {
    let subjects: Map<String, Value> = SUBJECTS
        .iter()
        .map(|spec| (spec.subject.to_owned(), subject_entry(spec)))
        .collect();
    json!({ "version": version, "error": schema_of(&ERROR), "subjects": subjects })
}

/// Differences between two contract documents (`baseline`, `now`).
pub fn diff(baseline: &Value, now: &Value) -> Vec<Change> {
    let empty = Map::new();
    let subjects = |v: &Value| v.get("subjects").and_then(Value::as_object).cloned();
    let (old, new) = (
        subjects(baseline).unwrap_or_else(|| empty.clone()),
        subjects(now).unwrap_or_else(|| empty.clone()),
    );
    let mut out = Vec::new();
    for (subject, was) in &old {
        let Some(is) = new.get(subject) else {
            out.push(Change {
                subject: subject.clone(),
                direction: None,
                field: String::new(),
                why: "the subject is gone (peers still send or listen to it)".into(),
                breaking: true,
            });
            continue;
        };
        for key in ["style", "from", "to"] {
            if was.get(key) != is.get(key) {
                out.push(Change {
                    subject: subject.clone(),
                    direction: None,
                    field: String::new(),
                    why: format!("its {key} changed from {} to {}", was[key], is[key]),
                    breaking: true,
                });
            }
        }
        for direction in [Direction::Sends, Direction::Accepts] {
            let key = direction.to_string();
            out.extend(message(subject, direction, &was[&key], &is[&key]));
        }
    }
    for subject in new.keys().filter(|s| !old.contains_key(*s)) {
        out.push(Change {
            subject: subject.clone(),
            direction: None,
            field: String::new(),
            why: "a new subject".into(),
            breaking: false,
        });
    }
    out.extend(message(
        "(every error reply)",
        Direction::Sends,
        &baseline["error"],
        &now["error"],
    ));
    out
}

fn change(subject: &str, d: Direction, field: &str, why: String, breaking: bool) -> Change {
    Change {
        subject: subject.to_owned(),
        direction: Some(d),
        field: field.to_owned(),
        why,
        breaking,
    }
}

/// Differences in one message of a subject.
fn message(subject: &str, d: Direction, was: &Value, is: &Value) -> Vec<Change> {
    match (was.is_null(), is.is_null()) {
        (true, true) => return Vec::new(),
        (false, true) => {
            return vec![change(subject, d, "", "the message is gone".into(), true)];
        }
        (true, false) => {
            return vec![change(subject, d, "", "a new message".into(), false)];
        }
        _ => {}
    }
    let (old, new) = (fields(was), fields(is));
    let mut out = Vec::new();
    for (path, before) in &old {
        match new.get(path) {
            None => out.push(match d {
                Direction::Sends => change(
                    subject,
                    d,
                    path,
                    "removed (or renamed): peers that read it get nothing".into(),
                    true,
                ),
                Direction::Accepts => change(
                    subject,
                    d,
                    path,
                    "no longer read (peers may keep sending it)".into(),
                    false,
                ),
            }),
            Some(after) => out.extend(field_changes(subject, d, path, before, after)),
        }
    }
    for (path, after) in new.iter().filter(|(p, _)| !old.contains_key(*p)) {
        let breaking = d == Direction::Accepts && after.required;
        let why = match (d, breaking) {
            (Direction::Accepts, true) => "a new required field: peers do not send it".into(),
            (Direction::Accepts, false) => "a new optional field".into(),
            (Direction::Sends, _) => "a new field (peers ignore what they do not know)".into(),
        };
        out.push(change(subject, d, path, why, breaking));
    }
    out
}

fn field_changes(subject: &str, d: Direction, path: &str, was: &Field, is: &Field) -> Vec<Change> {
    let mut out = Vec::new();
    match (d, was.required, is.required) {
        (Direction::Sends, true, false) => out.push(change(
            subject,
            d,
            path,
            "may now be missing: peers that read it can fail".into(),
            true,
        )),
        (Direction::Accepts, false, true) => out.push(change(
            subject,
            d,
            path,
            "made required: peers that leave it out are refused".into(),
            true,
        )),
        (_, a, b) if a != b => out.push(change(
            subject,
            d,
            path,
            format!("required {a} → {b}"),
            false,
        )),
        _ => {}
    }
    let added: Vec<&String> = is.types.difference(&was.types).collect();
    let dropped: Vec<&String> = was.types.difference(&is.types).collect();
    if !added.is_empty() || !dropped.is_empty() {
        // Sending a type a peer never saw breaks it; refusing one a peer sends breaks it.
        let breaking = match d {
            Direction::Sends => !added.is_empty(),
            Direction::Accepts => !dropped.is_empty(),
        };
        out.push(change(
            subject,
            d,
            path,
            format!("type {:?} → {:?}", was.types, is.types),
            breaking,
        ));
    }
    if let (Some(a), Some(b)) = (&was.values, &is.values) {
        let new_values: Vec<&String> = b.difference(a).collect();
        let gone: Vec<&String> = a.difference(b).collect();
        if !new_values.is_empty() {
            out.push(change(
                subject,
                d,
                path,
                format!("enum gained {new_values:?}"),
                d == Direction::Sends,
            ));
        }
        if !gone.is_empty() {
            out.push(change(
                subject,
                d,
                path,
                format!("enum lost {gone:?}"),
                d == Direction::Accepts,
            ));
        }
    }
    out
}

/// The gate's verdict.
#[derive(Debug)]
pub struct Verdict {
    /// Every difference.
    pub changes: Vec<Change>,
    /// Breaking changes the version bump and the changelog do not cover, each with why.
    pub refused: Vec<String>,
}

/// Major version of `x.y.z`.
fn major(version: &str) -> Option<u64> {
    version.trim().split('.').next()?.parse().ok()
}

/// Judges `now` against `baseline`, given the current version and the changelog's text.
pub fn judge(baseline: &Value, now: &Value, version: &str, changelog: &str) -> Verdict {
    let changes = diff(baseline, now);
    let was = baseline["version"].as_str().unwrap_or("0.0.0");
    let bumped = matches!((major(version), major(was)), (Some(a), Some(b)) if a > b);
    let section = changelog
        .split("\n## ")
        .find(|s| s.trim_start_matches("## ").starts_with(version.trim()))
        .unwrap_or("");
    let refused = changes
        .iter()
        .filter(|c| c.breaking)
        .filter_map(|c| {
            let listed = section.contains(&c.subject) && section.contains(&c.field);
            match (bumped, listed) {
                (true, true) => None,
                (false, _) => Some(format!(
                    "{c}\n  refused: a breaking change needs a new major version in {VERSION} \
                     (now {version}, baseline {was}: e.g. {}.0.0) and an entry under it in \
                     {CHANGELOG} naming `{}` and `{}`",
                    major(was).unwrap_or(0) + 1,
                    c.subject,
                    c.field
                )),
                (true, false) => Some(format!(
                    "{c}\n  refused: `## {version}` in {CHANGELOG} does not name `{}` and `{}`",
                    c.subject, c.field
                )),
            }
        })
        .collect();
    Verdict { changes, refused }
}

/// Reads the baseline, the version and the changelog under `root` and judges the current wire.
pub fn check(root: &Path) -> Result<Verdict, String> {
    let read = |rel: &str| {
        std::fs::read_to_string(root.join(rel)).map_err(|e| format!("reading {rel}: {e}"))
    };
    let baseline: Value =
        serde_json::from_str(&read(BASELINE)?).map_err(|e| format!("{BASELINE}: {e}"))?;
    let version = read(VERSION)?;
    let changelog = read(CHANGELOG).unwrap_or_default();
    let now = current(version.trim());
    Ok(judge(&baseline, &now, version.trim(), &changelog))
}

/// Writes the current wire as the new baseline, with the current version.
pub fn release(root: &Path) -> Result<String, String> {
    let version = std::fs::read_to_string(root.join(VERSION))
        .map_err(|e| format!("reading {VERSION}: {e}"))?;
    let text = serde_json::to_string_pretty(&current(version.trim())).map_err(|e| e.to_string())?;
    let path = root.join(BASELINE);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(&path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))?;
    // The released AsyncAPI document goes beside it, for peers that generate from it.
    let asyncapi = crate::asyncapi::render();
    let copy = root.join(BASELINE_ASYNCAPI);
    std::fs::write(&copy, asyncapi).map_err(|e| format!("{}: {e}", copy.display()))?;
    Ok(version.trim().to_owned())
}

/// Counts per classification, for the summary line.
pub fn summary(changes: &[Change]) -> BTreeMap<&'static str, usize> {
    let mut out = BTreeMap::new();
    for c in changes {
        *out.entry(if c.breaking { "breaking" } else { "compatible" })
            .or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests;
