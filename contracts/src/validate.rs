//! Field checks that every decoded payload passes before a handler sees it.
//!
//! Serde proves the shape (names and types); [`Validate`] proves the values (ranges, lengths,
//! formats). The checks are the wire contract's own limits, independent of any database state:
//! `playerCount` must be positive here, while "not more than the slot's `maxPlayers`" is the
//! service's business rule.

use serde::Serialize;

/// One field that failed a check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Violation {
    /// The field's wire name, e.g. `playerCount` or `dto.userPhone`.
    pub field: String,
    /// What is wrong, in English.
    pub message: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Collects violations for one payload.
#[derive(Debug, Default)]
pub struct Checker {
    violations: Vec<Violation>,
}

/// Implemented by every payload type; [`crate::codec`] calls it after decoding.
pub trait Validate {
    /// Records every violation into `check`.
    fn check(&self, check: &mut Checker);

    /// Runs [`Validate::check`] and returns the violations, if any.
    fn validate(&self) -> Result<(), Vec<Violation>> {
        let mut checker = Checker::default();
        self.check(&mut checker);
        checker.finish()
    }
}

impl Checker {
    /// Records a violation.
    pub fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.violations.push(Violation {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// A database id: a positive 32-bit integer.
    pub fn id(&mut self, field: &str, value: i32) {
        if value <= 0 {
            self.fail(field, "must be a positive id");
        }
    }

    /// An integer in `min..=max`.
    pub fn range(&mut self, field: &str, value: i64, min: i64, max: i64) {
        if value < min || value > max {
            self.fail(field, format!("must be between {min} and {max}"));
        }
    }

    /// A string of at most `max` characters that, when `required`, is not blank.
    pub fn text(&mut self, field: &str, value: &str, required: bool, max: usize) {
        let chars = value.chars().count();
        if required && value.trim().is_empty() {
            self.fail(field, "must not be empty");
        } else if chars > max {
            self.fail(
                field,
                format!("must be at most {max} characters, got {chars}"),
            );
        } else if value
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t')
        {
            self.fail(field, "must not contain control characters");
        }
    }

    /// An optional string: checked like [`Checker::text`] when present.
    pub fn opt_text(&mut self, field: &str, value: Option<&str>, max: usize) {
        if let Some(value) = value {
            self.text(field, value, false, max);
        }
    }

    /// An e-mail address: required, bounded, one `@` with text on both sides.
    pub fn email(&mut self, field: &str, value: &str) {
        let before = self.violations.len();
        self.text(field, value, true, limits::EMAIL);
        if self.violations.len() == before {
            let mut parts = value.split('@');
            let ok = matches!(
                (parts.next(), parts.next(), parts.next()),
                (Some(local), Some(domain), None)
                    if !local.is_empty() && domain.contains('.') && !value.contains(char::is_whitespace)
            );
            if !ok {
                self.fail(field, "must be an e-mail address");
            }
        }
    }

    /// A calendar date `YYYY-MM-DD`.
    pub fn date(&mut self, field: &str, value: &str) {
        if chrono::NaiveDate::parse_from_str(value, "%Y-%m-%d").is_err() || value.len() != 10 {
            self.fail(field, "must be a date YYYY-MM-DD");
        }
    }

    /// A calendar day with a four-digit year, as `YYYY-MM-DD` promises: 0001-01-01 to
    /// 9999-12-31. chrono reads years from -262143 to +262142, PostgreSQL holds none before
    /// 4713 BC, and JavaScript prints years past 9999 in another form.
    pub fn day(&mut self, field: &str, value: chrono::NaiveDate) {
        use chrono::Datelike as _;
        if !(1..=9999).contains(&value.year()) {
            self.fail(field, "must be a date from 0001-01-01 to 9999-12-31");
        }
    }

    /// An instant in RFC 3339 / ISO 8601 form.
    pub fn instant(&mut self, field: &str, value: &str) {
        if value.len() > 40 || chrono::DateTime::parse_from_rfc3339(value).is_err() {
            self.fail(
                field,
                "must be an ISO 8601 instant like 2025-01-15T00:00:00.000Z",
            );
        }
    }

    /// A clock time `HH:MM`.
    pub fn clock(&mut self, field: &str, value: &str) {
        if !crate::time::is_clock_time(value) {
            self.fail(field, "must be a time HH:MM");
        }
    }

    /// Checks a nested payload, prefixing its field names.
    pub fn nested(&mut self, prefix: &str, inner: &impl Validate) {
        if let Err(found) = inner.validate() {
            self.violations.extend(found.into_iter().map(|v| Violation {
                field: format!("{prefix}.{}", v.field),
                message: v.message,
            }));
        }
    }

    /// Ends the check.
    pub fn finish(self) -> Result<(), Vec<Violation>> {
        if self.violations.is_empty() {
            Ok(())
        } else {
            Err(self.violations)
        }
    }
}

/// The contract's length and range limits.
pub mod limits {
    /// Longest e-mail address (RFC 5321 path limit).
    pub const EMAIL: usize = 254;
    /// Longest person or club name.
    pub const NAME: usize = 100;
    /// Longest phone number.
    pub const PHONE: usize = 30;
    /// Longest payment method name.
    pub const PAYMENT_METHOD: usize = 50;
    /// Longest special request or cancellation reason.
    pub const FREE_TEXT: usize = 1000;
    /// Longest idempotency key.
    pub const IDEMPOTENCY_KEY: usize = 128;
    /// Longest booking number (`BK-XXXXXXXX-XXXX` is 16).
    pub const BOOKING_NUMBER: usize = 32;
    /// Longest short code (game code, status).
    pub const CODE: usize = 50;
    /// Most players one booking may carry, before the slot's own `maxPlayers` applies.
    pub const MAX_PLAYERS: i64 = 100;
    /// Largest page size a search may ask for.
    pub const MAX_PAGE_SIZE: i64 = 100;
    /// Most bookings one `booking.findByUserId` reply carries: with every text field at its limit
    /// in four-byte characters a booking serialises to under 9 KiB
    /// (`booking::LISTED_BOOKING_BYTES`), so a full page stays under NATS's default 1 MiB
    /// `max_payload`.
    pub const MAX_USER_BOOKINGS: i64 = 100;
    /// Page size of `booking.search` when the request names none.
    pub const DEFAULT_PAGE_SIZE: i64 = 10;
    /// Most history entries one booking reply carries (the newest): an entry holds at most one
    /// free text and a phone (an update's or a cancel's), under 4.5 KiB in four-byte characters
    /// (`booking::HISTORY_ENTRY_BYTES`), so a booking with this many stays under a quarter of
    /// NATS's default 1 MiB `max_payload` however long its history grows.
    pub const HISTORY_IN_REPLY: i64 = 50;
}

impl Validate for serde_json::Value {
    fn check(&self, _check: &mut Checker) {}
}

impl<T: Validate> Validate for Vec<T> {
    fn check(&self, check: &mut Checker) {
        for (i, item) in self.iter().enumerate() {
            check.nested(&format!("[{i}]"), item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_required_text_is_rejected() {
        let mut c = Checker::default();
        c.text("userName", "   ", true, 10);
        assert_eq!(c.finish().unwrap_err()[0].field, "userName");
    }

    #[test]
    fn a_text_longer_than_its_limit_is_rejected_by_characters_not_bytes() {
        let mut c = Checker::default();
        c.text("userName", "홍길동", true, 3);
        assert!(c.finish().is_ok());
        let mut c = Checker::default();
        c.text("userName", "홍길동님", true, 3);
        assert!(c.finish().is_err());
    }

    #[test]
    fn e_mail_addresses_need_one_at_and_a_dotted_domain() {
        for bad in ["a", "a@b", "@b.c", "a@b@c.d", "a b@c.d"] {
            let mut c = Checker::default();
            c.email("userEmail", bad);
            assert!(c.finish().is_err(), "{bad} should fail");
        }
        let mut c = Checker::default();
        c.email("userEmail", "user@example.com");
        assert!(c.finish().is_ok());
    }

    #[test]
    fn days_must_have_four_digit_years() {
        let day = |text: &str| {
            let mut c = Checker::default();
            c.day("date", text.parse().unwrap());
            c.finish().is_ok()
        };
        assert!(day("0001-01-01") && day("2025-06-30") && day("9999-12-31"));
        assert!(!day("0000-12-31") && !day("-5000-01-01") && !day("+10000-01-01"));
    }

    #[test]
    fn dates_must_be_real_calendar_days() {
        let mut c = Checker::default();
        c.date("date", "2025-02-30");
        c.date("date", "2025-1-5");
        assert_eq!(c.finish().unwrap_err().len(), 2);
    }
}
