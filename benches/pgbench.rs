//! The honest baseline: PostgreSQL's own `pgbench` running the service's create transaction as a
//! script of the same SQL (lock the slot, read the game, insert booking, payment, history and two
//! outbox rows, count the seat, commit), on a database of its own with no relay attached, so
//! nothing but the database stands between the clients and the commit.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;

use crate::{Figures, FIRST_SLOT, GAME, SLOTS};

/// The script; `:user` and `:slot` are drawn per transaction, `:id` comes back from the insert.
fn script() -> String {
    let charge = contracts::money::Charge::of(contracts::Won(crate::PRICE), 1);
    let (fee, total) = (charge.fee.get(), charge.total.get());
    format!(
        "\\set user random(1, 1000000)\n\
         \\set slot random({FIRST_SLOT}, {last})\n\
         BEGIN;\n\
         SELECT max_players, booked_players, price::int8 FROM game_time_slot_cache \
         WHERE game_time_slot_id = :slot FOR UPDATE;\n\
         SELECT front_nine_course_id, back_nine_course_id FROM game_cache WHERE game_id = {GAME};\n\
         INSERT INTO bookings (booking_number, user_id, game_id, game_time_slot_id, game_name, game_code, \
         front_nine_course_id, front_nine_course_name, back_nine_course_id, back_nine_course_name, club_id, \
         club_name, booking_date, start_time, end_time, player_count, price_per_person, service_fee, total_price, \
         status, payment_method, special_requests, user_email, user_name, user_phone, created_at, updated_at) \
         VALUES ('BK-' || md5(random()::text), :user, {GAME}, :slot, 'bench', 'B1', 1, 'A', 2, 'B', 1, 'club', \
         now(), '09:00', '12:00', 1, {price}, {fee}, {total}, 'CONFIRMED', 'card', NULL, 'bench@example.com', \
         'bench', NULL, now(), now()) RETURNING id \\gset\n\
         INSERT INTO payments (booking_id, amount, payment_method, payment_status, created_at, updated_at) \
         VALUES (:id, {total}, 'card', 'PENDING', now(), now());\n\
         INSERT INTO booking_history (booking_id, action, details, user_id, created_at) \
         VALUES (:id, 'CREATED', jsonb_build_object('playerCount', 1, 'totalPrice', '{total}'::text), :user, now());\n\
         INSERT INTO outbox_events (event_id, aggregate_type, aggregate_id, event_type, payload, channel, lane) \
         VALUES (gen_random_uuid(), 'Booking', :id::text, 'gameTimeSlots.book', \
         jsonb_build_object('timeSlotId', :slot::int4, 'playerCount', 1), 'course', 'slot:' || :slot::text), \
         (gen_random_uuid(), 'Booking', :id::text, 'booking.confirmed', \
         jsonb_build_object('bookingId', :id::int4), 'events', 'booking:' || :id::text);\n\
         UPDATE game_time_slot_cache SET booked_players = booked_players + 1, \
         available_players = max_players - booked_players - 1, updated_at = now() \
         WHERE game_time_slot_id = :slot;\n\
         END;\n",
        last = FIRST_SLOT + SLOTS - 1,
        price = crate::PRICE,
    )
}

/// Runs the script with `clients` connections for `seconds` against `url`.
pub fn run(url: &str, clients: usize, seconds: u64, dir: &Path) -> anyhow::Result<Figures> {
    let pgbench = world::postgres_tool("pgbench")?;
    std::fs::create_dir_all(dir)?;
    let path = dir.join("create.pgbench.sql");
    std::fs::write(&path, script())?;
    let out = Command::new(&pgbench)
        .args(["-n", "-M", "prepared", "-f"])
        .arg(&path)
        .args([
            "-c",
            &clients.to_string(),
            "-j",
            &clients.min(2).to_string(),
            "-T",
            &seconds.to_string(),
            url,
        ])
        .output()
        .with_context(|| format!("running {}", pgbench.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    anyhow::ensure!(
        out.status.success(),
        "pgbench failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse(&text, clients)
}

/// Reads pgbench's summary: transactions, latency average and tps.
fn parse(text: &str, clients: usize) -> anyhow::Result<Figures> {
    let field = |prefix: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let tps = field("tps = ").context("no tps in pgbench's output")?;
    let latency = field("latency average = ").context("no latency in pgbench's output")?;
    let ops = field("number of transactions actually processed: ").unwrap_or(0.0);
    Ok(Figures {
        what: "pgbench, same SQL".into(),
        clients,
        ops: ops as u64,
        throughput: tps,
        p50_ms: latency,
        mean_ms: latency,
        p99_ms: f64::NAN,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_is_read() {
        let text = "transaction type: create.pgbench.sql\nnumber of clients: 16\n\
            number of transactions actually processed: 22650\nlatency average = 7.064 ms\n\
            initial connection time = 9.1 ms\ntps = 2265.012 (without initial connection time)\n";
        let f = parse(text, 16).unwrap();
        assert_eq!(f.ops, 22650);
        assert!((f.throughput - 2265.012).abs() < 1e-9);
        assert!((f.p50_ms - 7.064).abs() < 1e-9);
    }

    #[test]
    fn the_script_books_on_the_bench_slots() {
        let s = script();
        assert!(s.contains(&format!("random({FIRST_SLOT}, {})", FIRST_SLOT + SLOTS - 1)));
        assert!(s.contains("FOR UPDATE"));
        assert!(s.contains("RETURNING id \\gset"));
        assert_eq!(s.matches("INSERT INTO").count(), 4);
    }
}
