//! Encoding and decoding of every wire message.
//!
//! One [`Codec`] turns bytes into [`Inbound`] messages and [`Reply`]s and typed payloads into bytes.
//! Nothing here panics on input: oversized bodies, broken JSON, wrong envelope fields, payloads
//! of the wrong shape and payloads with out-of-range values each come back as a [`CodecError`],
//! which maps onto the wire error `BUS_001`.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::envelope::{
    Decoded, ErrorEnvelope, EventEnvelope, Inbound, InboundKind, MessageId, NoHandlerEnvelope,
    Reply, ReplyOutcome, RequestEnvelope, ResponseEnvelope,
};
use crate::error::{ErrorCode, ErrorValue};
use crate::validate::{Validate, Violation};

/// Why a message could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CodecError {
    /// The body is larger than the codec accepts.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The body's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The body is not valid JSON (truncated, bad syntax, nested too deep, not UTF-8).
    #[error("malformed JSON: {0}")]
    Json(String),
    /// The body is JSON but its envelope fields have the wrong types.
    #[error("malformed envelope: {0}")]
    Envelope(String),
    /// The payload does not have the expected shape (missing field, wrong type, unknown field).
    #[error("invalid payload at `{path}`: {message}")]
    Shape {
        /// Where in the payload, e.g. `playerCount` or `dto.userPhone`; `.` for the root.
        path: String,
        /// What serde said.
        message: String,
    },
    /// The payload has the right shape but some values are out of range.
    #[error("invalid payload: {}", list(.0))]
    Invalid(Vec<Violation>),
    /// One of our own values could not be serialized (a bug, never input).
    #[error("cannot encode: {0}")]
    Encode(String),
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn list(violations: &[Violation]) -> String {
    violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl CodecError {
    /// The wire code for this error: always a validation error, except for encode bugs.
    pub fn code(&self) -> ErrorCode {
        match self {
            CodecError::Encode(_) => ErrorCode::System,
            _ => ErrorCode::Validation,
        }
    }

    /// The wire error value to answer with.
    pub fn to_error_value(&self) -> ErrorValue {
        let value = ErrorValue::new(self.code(), self.to_string());
        match self {
            CodecError::Invalid(violations) => value.with_details(serde_json::json!({
                "fields": violations,
            })),
            CodecError::Shape { path, .. } => {
                value.with_details(serde_json::json!({ "fields": [{ "field": path }] }))
            }
            _ => value,
        }
    }
}

/// What serde found wrong, without the offending value: replies and logs carry the field path and
/// the kind of error, never input (an e-mail, a phone number, 200 KB of text). `invalid type:
/// string "x@y.z", expected i32` becomes `invalid type, expected i32`.
fn error_kind(message: &str) -> String {
    const WITH_VALUE: [&str; 5] = [
        "invalid type",
        "invalid value",
        "invalid length",
        "unknown variant",
        "unknown field",
    ];
    if let Some(kind) = WITH_VALUE.iter().find(|k| message.starts_with(*k)) {
        return match message.find(", expected") {
            Some(at) => printable(&format!("{kind}{}", &message[at..]), 300),
            None => (*kind).to_owned(),
        };
    }
    printable(message, 300)
}

/// `text` safe for one log line: control characters escaped (a newline cannot forge a line) and at
/// most `max` characters.
pub fn printable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Encodes and decodes the NestJS envelope and its payloads within a size limit.
#[derive(Debug, Clone, Copy)]
pub struct Codec {
    max_len: usize,
}

impl Default for Codec {
    fn default() -> Self {
        Self {
            max_len: Self::DEFAULT_MAX_LEN,
        }
    }
}

impl Codec {
    /// The default size limit: far above any legitimate booking message, far below NATS's 1 MiB.
    pub const DEFAULT_MAX_LEN: usize = 256 * 1024;

    /// A codec with a different size limit.
    pub fn with_max_len(max_len: usize) -> Self {
        Self { max_len }
    }

    /// The size limit in bytes.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    fn parse(&self, bytes: &[u8]) -> Result<Value, CodecError> {
        if bytes.len() > self.max_len {
            return Err(CodecError::TooLarge {
                len: bytes.len(),
                max: self.max_len,
            });
        }
        serde_json::from_slice(bytes).map_err(|e| CodecError::Json(e.to_string()))
    }

    /// Splits an inbound body into envelope and data.
    pub fn decode_inbound(&self, bytes: &[u8]) -> Result<Inbound, CodecError> {
        let value = self.parse(bytes)?;
        let Value::Object(mut map) = value else {
            return Ok(Inbound {
                kind: InboundKind::External,
                pattern: None,
                data: value,
            });
        };
        if !(map.contains_key("pattern") && map.contains_key("data")) {
            return Ok(Inbound {
                kind: InboundKind::External,
                pattern: None,
                data: Value::Object(map),
            });
        }
        let pattern = match map.remove("pattern") {
            Some(Value::String(p)) => p,
            _ => return Err(CodecError::Envelope("`pattern` must be a string".into())),
        };
        let data = map.remove("data").unwrap_or(Value::Null);
        let kind =
            match map.remove("id") {
                None | Some(Value::Null) => InboundKind::Event,
                Some(id) => InboundKind::Request(serde_json::from_value(id).map_err(|_| {
                    CodecError::Envelope("`id` must be a string or a number".into())
                })?),
            };
        Ok(Inbound {
            kind,
            pattern: Some(pattern),
            data,
        })
    }

    /// Decodes a data value into a payload type and validates it. Every payload is a JSON object:
    /// serde would otherwise accept a struct written as an array of its field values.
    pub fn decode_data<T: DeserializeOwned + Validate>(data: Value) -> Result<T, CodecError> {
        if !data.is_object() {
            return Err(CodecError::Shape {
                path: ".".into(),
                message: format!("expected a JSON object, got {}", kind_of(&data)),
            });
        }
        let typed: T = serde_path_to_error::deserialize(data).map_err(|e| {
            let path = printable(&e.path().to_string(), 120);
            CodecError::Shape {
                path,
                message: error_kind(&e.into_inner().to_string()),
            }
        })?;
        typed.validate().map_err(CodecError::Invalid)?;
        Ok(typed)
    }

    /// Decodes an inbound body straight into a typed payload.
    pub fn decode_message<T: DeserializeOwned + Validate>(
        &self,
        bytes: &[u8],
    ) -> Result<Decoded<T>, CodecError> {
        let inbound = self.decode_inbound(bytes)?;
        Ok(Decoded {
            kind: inbound.kind,
            pattern: inbound.pattern,
            data: Self::decode_data(inbound.data)?,
        })
    }

    /// Decodes a reply to one of our requests.
    pub fn decode_reply(&self, bytes: &[u8]) -> Result<Reply, CodecError> {
        let value = self.parse(bytes)?;
        let Value::Object(mut map) = value else {
            return Ok(Reply {
                id: None,
                outcome: ReplyOutcome::Response(value),
            });
        };
        let is_envelope = map.contains_key("response")
            || map.contains_key("err")
            || map.contains_key("isDisposed");
        if !is_envelope {
            return Ok(Reply {
                id: None,
                outcome: ReplyOutcome::Response(Value::Object(map)),
            });
        }
        let id =
            match map.remove("id") {
                None | Some(Value::Null) => None,
                Some(id) => Some(serde_json::from_value(id).map_err(|_| {
                    CodecError::Envelope("`id` must be a string or a number".into())
                })?),
            };
        let outcome = match (map.remove("err"), map.remove("response")) {
            (Some(Value::String(message)), _)
                if map.get("status").and_then(Value::as_str) == Some("error") =>
            {
                ReplyOutcome::NoHandler(message)
            }
            (Some(err), _) if !err.is_null() => ReplyOutcome::Err(err),
            (_, response) => ReplyOutcome::Response(response.unwrap_or(Value::Null)),
        };
        Ok(Reply { id, outcome })
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(value).map_err(|e| CodecError::Encode(e.to_string()))
    }

    /// Encodes a request `{pattern,data,id}`.
    pub fn encode_request<T: Serialize>(
        &self,
        pattern: &str,
        data: &T,
        id: &MessageId,
    ) -> Result<Vec<u8>, CodecError> {
        self.encode(&RequestEnvelope {
            pattern: pattern.to_owned(),
            data,
            id: id.clone(),
        })
    }

    /// Encodes an event `{pattern,data}`.
    pub fn encode_event<T: Serialize>(
        &self,
        pattern: &str,
        data: &T,
    ) -> Result<Vec<u8>, CodecError> {
        self.encode(&EventEnvelope {
            pattern: pattern.to_owned(),
            data,
        })
    }

    /// Encodes a successful reply `{response,isDisposed,id}`.
    pub fn encode_response<T: Serialize>(
        &self,
        id: &MessageId,
        value: &T,
    ) -> Result<Vec<u8>, CodecError> {
        self.encode(&ResponseEnvelope {
            response: value,
            is_disposed: true,
            id: id.clone(),
        })
    }

    /// Encodes a failed reply `{err,isDisposed,id}`.
    pub fn encode_error<E: Serialize>(
        &self,
        id: &MessageId,
        err: &E,
    ) -> Result<Vec<u8>, CodecError> {
        self.encode(&ErrorEnvelope {
            err,
            is_disposed: true,
            id: id.clone(),
        })
    }

    /// Encodes the "no matching message handler" reply.
    pub fn encode_no_handler(&self, id: &MessageId) -> Result<Vec<u8>, CodecError> {
        self.encode(&NoHandlerEnvelope::new(id.clone()))
    }

    /// Encodes a bare value (the reply to an external request).
    pub fn encode_bare<T: Serialize>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        self.encode(value)
    }
}

#[cfg(test)]
mod tests;
