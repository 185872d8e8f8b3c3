//! Phase 3: after the load and the faults, the run waits (up to the scenario's `settle_s`) for the
//! system to converge: the outbox drained (but for rows course-service refused, and what waits
//! behind them) and course-stub's counts matching the bookings, refusals accounted.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use course_stub::control::Control;

use super::probes::slot_snapshot;
use super::setup::World;
use crate::checker;
use crate::delivery::{accounted, stranded, stub_slots, with_external};

/// Seconds until convergence, or `None` if `settle` passed first.
pub(crate) async fn converge(world: &World, settle: Duration) -> Option<f64> {
    let course = Control::new(world.client.clone());
    let healed = Instant::now();
    while healed.elapsed() < settle {
        if let (Ok(0), Ok(snapshot), Some(stub), Ok(accounted)) = (
            stranded(&world.pool).await.map(|rows| rows.len()),
            slot_snapshot(&world.pool).await,
            course.state().await,
            accounted(&world.pool).await,
        ) {
            let sums: HashMap<i32, i64> = snapshot.iter().map(|s| (s.id, s.sum)).collect();
            let verdict = checker::check_convergence(
                &stub_slots(&stub),
                &sums,
                &with_external(accounted, &stub),
                Some(0.0),
            );
            if verdict.held {
                return Some(healed.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
