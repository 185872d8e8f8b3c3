//! Handler errors, split by what the caller can do about them; each maps to one wire code.

use contracts::{CodecError, ErrorCode, ErrorValue};

/// Why a handler failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The input is malformed or out of range (`BUS_001`).
    #[error("{0}")]
    Validation(String),
    /// The input could not be decoded (`BUS_001`, with field details).
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The booking or slot does not exist (`BUS_002`).
    #[error("{0}")]
    NotFound(String),
    /// An idempotency key was reused with another request (`BUS_003`).
    #[error("{0}")]
    Duplicate(String),
    /// A business rule forbids it (`BUS_004`): slot full, already cancelled, past the cut-off.
    #[error("{0}")]
    Rule(String),
    /// The caller may not do this (`AUT_002`).
    #[error("{0}")]
    Forbidden(String),
    /// Course-service is unavailable (`SYS_004`).
    #[error("{0}")]
    Unavailable(String),
    /// Too many requests are already waiting (`SYS_004`): retry later.
    #[error("booking-service is overloaded; retry later")]
    Overloaded,
    /// The answer does not fit NATS's `max_payload` (`SYS_001`): ask for less (a smaller page).
    #[error(
        "the reply ({bytes} bytes) exceeds NATS max_payload ({max} bytes); ask for a smaller page"
    )]
    ReplyTooLarge {
        /// The reply's size.
        bytes: usize,
        /// What the connection accepts.
        max: usize,
    },
    /// A booking does not fit NATS's `max_payload` even without its history (`SYS_001`): a read
    /// cannot be answered, and a change whose answer could not be sent is not made.
    #[error(
        "the booking ({bytes} bytes without its history) exceeds NATS max_payload ({max} bytes); nothing was changed"
    )]
    BookingTooLarge {
        /// The reply's size with no history entry.
        bytes: usize,
        /// What the reply may take.
        max: usize,
    },
    /// The database failed (`SYS_002`) at `step` (a bare `?` says "a statement"; handlers name
    /// their steps with [`StepExt::step`]).
    #[error("database error while {step}: {source}")]
    Database {
        /// What the handler was doing.
        step: &'static str,
        /// The driver's error.
        source: sqlx::Error,
    },
    /// The request was not done within `REQUEST_DEADLINE_MS` (`SYS_002`) and no write of it had
    /// started: it was not applied, and never will be.
    #[error("no answer within {0:?}; the request was not applied")]
    Deadline(std::time::Duration),
    /// A write went to the database and its outcome could not be learnt (`SYS_002`, marked
    /// `details.outcome = "unknown"`): its commit's answer was lost and looking it up failed, or
    /// the deadline passed while it was on the wire. It may or may not be applied.
    #[error("the outcome of {step} is unknown ({why}); look the booking up, or retry with the same idempotency key")]
    OutcomeUnknown {
        /// What was being written.
        step: &'static str,
        /// Why it is not known.
        why: String,
    },
    /// A write committed but its result could not be read back for the reply (`SYS_002`, marked
    /// `details.outcome = "applied"`).
    #[error("{step} was applied, but its result could not be read back ({why})")]
    AppliedUnread {
        /// What was written.
        step: &'static str,
        /// Why it could not be read.
        why: String,
    },
    /// Anything else (`SYS_001`).
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ServiceError {
    fn from(source: sqlx::Error) -> Self {
        ServiceError::Database {
            step: "running a statement",
            source,
        }
    }
}

/// Names the step of a database call, so a failure logs what was being done, not only the
/// driver's words.
pub(crate) trait StepExt<T> {
    /// The result, its error tagged with `step` ("locking the slot").
    fn step(self, step: &'static str) -> Result<T>;
}

impl<T> StepExt<T> for std::result::Result<T, sqlx::Error> {
    fn step(self, step: &'static str) -> Result<T> {
        self.map_err(|source| ServiceError::Database { step, source })
    }
}

impl ServiceError {
    /// `BUS_001` naming one field of the request, as the contract's own checks do.
    pub fn field(field: &str, message: impl Into<String>) -> Self {
        ServiceError::Codec(CodecError::Invalid(vec![contracts::Violation {
            field: field.to_owned(),
            message: message.into(),
        }]))
    }

    /// The wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ServiceError::Validation(_) | ServiceError::Codec(_) => ErrorCode::Validation,
            ServiceError::NotFound(_) => ErrorCode::NotFound,
            ServiceError::Duplicate(_) => ErrorCode::Duplicate,
            ServiceError::Rule(_) => ErrorCode::BusinessRule,
            ServiceError::Forbidden(_) => ErrorCode::Forbidden,
            ServiceError::Unavailable(_) | ServiceError::Overloaded => {
                ErrorCode::ServiceUnavailable
            }
            ServiceError::ReplyTooLarge { .. } | ServiceError::BookingTooLarge { .. } => {
                ErrorCode::System
            }
            ServiceError::Database { .. }
            | ServiceError::Deadline(_)
            | ServiceError::OutcomeUnknown { .. }
            | ServiceError::AppliedUnread { .. } => ErrorCode::Database,
            ServiceError::Internal(_) => ErrorCode::System,
        }
    }

    /// Whether the whole handler may safely run again: the database rolled the transaction back
    /// (serialization failure, deadlock) or never started it (no pooled connection in time). A
    /// connection lost mid-commit is not retried: the commit may have happened.
    pub fn is_retryable(&self) -> bool {
        match self {
            ServiceError::Database {
                source: sqlx::Error::PoolTimedOut,
                ..
            } => true,
            ServiceError::Database {
                source: sqlx::Error::Database(db),
                ..
            } => {
                matches!(db.code().as_deref(), Some("40001") | Some("40P01"))
            }
            _ => false,
        }
    }

    /// Whether the database could not be reached (no pooled connection in time, a connection
    /// lost): an idempotent statement may be sent again.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ServiceError::Database {
                source: sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed,
                ..
            }
        )
    }

    /// Whether a write that failed with this error may have committed all the same: anything
    /// but an error PostgreSQL itself reported (the statement failed, so its transaction rolls
    /// back) or a failure to get a connection. A lost connection, a protocol error, or a reply
    /// that could not be decoded may all come after the commit.
    pub fn may_have_committed(&self) -> bool {
        match self {
            ServiceError::Database { source, .. } => !matches!(
                source,
                sqlx::Error::Database(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
            ),
            ServiceError::OutcomeUnknown { .. } | ServiceError::AppliedUnread { .. } => true,
            _ => false,
        }
    }

    /// The wire error value. Internal details (SQL text, stack) stay in the logs.
    pub fn to_error_value(&self) -> ErrorValue {
        match self {
            ServiceError::Codec(e) => e.to_error_value(),
            // Every write whose commit may have been sent is settled (looked up) or turned into
            // OutcomeUnknown before its error reaches here, so a database error is one that
            // happened before anything could commit.
            ServiceError::Database { .. } => {
                ErrorValue::new(self.code(), "Database error; the request was not applied")
            }
            ServiceError::OutcomeUnknown { .. } => ErrorValue::new(self.code(), self.to_string())
                .with_details(serde_json::json!({ "outcome": "unknown" })),
            ServiceError::AppliedUnread { .. } => ErrorValue::new(self.code(), self.to_string())
                .with_details(serde_json::json!({ "outcome": "applied" })),
            ServiceError::Internal(_) => ErrorValue::new(self.code(), "Internal error"),
            other => ErrorValue::new(other.code(), other.to_string()),
        }
    }
}

/// Handler results.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_timeout_is_retried_but_a_lost_connection_is_not() {
        assert!(ServiceError::from(sqlx::Error::PoolTimedOut).is_retryable());
        let lost = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(
            !ServiceError::from(lost).is_retryable(),
            "the commit may have happened"
        );
        assert!(!ServiceError::Rule("full".into()).is_retryable());
    }

    #[test]
    fn an_unknown_outcome_is_marked_and_never_says_not_applied() {
        let e = ServiceError::OutcomeUnknown {
            step: "committing the booking",
            why: "the connection was lost".into(),
        };
        let value = e.to_error_value();
        assert_eq!(value.code(), ErrorCode::Database);
        assert_eq!(
            value.error.details,
            Some(serde_json::json!({ "outcome": "unknown" }))
        );
        assert!(!value.error.message.contains("not applied"), "{value}");
        let lost = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
        assert!(ServiceError::from(lost).may_have_committed());
        assert!(!ServiceError::from(sqlx::Error::PoolTimedOut).may_have_committed());
    }

    #[test]
    fn internal_details_stay_out_of_the_wire_error() {
        let value = ServiceError::from(sqlx::Error::PoolTimedOut).to_error_value();
        assert_eq!(value.code(), ErrorCode::Database);
        assert!(!value.error.message.contains("pool"));
    }
}
