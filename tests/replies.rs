//! Memory under many large replies at once (issue 31): a measurement of the service binary's peak
//! RSS, in a test binary of its own like the flood test.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use contracts::subjects as s;
use integration_tests::peak_rss;
use serde_json::json;

/// Writes `n` bookings (each with its payment) for `user`, every text at its contract limit in
/// four-byte characters: about 8 KB each in a reply.
async fn wide_bookings(pool: &sqlx::PgPool, user: i32, n: i32) {
    let wide = |chars: usize| "😀".repeat(chars);
    sqlx::query(
        "INSERT INTO bookings (booking_number, user_id, game_id, game_time_slot_id, game_name, game_code, \
         front_nine_course_id, front_nine_course_name, back_nine_course_id, back_nine_course_name, club_id, \
         club_name, booking_date, start_time, end_time, player_count, price_per_person, service_fee, \
         total_price, status, payment_method, special_requests, user_email, user_name, user_phone, \
         created_at, updated_at) \
         SELECT 'BK-WIDE-' || g, $1, 1, 1, $3, $4, 11, $3, 12, $3, 1, $3, now() + interval '10 days', \
         '09:00', '12:00', 1, 15000, 450, 15450, 'CONFIRMED', $5, $6, 'user@example.com', $3, $7, \
         now() - make_interval(secs => g), now() FROM generate_series(1, $2) g",
    )
    .bind(user)
    .bind(n)
    .bind(wide(contracts::validate::limits::NAME))
    .bind(wide(contracts::validate::limits::CODE))
    .bind(wide(contracts::validate::limits::PAYMENT_METHOD))
    .bind(wide(contracts::validate::limits::FREE_TEXT))
    .bind(wide(contracts::validate::limits::PHONE))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO payments (booking_id, amount, payment_method, payment_status, created_at, updated_at) \
         SELECT id, total_price, payment_method, 'PENDING', created_at, updated_at FROM bookings \
         WHERE user_id = $1",
    )
    .bind(user)
    .execute(pool)
    .await
    .unwrap();
}

/// Before: 300 concurrent `booking.findByUserId` answered with ~800 KB each took the service to
/// 342 MB (100 at once: 106-144 MB): every handler built its whole reply, as rows, as the wire
/// type, as a JSON tree and as bytes, at once with all the others. Now replies being built or
/// sent share a byte budget, so the peak stays under 128 MiB and every caller is still answered.
#[tokio::test(flavor = "multi_thread")]
async fn hundreds_of_large_replies_at_once_keep_memory_bounded_and_are_all_answered() {
    const CLIENTS: usize = 10;
    const PER_CLIENT: usize = 30;
    let logs = tempfile::tempdir().unwrap();
    let stack = world::stack::Stack::start(
        &world::stack::StackOptions {
            fsync: false,
            // Callers wait their turn here rather than past the default 10 s deadline.
            service_env: vec![("REQUEST_DEADLINE_MS".into(), "120000".into())],
            ..Default::default()
        },
        logs.path(),
    )
    .await
    .unwrap();
    let pid = stack.service_pid(0).await.unwrap();
    let pool = stack.pool().await.unwrap();
    wide_bookings(&pool, 7, 100).await;
    let codec = contracts::Codec::default();
    let body: bytes::Bytes = codec
        .encode_request(
            s::BOOKING_FIND_BY_USER_ID,
            &json!({"userId": 7}),
            &contracts::MessageId::fresh(),
        )
        .unwrap()
        .into();
    // One request alone, to know the size of the reply.
    let probe = stack.client().await.unwrap();
    let one = probe
        .request(s::BOOKING_FIND_BY_USER_ID, body.clone())
        .await
        .unwrap();
    let reply_len = one.payload.len();
    assert!(reply_len > 700_000, "a reply of {reply_len} bytes");
    let before = peak_rss(pid);

    // Several connections, so that no one of them has more waiting in NATS than it allows.
    let mut callers = Vec::new();
    for _ in 0..CLIENTS {
        let client = async_nats::ConnectOptions::new()
            .request_timeout(Some(Duration::from_secs(180)))
            .connect(stack.world.nats_url())
            .await
            .unwrap();
        let body = body.clone();
        callers.push(tokio::spawn(async move {
            let calls = (0..PER_CLIENT).map(|_| {
                let (client, body) = (client.clone(), body.clone());
                async move {
                    let reply = client
                        .request(s::BOOKING_FIND_BY_USER_ID, body)
                        .await
                        .map_err(|e| e.to_string())?;
                    let value: serde_json::Value =
                        serde_json::from_slice(&reply.payload).map_err(|e| e.to_string())?;
                    match value["response"]["data"].as_array() {
                        Some(list) if list.len() == 100 => Ok(reply.payload.len()),
                        _ => Err(String::from_utf8_lossy(&reply.payload[..200]).into_owned()),
                    }
                }
            });
            futures::future::join_all(calls).await
        }));
    }
    let mut answers = Vec::new();
    for caller in callers {
        answers.extend(caller.await.unwrap());
    }
    let peak = peak_rss(pid);
    eprintln!(
        "{} findByUserId of {reply_len} bytes at once: peak RSS before {} MiB, after {} MiB",
        CLIENTS * PER_CLIENT,
        before >> 20,
        peak >> 20
    );
    let failed: Vec<&String> = answers.iter().filter_map(|a| a.as_ref().err()).collect();
    assert!(
        failed.is_empty(),
        "{} of {} not answered in full, e.g. {:?}",
        failed.len(),
        answers.len(),
        failed.first()
    );
    assert!(
        peak < 128 << 20,
        "peak RSS {} MiB is over 128 MiB",
        peak >> 20
    );
}
