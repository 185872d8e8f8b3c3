//! The report page: one self-contained `index.html` with the verdict, tables of outcomes, codes,
//! parameters and host, and the charts of [`list`] drawn with plotters as inline SVG. Every chart
//! over time shades the faults by kind and marks where an invariant was seen violated.

use std::fmt::Write as _;

use crate::report::Report;

mod bars;
mod draw;
mod list;
mod stacks;

pub(crate) use draw::tick;
pub use list::charts;

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
