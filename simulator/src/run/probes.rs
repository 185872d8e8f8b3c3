//! The safety phase's observers: a probe every 250 ms that checks I1/I2 on one consistent
//! snapshot of the database and records the outbox backlog and course-stub's drift, and a scrape of
//! every replica's `/metrics` once a second.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use course_stub::control::Control;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Journal;
use crate::checker::{self, SlotSnapshot, Verdict};
use crate::report::{MetricsAt, Probe};
use crate::scrape::{self, Scraper};

/// I1 and I2 as the probes left them, and the probes for the charts.
pub(crate) type Probed = (Verdict, Verdict, Vec<Probe>);

/// Probes until `stop` turns true.
pub(crate) fn probe(
    journal: Arc<Journal>,
    pool: sqlx::PgPool,
    client: async_nats::Client,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<Probed> {
    tokio::spawn(async move {
        let course = Control::new(client);
        let mut i1 = Verdict::new("I1", "no oversell: Σ players ≤ maxPlayers, at every probe");
        let mut i2 = Verdict::new("I2", "cache booked_players = Σ bookings, at every probe");
        let mut probes = Vec::new();
        let mut tick = 0u64;
        while !*stop.borrow() {
            let t_ms = journal.t_ms();
            let snapshot = slot_snapshot(&pool).await.ok();
            if let Some(s) = &snapshot {
                checker::check_slots(t_ms, s, &mut i1, &mut i2);
            }
            // course-stub's state is the heavier read: every other probe.
            let drift = match (&snapshot, tick % 2 == 0) {
                (Some(s), true) => stub_counts(&course).await.map(|c| drift(&c, s)),
                _ => None,
            };
            let backlog = backlog(&pool).await.ok();
            journal.set_backlog(backlog);
            probes.push(Probe {
                t_ms,
                backlog,
                drift,
            });
            tick += 1;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = stop.changed() => {}
            }
        }
        (i1, i2, probes)
    })
}

/// I1/I2 once more on the final state (stamped at the end of the load); returns the snapshot.
pub(crate) async fn check_final(
    pool: &sqlx::PgPool,
    load_end: Duration,
    i1: &mut Verdict,
    i2: &mut Verdict,
) -> anyhow::Result<Vec<SlotSnapshot>> {
    let snapshot = slot_snapshot(pool).await?;
    checker::check_slots(load_end.as_millis() as u64, &snapshot, i1, i2);
    Ok(snapshot)
}

/// Scrapes every replica's `/metrics` (histogram buckets left out) once a second until `stop`.
pub(crate) fn scrape(
    journal: Arc<Journal>,
    addrs: Vec<std::net::SocketAddr>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<Vec<MetricsAt>> {
    tokio::spawn(async move {
        let scraper = Scraper::new(Duration::from_millis(800));
        let mut out = Vec::new();
        while !*stop.borrow() {
            let t_ms = journal.t_ms();
            // One sample per replica, in order (empty when it did not answer), so each
            // replica's own gauges keep its index.
            let mut samples = Vec::new();
            let mut answered = 0;
            for addr in &addrs {
                let sample = match scraper.scrape(&format!("http://{addr}/metrics")).await {
                    Ok(s) => {
                        answered += 1;
                        s.into_iter()
                            .filter(|(k, _)| !k.contains("_bucket"))
                            .collect()
                    }
                    Err(_) => scrape::Sample::new(),
                };
                samples.push(sample);
            }
            out.push(MetricsAt {
                t_ms,
                replicas: answered,
                values: scrape::sum(&samples),
            });
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => {}
            }
        }
        out
    })
}

/// Every slot's capacity, cached count and Σ live bookings, in one statement (one snapshot).
pub(crate) async fn slot_snapshot(pool: &sqlx::PgPool) -> anyhow::Result<Vec<SlotSnapshot>> {
    let rows: Vec<(i32, i32, i32, i64)> = sqlx::query_as(
        "SELECT c.game_time_slot_id, c.max_players, c.booked_players, COALESCE(b.players, 0)::int8 \
         FROM game_time_slot_cache c LEFT JOIN ( \
           SELECT game_time_slot_id, SUM(player_count) AS players FROM bookings \
           WHERE status IN ('PENDING', 'CONFIRMED') GROUP BY 1) b USING (game_time_slot_id) \
         ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, max_players, cached, sum)| SlotSnapshot {
            id,
            max_players,
            cached,
            sum,
        })
        .collect())
}

/// Outbox rows still waiting to be sent.
async fn backlog(pool: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM outbox_events WHERE status = 'PENDING'")
            .fetch_one(pool)
            .await?,
    )
}

/// course-stub's count per slot.
async fn stub_counts(course: &Control) -> Option<BTreeMap<i32, i32>> {
    let state = course.state().await?;
    Some(
        state
            .slots
            .iter()
            .map(|s| (s.id, s.booked_players))
            .collect(),
    )
}

/// Σ |course-stub's count − ours| over the slots.
fn drift(stub: &BTreeMap<i32, i32>, slots: &[SlotSnapshot]) -> i64 {
    let ours: HashMap<i32, i64> = slots.iter().map(|s| (s.id, s.sum)).collect();
    stub.iter()
        .map(|(id, theirs)| (i64::from(*theirs) - ours.get(id).copied().unwrap_or(0)).abs())
        .sum()
}
