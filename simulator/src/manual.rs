//! The stack by hand: `sim up` keeps a stack running and says how to reach it (written to
//! `target/up/stack.json` too), and `sim req` sends one NestJS-envelope request, or emits one
//! event, to whatever NATS that file (or `--server`, or `NATS_URL`) names, printing the reply.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use contracts::course::{TimeSlot, TimeSlotQuery};
use contracts::envelope::ReplyOutcome;
use contracts::{subjects, Codec, NestClient};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use world::stack::{Stack, StackOptions};

/// Where `sim up` writes how to reach its stack.
pub const STACK_FILE: &str = "target/up/stack.json";

/// How to reach a running stack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StackInfo {
    /// NATS (anonymous: the manual stack is not secured).
    pub nats_url: String,
    /// The service's database.
    pub database_url: String,
    /// Each replica's `/metrics`.
    pub metrics: Vec<String>,
}

impl StackInfo {
    /// Writes the file `sim req` reads.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

/// The first few slots course-stub knows, found by asking it as booking-service would.
pub async fn sample_slots(nats: &async_nats::Client, wanted: usize) -> Vec<TimeSlot> {
    let client = NestClient::new(nats.clone(), Duration::from_secs(2));
    let mut found = Vec::new();
    for id in 1..=64 {
        if found.len() >= wanted {
            break;
        }
        let query = TimeSlotQuery { time_slot_id: id };
        let Some(answer) = client.ask(subjects::SLOTS_GET, &query).await else {
            continue;
        };
        // Course-service answers `{success, data}`.
        if let Some(slot) = answer
            .get("data")
            .and_then(|d| serde_json::from_value::<TimeSlot>(d.clone()).ok())
        {
            found.push(slot);
        }
    }
    found
}

/// A create `sim req` can send as is, for `slot`.
pub fn example_create(slot: &TimeSlot) -> serde_json::Value {
    serde_json::json!({
        "userId": 1,
        "gameTimeSlotId": slot.id,
        "playerCount": 2,
        "paymentMethod": "card",
        "userEmail": "newcomer@example.com",
        "userName": "Newcomer",
        "idempotencyKey": "first-try"
    })
}

/// Which NATS `sim req` talks to: `--server`, else `NATS_URL`, else the file `sim up` wrote.
pub fn nats_url(server: Option<String>) -> anyhow::Result<String> {
    if let Some(url) = server.or_else(|| std::env::var("NATS_URL").ok()) {
        return Ok(url);
    }
    let text = std::fs::read_to_string(STACK_FILE).with_context(|| {
        format!(
            "no --server, no NATS_URL, and no {STACK_FILE}: start a stack with `cargo xtask up` first"
        )
    })?;
    let info: StackInfo =
        serde_json::from_str(&text).with_context(|| format!("reading {STACK_FILE}"))?;
    Ok(info.nats_url)
}

/// Sends `data` on `subject` (a request, or an event when `event`) and prints what came back;
/// true when the peer answered with a `response`.
pub async fn request(
    url: &str,
    subject: &str,
    data: &serde_json::Value,
    event: bool,
    timeout: Duration,
) -> anyhow::Result<bool> {
    let servers = contracts::client::servers(url).map_err(|e| anyhow::anyhow!("{e}"))?;
    let nats = async_nats::connect(servers)
        .await
        .with_context(|| format!("connecting to NATS at {url}"))?;
    if event {
        let body = Codec::default().encode_event(subject, data)?;
        nats.publish(subject.to_owned(), body.into()).await?;
        nats.flush().await?;
        println!("emitted {subject} (an event has no reply)");
        return Ok(true);
    }
    let reply = NestClient::new(nats, timeout)
        .request(subject, data)
        .await
        .with_context(|| format!("{subject} got no usable reply"))?;
    let (shown, ok) = match reply.outcome {
        ReplyOutcome::Response(value) => (serde_json::json!({ "response": value }), true),
        ReplyOutcome::Err(value) => (serde_json::json!({ "err": value }), false),
        ReplyOutcome::NoHandler(text) => (serde_json::json!({ "noHandler": text }), false),
    };
    println!("{}", serde_json::to_string_pretty(&shown)?);
    Ok(ok)
}

/// `sim up`: the stack with `replicas` replicas and the stub's catalogue of `seed`, until
/// Ctrl-C; says how to reach it, with slots that exist and requests that work.
pub async fn up(replicas: usize, seed: u64) -> anyhow::Result<()> {
    let logs = PathBuf::from("target/up");
    let stack = Stack::start(
        &StackOptions {
            replicas,
            seed,
            ..StackOptions::default()
        },
        &logs,
    )
    .await?;
    println!(
        "stack is up ({} booking-service replica(s), course-stub seed {seed}):",
        replicas
    );
    println!("  NATS_URL={}", stack.world.nats_url());
    println!("  DATABASE_URL={}", stack.db.url());
    for (i, (addr, admin)) in stack
        .http_addrs()
        .iter()
        .zip(stack.admin_addrs())
        .enumerate()
    {
        println!("  replica {i}: http://{addr}/metrics, operator http://{admin}/outbox");
    }
    println!("  logs: {}", logs.display());
    let info = StackInfo {
        nats_url: stack.world.nats_url().to_owned(),
        database_url: stack.db.url().to_owned(),
        metrics: stack
            .http_addrs()
            .iter()
            .map(|a| format!("http://{a}/metrics"))
            .collect(),
    };
    info.save(Path::new(STACK_FILE))?;
    let slots = sample_slots(&stack.client().await?, 3).await;
    if slots.is_empty() {
        println!("  (course-stub named no slots 1-64)");
    }
    for slot in &slots {
        println!(
            "  slot {} (game {}, {} {}, {} seats)",
            slot.id, slot.game_id, slot.date, slot.start_time, slot.max_players
        );
    }
    if let Some(slot) = slots.first() {
        println!("try, in another terminal:");
        println!(
            "  cargo xtask req booking.create '{}'",
            example_create(slot)
        );
        println!("  cargo xtask req booking.findByUserId '{{\"userId\":1}}'");
        println!(
                       "  cargo xtask req booking.gameTimeSlots.availability '{{\"gameId\":{},\"date\":\"{}\"}}'",
                       slot.game_id, slot.date
                   );
    }
    println!("Ctrl-C stops everything.");
    tokio::signal::ctrl_c().await?;
    drop(stack);
    let _ = std::fs::remove_file(STACK_FILE);
    Ok(())
}
