//! The NestJS NATS envelope.
//!
//! `@nestjs/microservices` wraps every message it puts on NATS:
//!
//! | message | body |
//! |---|---|
//! | request (`send`) | `{"pattern":"booking.create","data":{..},"id":"<id>"}` with a reply inbox |
//! | event (`emit`) | `{"pattern":"booking.confirmed","data":{..}}`, no `id`, no reply |
//! | reply, success | `{"response":<value>,"isDisposed":true,"id":"<same id>"}` |
//! | reply, failure | `{"err":<error>,"isDisposed":true,"id":"<same id>"}` |
//! | reply, unknown pattern | `{"id":"<id>","status":"error","err":"There is no matching message handler defined in the remote service."}` |
//!
//! A body without `pattern` and `data` keys is *external*: the whole body is the data, and a reply
//! to it is the bare handler value (so `nats req booking.findById '{"id":1}'` works).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The message a NestJS server sends when no handler matches the pattern.
pub const NO_HANDLER_MESSAGE: &str =
    "There is no matching message handler defined in the remote service.";

/// The header we put on every event we publish: consumers deduplicate on it.
pub const MSG_ID_HEADER: &str = "Nats-Msg-Id";

/// A request id. NestJS sends a 21-character string; other clients may send a number. It is echoed
/// back unchanged, so it is kept exactly as it came.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum MessageId {
    /// A string id (NestJS).
    Text(String),
    /// A numeric id.
    Number(serde_json::Number),
}

impl MessageId {
    /// A fresh id in the NestJS style (21 lowercase hex characters).
    pub fn fresh() -> Self {
        let hex = uuid::Uuid::new_v4().simple().to_string();
        MessageId::Text(hex[..21].to_owned())
    }
}

impl From<&str> for MessageId {
    fn from(text: &str) -> Self {
        MessageId::Text(text.to_owned())
    }
}

impl std::fmt::Display for MessageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MessageId::Text(text) => f.write_str(text),
            MessageId::Number(n) => write!(f, "{n}"),
        }
    }
}

/// A request as NestJS's `ClientProxy.send` writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "RequestEnvelope_of_{T}")]
pub struct RequestEnvelope<T> {
    /// The pattern, equal to the NATS subject.
    pub pattern: String,
    /// The payload.
    pub data: T,
    /// Correlates the reply.
    pub id: MessageId,
}

/// An event as NestJS's `ClientProxy.emit` writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "EventEnvelope_of_{T}")]
pub struct EventEnvelope<T> {
    /// The pattern, equal to the NATS subject.
    pub pattern: String,
    /// The payload.
    pub data: T,
}

/// A successful reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "ResponseEnvelope_of_{T}")]
pub struct ResponseEnvelope<T> {
    /// The handler's value.
    pub response: T,
    /// Always `true`: one reply per request.
    pub is_disposed: bool,
    /// The request's id.
    pub id: MessageId,
}

/// A failed reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(rename = "ErrorEnvelope_of_{E}")]
pub struct ErrorEnvelope<E> {
    /// The error value.
    pub err: E,
    /// Always `true`.
    pub is_disposed: bool,
    /// The request's id.
    pub id: MessageId,
}

/// The reply to a request whose pattern has no handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NoHandlerEnvelope {
    /// The request's id.
    pub id: MessageId,
    /// Always `"error"`.
    pub status: String,
    /// Always [`NO_HANDLER_MESSAGE`].
    pub err: String,
}

impl NoHandlerEnvelope {
    /// The reply NestJS gives for `id`.
    pub fn new(id: MessageId) -> Self {
        Self {
            id,
            status: "error".to_owned(),
            err: NO_HANDLER_MESSAGE.to_owned(),
        }
    }
}

/// What kind of inbound message a body is.
#[derive(Debug, Clone, PartialEq)]
pub enum InboundKind {
    /// `{pattern,data,id}`: answer with a reply envelope echoing `id`.
    Request(MessageId),
    /// `{pattern,data}`: never answer.
    Event,
    /// A bare JSON body: answer with the bare handler value if there is a reply subject.
    External,
}

/// An inbound message split into its envelope and its still-untyped data.
#[derive(Debug, Clone, PartialEq)]
pub struct Inbound {
    /// Request, event or external.
    pub kind: InboundKind,
    /// The pattern named in the body (external bodies have none; the subject names it).
    pub pattern: Option<String>,
    /// The payload.
    pub data: serde_json::Value,
}

/// A typed inbound message.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded<T> {
    /// Request, event or external.
    pub kind: InboundKind,
    /// The pattern named in the body, if any.
    pub pattern: Option<String>,
    /// The decoded, validated payload.
    pub data: T,
}

/// What a reply says.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyOutcome {
    /// `response`: the handler's value (for course-service this may itself be `success:false`).
    Response(serde_json::Value),
    /// `err`: the handler failed with this value.
    Err(serde_json::Value),
    /// The remote service has no handler for the pattern.
    NoHandler(String),
}

/// An inbound reply to one of our requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The id it answers; `None` for a bare (external) reply.
    pub id: Option<MessageId>,
    /// What it says.
    pub outcome: ReplyOutcome,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_ids_look_like_nestjs_ids() {
        let MessageId::Text(id) = MessageId::fresh() else {
            panic!("expected a text id")
        };
        assert_eq!(id.len(), 21);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn numeric_ids_are_echoed_as_numbers() {
        let id: MessageId = serde_json::from_str("42").unwrap();
        assert_eq!(serde_json::to_string(&id).unwrap(), "42");
    }
}
