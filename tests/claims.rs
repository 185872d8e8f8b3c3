//! The outbox relay's claim on a large backlog: whatever the planner guesses, a claim reads its
//! window, not the backlog. Row counts of the executed plan are exact, so this checks the cost
//! without timing anything. It fails with the leases joined to the heads as a table (the backlog
//! on the outer side of a nested loop, as the bench found at 256 clients). It does not provoke
//! the bitmap scan over dead index entries: with these statistics the planner picks the plain
//! index scan even where bitmap scans are allowed.

#![allow(clippy::unwrap_used)]

use std::str::FromStr as _;

use integration_tests::*;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// The largest `rows × loops` of any node of an executed plan, with the node's type.
fn widest(node: &Value) -> (f64, String) {
    let rows =
        node["Actual Rows"].as_f64().unwrap_or(0.0) * node["Actual Loops"].as_f64().unwrap_or(1.0);
    let mut widest = (rows, node["Node Type"].as_str().unwrap_or("?").to_owned());
    for child in node["Plans"].as_array().into_iter().flatten() {
        let w = self::widest(child);
        if w.0 > widest.0 {
            widest = w;
        }
    }
    widest
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_reads_its_window_not_the_backlog() {
    let db = migrated_database().await;
    let options = PgConnectOptions::from_str(db.url())
        .unwrap()
        .options(booking_service::RELAY_SESSION);
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await
        .unwrap();
    // 20,000 rows sent (their entries stay in the unsent index until a vacuum), then 30,000 due:
    // booking events one lane per booking, book requests in 256 slot lanes. The statistics are
    // those of the quiet moment before the backlog, as autovacuum leaves them on a busy system.
    sqlx::query("ALTER TABLE outbox_events SET (autovacuum_enabled = false)")
        .execute(&pool)
        .await
        .unwrap();
    let fill = "INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, event_type, \
        payload, channel, lane) SELECT gen_random_uuid(), 'Booking', b::text, \
        CASE WHEN c = 'course' THEN 'gameTimeSlots.book' ELSE 'booking.confirmed' END, '{}', c, \
        CASE WHEN c = 'course' THEN 'slot:' || (b % 256) ELSE 'booking:' || b END \
        FROM generate_series($1::int4, $2::int4) b, unnest(ARRAY['course', 'events']) c";
    sqlx::query(fill)
        .bind(1)
        .bind(10_000)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE outbox_events SET status = 'SENT'")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("ANALYZE outbox_events")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query(fill)
        .bind(10_001)
        .bind(25_000)
        .execute(&pool)
        .await
        .unwrap();

    let limit = 256_usize;
    let window = booking_service::claim_window(limit);
    for channel in ["events", "course"] {
        #[allow(clippy::disallowed_methods)] // never cancelled
        let mut tx = pool.begin().await.unwrap();
        let (plan,): (Value,) = sqlx::query_as(&format!(
            "EXPLAIN (ANALYZE, FORMAT JSON) {}",
            booking_service::claim_sql()
        ))
        .bind([channel])
        .bind(i64::try_from(limit).unwrap())
        .bind(window)
        .bind(std::time::Duration::from_secs(30))
        .fetch_one(&mut *tx)
        .await
        .unwrap();
        tx.rollback().await.unwrap();
        let root = &plan[0]["Plan"];
        let (rows, node) = widest(root);
        assert!(
            rows <= window as f64,
            "{channel}: a {node} handled {rows} rows for a window of {window}: {plan:#}"
        );
        // The claim did its job: a full batch leased (every booking event heads its own lane;
        // the 256 slot lanes have 256 heads).
        assert_eq!(root["Actual Rows"].as_f64(), Some(limit as f64), "{plan:#}");
    }
}
