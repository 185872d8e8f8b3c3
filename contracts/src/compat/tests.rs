//! Unit tests of the gate: each kind of breaking change, planted in today's contract, is refused
//! with its subject and field named; additive changes pass; a bump with a changelog entry lets a
//! breaking change through.

#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};

use super::*;

fn today() -> Value {
    current("1.0.0")
}

/// The schema object holding `field` among its properties, anywhere under `node`.
fn holder<'a>(node: &'a mut Value, field: &str) -> Option<&'a mut Value> {
    if node
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| p.contains_key(field))
    {
        return Some(node);
    }
    match node {
        Value::Object(map) => map.values_mut().find_map(|v| holder(v, field)),
        Value::Array(list) => list.iter_mut().find_map(|v| holder(v, field)),
        _ => None,
    }
}

/// The first enum under `node` with two values or more: an `enum` list, or a `oneOf` of
/// constants (as schemars writes a documented Rust enum).
fn an_enum(node: &mut Value) -> Option<&mut Vec<Value>> {
    let is_enum = |v: &Value| match v {
        Value::Array(list) if list.len() >= 2 => list.iter().all(|m| m.get("const").is_some()),
        _ => false,
    };
    if node
        .get("enum")
        .is_some_and(|e| e.as_array().is_some_and(|l| l.len() >= 2))
    {
        return node.get_mut("enum").and_then(Value::as_array_mut);
    }
    if node.get("oneOf").is_some_and(is_enum) {
        return node.get_mut("oneOf").and_then(Value::as_array_mut);
    }
    match node {
        Value::Object(map) => map.values_mut().find_map(an_enum),
        Value::Array(list) => list.iter_mut().find_map(an_enum),
        _ => None,
    }
}

fn refused(now: &Value) -> Vec<String> {
    judge(&today(), now, "1.0.0", "").refused
}

#[test]
fn the_same_wire_has_no_change() {
    let verdict = judge(&today(), &today(), "1.0.0", "");
    assert!(verdict.changes.is_empty(), "{:?}", verdict.changes);
}

#[test]
fn renaming_a_field_we_send_is_refused_naming_subject_and_field() {
    let mut now = today();
    let sends = &mut now["subjects"]["booking.confirmed"]["sends"];
    let schema = holder(sends, "userEmail").unwrap();
    let moved = schema["properties"]["userEmail"].take();
    let props = schema["properties"].as_object_mut().unwrap();
    props.remove("userEmail");
    props.insert("email".into(), moved);
    let refused = refused(&now);
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert!(
        refused[0].contains("booking.confirmed (sends) field `userEmail`")
            && refused[0].contains("removed"),
        "{}",
        refused[0]
    );
}

#[test]
fn making_an_accepted_field_required_is_refused() {
    let mut now = today();
    let accepts = &mut now["subjects"]["booking.create"]["accepts"];
    let schema = holder(accepts, "idempotencyKey").unwrap();
    schema["required"]
        .as_array_mut()
        .unwrap()
        .push(json!("idempotencyKey"));
    let refused = refused(&now);
    assert!(
        refused.iter().any(
            |r| r.contains("booking.create (accepts) field `idempotencyKey`")
                && r.contains("made required")
        ),
        "{refused:#?}"
    );
}

#[test]
fn narrowing_an_enum_we_accept_is_refused() {
    let mut now = today();
    let (subject, values) = now["subjects"]
        .as_object_mut()
        .unwrap()
        .iter_mut()
        .find_map(|(s, v)| an_enum(&mut v["accepts"]).map(|e| (s.clone(), e)))
        .unwrap();
    let dropped = values.pop().unwrap();
    let refused = refused(&now);
    assert!(
        refused
            .iter()
            .any(|r| r.contains(&format!("{subject} (accepts)")) && r.contains("enum lost")),
        "dropped {dropped} from {subject}: {refused:#?}"
    );
}

#[test]
fn removing_a_subject_is_refused() {
    let mut now = today();
    now["subjects"]
        .as_object_mut()
        .unwrap()
        .remove("booking.cancelled");
    let refused = refused(&now);
    assert!(
        refused
            .iter()
            .any(|r| r.contains("booking.cancelled: the subject is gone")),
        "{refused:#?}"
    );
}

#[test]
fn additive_changes_pass_and_are_listed() {
    let mut now = today();
    let accepts = &mut now["subjects"]["booking.create"]["accepts"];
    holder(accepts, "idempotencyKey").unwrap()["properties"]["couponCode"] =
        json!({"type": ["string", "null"]});
    let sends = &mut now["subjects"]["booking.confirmed"]["sends"];
    holder(sends, "userEmail").unwrap()["properties"]["loyaltyPoints"] = json!({"type": "integer"});
    let verdict = judge(&today(), &now, "1.0.0", "");
    assert!(verdict.refused.is_empty(), "{:#?}", verdict.refused);
    assert_eq!(summary(&verdict.changes).get("compatible"), Some(&2));
}

#[test]
fn a_major_bump_with_a_changelog_entry_lets_a_breaking_change_through() {
    let mut now = current("2.0.0");
    let sends = &mut now["subjects"]["booking.confirmed"]["sends"];
    holder(sends, "userEmail").unwrap()["properties"]
        .as_object_mut()
        .unwrap()
        .remove("userEmail");
    let bare = judge(&today(), &now, "2.0.0", "# Changelog\n");
    assert_eq!(bare.refused.len(), 1, "{:#?}", bare.refused);
    assert!(bare.refused[0].contains("does not name"));
    let log = "# Changelog\n\n## 2.0.0\n\n- booking.confirmed no longer sends `userEmail`: \
               notification-service looks users up itself.\n";
    let listed = judge(&today(), &now, "2.0.0", log);
    assert!(listed.refused.is_empty(), "{:#?}", listed.refused);
    // A minor bump is not enough.
    let minor = judge(&today(), &now, "1.1.0", log);
    assert_eq!(minor.refused.len(), 1);
}
