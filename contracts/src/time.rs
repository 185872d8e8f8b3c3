//! Wire formats for dates and instants.
//!
//! JavaScript's `Date.prototype.toISOString()` always prints milliseconds and `Z`
//! (`2025-01-15T09:00:00.000Z`); calendar dates travel as `YYYY-MM-DD` and clock times as `HH:MM`.
//! These serde helpers print exactly those forms and accept any RFC 3339 instant on input.

/// Serde helpers for `DateTime<Utc>` as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub mod iso_millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Prints the instant the way JavaScript does.
    pub fn format(at: &DateTime<Utc>) -> String {
        at.to_rfc3339_opts(SecondsFormat::Millis, true)
    }

    /// Serializes as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(at))
    }

    /// Accepts any RFC 3339 instant.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|at| at.with_timezone(&Utc))
            .map_err(|e| serde::de::Error::custom(format!("not an ISO 8601 instant: {e}")))
    }
}

/// Serde helpers for `Option<DateTime<Utc>>` in the same form, `null` for none.
pub mod iso_millis_opt {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes `Some` like [`super::iso_millis`], `None` as `null`.
    pub fn serialize<S: Serializer>(at: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => s.serialize_str(&super::iso_millis::format(at)),
            None => s.serialize_none(),
        }
    }

    /// Accepts `null` or any RFC 3339 instant.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let text = Option::<std::borrow::Cow<'de, str>>::deserialize(d)?;
        text.map(|text| {
            DateTime::parse_from_rfc3339(&text)
                .map(|at| at.with_timezone(&Utc))
                .map_err(|e| serde::de::Error::custom(format!("not an ISO 8601 instant: {e}")))
        })
        .transpose()
    }
}

/// Whether `text` is a clock time `HH:MM` (00:00 to 23:59).
pub fn is_clock_time(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() != 5 || bytes[2] != b':' {
        return false;
    }
    let digits = |a: u8, b: u8| -> Option<u32> {
        (a.is_ascii_digit() && b.is_ascii_digit())
            .then(|| u32::from(a - b'0') * 10 + u32::from(b - b'0'))
    };
    matches!(
        (digits(bytes[0], bytes[1]), digits(bytes[3], bytes[4])),
        (Some(h), Some(m)) if h < 24 && m < 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn instants_print_like_javascript() {
        let at = Utc.with_ymd_and_hms(2025, 1, 15, 9, 0, 0).unwrap();
        assert_eq!(iso_millis::format(&at), "2025-01-15T09:00:00.000Z");
    }

    #[test]
    fn clock_times_are_checked() {
        assert!(is_clock_time("09:00"));
        assert!(is_clock_time("23:59"));
        assert!(!is_clock_time("24:00"));
        assert!(!is_clock_time("9:00"));
        assert!(!is_clock_time("09:60"));
        assert!(!is_clock_time("ab:cd"));
    }
}
