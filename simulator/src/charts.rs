//! The report's charts, drawn with plotters as SVG and inlined into one self-contained
//! `index.html`: throughput, latency percentiles per operation, latency histograms, outcomes and
//! error codes, outbox backlog and drift, service metrics. Every chart over time shades the faults.

use std::fmt::Write as _;

use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;

use crate::report::{FaultSpan, Report};

const W: u32 = 960;
const H: u32 = 300;
const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e}")
}

/// A named series of (seconds, value).
struct Series {
    name: String,
    points: Vec<(f64, f64)>,
}

/// Draws series over time on a linear or log y axis, shading fault spans.
fn time_chart(
    title: &str,
    y_desc: &str,
    series: &[Series],
    faults: &[FaultSpan],
    x_max: f64,
    log: bool,
) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let root: Area<'_> = SVGBackend::with_string(&mut svg, (W, H)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let y_max = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.1))
            .fold(0.0f64, f64::max)
            .max(1.0)
            * 1.1;
        let x_max = x_max.max(1.0);
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(64);
        if log {
            let mut chart = builder
                .build_cartesian_2d(0f64..x_max, (0.1f64..y_max).log_scale())
                .map_err(err)?;
            plot(&mut chart, y_desc, series, faults, 0.1, y_max)?;
        } else {
            let mut chart = builder
                .build_cartesian_2d(0f64..x_max, 0f64..y_max)
                .map_err(err)?;
            plot(&mut chart, y_desc, series, faults, 0.0, y_max)?;
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Mesh, fault bands, lines and legend on a chart over time; `floor` is the y axis' lowest value.
fn plot<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<RangedCoordf64, Y>>,
    y_desc: &str,
    series: &[Series],
    faults: &[FaultSpan],
    floor: f64,
    y_max: f64,
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    for f in faults {
        let (a, b) = span(f);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a, floor), (b, y_max)],
                RED.mix(0.12).filled(),
            )))
            .map_err(err)?;
    }
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        chart
            .draw_series(LineSeries::new(
                s.points.iter().map(|&(x, y)| (x, y.max(floor))),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
    }
    legend(chart)
}

/// A fault's span in seconds; one-shot faults get a visible sliver.
fn span(f: &FaultSpan) -> (f64, f64) {
    let a = f.start_ms as f64 / 1000.0;
    let b = (f.end_ms as f64 / 1000.0).max(a + 0.1);
    (a, b)
}

fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .draw()
        .map_err(err)
}

/// Horizontal bars of (label, count) on a log axis (counts span orders of magnitude).
fn bar_chart(title: &str, bars: &[(String, f64)], x_desc: &str) -> anyhow::Result<String> {
    let mut svg = String::new();
    {
        let height = (40 + 26 * bars.len() as u32).max(140);
        let root: Area<'_> = SVGBackend::with_string(&mut svg, (W, height)).into_drawing_area();
        root.fill(&WHITE).map_err(err)?;
        let max = bars.iter().map(|b| b.1).fold(1.0f64, f64::max) * 1.15;
        let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
        let n = bars.len().max(1) as i32;
        let mut builder = ChartBuilder::on(&root);
        builder
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(200);
        let y_fmt = |y: &i32| {
            usize::try_from(*y)
                .ok()
                .and_then(|i| labels.get(i).cloned())
                .unwrap_or_default()
        };
        let mut chart = builder
            .build_cartesian_2d((0.5f64..max.max(1.0)).log_scale(), 0i32..n)
            .map_err(err)?;
        chart
            .configure_mesh()
            .y_labels(bars.len().max(1))
            .y_label_formatter(&y_fmt)
            .x_desc(x_desc)
            .draw()
            .map_err(err)?;
        chart
            .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
                let i = i32::try_from(i).unwrap_or(0);
                Rectangle::new(
                    [(0.5, i), (v.max(0.5), i + 1)],
                    PALETTE[0].mix(0.8).filled(),
                )
            }))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

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

    let throughput = vec![
        Series {
            name: "completed/s".into(),
            points: r
                .timeline
                .iter()
                .map(|b| (b.t_s as f64, b.done as f64))
                .collect(),
        },
        Series {
            name: "succeeded/s".into(),
            points: r
                .timeline
                .iter()
                .map(|b| (b.t_s as f64, b.ok as f64))
                .collect(),
        },
    ];
    out.push((
        "Throughput".into(),
        time_chart(
            "Throughput (operations completed per second)",
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
    page.push_str("</ul><h2>Summary</h2><pre>");
    page.push_str(&escape(&r.markdown()));
    page.push_str("</pre>");
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn a_written_report_has_its_page() {
        let r = crate::report::tests::sample();
        let dir = tempfile::tempdir().unwrap();
        super::write(&r, dir.path()).unwrap();
        assert!(dir.path().join("index.html").exists());
        assert!(dir.path().join("report.json").exists());
    }
}
