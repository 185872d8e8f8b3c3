//! The report's charts, drawn with plotters as SVG and inlined into one self-contained
//! `index.html`: throughput, latency percentiles per operation, latency histograms, outcomes and
//! error codes, outbox backlog and drift, service metrics. Every chart over time shades the faults.

use std::fmt::Write as _;

use crate::report::Report;

mod draw;

use draw::{bar_chart, time_chart, Series};

/// Every chart of a report, titled.
pub fn charts(r: &Report) -> anyhow::Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let x_max = r
        .timeline
        .last()
        .map(|b| b.t_s as f64 + 1.0)
        .unwrap_or(1.0)
        .max(
            r.probes
                .last()
                .map(|p| p.t_ms as f64 / 1000.0)
                .unwrap_or(0.0),
        );

    // Whole seconds only: the second the load ended in is partly empty, and drawn it reads as
    // a collapse. Each point sits at its second's middle.
    let whole: Vec<&crate::report::Bucket> = r
        .timeline
        .iter()
        .filter(|b| (b.t_s + 1) as f64 <= r.load_s + 1e-6)
        .collect();
    let per_second = |f: fn(&crate::report::Bucket) -> u64| -> Vec<(f64, f64)> {
        whole
            .iter()
            .map(|b| (b.t_s as f64 + 0.5, f(b) as f64))
            .collect()
    };
    let throughput = vec![
        Series {
            name: "offered/s (skipped ones included)".into(),
            points: per_second(|b| b.offered),
        },
        Series {
            name: "completed/s".into(),
            points: per_second(|b| b.done),
        },
        Series {
            name: "succeeded/s".into(),
            points: per_second(|b| b.ok),
        },
    ];
    out.push((
        "Throughput".into(),
        time_chart(
            "Throughput per whole second: offered (scheduled), completed, succeeded",
            "ops/s",
            &throughput,
            &r.faults,
            x_max,
            false,
        )?,
    ));

    for op in r.ops.keys() {
        let pick = |f: fn(&crate::report::Latency) -> f64| -> Vec<(f64, f64)> {
            r.timeline
                .iter()
                .filter_map(|b| b.ops.get(op).map(|(_, l)| (b.t_s as f64, f(l))))
                .collect()
        };
        let series = vec![
            Series {
                name: "p50".into(),
                points: pick(|l| l.p50),
            },
            Series {
                name: "p90".into(),
                points: pick(|l| l.p90),
            },
            Series {
                name: "p99".into(),
                points: pick(|l| l.p99),
            },
            Series {
                name: "p99.9".into(),
                points: pick(|l| l.p999),
            },
            Series {
                name: "max".into(),
                points: pick(|l| l.max),
            },
        ];
        out.push((
            format!("Latency: {op}"),
            time_chart(
                &format!("{op}: latency percentiles per second (ms, log)"),
                "ms",
                &series,
                &r.faults,
                x_max,
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
            bar_chart(
                &format!("{op}: latency histogram (count, log)"),
                &bars,
                "operations",
            )?,
        ));
    }

    let mut outcomes = Vec::new();
    for (op, s) in &r.ops {
        outcomes.push((format!("{op} ok"), s.ok as f64));
        for (code, n) in &s.codes {
            outcomes.push((format!("{op} {code}"), *n as f64));
        }
        if s.unknown > 0 {
            outcomes.push((format!("{op} unknown"), s.unknown as f64));
        }
        if s.skipped > 0 {
            outcomes.push((format!("{op} skipped"), s.skipped as f64));
        }
    }
    out.push((
        "Outcomes".into(),
        bar_chart("Outcomes and error codes (log)", &outcomes, "operations")?,
    ));

    let delivery = vec![
        Series {
            name: "outbox backlog".into(),
            points: r
                .probes
                .iter()
                .filter_map(|p| p.backlog.map(|b| (p.t_ms as f64 / 1000.0, b as f64)))
                .collect(),
        },
        Series {
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
            &r.faults,
            x_max,
            false,
        )?,
    ));

    let metric = |name: &str, label: &str| Series {
        name: label.into(),
        points: r
            .metrics
            .iter()
            .filter_map(|m| m.values.get(name).map(|v| (m.t_ms as f64 / 1000.0, *v)))
            .collect(),
    };
    let service = vec![
        metric("booking_created_total", "booking_created_total"),
        metric("cache_hits_total", "cache_hits_total"),
        metric("cache_misses_total", "cache_misses_total"),
        metric("stale_fallbacks_total", "stale_fallbacks_total"),
        metric("nats_publish_failures_total", "nats_publish_failures_total"),
    ];
    out.push((
        "Service metrics".into(),
        time_chart(
            "Service counters scraped from /metrics (all replicas)",
            "count",
            &service,
            &r.faults,
            x_max,
            false,
        )?,
    ));
    let breaker = vec![
        metric(
            "course_service_breaker_state",
            "breaker state (0 closed, 1 open, 2 half-open)",
        ),
        metric("outbox_backlog", "outbox_backlog (service's view)"),
        metric(
            "outbox_rejected",
            "outbox_rejected (refused by course-service)",
        ),
        metric("outbox_stuck", "outbox_stuck (past OUTBOX_MAX_ATTEMPTS)"),
    ];
    out.push((
        "Breaker".into(),
        time_chart(
            "Breaker state and backlog as the service reports them",
            "value",
            &breaker,
            &r.faults,
            x_max,
            false,
        )?,
    ));
    Ok(out)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes the whole report into `dir`: `report.json`, `summary.md` and `index.html`.
pub fn write(r: &Report, dir: &std::path::Path) -> anyhow::Result<()> {
    r.write_data(dir)?;
    std::fs::write(dir.join("index.html"), html(r)?)?;
    Ok(())
}

/// The self-contained HTML page.
pub fn html(r: &Report) -> anyhow::Result<String> {
    let mut page = String::new();
    let verdict = if r.passed() { "PASSED" } else { "FAILED" };
    let _ = write!(
        page,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{} seed {} — {verdict}</title>\
         <style>body{{font-family:sans-serif;max-width:1000px;margin:auto;padding:1em}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}}\
         .bad{{color:#b00;font-weight:bold}}.good{{color:#070}}pre{{background:#f6f6f6;padding:.5em;white-space:pre-wrap}}</style>\
         </head><body><h1>{} · seed {} · <span class=\"{}\">{verdict}</span></h1><p>{}</p>",
        escape(&r.scenario),
        r.seed,
        escape(&r.scenario),
        r.seed,
        if r.passed() { "good" } else { "bad" },
        escape(&r.description)
    );
    let _ = write!(
        page,
        "<p>{} replica(s) · offered {:.0}/s · {:.0} ops/s over {:.2} s · trace <code>{}</code> · \
         reproduce: <code>{}</code></p>",
        r.replicas,
        r.offered_rate,
        r.throughput,
        r.load_s,
        escape(&r.trace_hash),
        escape(&r.reproduce)
    );
    page.push_str("<h2>Invariants</h2><ul>");
    for v in &r.invariants {
        let _ = write!(
            page,
            "<li><b>{}</b> {}: <span class=\"{}\">{}</span> ({} checked{}){}</li>",
            v.id,
            escape(&v.name),
            if v.held { "good" } else { "bad" },
            if v.held { "held" } else { "VIOLATED" },
            v.checked,
            if v.witnesses.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} violations: {}",
                    v.violations,
                    escape(&v.witnesses.join("; "))
                )
            },
            if v.notes.is_empty() {
                String::new()
            } else {
                format!("<br>noted: {}", escape(&v.notes.join("; ")))
            }
        );
    }
    for c in &r.thresholds {
        let _ = write!(
            page,
            "<li>threshold {}: {:.2} against {:.2}: <span class=\"{}\">{}</span></li>",
            escape(&c.name),
            c.actual,
            c.bound,
            if c.held { "good" } else { "bad" },
            if c.held { "ok" } else { "BREACHED" }
        );
    }
    page.push_str("</ul><h2>Operations</h2>");
    page.push_str(&tables::operations(r));
    match r.convergence_s {
        Some(s) => {
            let _ = write!(
                page,
                "<p>course-service converged {s:.2} s after the load and faults ended.</p>"
            );
        }
        None => page.push_str("<p class=\"bad\">course-service did not converge.</p>"),
    }
    page.push_str("<h2>Error codes</h2>");
    page.push_str(&tables::codes(r));
    page.push_str("<h2>Scenario</h2>");
    page.push_str(&tables::facts(&r.parameters));
    page.push_str("<h2>Host</h2>");
    page.push_str(&tables::facts(&r.host));
    for (title, svg) in charts(r)? {
        let _ = write!(page, "<h2>{}</h2>{svg}", escape(&title));
    }
    if !r.happenings.is_empty() {
        page.push_str("<h2>Timeline</h2><table><tr><th>s</th><th>what</th></tr>");
        for h in &r.happenings {
            let _ = write!(
                page,
                "<tr><td>{:.2}</td><td style=\"text-align:left\">{}</td></tr>",
                h.t_ms as f64 / 1000.0,
                escape(&h.what)
            );
        }
        page.push_str("</table>");
    }
    page.push_str("</body></html>\n");
    Ok(page)
}

mod tables;

#[cfg(test)]
mod tests;
