//! The `booking-service` binary's configuration: a missing or malformed variable stops it with a
//! message naming the variable, before it touches any server. (The binary as a running process is
//! tested in `tests/binary.rs`, on the shared harness.)

#![allow(clippy::unwrap_used)]

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_booking-service");

#[test]
fn a_missing_database_url_stops_the_binary_with_a_clear_message() {
    let output = Command::new(BIN)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATABASE_URL is required"), "{stderr}");
}

#[test]
fn a_malformed_knob_stops_the_binary_with_a_clear_message() {
    let output = Command::new(BIN)
        .env("DATABASE_URL", "postgres://127.0.0.1:1/x")
        .env("CACHE_TTL_SECS", "five minutes")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("CACHE_TTL_SECS"));
}
