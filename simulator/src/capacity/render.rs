//! What a capacity sweep says: the table (markdown for `capacity.md`, HTML with a link to each
//! point's own report for `index.html`), the conclusions in plain words (including when the knee
//! lies beyond the swept rates), the host's cores, and the throughput–latency chart with each
//! point labelled by its offered rate.

use std::fmt::Write as _;

use plotters::prelude::*;

use super::{point_dir, Capacity, Point};

/// Achieved throughput as a share of the offered rate.
fn kept(p: &Point) -> f64 {
    if p.offered > 0.0 {
        p.throughput / p.offered
    } else {
        1.0
    }
}

/// The conclusions, one line each.
fn conclusions(c: &Capacity) -> Vec<String> {
    let mut lines = Vec::new();
    for (r, knee) in &c.knees {
        let swept: Vec<f64> = c
            .points
            .iter()
            .filter(|p| p.replicas == *r)
            .map(|p| p.offered)
            .collect();
        let top = swept.iter().copied().fold(f64::MIN, f64::max);
        let bottom = swept.iter().copied().fold(f64::MAX, f64::min);
        lines.push(match knee {
            Some(k) if *k >= top => format!(
                "{r} replica(s): knee not reached: every swept rate, up to {top:.0}/s, met the bound; sweep higher to find it"
            ),
            Some(k) => format!(
                "{r} replica(s): knee at {k:.0}/s offered (the next swept rate broke the bound)"
            ),
            None => format!(
                "{r} replica(s): no swept rate met the bound; the knee is below {bottom:.0}/s"
            ),
        });
    }
    lines.push(match c.replicas_for_target {
        Some(r) => format!(
            "**{r} replica(s)** serve {}/s with create p99 ≤ {} ms.",
            c.target, c.p99_ms
        ),
        None => format!(
            "No swept replica count serves {}/s within {} ms.",
            c.target, c.p99_ms
        ),
    });
    lines.push(format!(
        "Measured on {} cores, shared by the load generator, PostgreSQL, NATS and every replica: \
         a machine of its own for the load would give higher figures.",
        c.host_cores
    ));
    lines
}

/// A point's cells, before its report's link: the same in both tables.
fn cells(c: &Capacity, p: &Point) -> Vec<String> {
    vec![
        p.replicas.to_string(),
        format!("{:.0}", p.offered),
        format!("{:.0}", p.throughput),
        format!("{:.0}%", kept(p) * 100.0),
        format!("{:.1}", p.p50_ms),
        format!("{:.1}", p.p99_ms),
        format!("{:.1}%", p.answered * 100.0),
        format!("{:.1} of {:.1}", p.load_s, p.duration_s),
        if p.within(c.p99_ms) { "yes" } else { "no" }.to_owned(),
        if p.invariants_held {
            "held"
        } else {
            "VIOLATED"
        }
        .to_owned(),
    ]
}

/// The table and the conclusions, as markdown.
pub fn markdown(c: &Capacity) -> String {
    let mut out = format!(
        "# Capacity: create p99 ≤ {} ms, target {}/s\n\n| replicas | offered/s | achieved ops/s | achieved ÷ offered | create p50 ms | create p99 ms | answered (not timed out) | last answer s | within | invariants | report |\n|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---|\n",
        c.p99_ms, c.target
    );
    for p in &c.points {
        let dir = point_dir(p.replicas, p.offered);
        let _ = writeln!(
            out,
            "| {} | [{dir}]({dir}/index.html) |",
            cells(c, p).join(" | ")
        );
    }
    out.push('\n');
    for line in conclusions(c) {
        let _ = writeln!(out, "- {line}");
    }
    out
}

/// Text for HTML.
fn esc(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// `index.html`: the table with a link to each point's report, the conclusions, the chart.
pub(crate) fn page(c: &Capacity) -> anyhow::Result<String> {
    let mut rows = String::new();
    for p in &c.points {
        let dir = point_dir(p.replicas, p.offered);
        let cells: String = cells(c, p)
            .iter()
            .map(|cell| format!("<td>{}</td>", esc(cell)))
            .collect();
        let _ = write!(
            rows,
            "<tr>{cells}<td><a href=\"{dir}/index.html\">{dir}</a></td></tr>"
        );
    }
    let conclusions: String = conclusions(c)
        .iter()
        .map(|l| format!("<li>{}</li>", esc(&l.replace("**", ""))))
        .collect();
    Ok(format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>capacity</title><style>\
         body{{font-family:sans-serif;max-width:1100px;margin:auto}} table{{border-collapse:collapse}} \
         td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}</style></head><body>\
         <h1>Capacity: create p99 ≤ {} ms, target {}/s</h1>\
         <table><tr><th>replicas</th><th>offered/s</th><th>achieved ops/s</th><th>achieved ÷ offered</th>\
         <th>create p50 ms</th><th>create p99 ms</th><th>answered (not timed out)</th><th>last answer s</th>\
         <th>within</th><th>invariants</th><th>report</th></tr>{rows}</table><ul>{conclusions}</ul>{}</body></html>\n",
        c.p99_ms,
        c.target,
        chart(c)?
    ))
}

/// Achieved throughput against create p99, a line per replica count, each point labelled with
/// its offered rate.
fn chart(c: &Capacity) -> anyhow::Result<String> {
    let err = |e: &dyn std::fmt::Display| anyhow::anyhow!("drawing the capacity chart: {e}");
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (960, 400)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let x_max = c
            .points
            .iter()
            .map(|p| p.throughput.max(p.offered))
            .fold(1.0, f64::max)
            * 1.1;
        let y_max = c.points.iter().map(|p| p.p99_ms).fold(c.p99_ms, f64::max) * 1.5;
        let mut chart = ChartBuilder::on(&root)
            .caption(
                "Throughput–latency: achieved ops/s against create p99 (labels: offered rate)",
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(64)
            .build_cartesian_2d(0f64..x_max, 0f64..y_max.max(1.0))
            .map_err(|e| err(&e))?;
        let x_fmt = |v: &f64| crate::charts::tick(*v, x_max);
        let y_fmt = |v: &f64| crate::charts::tick(*v, y_max);
        chart
            .configure_mesh()
            .label_style(("sans-serif", 14))
            .x_label_formatter(&x_fmt)
            .y_label_formatter(&y_fmt)
            .x_desc("achieved ops/s")
            .y_desc("create p99 ms")
            .draw()
            .map_err(|e| err(&e))?;
        chart
            .draw_series(LineSeries::new(
                [(0.0, c.p99_ms), (x_max, c.p99_ms)],
                RED.mix(0.6).stroke_width(1),
            ))
            .map_err(|e| err(&e))?
            .label("p99 bound")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], RED));
        let colors = [BLUE, GREEN, MAGENTA, CYAN, BLACK];
        for (i, (r, _)) in c.knees.iter().enumerate() {
            let color = colors[i % colors.len()];
            let mut pts: Vec<(f64, f64, f64)> = c
                .points
                .iter()
                .filter(|p| p.replicas == *r)
                .map(|p| (p.throughput, p.p99_ms, p.offered))
                .collect();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|p| (p.0, p.1)),
                    color.stroke_width(2),
                ))
                .map_err(|e| err(&e))?
                .label(format!("{r} replica(s)"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            chart
                .draw_series(pts.iter().map(|p| {
                    EmptyElement::at((p.0, p.1))
                        + Circle::new((0, 0), 4, color.filled())
                        + Text::new(format!("{:.0}/s", p.2), (6, -14), ("sans-serif", 12))
                }))
                .map_err(|e| err(&e))?;
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}
