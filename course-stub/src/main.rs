//! `course-stub`: runs the stand-in course-service until SIGTERM or Ctrl-C.

use std::path::PathBuf;

use clap::Parser;
use contracts::NatsLogin;
use course_stub::{Catalog, CatalogSpec, Faults, StubConfig};

/// A stand-in course-service on NATS with a seeded catalogue and fault knobs.
#[derive(Parser, Debug)]
#[command(name = "course-stub", version)]
struct Args {
    /// NATS server.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    nats_url: String,
    /// NATS user (with `--nats-password`); secrets are best passed in the environment.
    #[arg(long, env = "NATS_USER", requires = "nats_password")]
    nats_user: Option<String>,
    /// NATS password of `--nats-user`.
    #[arg(
        long,
        env = "NATS_PASSWORD",
        hide_env_values = true,
        requires = "nats_user"
    )]
    nats_password: Option<String>,
    /// NATS token.
    #[arg(long, env = "NATS_TOKEN", hide_env_values = true, conflicts_with_all = ["nats_user", "nats_creds"])]
    nats_token: Option<String>,
    /// NATS credentials file (JWT and seed).
    #[arg(long, env = "NATS_CREDS", conflicts_with = "nats_user")]
    nats_creds: Option<PathBuf>,
    /// Seed of the catalogue and of every fault decision.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Load the catalogue from this JSON file instead of generating it.
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Clubs in a generated catalogue.
    #[arg(long, default_value_t = 2)]
    clubs: u32,
    /// Games per club.
    #[arg(long, default_value_t = 2)]
    games_per_club: u32,
    /// Days of slots.
    #[arg(long, default_value_t = 3)]
    days: u32,
    /// Slots per game per day.
    #[arg(long, default_value_t = 8)]
    slots_per_day: u32,
    /// Seats per slot.
    #[arg(long, default_value_t = 4)]
    max_players: i32,
    /// First day of slots, YYYY-MM-DD (default: a week from today).
    #[arg(long)]
    start: Option<chrono::NaiveDate>,
    /// Emit the catalogue as sync messages once listening.
    #[arg(long)]
    sync_on_start: bool,
    /// Start in an outage (no answers).
    #[arg(long)]
    outage: bool,
    /// Added latency in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Fraction of book/release dropped.
    #[arg(long, default_value_t = 0.0)]
    drop_fraction: f64,
    /// Fraction of book/release duplicated.
    #[arg(long, default_value_t = 0.0)]
    duplicate_fraction: f64,
    /// Kinder than the real course-service: never refuse a book nor clamp a release.
    #[arg(long)]
    lenient: bool,
    /// Write the catalogue as JSON to this file and exit.
    #[arg(long)]
    dump_catalog: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let catalog = match &args.catalog {
        Some(path) => Catalog::load(path)?,
        None => {
            let start = args
                .start
                .unwrap_or_else(|| chrono::Utc::now().date_naive() + chrono::Duration::days(7));
            Catalog::generate(
                args.seed,
                &CatalogSpec {
                    clubs: args.clubs,
                    games_per_club: args.games_per_club,
                    days: args.days,
                    slots_per_day: args.slots_per_day,
                    max_players: args.max_players,
                    start,
                },
            )
        }
    };
    if let Some(path) = &args.dump_catalog {
        std::fs::write(path, serde_json::to_vec_pretty(&catalog)?)?;
        return Ok(());
    }
    let faults = Faults {
        outage: args.outage,
        latency_ms: args.latency_ms,
        drop_fraction: args.drop_fraction,
        duplicate_fraction: args.duplicate_fraction,
        lenient: args.lenient,
    };
    let login = match (
        args.nats_user,
        args.nats_password,
        args.nats_token,
        args.nats_creds,
    ) {
        (Some(user), Some(password), _, _) => NatsLogin::UserPassword { user, password },
        (_, _, Some(token), _) => NatsLogin::Token(token),
        (_, _, _, Some(path)) => NatsLogin::Creds(path),
        _ => NatsLogin::Anonymous,
    };
    let stub = course_stub::start(StubConfig {
        nats_url: args.nats_url,
        login,
        seed: args.seed,
        catalog,
        faults,
        sync_on_start: args.sync_on_start,
    })
    .await?;
    println!("course-stub ready");
    shutdown().await;
    stub.stop().await;
    Ok(())
}

async fn shutdown() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate => {}
    }
}
