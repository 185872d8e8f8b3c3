//! Unit tests of `codec`.

use super::*;
use crate::booking::FindById;
use serde_json::json;

fn codec() -> Codec {
    Codec::default()
}

#[test]
fn a_request_is_split_into_pattern_id_and_data() {
    let inbound = codec()
        .decode_inbound(br#"{"pattern":"booking.findById","data":{"id":7},"id":"abc"}"#)
        .unwrap();
    assert_eq!(inbound.kind, InboundKind::Request(MessageId::from("abc")));
    assert_eq!(inbound.pattern.as_deref(), Some("booking.findById"));
    assert_eq!(inbound.data, json!({"id": 7}));
}

#[test]
fn a_body_without_an_id_is_an_event() {
    let inbound = codec()
        .decode_inbound(br#"{"pattern":"booking.game.sync","data":{}}"#)
        .unwrap();
    assert_eq!(inbound.kind, InboundKind::Event);
}

#[test]
fn a_body_without_pattern_and_data_is_external() {
    let inbound = codec().decode_inbound(br#"{"id":1}"#).unwrap();
    assert_eq!(inbound.kind, InboundKind::External);
    assert_eq!(inbound.data, json!({"id": 1}));
    let inbound = codec().decode_inbound(b"[1,2]").unwrap();
    assert_eq!(inbound.kind, InboundKind::External);
}

#[test]
fn truncated_json_is_an_error() {
    let err = codec()
        .decode_inbound(br#"{"pattern":"booking.findById","data":{"id":"#)
        .unwrap_err();
    assert!(matches!(err, CodecError::Json(_)), "{err:?}");
    assert_eq!(err.code(), ErrorCode::Validation);
}

#[test]
fn an_empty_body_and_invalid_utf8_are_errors() {
    assert!(matches!(
        codec().decode_inbound(b""),
        Err(CodecError::Json(_))
    ));
    assert!(matches!(
        codec().decode_inbound(b"{\"a\":\"\xff\"}"),
        Err(CodecError::Json(_))
    ));
}

#[test]
fn a_one_mebibyte_string_is_refused_before_parsing() {
    let body = format!("\"{}\"", "x".repeat(1024 * 1024));
    let err = codec().decode_inbound(body.as_bytes()).unwrap_err();
    assert!(matches!(err, CodecError::TooLarge { .. }), "{err:?}");
}

#[test]
fn deeply_nested_json_is_an_error_not_a_stack_overflow() {
    let body = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(matches!(
        codec().decode_inbound(body.as_bytes()),
        Err(CodecError::Json(_))
    ));
}

#[test]
fn a_non_string_pattern_or_an_object_id_is_a_malformed_envelope() {
    assert!(matches!(
        codec().decode_inbound(br#"{"pattern":1,"data":{}}"#),
        Err(CodecError::Envelope(_))
    ));
    assert!(matches!(
        codec().decode_inbound(br#"{"pattern":"p","data":{},"id":{}}"#),
        Err(CodecError::Envelope(_))
    ));
}

#[test]
fn a_wrong_type_names_the_field() {
    let err = codec()
        .decode_message::<FindById>(br#"{"pattern":"booking.findById","data":{"id":"7"},"id":"a"}"#)
        .unwrap_err();
    match err {
        CodecError::Shape { path, .. } => assert_eq!(path, "id"),
        other => panic!("expected a shape error, got {other:?}"),
    }
}

#[test]
fn a_payload_written_as_an_array_is_refused() {
    let err = codec()
        .decode_message::<crate::booking::SearchBookings>(
            br#"{"pattern":"booking.search","data":[],"id":"a"}"#,
        )
        .unwrap_err();
    assert!(matches!(err, CodecError::Shape { .. }), "{err:?}");
    let err = codec().decode_message::<FindById>(b"[7]").unwrap_err();
    assert!(matches!(err, CodecError::Shape { .. }), "{err:?}");
}

#[test]
fn a_non_positive_id_fails_validation() {
    let err = codec()
        .decode_message::<FindById>(br#"{"id":-3}"#)
        .unwrap_err();
    assert!(matches!(err, CodecError::Invalid(_)), "{err:?}");
    let value = err.to_error_value();
    assert_eq!(value.code(), ErrorCode::Validation);
    assert!(value.error.details.is_some());
}

#[test]
fn replies_are_told_apart() {
    let c = codec();
    let ok = c
        .decode_reply(br#"{"response":{"success":true},"isDisposed":true,"id":"a"}"#)
        .unwrap();
    assert_eq!(ok.id, Some(MessageId::from("a")));
    assert!(matches!(ok.outcome, ReplyOutcome::Response(_)));
    let err = c
        .decode_reply(br#"{"err":{"success":false},"isDisposed":true,"id":"a"}"#)
        .unwrap();
    assert!(matches!(err.outcome, ReplyOutcome::Err(_)));
    let none = c
        .decode_reply(br#"{"id":"a","status":"error","err":"There is no matching message handler defined in the remote service."}"#)
        .unwrap();
    assert!(matches!(none.outcome, ReplyOutcome::NoHandler(_)));
    let bare = c.decode_reply(br#"{"success":true,"data":1}"#).unwrap();
    assert_eq!(bare.id, None);
    assert!(matches!(bare.outcome, ReplyOutcome::Response(_)));
}

#[test]
fn encoded_envelopes_have_the_nestjs_field_names() {
    let c = codec();
    let id = MessageId::from("abc");
    let req: Value =
        serde_json::from_slice(&c.encode_request("p", &json!({"a":1}), &id).unwrap()).unwrap();
    assert_eq!(req, json!({"pattern":"p","data":{"a":1},"id":"abc"}));
    let ev: Value = serde_json::from_slice(&c.encode_event("p", &json!(1)).unwrap()).unwrap();
    assert_eq!(ev, json!({"pattern":"p","data":1}));
    let ok: Value = serde_json::from_slice(&c.encode_response(&id, &json!(true)).unwrap()).unwrap();
    assert_eq!(ok, json!({"response":true,"isDisposed":true,"id":"abc"}));
    let err: Value = serde_json::from_slice(&c.encode_error(&id, &json!("x")).unwrap()).unwrap();
    assert_eq!(err, json!({"err":"x","isDisposed":true,"id":"abc"}));
    let none: Value = serde_json::from_slice(&c.encode_no_handler(&id).unwrap()).unwrap();
    assert_eq!(
        none,
        json!({"id":"abc","status":"error","err":crate::envelope::NO_HANDLER_MESSAGE})
    );
}

#[test]
fn a_shape_error_names_the_field_and_the_kind_never_the_value() {
    let err = Codec::decode_data::<FindById>(json!({"id": "someone@example.com 010-1234-5678"}))
        .unwrap_err();
    let shown = format!("{err} {:?}", err.to_error_value());
    assert!(shown.contains("invalid type, expected i32"), "{shown}");
    assert!(
        !shown.contains("example.com") && !shown.contains("5678"),
        "{shown}"
    );
}

#[test]
fn a_newline_in_a_key_cannot_forge_a_log_line() {
    let err = Codec::decode_data::<crate::booking::UpdateBookingRequest>(
        json!({"id": 1, "dto": {"x\nERROR forged line": 1}}),
    )
    .unwrap_err();
    let shown = err.to_string();
    assert!(!shown.contains('\n'), "{shown}");
    assert!(printable("a\nb\u{1b}[31m", 100) == "a\\nb\\u{1b}[31m");
    assert_eq!(printable(&"x".repeat(500), 10).chars().count(), 11);
}
