//! The contract suite: every fixture round-trips through the codec and its type unchanged, every
//! subject has its fixtures, every type's JSON Schema is pinned, the AsyncAPI document is fresh,
//! and malformed input of every kind is refused with an error.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use contracts::catalog::{self, SubjectSpec, ERROR, SUBJECTS};
use contracts::subjects::Style;
use contracts::{Codec, CodecError, InboundKind, MessageId, ReplyOutcome};
use serde_json::Value;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn fixture_names(subject: &str) -> Vec<String> {
    let dir = fixtures_dir().join(subject);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn spec_of(path: &Path) -> Option<&'static SubjectSpec> {
    let subject = path.parent()?.file_name()?.to_str()?;
    catalog::spec(subject)
}

/// Decodes a fixture with the codec and the subject's types, then encodes it again.
fn round_trip(path: &Path) -> Value {
    let codec = Codec::default();
    let bytes = std::fs::read(path).unwrap();
    let stem = path.file_stem().unwrap().to_str().unwrap();
    let encoded = if path.parent().unwrap().ends_with("_envelope") {
        let reply = codec.decode_reply(&bytes).unwrap();
        assert!(
            matches!(reply.outcome, ReplyOutcome::NoHandler(_)),
            "{stem}"
        );
        codec.encode_no_handler(&reply.id.unwrap()).unwrap()
    } else {
        let spec =
            spec_of(path).unwrap_or_else(|| panic!("{}: not a known subject", path.display()));
        if stem.starts_with("request") || stem.starts_with("event") {
            let inbound = codec.decode_inbound(&bytes).unwrap();
            let data =
                (spec.payload.roundtrip)(inbound.data).unwrap_or_else(|e| panic!("{stem}: {e}"));
            match inbound.kind {
                InboundKind::Request(id) => {
                    assert!(
                        stem.starts_with("request") && !stem.contains("external"),
                        "{stem}"
                    );
                    assert!(
                        spec.style.replies(),
                        "{stem}: {} takes no requests",
                        spec.subject
                    );
                    assert_eq!(inbound.pattern.as_deref(), Some(spec.subject));
                    codec.encode_request(spec.subject, &data, &id).unwrap()
                }
                InboundKind::Event => {
                    assert!(stem.starts_with("event"), "{stem}");
                    assert_ne!(
                        spec.style,
                        Style::Request,
                        "{stem}: {} takes no events",
                        spec.subject
                    );
                    assert_eq!(inbound.pattern.as_deref(), Some(spec.subject));
                    codec.encode_event(spec.subject, &data).unwrap()
                }
                InboundKind::External => {
                    assert!(stem.contains("external"), "{stem}");
                    codec.encode_bare(&data).unwrap()
                }
            }
        } else {
            assert!(
                stem.starts_with("reply"),
                "{stem}: fixture names start with request, event or reply"
            );
            let reply = codec.decode_reply(&bytes).unwrap();
            let id = reply
                .id
                .unwrap_or_else(|| panic!("{stem}: reply fixtures carry an id"));
            match reply.outcome {
                ReplyOutcome::Response(value) => {
                    assert!(
                        !stem.starts_with("reply-error"),
                        "{stem}: expected an err reply"
                    );
                    let reply_type = spec
                        .reply
                        .unwrap_or_else(|| panic!("{stem}: events have no reply"));
                    let value =
                        (reply_type.roundtrip)(value).unwrap_or_else(|e| panic!("{stem}: {e}"));
                    codec.encode_response(&id, &value).unwrap()
                }
                ReplyOutcome::Err(value) => {
                    let code = stem.strip_prefix("reply-error-").unwrap_or_else(|| {
                        panic!("{stem}: err replies are named reply-error-<CODE>")
                    });
                    assert_eq!(value["error"]["code"], code, "{stem}");
                    let value = (ERROR.roundtrip)(value).unwrap_or_else(|e| panic!("{stem}: {e}"));
                    codec.encode_error(&id, &value).unwrap()
                }
                ReplyOutcome::NoHandler(_) => {
                    panic!("{stem}: no-handler replies live in _envelope")
                }
            }
        }
    };
    serde_json::from_slice(&encoded).unwrap()
}

#[test]
fn every_fixture_round_trips_unchanged_and_is_pinned() {
    insta::glob!("../fixtures", "**/*.json", |path| {
        let original = read_json(path);
        let encoded = round_trip(path);
        assert_eq!(
            encoded,
            original,
            "{} changed in a round trip through its type",
            path.display()
        );
        insta::assert_json_snapshot!(encoded);
    });
}

#[test]
fn every_subject_has_its_fixtures() {
    for spec in SUBJECTS {
        let names = fixture_names(spec.subject);
        let has = |prefix: &str| names.iter().any(|n| n.starts_with(prefix));
        match spec.style {
            Style::Request => assert!(has("request"), "{}: no request fixture", spec.subject),
            Style::Event => assert!(has("event"), "{}: no event fixture", spec.subject),
            Style::RequestOrEvent => assert!(
                has("request") && has("event"),
                "{}: needs request and event fixtures",
                spec.subject
            ),
        }
        if spec.reply.is_some() {
            assert!(
                names.iter().any(|n| n == "reply"),
                "{}: no reply fixture",
                spec.subject
            );
            assert!(
                has("reply-error-"),
                "{}: no error reply fixture",
                spec.subject
            );
        }
    }
}

#[test]
fn every_fixture_directory_is_a_known_subject() {
    for entry in std::fs::read_dir(fixtures_dir()).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            name == "_envelope" || catalog::spec(&name).is_some(),
            "fixtures/{name} is not a subject in the catalogue"
        );
    }
}

#[test]
fn every_type_schema_is_pinned() {
    for spec in catalog::all_types() {
        let name = (spec.name)();
        let file_name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let schema = (spec.root_schema)().to_value();
        insta::assert_json_snapshot!(format!("schema__{file_name}"), schema);
    }
}

#[test]
fn the_asyncapi_document_is_fresh() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("asyncapi.json");
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == contracts::asyncapi::render(),
        "{} is stale or missing: run `cargo xtask asyncapi` and commit the result",
        path.display()
    );
}

/// The request and event fixtures of every subject, as (path, data).
fn inbound_fixtures() -> Vec<(PathBuf, &'static SubjectSpec, Value)> {
    let mut out = Vec::new();
    for spec in SUBJECTS.iter() {
        for name in fixture_names(spec.subject) {
            if name.starts_with("request") || name.starts_with("event") {
                let path = fixtures_dir()
                    .join(spec.subject)
                    .join(format!("{name}.json"));
                let body = read_json(&path);
                let data = if body.get("pattern").is_some() {
                    body["data"].clone()
                } else {
                    body
                };
                out.push((path, spec, data));
            }
        }
    }
    out
}

fn wrap(spec: &SubjectSpec, data: &Value) -> Vec<u8> {
    Codec::default()
        .encode_request(spec.subject, data, &MessageId::from("t"))
        .unwrap()
}

fn decode_payload(spec: &SubjectSpec, bytes: &[u8]) -> Result<Value, CodecError> {
    let inbound = Codec::default().decode_inbound(bytes)?;
    (spec.payload.roundtrip)(inbound.data)
}

#[test]
fn truncated_messages_are_refused_for_every_subject() {
    for (path, spec, data) in inbound_fixtures() {
        let bytes = wrap(spec, &data);
        for cut in [1, bytes.len() / 2, bytes.len() - 1] {
            let result = decode_payload(spec, &bytes[..cut]);
            assert!(
                matches!(result, Err(CodecError::Json(_))),
                "{} cut at {cut}: {result:?}",
                path.display()
            );
        }
    }
}

#[test]
fn a_wrong_type_in_any_field_is_refused() {
    for (path, spec, data) in inbound_fixtures() {
        let Value::Object(fields) = &data else {
            continue;
        };
        for (field, value) in fields {
            let wrong = match value {
                Value::String(_) => Value::from(12),
                _ => Value::from("twelve"),
            };
            let mut bad = data.clone();
            bad[field] = wrong;
            let result = decode_payload(spec, &wrap(spec, &bad));
            assert!(
                matches!(result, Err(CodecError::Shape { .. })),
                "{} with a wrong type in `{field}`: {result:?}",
                path.display()
            );
        }
    }
}

#[test]
fn huge_strings_are_refused_in_every_string_field() {
    let mebibyte = "가".repeat(1024 * 1024 / 3);
    let long = "x".repeat(5_000);
    for (path, spec, data) in inbound_fixtures() {
        let Value::Object(fields) = &data else {
            continue;
        };
        for (field, value) in fields {
            if !value.is_string() {
                continue;
            }
            let mut bad = data.clone();
            bad[field] = Value::from(mebibyte.clone());
            let result = decode_payload(spec, &wrap(spec, &bad));
            assert!(
                matches!(result, Err(CodecError::TooLarge { .. })),
                "{} with 1 MiB in `{field}`: {result:?}",
                path.display()
            );
            bad[field] = Value::from(long.clone());
            assert!(
                decode_payload(spec, &wrap(spec, &bad)).is_err(),
                "{} accepted 5,000 characters in `{field}`",
                path.display()
            );
        }
    }
}

#[test]
fn negative_counts_and_ids_are_refused() {
    for (path, spec, data) in inbound_fixtures() {
        let Value::Object(fields) = &data else {
            continue;
        };
        for (field, value) in fields {
            let counts = field.ends_with("Id")
                || field == "id"
                || field.ends_with("Count")
                || field == "maxPlayers";
            if !value.is_i64() || !counts {
                continue;
            }
            let mut bad = data.clone();
            bad[field] = Value::from(-1);
            let result = decode_payload(spec, &wrap(spec, &bad));
            assert!(
                matches!(result, Err(CodecError::Invalid(_))),
                "{} with -1 in `{field}`: {result:?}",
                path.display()
            );
        }
    }
}

#[test]
fn unknown_fields_in_a_create_request_are_refused() {
    let spec = catalog::spec(contracts::subjects::BOOKING_CREATE).unwrap();
    let mut data =
        read_json(&fixtures_dir().join(spec.subject).join("request.json"))["data"].clone();
    data["discount"] = Value::from(100);
    let result = decode_payload(spec, &wrap(spec, &data));
    assert!(
        matches!(result, Err(CodecError::Shape { .. })),
        "{result:?}"
    );
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The gate: today's wire against the released baseline; a breaking change fails here unless
/// contracts/VERSION has a new major version and contracts/CHANGELOG.md lists it.
#[test]
fn the_wire_keeps_the_released_contract() {
    let verdict = contracts::compat::check(&workspace_root()).unwrap();
    assert!(
        verdict.refused.is_empty(),
        "{}\n(see `cargo xtask contract`)",
        verdict.refused.join("\n")
    );
}

/// Pact's provider verification: every NestJS peer's recorded expectations are met.
#[test]
fn every_peer_expectation_is_met() {
    let peers = contracts::compat::expect::load(&workspace_root()).unwrap();
    let names: Vec<&str> = peers.iter().map(|p| p.peer.as_str()).collect();
    assert_eq!(
        names,
        ["course-service", "notification-service", "user-api"]
    );
    let failures: Vec<String> = peers
        .iter()
        .flat_map(contracts::compat::expect::verify)
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
