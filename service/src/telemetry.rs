//! Logging: `tracing` with an `RUST_LOG`-style filter, no colour codes off a terminal, and masks
//! for personal data.

use tracing_subscriber::EnvFilter;

/// Installs a subscriber writing to stderr, filtered by `RUST_LOG` (default `info`). Safe to call
/// twice (the second call does nothing).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
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
    fn phones_keep_only_the_last_four_digits() {
        assert_eq!(mask_phone("010-1234-5678"), "***-5678");
        assert_eq!(mask_phone("12"), "***-12");
    }
}
