//! `booking.create` end to end over NATS against real PostgreSQL (fsync on, warm cache), beside the
//! strongest direct ways to run the same transaction: PostgreSQL's own `pgbench` with a script of
//! the same SQL, and the same statements from Rust, both on a quiet database with no relay
//! attached. Criterion measures the service and the Rust path at 1, 16 and 64 clients; then
//! fixed-time rounds per point (1, 16, 64, 256 clients over 256 slots; the three ways in turn,
//! `BENCH_ROUNDS` times) and a hot-slot rush (1,000 and 10,000 clients on one 4-seat slot) write
//! the table `cargo xtask bench` prints to `target/bench/create.{md,json}`, with each point's
//! ratio to the faster baseline: the median of the rounds' own ratios, and their range.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use benches::{Bench, Figures, Route};
use criterion::{BenchmarkId, Criterion, Throughput};

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

/// One round of a point: the three ways, one after the other, for the same time.
struct Round {
    service: Figures,
    pgbench: Figures,
    direct: Figures,
    /// Creates per committed batch during the service's run (the service's own histogram).
    mean_batch: Option<f64>,
    /// Mean ms a create spent in the replica (message taken to reply sent) and, of that, being
    /// written (group commit's queue included), from the service's own histograms.
    in_replica_ms: (Option<f64>, Option<f64>),
    /// PostgreSQL's statement execution during the service's run (its database) and pgbench's.
    db: (Option<benches::DbTime>, Option<benches::DbTime>),
    /// The machine's busy CPU ms per booking during the service's run and pgbench's.
    cpu_ms: (Option<f64>, Option<f64>),
    /// The service run's CPU ms per booking by [`benches::CPU_PARTS`].
    cpu_parts: Option<[f64; 5]>,
}

impl Round {
    /// Service ÷ the faster baseline of the same round.
    fn ratio(&self) -> f64 {
        self.service.throughput
            / self
                .pgbench
                .throughput
                .max(self.direct.throughput)
                .max(1e-9)
    }
}

/// One point of the table: its rounds, and the outbox after the last.
struct Point {
    rounds: Vec<Round>,
    /// Outbox rows not yet sent when the last service run ended, and ms until all were sent.
    backlog: (i64, Option<f64>),
}

impl Point {
    /// The median round of `key` (the upper one of an even count).
    fn median_by(&self, key: impl Fn(&Round) -> f64) -> &Round {
        let mut order: Vec<&Round> = self.rounds.iter().collect();
        order.sort_by(|a, b| key(a).total_cmp(&key(b)));
        order[order.len() / 2]
    }

    fn service(&self) -> &Figures {
        &self.median_by(|r| r.service.throughput).service
    }

    fn pgbench(&self) -> &Figures {
        &self.median_by(|r| r.pgbench.throughput).pgbench
    }

    fn direct(&self) -> &Figures {
        &self.median_by(|r| r.direct.throughput).direct
    }

    /// The median of the rounds' ratios, and their range: each round's ratio compares runs a few
    /// seconds apart, so a machine that drifts (other tenants, page cache, autovacuum) moves both
    /// sides of it.
    fn ratio(&self) -> (f64, f64, f64) {
        let ratios: Vec<f64> = self.rounds.iter().map(Round::ratio).collect();
        let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let max = ratios.iter().copied().fold(0.0, f64::max);
        (self.median_by(Round::ratio).ratio(), min, max)
    }

    fn mean_batch(&self) -> Option<f64> {
        self.median_by(|r| r.service.throughput).mean_batch
    }

    /// The median round's statement execution: (service, pgbench).
    fn db(&self) -> (Option<benches::DbTime>, Option<benches::DbTime>) {
        self.median_by(|r| r.service.throughput).db
    }

    /// The median round's service run: mean ms per create in the replica, and writing.
    fn in_replica_ms(&self) -> (Option<f64>, Option<f64>) {
        self.median_by(|r| r.service.throughput).in_replica_ms
    }

    /// The median round's service run, its CPU ms per booking by [`benches::CPU_PARTS`].
    fn cpu_parts(&self) -> Option<[f64; 5]> {
        self.median_by(|r| r.service.throughput).cpu_parts
    }

    /// The median over rounds of the machine's CPU ms per booking: (service, pgbench).
    fn cpu_ms(&self) -> (Option<f64>, Option<f64>) {
        let median = |side: fn(&Round) -> Option<f64>| {
            let mut all: Vec<f64> = self.rounds.iter().filter_map(side).collect();
            all.sort_by(f64::total_cmp);
            all.get(all.len() / 2).copied()
        };
        (median(|r| r.cpu_ms.0), median(|r| r.cpu_ms.1))
    }
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

fn cpu_cell(ms: Option<f64>) -> String {
    ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.2}"))
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
                benches::reset_db_time(&bench.quiet_stats).await;
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
                benches::reset_db_time(&bench.pool).await;
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
    let (rtt_p50, rtt_p99) = rtt;
    let mut md = String::from(
        "| clients | service ops/s | pgbench tps (same SQL) | Rust direct ops/s | service ÷ faster (rounds' range) | service p50 ms | service p99 ms | pgbench avg ms | direct p50 ms | CPU ms per booking: service / pgbench | creates per commit | outbox unsent at end | sent all in ms |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for p in &points {
        let (service, pgbench, direct) = (p.service(), p.pgbench(), p.direct());
        let (ratio, low, high) = p.ratio();
        let range = if p.rounds.len() > 1 {
            format!(" ({low:.2}–{high:.2})")
        } else {
            String::new()
        };
        let (service_cpu, pgbench_cpu) = p.cpu_ms();
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | {:.0} | **{ratio:.2}**{range} | {:.2} | {:.2} | {:.2} | {:.2} | {} / {} | {} | {} | {} |",
            service.clients,
            service.throughput,
            pgbench.throughput,
            direct.throughput,
            service.p50_ms,
            service.p99_ms,
            pgbench.p50_ms,
            direct.p50_ms,
            cpu_cell(service_cpu),
            cpu_cell(pgbench_cpu),
            p.mean_batch().map_or_else(|| "-".to_owned(), |b| format!("{b:.1}")),
            p.backlog.0,
            p.backlog
                .1
                .map_or_else(|| "not within 30 s".to_owned(), |ms| format!("{ms:.0}")),
        );
    }
    md.push_str("\nWhere a service booking's CPU goes (ms per booking, the median round's service run):\n\n| clients |");
    for part in benches::CPU_PARTS {
        let _ = write!(md, " {part} |");
    }
    md.push_str("\n|---:|");
    md.push_str(&"---:|".repeat(benches::CPU_PARTS.len()));
    md.push('\n');
    for p in &points {
        let _ = write!(md, "| {} |", p.service().clients);
        match p.cpu_parts() {
            Some(parts) => parts.iter().for_each(|ms| {
                let _ = write!(md, " {ms:.3} |");
            }),
            None => md.push_str(&" - |".repeat(benches::CPU_PARTS.len())),
        }
        md.push('\n');
    }
    md.push_str(
        "\nWhere a service booking's time goes (ms, the median round's service run; means from the \
         service's own histograms, beside the client's mean):\n\n\
         | clients | client mean | in the replica | of which writing | outside the replica |\n\
         |---:|---:|---:|---:|---:|\n",
    );
    for p in &points {
        let service = p.service();
        let (inside, writing) = p.in_replica_ms();
        let _ = writeln!(
            md,
            "| {} | {:.2} | {} | {} | {} |",
            service.clients,
            service.mean_ms,
            cpu_cell(inside),
            cpu_cell(writing),
            cpu_cell(inside.map(|i| service.mean_ms - i)),
        );
    }
    md.push_str(
        "\nWhere PostgreSQL's time goes (statement execution from pg_stat_statements, ms per \
         booking, and statements per booking; the median round; execution includes waits for \
         locks and for a core; pgbench's includes its COMMIT, the service's one-statement writes \
         commit outside it):\n\n\
         | clients | service: requests' statements | relay's | all | statements | pgbench: all | statements |\n\
         |---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for p in &points {
        let (service, pgbench) = (p.service(), p.pgbench());
        let per = |t: Option<benches::DbTime>, ops: u64, f: fn(&benches::DbTime) -> f64| {
            t.filter(|_| ops > 0)
                .map_or_else(|| "-".to_owned(), |t| format!("{:.3}", f(&t) / ops as f64))
        };
        let (s, g) = p.db();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            service.clients,
            per(s, service.ops, |t| t.requests_ms),
            per(s, service.ops, |t| t.relay_ms),
            per(s, service.ops, |t| t.requests_ms + t.relay_ms),
            per(s, service.ops, |t| t.statements),
            per(g, pgbench.ops, |t| t.requests_ms + t.relay_ms),
            per(g, pgbench.ops, |t| t.statements),
        );
    }
    md.push_str(
        "\n| hot-slot rush | settled in ms | seats sold (of 4) | refused | never answered |\n|---:|---:|---:|---:|---:|\n",
    );
    for r in &rushes {
        let _ = writeln!(
            md,
            "| {} clients | {:.0} | {} | {} | {} |",
            r.clients, r.settled_ms, r.sold, r.refused, r.unanswered
        );
    }
    let _ = writeln!(
        md,
        "\nNATS request/reply floor (empty responder, 1 client): p50 {rtt_p50:.3} ms, p99 {rtt_p99:.3} ms"
    );
    match memory {
        Some(m) => {
            let _ = writeln!(
                md,
                "booking-service peak resident memory (VmHWM): {m:.1} MiB"
            );
        }
        None => md.push_str("booking-service peak memory: not readable\n"),
    }
    md.push_str(
        "PostgreSQL fsync on; one booking-service replica (release build); warm cache; bookings \
         spread over 256 slots. pgbench and the Rust direct path run the same transaction on a \
         quiet database of the same server (no relay attached); the load generator shares the \
         machine's cores with everything it measures. Each point runs the three in turn, in \
         rounds; figures are the median round's, the ratio the median of the rounds' own ratios. \
         CPU ms per booking is the whole machine's busy time during a run (every process, the \
         load generator and pgbench's client included) over its bookings: the service's also \
         carries its relay and NATS, pgbench's carries neither.\n",
    );
    println!("\n{md}");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("create.md"), &md)?;
    let json = serde_json::json!({
        "rows": points.iter().map(|p| {
            let (ratio, low, high) = p.ratio();
            serde_json::json!({
                "service": p.service(), "pgbench": p.pgbench(), "direct": p.direct(),
                "ratio_to_pgbench": p.service().throughput / p.pgbench().throughput.max(1e-9),
                "ratio_to_faster": ratio, "ratio_to_faster_range": [low, high],
                "rounds": p.rounds.iter().map(|r| serde_json::json!({
                    "service": r.service.throughput, "pgbench": r.pgbench.throughput,
                    "direct": r.direct.throughput, "ratio_to_faster": r.ratio(),
                    "creates_per_commit": r.mean_batch,
                    "ms_in_replica": r.in_replica_ms.0, "ms_writing": r.in_replica_ms.1,
                    "statements": {"service": r.db.0, "pgbench": r.db.1},
                    "cpu_ms_per_booking": {"service": r.cpu_ms.0, "pgbench": r.cpu_ms.1}})).collect::<Vec<_>>(),
                "cpu_ms_per_booking": {"service": p.cpu_ms().0, "pgbench": p.cpu_ms().1},
                "service_cpu_ms_per_booking_by_process": p.cpu_parts()
                    .map(|parts| benches::CPU_PARTS.iter().zip(parts).map(|(k, v)| ((*k).to_owned(), serde_json::json!(v)))
                        .collect::<serde_json::Map<_, _>>()),
                "creates_per_commit": p.mean_batch(), "outbox_unsent_at_end": p.backlog.0,
                "outbox_sent_all_ms": p.backlog.1})
        }).collect::<Vec<_>>(),
        "rushes": rushes,
        "nats_rtt_ms": {"p50": rtt_p50, "p99": rtt_p99},
        "service_peak_mib": memory,
    });
    std::fs::write(dir.join("create.json"), serde_json::to_vec_pretty(&json)?)?;
    println!("written to {}", dir.join("create.md").display());
    Ok(())
}
