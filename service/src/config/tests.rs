//! Unit tests of `config`.

use super::*;

fn with(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_lookup(|name| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    })
}

#[test]
fn a_missing_database_url_is_named() {
    let err = with(&[]).unwrap_err().to_string();
    assert!(err.contains("DATABASE_URL"), "{err}");
}

#[test]
fn a_bad_number_names_the_variable_and_the_range() {
    let err = with(&[
        ("DATABASE_URL", "postgres://h/db"),
        ("COURSE_TIMEOUT_MS", "soon"),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("COURSE_TIMEOUT_MS") && err.contains("between"),
        "{err}"
    );
}

#[test]
fn defaults_follow_the_design() {
    let c = with(&[("DATABASE_URL", "postgres://h/db")]).unwrap();
    assert_eq!(c.queue_group, "booking-service");
    assert_eq!(c.course_timeout, Duration::from_secs(5));
    assert_eq!(c.cache_ttl, Duration::from_secs(300));
    assert_eq!(c.cancel_cutoff_days, 3);
    assert_eq!(c.shutdown_grace, Duration::from_secs(20));
}

#[test]
fn a_handed_booking_event_is_never_leased_longer_than_a_claimed_row() {
    let c = with(&[("DATABASE_URL", "postgres://h/db")]).unwrap();
    assert_eq!(c.outbox_handoff_lease, Duration::from_secs(2));
    let err = with(&[
        ("DATABASE_URL", "postgres://h/db"),
        ("OUTBOX_LEASE_MS", "6000"),
        ("OUTBOX_HANDOFF_LEASE_MS", "7000"),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("OUTBOX_HANDOFF_LEASE_MS") && err.contains("OUTBOX_LEASE_MS"),
        "{err}"
    );
}

#[test]
fn nats_credentials_are_read_checked_and_never_printed() {
    let c = with(&[
        ("DATABASE_URL", "postgres://h/db"),
        ("NATS_USER", "booking-service"),
        ("NATS_PASSWORD", "s3cret"),
    ])
    .unwrap();
    assert_eq!(
        c.nats_auth,
        NatsLogin::UserPassword {
            user: "booking-service".into(),
            password: "s3cret".into()
        }
    );
    assert!(!format!("{:?}", c.nats_auth).contains("s3cret"));
    let both = with(&[
        ("DATABASE_URL", "postgres://h/db"),
        ("NATS_TOKEN", "t"),
        ("NATS_CREDS", "/x.creds"),
    ]);
    assert!(both.unwrap_err().to_string().contains("at most one"));
    let half = with(&[("DATABASE_URL", "postgres://h/db"), ("NATS_USER", "u")]);
    assert!(half.unwrap_err().to_string().contains("NATS_PASSWORD"));
    let tls = with(&[
        ("DATABASE_URL", "postgres://h/db"),
        ("NATS_TLS_CA", "/ca.pem"),
    ])
    .unwrap();
    assert!(tls.nats_tls.required);
}

#[test]
fn passwords_never_reach_debug_output() {
    let c = with(&[("DATABASE_URL", "postgres://u:hunter2@h/db")]).unwrap();
    assert!(!format!("{c:?}").contains("hunter2"));
}

#[test]
fn a_course_call_must_end_before_the_request_deadline() {
    let err = with(&[
        ("DATABASE_URL", "postgres://h/db"),
        ("COURSE_TIMEOUT_MS", "10000"),
        ("REQUEST_DEADLINE_MS", "10000"),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("COURSE_TIMEOUT_MS") && err.contains("REQUEST_DEADLINE_MS"),
        "{err}"
    );
    let ok = with(&[
        ("DATABASE_URL", "postgres://h/db"),
        ("COURSE_TIMEOUT_MS", "9999"),
        ("REQUEST_DEADLINE_MS", "10000"),
    ]);
    assert!(ok.is_ok(), "{:?}", ok.err());
}

#[test]
fn the_operator_endpoints_stay_on_loopback_unless_a_token_guards_them() {
    let c = with(&[("DATABASE_URL", "postgres://h/db")]).unwrap();
    assert_eq!(c.admin_addr, "127.0.0.1:8081".parse().unwrap());
    assert_eq!(c.admin_token, None);
    let open = with(&[
        ("DATABASE_URL", "postgres://h/db"),
        ("ADMIN_ADDR", "0.0.0.0:8081"),
    ])
    .unwrap_err()
    .to_string();
    assert!(
        open.contains("ADMIN_ADDR") && open.contains("ADMIN_TOKEN"),
        "{open}"
    );
    let guarded = with(&[
        ("DATABASE_URL", "postgres://h/db"),
        ("ADMIN_ADDR", "0.0.0.0:8081"),
        ("ADMIN_TOKEN", "s3cret"),
    ])
    .unwrap();
    assert_eq!(guarded.admin_token.as_deref(), Some("s3cret"));
    assert!(!format!("{guarded:?}").contains("s3cret"));
    let same = with(&[
        ("DATABASE_URL", "postgres://h/db"),
        ("HTTP_ADDR", "127.0.0.1:9000"),
        ("ADMIN_ADDR", "127.0.0.1:9000"),
    ])
    .unwrap_err()
    .to_string();
    assert!(same.contains("must differ"), "{same}");
}
