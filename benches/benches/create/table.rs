//! The bench's tables: a point's rounds and their medians, written as `target/bench/create.md`
//! (printed) and `create.json`.

use std::fmt::Write as _;
use std::path::Path;

use benches::{Figures, Rush};

/// One round of a point: the three ways, one after the other, for the same time.
pub(crate) struct Round {
    pub(crate) service: Figures,
    pub(crate) pgbench: Figures,
    pub(crate) direct: Figures,
    /// Creates per committed batch during the service's run (the service's own histogram).
    pub(crate) mean_batch: Option<f64>,
    /// Mean ms a create spent in the replica (message taken to reply sent) and, of that, being
    /// written (group commit's queue included), from the service's own histograms.
    pub(crate) in_replica_ms: (Option<f64>, Option<f64>),
    /// PostgreSQL's statement execution during the service's run (its database) and pgbench's.
    pub(crate) db: (Option<benches::DbTime>, Option<benches::DbTime>),
    /// The machine's busy CPU ms per booking during the service's run and pgbench's.
    pub(crate) cpu_ms: (Option<f64>, Option<f64>),
    /// The service run's CPU ms per booking by [`benches::CPU_PARTS`].
    pub(crate) cpu_parts: Option<[f64; 5]>,
}

impl Round {
    /// Service ÷ the faster baseline of the same round.
    pub(crate) fn ratio(&self) -> f64 {
        self.service.throughput
            / self
                .pgbench
                .throughput
                .max(self.direct.throughput)
                .max(1e-9)
    }
}

/// One point of the table: its rounds, and the outbox after the last.
pub(crate) struct Point {
    pub(crate) rounds: Vec<Round>,
    /// Outbox rows not yet sent when the last service run ended, and ms until all were sent.
    pub(crate) backlog: (i64, Option<f64>),
}

impl Point {
    /// The median round of `key` (the upper one of an even count).
    pub(crate) fn median_by(&self, key: impl Fn(&Round) -> f64) -> &Round {
        let mut order: Vec<&Round> = self.rounds.iter().collect();
        order.sort_by(|a, b| key(a).total_cmp(&key(b)));
        order[order.len() / 2]
    }

    pub(crate) fn service(&self) -> &Figures {
        &self.median_by(|r| r.service.throughput).service
    }

    pub(crate) fn pgbench(&self) -> &Figures {
        &self.median_by(|r| r.pgbench.throughput).pgbench
    }

    pub(crate) fn direct(&self) -> &Figures {
        &self.median_by(|r| r.direct.throughput).direct
    }

    /// The median of the rounds' ratios, and their range: each round's ratio compares runs a few
    /// seconds apart, so a machine that drifts (other tenants, page cache, autovacuum) moves both
    /// sides of it.
    pub(crate) fn ratio(&self) -> (f64, f64, f64) {
        let ratios: Vec<f64> = self.rounds.iter().map(Round::ratio).collect();
        let min = ratios.iter().copied().fold(f64::INFINITY, f64::min);
        let max = ratios.iter().copied().fold(0.0, f64::max);
        (self.median_by(Round::ratio).ratio(), min, max)
    }

    pub(crate) fn mean_batch(&self) -> Option<f64> {
        self.median_by(|r| r.service.throughput).mean_batch
    }

    /// The median round's statement execution: (service, pgbench).
    pub(crate) fn db(&self) -> (Option<benches::DbTime>, Option<benches::DbTime>) {
        self.median_by(|r| r.service.throughput).db
    }

    /// The median round's service run: mean ms per create in the replica, and writing.
    pub(crate) fn in_replica_ms(&self) -> (Option<f64>, Option<f64>) {
        self.median_by(|r| r.service.throughput).in_replica_ms
    }

    /// The median round's service run, its CPU ms per booking by [`benches::CPU_PARTS`].
    pub(crate) fn cpu_parts(&self) -> Option<[f64; 5]> {
        self.median_by(|r| r.service.throughput).cpu_parts
    }

    /// The median over rounds of the machine's CPU ms per booking: (service, pgbench).
    pub(crate) fn cpu_ms(&self) -> (Option<f64>, Option<f64>) {
        let median = |side: fn(&Round) -> Option<f64>| {
            let mut all: Vec<f64> = self.rounds.iter().filter_map(side).collect();
            all.sort_by(f64::total_cmp);
            all.get(all.len() / 2).copied()
        };
        (median(|r| r.cpu_ms.0), median(|r| r.cpu_ms.1))
    }
}

/// A table cell of milliseconds (CPU or time), or `-` where the figure is missing.
fn ms_cell(ms: Option<f64>) -> String {
    ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.2}"))
}

/// Prints the tables and writes them to `dir` (`create.md`, `create.json`): every point, the
/// hot-slot rushes, the NATS round trip `rtt` (p50, p99 ms) and the service's peak `memory`.
pub(crate) fn write(
    dir: &Path,
    points: &[Point],
    rushes: &[Rush],
    rtt: (f64, f64),
    memory: Option<f64>,
) -> anyhow::Result<()> {
    let (rtt_p50, rtt_p99) = rtt;
    let mut md = String::from(
        "| clients | service ops/s | pgbench tps (same SQL) | Rust direct ops/s | service ÷ faster (rounds' range) | service p50 ms | service p99 ms | pgbench avg ms | direct p50 ms | CPU ms per booking: service / pgbench | creates per commit | outbox unsent at end | sent all in ms |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for p in points {
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
            ms_cell(service_cpu),
            ms_cell(pgbench_cpu),
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
    for p in points {
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
    for p in points {
        let service = p.service();
        let (inside, writing) = p.in_replica_ms();
        let _ = writeln!(
            md,
            "| {} | {:.2} | {} | {} | {} |",
            service.clients,
            service.mean_ms,
            ms_cell(inside),
            ms_cell(writing),
            ms_cell(inside.map(|i| service.mean_ms - i)),
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
    for p in points {
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
            per(s, service.ops, benches::DbTime::all_ms),
            per(s, service.ops, |t| t.statements),
            per(g, pgbench.ops, benches::DbTime::all_ms),
            per(g, pgbench.ops, |t| t.statements),
        );
    }
    md.push_str(
        "\n| hot-slot rush | settled in ms | seats sold (of 4) | refused | never answered |\n|---:|---:|---:|---:|---:|\n",
    );
    for r in rushes {
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
    std::fs::create_dir_all(dir)?;
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
