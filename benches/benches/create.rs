//! `booking.create` end to end over NATS against real PostgreSQL (fsync on, warm cache) at 1, 16
//! and 64 closed-loop clients, beside the same SQL transaction issued directly at the same
//! concurrency: the database's own limit for this work. Criterion measures both; then a fixed-time
//! pass writes the table `cargo xtask bench` prints (throughput, p50/p99, service ÷ direct, the
//! NATS round-trip floor, the service's peak memory) to `target/bench/create.{md,json}`.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use benches::{Bench, Figures, Route};
use criterion::{BenchmarkId, Criterion, Throughput};

const CLIENTS: [usize; 3] = [1, 16, 64];

fn out_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("bench")
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
        for clients in CLIENTS {
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

    // The table: a fixed-time pass per point, latencies from every booking.
    let secs = if quick { 3 } else { 6 };
    let table = rt.block_on(async {
        let mut rows: Vec<(Figures, Figures)> = Vec::new();
        for clients in CLIENTS {
            let direct = bench
                .measure(Route::Direct, clients, Duration::from_secs(secs))
                .await?;
            let service = bench
                .measure(Route::Service, clients, Duration::from_secs(secs))
                .await?;
            rows.push((service, direct));
        }
        let rtt = bench.nats_round_trip(2000).await?;
        let memory = bench.service_peak_memory_mib().await;
        Ok::<_, anyhow::Error>((rows, rtt, memory))
    })?;
    let (rows, (rtt_p50, rtt_p99), memory) = table;
    let mut md = String::from(
        "| clients | service ops/s | direct SQL ops/s | service ÷ direct | service p50 ms | service p99 ms | direct p50 ms | direct p99 ms | p99 ÷ direct p99 |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for (s, d) in &rows {
        let _ = writeln!(
            md,
            "| {} | {:.0} | {:.0} | **{:.2}** | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            s.clients,
            s.throughput,
            d.throughput,
            s.throughput / d.throughput.max(1e-9),
            s.p50_ms,
            s.p99_ms,
            d.p50_ms,
            d.p99_ms,
            s.p99_ms / d.p99_ms.max(1e-9)
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
    md.push_str("PostgreSQL fsync on; one booking-service replica (release build); warm cache; bookings spread over 256 slots.\n");
    println!("\n{md}");
    let dir = out_dir();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("create.md"), &md)?;
    let json = serde_json::json!({
        "rows": rows.iter().map(|(s, d)| serde_json::json!({
            "service": s, "direct": d, "ratio": s.throughput / d.throughput.max(1e-9),
            "p99_ratio": s.p99_ms / d.p99_ms.max(1e-9)})).collect::<Vec<_>>(),
        "nats_rtt_ms": {"p50": rtt_p50, "p99": rtt_p99},
        "service_peak_mib": memory,
    });
    std::fs::write(dir.join("create.json"), serde_json::to_vec_pretty(&json)?)?;
    println!("written to {}", dir.join("create.md").display());
    Ok(())
}
