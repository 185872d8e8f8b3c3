//! Logging: `tracing` with an `RUST_LOG`-style filter, no colour codes off a terminal, and masks
//! for personal data.

use tracing_subscriber::EnvFilter;

/// async-nats logs every connection event at INFO itself, and the service's event callback
/// (`nats.rs`) logs each one again in its own words: its INFO lines are dropped unless `RUST_LOG`
/// names async-nats.
const ASYNC_NATS: &str = "async_nats=warn";

/// The log filter for `RUST_LOG` (`None`: unset or unreadable, then `info`).
fn filter(spec: Option<&str>) -> EnvFilter {
    let spec = spec.filter(|s| !s.trim().is_empty()).unwrap_or("info");
    let spec = if spec.contains("async_nats") {
        spec.to_owned()
    } else {
        format!("{spec},{ASYNC_NATS}")
    };
    EnvFilter::try_new(&spec).unwrap_or_else(|_| EnvFilter::new(format!("info,{ASYNC_NATS}")))
}

/// Installs a subscriber writing to stderr, filtered by `RUST_LOG` (default `info`). Safe to call
/// twice (the second call does nothing).
pub fn init() {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    use std::io::IsTerminal as _;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour codes only for a person at a terminal, never in files or log collectors.
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// `user@example.com` → `u***@example.com`: enough to correlate, not enough to identify.
pub fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((local, domain)) => {
            let first: String = local.chars().take(1).collect();
            format!("{first}***@{domain}")
        }
        None => "***".into(),
    }
}

/// `홍길동` → `홍***`: the first letter only.
pub fn mask_name(name: &str) -> String {
    let first: String = name.chars().take(1).collect();
    format!("{first}***")
}

/// `010-1234-5678` → `***-5678`: the last four digits only.
pub fn mask_phone(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    let tail: String = digits[digits.len().saturating_sub(4)..].iter().collect();
    format!("***-{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e_mails_keep_only_the_first_letter_and_the_domain() {
        assert_eq!(mask_email("user@example.com"), "u***@example.com");
        assert_eq!(mask_email("nonsense"), "***");
    }

    #[test]
    fn async_nats_events_are_left_to_the_service_unless_asked_for() {
        let directives = |spec: Option<&str>| {
            let mut all: Vec<String> = filter(spec)
                .to_string()
                .split(',')
                .map(str::to_owned)
                .collect();
            all.sort();
            all
        };
        assert_eq!(directives(None), ["async_nats=warn", "info"]);
        assert_eq!(directives(Some("debug")), ["async_nats=warn", "debug"]);
        assert_eq!(directives(Some("async_nats=debug")), ["async_nats=debug"]);
    }

    #[test]
    fn names_keep_only_the_first_letter() {
        assert_eq!(mask_name("홍길동"), "홍***");
        assert_eq!(mask_name(""), "***");
    }

    #[test]
    fn phones_keep_only_the_last_four_digits() {
        assert_eq!(mask_phone("010-1234-5678"), "***-5678");
        assert_eq!(mask_phone("12"), "***-12");
    }
}
