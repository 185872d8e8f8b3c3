//! The one NestJS request client (feature `client`): every request this workspace sends over NATS
//! in the NestJS envelope goes through [`NestClient`]: the service's course-service calls, its
//! outbox relay, the stack, the simulator, the course-stub's control client and the tests.
//!
//! It encodes `{pattern, data, id}`, tells "nobody listens" apart from "nobody answered in time",
//! reads the reply liberally within a size limit (envelope or bare value) and refuses a reply that
//! names another request's id.

use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::{Codec, CodecError, MessageId, Reply, ReplyOutcome};

/// Parses a NATS server list: one URL, or several separated by commas (the seed URLs of a
/// cluster), as `NATS_URL` is given. The client connects to any of them and moves to another when
/// its server goes away. The error names the entry that is not a server address.
pub fn servers(list: &str) -> Result<Vec<async_nats::ServerAddr>, String> {
    let mut out = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let addr = entry.parse::<async_nats::ServerAddr>().map_err(|e| {
            format!(
                "{:?} is not a NATS server address: {e}",
                redact_entry(entry)
            )
        })?;
        out.push(addr);
    }
    if out.is_empty() {
        return Err("no NATS server given".into());
    }
    Ok(out)
}

/// An entry with any password in it hidden.
fn redact_entry(entry: &str) -> String {
    match (entry.find("://"), entry.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &entry[..scheme], &entry[at + 1..])
        }
        _ => entry.to_owned(),
    }
}

/// How a process proves who it is to NATS (the Rust client ignores credentials in the URL).
#[derive(Clone, Default, PartialEq, Eq)]
pub enum NatsLogin {
    /// Anonymous.
    #[default]
    Anonymous,
    /// A user and its password (`NATS_USER`, `NATS_PASSWORD`).
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// A token (`NATS_TOKEN`).
    Token(String),
    /// An nkey user seed, `SU…` (`NATS_NKEY`).
    Nkey(String),
    /// A decentralised-auth credentials file, JWT and seed (`NATS_CREDS`).
    Creds(std::path::PathBuf),
}

impl std::fmt::Debug for NatsLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets never reach logs: only the method (and the user or the file) is shown.
        match self {
            NatsLogin::Anonymous => f.write_str("Anonymous"),
            NatsLogin::UserPassword { user, .. } => write!(f, "UserPassword({user}, ***)"),
            NatsLogin::Token(_) => f.write_str("Token(***)"),
            NatsLogin::Nkey(_) => f.write_str("Nkey(***)"),
            NatsLogin::Creds(path) => write!(f, "Creds({})", path.display()),
        }
    }
}

impl NatsLogin {
    /// `options` carrying this login (a credentials file is read here).
    pub async fn apply(
        &self,
        options: async_nats::ConnectOptions,
    ) -> std::io::Result<async_nats::ConnectOptions> {
        Ok(match self {
            NatsLogin::Anonymous => options,
            NatsLogin::UserPassword { user, password } => {
                options.user_and_password(user.clone(), password.clone())
            }
            NatsLogin::Token(token) => options.token(token.clone()),
            NatsLogin::Nkey(seed) => options.nkey(seed.clone()),
            NatsLogin::Creds(path) => options.credentials_file(path).await?,
        })
    }
}

/// Why a request got no reply that could be read.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CallError {
    /// Nobody subscribes to the subject (NATS "no responders").
    #[error("no responders on {0}")]
    NoResponders(String),
    /// No reply within the timeout.
    #[error("no reply on {0} within {1:?}")]
    Timeout(String, Duration),
    /// The request could not be encoded or sent.
    #[error("request on {0} failed: {1}")]
    Transport(String, String),
    /// The reply could not be decoded.
    #[error("reply on {0} cannot be read: {1}")]
    Unreadable(String, CodecError),
    /// The reply answers another request.
    #[error("reply on {0} carries another request's id")]
    WrongId(String),
}

impl CallError {
    /// Whether nobody received the request (safe to send again).
    pub fn is_no_responders(&self) -> bool {
        matches!(self, CallError::NoResponders(_))
    }
}

/// A NestJS-envelope request client on one NATS connection.
#[derive(Debug, Clone)]
pub struct NestClient {
    nats: async_nats::Client,
    codec: Codec,
    timeout: Duration,
}

impl NestClient {
    /// A client with a per-request `timeout`; replies up to 16 MiB are read.
    pub fn new(nats: async_nats::Client, timeout: Duration) -> Self {
        Self {
            nats,
            codec: Codec::with_max_len(16 << 20),
            timeout,
        }
    }

    /// The same client reading replies of at most `max` bytes.
    pub fn with_max_reply(mut self, max: usize) -> Self {
        self.codec = Codec::with_max_len(max);
        self
    }

    /// The NATS connection.
    pub fn nats(&self) -> &async_nats::Client {
        &self.nats
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Sends `data` on `subject` with a fresh id and returns the decoded reply.
    pub async fn request(&self, subject: &str, data: &impl Serialize) -> Result<Reply, CallError> {
        self.request_with(subject, data, &MessageId::fresh(), None)
            .await
    }

    /// Sends `data` on `subject` with the id `id` and NATS `headers`, and returns the decoded
    /// reply.
    pub async fn request_with(
        &self,
        subject: &str,
        data: &impl Serialize,
        id: &MessageId,
        headers: Option<async_nats::HeaderMap>,
    ) -> Result<Reply, CallError> {
        let body = self
            .codec
            .encode_request(subject, data, id)
            .map_err(|e| CallError::Transport(subject.to_owned(), e.to_string()))?;
        let mut request = async_nats::Request::new()
            .payload(body.into())
            .timeout(Some(self.timeout));
        if let Some(headers) = headers {
            request = request.headers(headers);
        }
        let message = self
            .nats
            .send_request(subject.to_owned(), request)
            .await
            .map_err(|e| match e.kind() {
                async_nats::RequestErrorKind::NoResponders => {
                    CallError::NoResponders(subject.to_owned())
                }
                async_nats::RequestErrorKind::TimedOut => {
                    CallError::Timeout(subject.to_owned(), self.timeout)
                }
                _ => CallError::Transport(subject.to_owned(), e.to_string()),
            })?;
        let reply = self
            .codec
            .decode_reply(&message.payload)
            .map_err(|e| CallError::Unreadable(subject.to_owned(), e))?;
        if reply.id.as_ref().is_some_and(|got| got != id) {
            return Err(CallError::WrongId(subject.to_owned()));
        }
        Ok(reply)
    }

    /// The `response` value of a request; `None` on any failure or an `err` reply (for probes,
    /// control planes and tests, where "no usable answer" is all that matters).
    pub async fn ask(&self, subject: &str, data: &impl Serialize) -> Option<Value> {
        match self.request(subject, data).await.ok()?.outcome {
            ReplyOutcome::Response(value) => Some(value),
            ReplyOutcome::Err(_) | ReplyOutcome::NoHandler(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_server_list_is_every_comma_separated_url() {
        let list =
            servers("nats://127.0.0.1:4222, nats://127.0.0.1:4223,nats://10.0.0.3:4224").unwrap();
        assert_eq!(list.len(), 3);
        assert_eq!(list[1].port(), 4223);
        assert_eq!(servers("nats://127.0.0.1:4222").unwrap().len(), 1);
    }

    #[test]
    fn a_bad_entry_is_named_without_its_password() {
        let err = servers("nats://127.0.0.1:4222,nats://u:secret@:bad:port").unwrap_err();
        assert!(err.contains("not a NATS server address"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        assert!(servers(" , ").is_err());
    }
}
