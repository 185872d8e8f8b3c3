//! `booking.create` end to end over NATS against real PostgreSQL (fsync on, warm cache), beside the
//! strongest direct ways to run the same transaction: PostgreSQL's own `pgbench` with a script of
//! the same SQL, and the same statements from Rust, both on a quiet database with no relay
//! attached. Criterion measures the service and the Rust path at 1, 16 and 64 clients; then
//! fixed-time rounds per point (1, 16, 64, 256 clients over 256 slots; the three ways in turn,
//! `BENCH_ROUNDS` times) and a hot-slot rush (1,000 and 10,000 clients on one 4-seat slot) write
//! the table `cargo xtask bench` prints to `target/bench/create.{md,json}`, with each point's
//! ratio to the faster baseline: the median of the rounds' own ratios, and their range.

use std::path::PathBuf;
use std::time::Duration;

use benches::{Bench, Figures, Route};
use criterion::{BenchmarkId, Criterion, Throughput};

#[path = "create/table.rs"]
mod table;
use table::{Point, Round};

const CLIENTS: [usize; 4] = [1, 16, 64, 256];
const RUSHES: [usize; 2] = [1_000, 10_000];

/// A list of numbers from `var` (e.g. `BENCH_CLIENTS=1,16`), or `default` when unset; for a
/// quicker look at one point while tuning.
fn numbers_from_env(var: &str, default: &[usize]) -> anyhow::Result<Vec<usize>> {
    match std::env::var(var) {
        Err(_) => Ok(default.to_vec()),
        Ok(text) => text
            .split(',')
            .filter(|t| !t.trim().is_empty())
            .map(|t| {
                t.trim()
                    .parse()
                    .map_err(|e| anyhow::anyhow!("{var}: {t:?} is not a count: {e}"))
            })
            .collect(),
    }
}

fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("bench")
}

/// Busy CPU ms per booking between two readings of [`benches::machine_busy_ms`].
fn per_booking(before: Option<f64>, after: Option<f64>, figures: &Figures) -> Option<f64> {
    let (before, after) = (before?, after?);
    (figures.ops > 0).then(|| (after - before) / figures.ops as f64)
}

/// The service run's CPU ms per booking split by [`benches::CPU_PARTS`]: each named part's own
/// time between two readings, and the rest of the machine's `total` as "other".
fn split(
    total: Option<f64>,
    before: [f64; 4],
    after: [f64; 4],
    figures: &Figures,
) -> Option<[f64; 5]> {
    let total = total?;
    let ops = (figures.ops > 0).then_some(figures.ops as f64)?;
    let mut parts = [0.0; 5];
    for i in 0..4 {
        parts[i] = (after[i] - before[i]) / ops;
    }
    parts[4] = (total - parts[..4].iter().sum::<f64>()).max(0.0);
    Some(parts)
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let bench = rt.block_on(Bench::start(&out_dir().join("logs")))?;
    let quick = std::env::args().any(|a| a == "--quick");

    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(if quick { 2 } else { 4 }));
    {
        let mut g = c.benchmark_group("booking.create");
        g.throughput(Throughput::Elements(1));
        for clients in [1, 16, 64] {
            rt.block_on(bench.direct_clients(clients))?;
            for (name, route) in [("service", Route::Service), ("direct-sql", Route::Direct)] {
                g.bench_with_input(BenchmarkId::new(name, clients), &clients, |b, &clients| {
                    b.to_async(&rt).iter_custom(|iters| {
                        let bench = &bench;
                        async move {
                            bench
                                .batch(route, clients, iters.max(clients as u64))
                                .await
                                .expect("a benchmark batch")
                                .div_f64(iters.max(clients as u64) as f64 / iters as f64)
                        }
                    })
                });
            }
        }
        g.finish();
    }
    c.final_summary();

    // The table: fixed-time rounds per point (pgbench, Rust direct, service, then again), medians
    // and each round's ratio; latencies from every booking of the median run.
    let secs = if quick { 3 } else { 6 };
    let rounds = numbers_from_env("BENCH_ROUNDS", &[if quick { 1 } else { 3 }])?
        .first()
        .copied()
        .unwrap_or(1)
        .max(1);
    let dir = out_dir();
    let (points, rushes, rtt, memory) = rt.block_on(async {
        let mut points = Vec::new();
        for clients in numbers_from_env("BENCH_CLIENTS", &CLIENTS)? {
            eprintln!(
                "bench: {clients} clients: {rounds} round(s) of pgbench, Rust direct, service ({secs} s each)"
            );
            let mut point = Point {
                rounds: Vec::new(),
                backlog: (0, None),
            };
            for _ in 0..rounds {
                benches::reset_db_time(&bench.quiet_stats).await?;
                let busy = benches::machine_busy_ms();
                let pgbench = benches::pgbench::run(bench.quiet.url(), clients, secs, &dir)?;
                let pgbench_cpu = per_booking(busy, benches::machine_busy_ms(), &pgbench);
                let pgbench_db = benches::db_time(&bench.quiet_stats).await;
                bench.direct_clients(clients).await?;
                let direct = bench
                    .measure(Route::Direct, clients, Duration::from_secs(secs))
                    .await?;
                bench.direct_clients(1).await?;
                let sums_before = bench.service_sums().await;
                // The processes' scan first, so its own CPU stays outside the machine's reading.
                let parts = benches::process_busy_ms();
                benches::reset_db_time(&bench.pool).await?;
                let busy = benches::machine_busy_ms();
                let service = bench
                    .measure(Route::Service, clients, Duration::from_secs(secs))
                    .await?;
                let service_cpu = per_booking(busy, benches::machine_busy_ms(), &service);
                let cpu_parts = split(service_cpu, parts, benches::process_busy_ms(), &service);
                let (mean_batch, in_replica, writing) =
                    match (sums_before, bench.service_sums().await) {
                        (Some(a), Some(b)) => a.means_until(&b),
                        _ => (None, None, None),
                    };
                let service_db = benches::db_time(&bench.pool).await;
                // Each round starts with the outbox drained, as the first did.
                point.backlog = bench.outbox_backlog().await?;
                point.rounds.push(Round {
                    service,
                    pgbench,
                    direct,
                    mean_batch,
                    in_replica_ms: (in_replica, writing),
                    db: (service_db, pgbench_db),
                    cpu_ms: (service_cpu, pgbench_cpu),
                    cpu_parts,
                });
            }
            points.push(point);
        }
        let mut rushes = Vec::new();
        for (round, users) in numbers_from_env("BENCH_RUSHES", &RUSHES)?
            .into_iter()
            .enumerate()
        {
            eprintln!("bench: hot-slot rush of {users} clients on one 4-seat slot");
            rushes.push(bench.rush(users, round as i32).await?);
        }
        let rtt = bench.nats_round_trip(2000).await?;
        let memory = bench.service_peak_memory_mib().await;
        Ok::<_, anyhow::Error>((points, rushes, rtt, memory))
    })?;
    table::write(&dir, &points, &rushes, rtt, memory)
}
