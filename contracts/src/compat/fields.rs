//! A JSON Schema flattened into its fields: each path (`data.userEmail`, `items[].id`) with the
//! JSON types it may take, whether it must be present, and the values an enum allows. `$ref`s are
//! resolved against the schema's own definitions; `anyOf`/`oneOf`/`allOf` branches are merged.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

/// What a schema says of one field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Field {
    /// JSON types (`string`, `integer`, `number`, `boolean`, `object`, `array`, `null`).
    pub types: BTreeSet<String>,
    /// Present in every message (required at every level above it too).
    pub required: bool,
    /// The values allowed, when the field is an enum (or a constant).
    pub values: Option<BTreeSet<String>>,
}

/// Every field of `schema`, by path.
pub fn fields(schema: &Value) -> BTreeMap<String, Field> {
    let mut out = BTreeMap::new();
    walk(schema, schema, "", true, &mut out, 0);
    out
}

/// Follows a local `$ref` (`#/definitions/X`, `#/$defs/X`, `#/components/schemas/X`).
fn resolve<'a>(node: &'a Value, root: &'a Value) -> &'a Value {
    let mut node = node;
    for _ in 0..16 {
        let Some(target) = node.get("$ref").and_then(Value::as_str) else {
            break;
        };
        let Some(pointer) = target.strip_prefix('#') else {
            break;
        };
        match root.pointer(pointer) {
            Some(next) => node = next,
            None => break,
        }
    }
    node
}

/// The branches a node is made of (itself, or its `anyOf`/`oneOf`/`allOf` members), resolved.
fn branches<'a>(node: &'a Value, root: &'a Value, depth: usize) -> Vec<&'a Value> {
    let node = resolve(node, root);
    let mut out = Vec::new();
    let mut nested = false;
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(list) = node.get(key).and_then(Value::as_array) {
            nested = true;
            if depth < 32 {
                for member in list {
                    out.extend(branches(member, root, depth + 1));
                }
            }
        }
    }
    if !nested || node.get("type").is_some() || node.get("properties").is_some() {
        out.push(node);
    }
    out
}

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn walk(
    node: &Value,
    root: &Value,
    path: &str,
    required: bool,
    out: &mut BTreeMap<String, Field>,
    depth: usize,
) {
    if depth > 32 {
        return;
    }
    let parts = branches(node, root, 0);
    if !path.is_empty() {
        let field = out.entry(path.to_owned()).or_insert_with(|| Field {
            required,
            ..Field::default()
        });
        field.required &= required;
        for b in &parts {
            match b.get("type") {
                Some(Value::String(t)) => {
                    field.types.insert(t.clone());
                }
                Some(Value::Array(ts)) => {
                    field
                        .types
                        .extend(ts.iter().filter_map(Value::as_str).map(str::to_owned));
                }
                _ => {}
            }
            let listed: Vec<&Value> = match (b.get("enum"), b.get("const")) {
                (Some(Value::Array(vs)), _) => vs.iter().collect(),
                (_, Some(c)) => vec![c],
                _ => Vec::new(),
            };
            for v in listed {
                field.types.insert(type_of(v).to_owned());
                field
                    .values
                    .get_or_insert_with(BTreeSet::new)
                    .insert(v.to_string());
            }
        }
    }
    for b in &parts {
        let needed: BTreeSet<&str> = b
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(props) = b.get("properties").and_then(Value::as_object) {
            for (name, child) in props {
                let child_path = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                let here = required && needed.contains(name.as_str()) && !nullable(&parts);
                walk(child, root, &child_path, here, out, depth + 1);
            }
        }
        if let Some(items) = b.get("items") {
            // Each element is there when the array is; what it holds is the items' schema's say.
            walk(items, root, &format!("{path}[]"), required, out, depth + 1);
        }
    }
}

/// Whether one of the branches is `null` (an optional object: its fields may all be absent).
fn nullable(parts: &[&Value]) -> bool {
    parts.iter().any(|b| match b.get("type") {
        Some(Value::String(t)) => t == "null",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "null"),
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn paths_types_requiredness_and_enums() {
        let schema = json!({
            "type": "object",
            "required": ["id", "status"],
            "properties": {
                "id": {"type": "integer"},
                "note": {"type": ["string", "null"]},
                "status": {"$ref": "#/definitions/Status"},
                "players": {"type": "array", "items": {"$ref": "#/definitions/Player"}}
            },
            "definitions": {
                "Status": {"type": "string", "enum": ["PENDING", "CONFIRMED"]},
                "Player": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
            }
        });
        let f = fields(&schema);
        assert!(f["id"].required && f["id"].types.contains("integer"));
        assert!(!f["note"].required);
        assert_eq!(f["status"].values.as_ref().unwrap().len(), 2);
        assert!(f.contains_key("players[].name"));
        assert!(!f["players"].required);
        assert!(f["players[].name"].required == f["players"].required);
    }
}
