//! Every answer is true (DESIGN.md §5, failure paths): a create whose caller's deadline passed
//! while it queued behind a hung write is answered "not applied" and is never written afterwards;
//! only the few whose write was already on the wire are answered "outcome unknown", marked so in
//! `error.details.outcome`.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use booking_service::Config;
use contracts::subjects as s;
use integration_tests::*;
use serde_json::{json, Value};

/// What a create's caller was told.
#[derive(Debug, Clone, PartialEq)]
enum Told {
    Booked,
    NotApplied(String),
    Unknown,
}

fn told(answer: &Answer) -> Told {
    match answer {
        Answer::Ok(_) => Told::Booked,
        Answer::Err(e)
            if e.error.details.as_ref().map(|d| &d["outcome"]) == Some(&json!("unknown")) =>
        {
            Told::Unknown
        }
        Answer::Err(e) => Told::NotApplied(e.error.code.to_string()),
    }
}

const CREATES: i32 = 16;

/// 16 unkeyed creates, 150 ms apart, while the bookings table is locked for their whole run
/// (deadline 700 ms); the lock then goes. Each caller's answer, and the users with a booking.
async fn creates_behind_a_hung_write(configure: fn(&mut Config)) -> (HashMap<i32, Told>, Vec<i32>) {
    let app = spawn_app_with(AppOptions {
        configure,
        ..AppOptions::default()
    })
    .await;
    app.seed_slot(&slot(1, 1, 10, 100), &game(1)).await;

    // The bookings table is locked: every write hangs until the lock goes.
    #[allow(clippy::disallowed_methods)] // the test's own blocker, never cancelled
    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE bookings IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();

    let mut calls = Vec::new();
    for user in 1..=CREATES {
        let app = &app;
        calls.push(async move {
            tokio::time::sleep(Duration::from_millis(150 * u64::from(user as u32))).await;
            let mut req = create_request(user, 1, 1);
            req["specialRequests"] = Value::from(format!("answers-{user}"));
            (user, app.call(s::BOOKING_CREATE, req).await)
        });
    }
    let answers: HashMap<i32, Told> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|(user, a)| (user, told(&a)))
        .collect();
    lock.commit().await.unwrap();

    // Whatever was on the wire lands now; give it time to, then read what is stored.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stored: Vec<(i32,)> = sqlx::query_as("SELECT user_id FROM bookings")
        .fetch_all(&app.pool)
        .await
        .unwrap();
    (answers, stored.into_iter().map(|(u,)| u).collect())
}

/// The users answered "not applied" who have a booking all the same.
fn phantoms(answers: &HashMap<i32, Told>, booked: &[i32]) -> Vec<(i32, String)> {
    let mut phantoms = Vec::new();
    for (user, said) in answers {
        let count = booked.iter().filter(|u| *u == user).count();
        match said {
            Told::Booked => assert_eq!(count, 1, "user {user} was told booked"),
            Told::NotApplied(code) if count > 0 => phantoms.push((*user, code.clone())),
            _ => assert!(count <= 1, "user {user}: {count} bookings"),
        }
    }
    phantoms
}

#[tokio::test(flavor = "multi_thread")]
async fn creates_queued_behind_a_hung_write_past_their_deadline_are_never_written() {
    let (answers, booked) =
        creates_behind_a_hung_write(|c| c.request_deadline = Duration::from_millis(700)).await;
    let phantoms = phantoms(&answers, &booked);
    let unknown = answers.values().filter(|t| **t == Told::Unknown).count();
    assert!(
        phantoms.is_empty(),
        "answered not applied, written all the same: {phantoms:?} (answers {answers:?})"
    );
    assert!(
        unknown < CREATES as usize / 2,
        "only creates whose write was on the wire may be unknown: {unknown} of {CREATES} ({answers:?})"
    );
    assert!(
        answers.values().any(|t| matches!(t, Told::NotApplied(_))),
        "the creates that queued were answered not applied: {answers:?}"
    );
    eprintln!(
        "{unknown} of {CREATES} answered outcome unknown, {} written",
        booked.len()
    );
}

/// The check above can fail: with the defect planted back (queued creates written after their
/// callers were answered), it finds the phantoms.
#[tokio::test(flavor = "multi_thread")]
async fn the_planted_write_abandoned_bug_leaves_phantoms() {
    let (answers, booked) = creates_behind_a_hung_write(|c| {
        c.request_deadline = Duration::from_millis(700);
        c.planted_bug = Some(booking_service::faults::PlantedBug::WriteAbandoned);
    })
    .await;
    assert!(
        !phantoms(&answers, &booked).is_empty(),
        "{answers:?} {booked:?}"
    );
}
