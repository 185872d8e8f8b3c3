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
    /// The database failed (`SYS_002`).
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Anything else (`SYS_001`).
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

impl ServiceError {
    /// The wire code.
    pub fn code(&self) -> ErrorCode {
        match self {
            ServiceError::Validation(_) | ServiceError::Codec(_) => ErrorCode::Validation,
            ServiceError::NotFound(_) => ErrorCode::NotFound,
            ServiceError::Duplicate(_) => ErrorCode::Duplicate,
            ServiceError::Rule(_) => ErrorCode::BusinessRule,
            ServiceError::Forbidden(_) => ErrorCode::Forbidden,
            ServiceError::Unavailable(_) => ErrorCode::ServiceUnavailable,
            ServiceError::Database(_) => ErrorCode::Database,
            ServiceError::Internal(_) => ErrorCode::System,
        }
    }

    /// The wire error value. Internal details (SQL text, stack) stay in the logs.
    pub fn to_error_value(&self) -> ErrorValue {
        match self {
            ServiceError::Codec(e) => e.to_error_value(),
            ServiceError::Database(_) => {
                ErrorValue::new(self.code(), "Database error; the request was not applied")
            }
            ServiceError::Internal(_) => ErrorValue::new(self.code(), "Internal error"),
            other => ErrorValue::new(other.code(), other.to_string()),
        }
    }
}

/// Handler results.
pub type Result<T, E = ServiceError> = std::result::Result<T, E>;
