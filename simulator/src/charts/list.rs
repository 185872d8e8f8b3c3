//! Which charts a report has and the data each draws: throughput against the offered rate,
//! outcomes per bucket, latency percentiles per operation (each drawn only where its bucket has
//! samples enough), histograms and outcome counts, backlog and drift, the service's counters as
//! rates, the breaker per replica and the outbox gauges.

use super::bars::bar_chart;
use super::draw::{time_chart, Backdrop, Series};
use super::stacks::{stacked_chart, state_chart, Layer};
use crate::report::{Bucket, Latency, MetricsAt, Report};

/// A percentile's name, the samples a bucket needs before it is drawn, and how to read it.
pub(super) type Percentile = (&'static str, u64, fn(&Latency) -> f64);

/// The percentiles drawn, and shown in the operations table, with the samples each needs.
pub(super) const PERCENTILES: [Percentile; 5] = [
    ("p50", 2, |l| l.p50),
    ("p90", 10, |l| l.p90),
    ("p99", 100, |l| l.p99),
    ("p99.9", 1000, |l| l.p999),
    ("max", 1, |l| l.max),
];

/// Counters drawn as rates per second.
const COUNTERS: [&str; 5] = [
    "booking_created_total",
    "cache_hits_total",
    "cache_misses_total",
    "stale_fallbacks_total",
    "nats_publish_failures_total",
];

/// Every chart of a report, titled.
pub fn charts(r: &Report) -> anyhow::Result<Vec<(String, String)>> {
    let width = if r.bucket_s > 0.0 { r.bucket_s } else { 1.0 };
    let x_max = r
        .timeline
        .last()
        .map(|b| b.t_s + width)
        .unwrap_or(1.0)
        .max(r.probes.last().map_or(0.0, |p| p.t_ms as f64 / 1000.0))
        .max(r.metrics.last().map_or(0.0, |m| m.t_ms as f64 / 1000.0));
    let marks = marks(r);
    let back = Backdrop {
        faults: &r.faults,
        marks: &marks,
        x_max,
    };
    // Whole buckets only: the one the load ended in is partly empty, and drawn it reads as a
    // collapse. Each point sits at its bucket's middle; counts become rates per second.
    let whole: Vec<&Bucket> = r
        .timeline
        .iter()
        .filter(|b| b.t_s + width <= r.load_s + 1e-6)
        .collect();
    let per_second = |f: fn(&Bucket) -> u64| -> Vec<(f64, f64)> {
        whole
            .iter()
            .map(|b| (b.t_s + width / 2.0, f(b) as f64 / width))
            .collect()
    };
    let bucket = bucket_name(width);
    let mut out = Vec::new();
    let throughput = [
        (
            "offered/s (skipped ones included)",
            per_second(|b| b.offered),
        ),
        ("completed/s", per_second(|b| b.done)),
        ("succeeded/s", per_second(|b| b.ok)),
    ]
    .map(|(name, points)| Series {
        name: name.into(),
        points,
    });
    out.push((
        "Throughput".into(),
        time_chart(
            &format!("Throughput per {bucket}: offered (scheduled), completed, succeeded"),
            "ops/s",
            &throughput,
            &back,
            false,
        )?,
    ));
    let layer = |name, color, f: fn(&Bucket) -> u64| Layer {
        name,
        color,
        values: whole.iter().map(|b| f(b) as f64 / width).collect(),
    };
    let layers = [
        layer("ok", plotters::style::RGBColor(44, 160, 44), |b| b.ok),
        layer(
            "refused by a rule (BUS_*, AUT_*)",
            plotters::style::RGBColor(255, 127, 14),
            |b| b.refused,
        ),
        layer(
            "error (SYS_*, no responders)",
            plotters::style::RGBColor(214, 39, 40),
            |b| b.errors,
        ),
        layer("no answer", plotters::style::RGBColor(127, 127, 127), |b| {
            b.unknown
        }),
    ];
    let starts: Vec<f64> = whole.iter().map(|b| b.t_s).collect();
    out.push((
        "Outcomes over time".into(),
        stacked_chart(
            &format!("Outcomes per {bucket}, stacked (ops/s)"),
            "ops/s",
            &starts,
            width,
            &layers,
            &back,
        )?,
    ));

    for op in r.ops.keys() {
        let series = latency(r, op, width);
        out.push((
            format!("Latency: {op}"),
            time_chart(
                &format!(
                    "{op}: latency per {bucket} (ms, log); p99 drawn where a {bucket} has \
                     100 answers, p99.9 where 1,000"
                ),
                "ms",
                &series,
                &back,
                true,
            )?,
        ));
    }

    for (op, stats) in &r.ops {
        if stats.histogram.is_empty() {
            continue;
        }
        let bars: Vec<(String, f64)> = stats
            .histogram
            .iter()
            .map(|(le, n)| (format!("≤ {le} ms"), *n as f64))
            .collect();
        out.push((
            format!("Histogram: {op}"),
            bar_chart(&format!("{op}: latency histogram"), &bars, "operations")?,
        ));
    }

    let mut outcomes = Vec::new();
    for (op, s) in &r.ops {
        outcomes.push((format!("{op} ok"), s.ok as f64));
        for (code, n) in &s.codes {
            outcomes.push((format!("{op} {code}"), *n as f64));
        }
        if s.unknown > 0 {
            outcomes.push((format!("{op} no answer"), s.unknown as f64));
        }
        if s.skipped > 0 {
            outcomes.push((format!("{op} skipped"), s.skipped as f64));
        }
    }
    out.push((
        "Outcomes".into(),
        bar_chart("Outcomes and error codes", &outcomes, "operations")?,
    ));

    let delivery = [
        Series {
            // No backlog: the database did not answer, a gap.
            name: "outbox backlog".into(),
            points: r
                .probes
                .iter()
                .map(|p| {
                    let v = p.backlog.map_or(f64::NAN, |v| v as f64);
                    (p.t_ms as f64 / 1000.0, v)
                })
                .collect(),
        },
        Series {
            // Drift is measured now and then: its measurements are joined.
            name: "drift (Σ|course − bookings|)".into(),
            points: r
                .probes
                .iter()
                .filter_map(|p| p.drift.map(|d| (p.t_ms as f64 / 1000.0, d as f64)))
                .collect(),
        },
    ];
    out.push((
        "Backlog and drift".into(),
        time_chart(
            "Outbox backlog and course-service drift",
            "rows / seats",
            &delivery,
            &back,
            false,
        )?,
    ));

    let counters: Vec<Series> = COUNTERS
        .iter()
        .map(|name| Series {
            name: format!("{name} /s"),
            points: rates(&r.metrics, name),
        })
        .collect();
    out.push((
        "Service counters".into(),
        time_chart(
            "Service counters scraped from /metrics, as rates (all replicas)",
            "per second",
            &counters,
            &back,
            false,
        )?,
    ));
    let replicas = if r.metrics.is_empty() { 0 } else { r.replicas };
    let breaker: Vec<Series> = (0..replicas)
        .map(|i| Series {
            name: format!("replica {i}"),
            points: gauge(
                &r.metrics,
                &format!("course_service_breaker_state{{replica=\"{i}\"}}"),
            ),
        })
        .collect();
    out.push((
        "Breaker".into(),
        state_chart(
            "course-service breaker, per replica",
            &["closed", "open", "half-open"],
            &breaker,
            &back,
        )?,
    ));
    let gauges = [
        ("outbox_backlog", "pending (service's view)"),
        ("outbox_rejected", "refused by course-service"),
        ("outbox_stuck", "past OUTBOX_MAX_ATTEMPTS"),
    ]
    .map(|(key, name)| Series {
        name: name.into(),
        points: gauge(&r.metrics, key),
    });
    out.push((
        "Outbox gauges".into(),
        time_chart(
            "Outbox rows as the service reports them",
            "rows",
            &gauges,
            &back,
            false,
        )?,
    ));
    Ok(out)
}

/// An operation's percentiles per bucket, each a gap where its bucket has too few answers.
pub(super) fn latency(r: &Report, op: &str, width: f64) -> Vec<Series> {
    PERCENTILES
        .iter()
        .map(|(name, needs, pick)| Series {
            name: (*name).into(),
            points: r
                .timeline
                .iter()
                .map(|b| {
                    // A bucket without this operation is a gap, not a line across it.
                    let y = match b.ops.get(op) {
                        Some((n, l)) if n >= needs => pick(l),
                        _ => f64::NAN,
                    };
                    (b.t_s + width / 2.0, y)
                })
                .collect(),
        })
        .collect()
}

/// "second", or "100 ms".
fn bucket_name(width: f64) -> String {
    if (width - 1.0).abs() < 1e-9 {
        "second".into()
    } else {
        format!("{:.0} ms", width * 1000.0)
    }
}

/// Where each invariant was first seen violated, as chart marks; invariants first seen at the
/// same time share one mark ("I1, I2 violated"). Later sightings are in the witnesses.
fn marks(r: &Report) -> Vec<(f64, String)> {
    let mut at: std::collections::BTreeMap<u64, Vec<&str>> = std::collections::BTreeMap::new();
    for v in &r.invariants {
        if let Some(first) = v.at_ms.first() {
            at.entry(*first).or_default().push(&v.id);
        }
    }
    at.into_iter()
        .map(|(t, ids)| (t as f64 / 1000.0, format!("{} violated", ids.join(", "))))
        .collect()
}

/// A gauge's value at each scrape (a gap where no replica reported it).
fn gauge(metrics: &[MetricsAt], name: &str) -> Vec<(f64, f64)> {
    metrics
        .iter()
        .map(|m| {
            (
                m.t_ms as f64 / 1000.0,
                m.values.get(name).copied().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

/// A counter's rate per second between consecutive scrapes, drawn at the later one. A drop (a
/// replica restarted with its counters at zero, or missed a scrape) is a gap, not a negative rate.
pub(super) fn rates(metrics: &[MetricsAt], name: &str) -> Vec<(f64, f64)> {
    metrics
        .windows(2)
        .map(|pair| {
            let (a, b) = (&pair[0], &pair[1]);
            let dt = b.t_ms.saturating_sub(a.t_ms) as f64 / 1000.0;
            let rate = match (a.values.get(name), b.values.get(name)) {
                (Some(x), Some(y)) if y >= x && dt > 0.0 && a.replicas == b.replicas => {
                    (y - x) / dt
                }
                _ => f64::NAN,
            };
            (b.t_ms as f64 / 1000.0, rate)
        })
        .collect()
}
