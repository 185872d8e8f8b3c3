//! The wire error value and its codes.
//!
//! The reference service's RPC exception filter turns every failure into one JSON value,
//! `{"success":false,"error":{"code","message","details"},"timestamp"}`, carried in the `err` field of
//! the NestJS reply envelope. The codes are a closed set; each maps to what a caller can do about it.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::time::iso_millis;

/// The error codes a booking-service reply may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ErrorCode {
    /// Unexpected failure inside the service.
    #[serde(rename = "SYS_001")]
    System,
    /// The database failed or could not be reached.
    #[serde(rename = "SYS_002")]
    Database,
    /// A network call failed.
    #[serde(rename = "SYS_003")]
    Network,
    /// A dependency (course-service) is unavailable; retrying later may succeed.
    #[serde(rename = "SYS_004")]
    ServiceUnavailable,
    /// The caller may not do this (e.g. cancel someone else's booking).
    #[serde(rename = "AUT_002")]
    Forbidden,
    /// The input is malformed or out of range; retrying the same input fails again.
    #[serde(rename = "BUS_001")]
    Validation,
    /// The thing asked for does not exist.
    #[serde(rename = "BUS_002")]
    NotFound,
    /// The request duplicates an earlier one in a way that cannot be replayed.
    #[serde(rename = "BUS_003")]
    Duplicate,
    /// A business rule forbids it (slot full, already cancelled, past the cut-off).
    #[serde(rename = "BUS_004")]
    BusinessRule,
}

impl ErrorCode {
    /// Every code, in wire order.
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::System,
        ErrorCode::Database,
        ErrorCode::Network,
        ErrorCode::ServiceUnavailable,
        ErrorCode::Forbidden,
        ErrorCode::Validation,
        ErrorCode::NotFound,
        ErrorCode::Duplicate,
        ErrorCode::BusinessRule,
    ];

    /// The code as it appears on the wire, e.g. `BUS_004`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::System => "SYS_001",
            ErrorCode::Database => "SYS_002",
            ErrorCode::Network => "SYS_003",
            ErrorCode::ServiceUnavailable => "SYS_004",
            ErrorCode::Forbidden => "AUT_002",
            ErrorCode::Validation => "BUS_001",
            ErrorCode::NotFound => "BUS_002",
            ErrorCode::Duplicate => "BUS_003",
            ErrorCode::BusinessRule => "BUS_004",
        }
    }

    /// Whether a caller may usefully retry the same request later.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            ErrorCode::Database | ErrorCode::Network | ErrorCode::ServiceUnavailable
        )
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The inner `error` object of a wire error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    /// Machine-readable code.
    pub code: ErrorCode,
    /// Human-readable message (English).
    pub message: String,
    /// Optional structured details, e.g. the fields that failed validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

/// The error value: what the `err` field of a failed reply holds, and what course-service puts in
/// `response` when it answers `success:false`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorValue {
    /// Always `false`.
    pub success: bool,
    /// What went wrong.
    pub error: ErrorDetail,
    /// When the error was produced, ISO 8601 with milliseconds (`2025-01-15T09:00:00.000Z`).
    #[serde(with = "iso_millis")]
    #[schemars(with = "String")]
    pub timestamp: DateTime<Utc>,
}

impl ErrorValue {
    /// An error value stamped now.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self::at(code, message, Utc::now())
    }

    /// An error value with an explicit timestamp (fixtures and tests).
    pub fn at(code: ErrorCode, message: impl Into<String>, timestamp: DateTime<Utc>) -> Self {
        Self {
            success: false,
            error: ErrorDetail {
                code,
                message: message.into(),
                details: None,
            },
            timestamp,
        }
    }

    /// Adds structured details.
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.error.details = Some(details);
        self
    }

    /// The code, for matching.
    pub fn code(&self) -> ErrorCode {
        self.error.code
    }
}

impl std::fmt::Display for ErrorValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error.code, self.error.message)
    }
}

impl crate::validate::Validate for ErrorValue {
    fn check(&self, c: &mut crate::validate::Checker) {
        if self.success {
            c.fail("success", "must be false in an error value");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_serializes_to_its_wire_string() {
        for code in ErrorCode::ALL {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::Value::String(code.as_str().to_owned()));
        }
    }

    #[test]
    fn an_unknown_code_is_rejected() {
        assert!(serde_json::from_str::<ErrorCode>("\"BUS_999\"").is_err());
    }
}
