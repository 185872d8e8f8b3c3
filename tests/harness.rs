//! Shared helpers of the integration suites.
//!
//! Every suite runs against real servers from [`simulator::World`]: one shared world per test
//! binary (fsync off), and a fresh database per test, so tests are isolated and run in parallel.
//! Suites that kill servers build worlds of their own.

#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

pub use simulator::{TestDatabase, World};

/// The world shared by the tests of this binary.
pub async fn shared_world() -> &'static World {
    World::shared().await.unwrap()
}

/// Polls `probe` until it returns `Some`, or panics with `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
