//! The report page's tables: outcomes and latency per operation (with each operation's error
//! share, and percentiles shown only where there are samples enough to mean them), a legend of
//! the error codes that occurred, and the run's parameters and host.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::escape;
use super::list::PERCENTILES;
use crate::report::Report;

/// Answers needed before a percentile is shown ([`PERCENTILES`]: p99 needs a hundred, p99.9 a
/// thousand).
fn enough(answered: u64, per: u64) -> bool {
    answered >= per
}

/// What a code means, and whether a passing run should expect it.
fn meaning(code: &str) -> &'static str {
    match code {
        "BUS_004" => "refused by a rule: the slot had no seats left (or was closed, or past the cut-off). Expected when many users want few seats: under contention this is the system saying no correctly, not failing",
        "BUS_001" => "invalid input; the same request fails again",
        "BUS_002" => "not found (an unknown slot or booking)",
        "BUS_003" => "a duplicate that cannot be replayed (a key reused with another body)",
        "AUT_002" => "not allowed (someone else's booking)",
        "SYS_001" => "unexpected failure inside the service: worth a look",
        "SYS_002" => "the database failed or could not be reached: expected only during database faults",
        "SYS_003" => "a network call failed",
        "SYS_004" => "a dependency unavailable or the service overloaded; retrying later may succeed: expected during course-service faults and floods",
        "NO_RESPONDERS" => "nobody served the subject (every replica down): expected only while replicas are killed",
        "DECODE" => "a reply that could not be read: a contract break",
        _ => "see contracts' ErrorCode",
    }
}

/// Operations: outcomes, error share, codes, latency.
pub(super) fn operations(r: &Report) -> String {
    let mut t = String::from(
        "<table><tr><th>operation</th><th>count</th><th>ok</th><th>failed</th><th>error share</th>\
         <th>no answer</th><th>skipped</th><th>retries</th><th>codes</th><th>p50 ms</th><th>p90</th>\
         <th>p99</th><th>p99.9</th><th>max</th></tr>",
    );
    for (name, o) in &r.ops {
        let answered = o.ok + o.fail;
        let sent = o.count - o.skipped;
        let share = if sent == 0 {
            "–".to_owned()
        } else {
            format!("{:.1}%", o.fail as f64 / sent as f64 * 100.0)
        };
        let codes = o
            .codes
            .iter()
            .map(|(c, n)| format!("{}×{n}", escape(c)))
            .collect::<Vec<_>>()
            .join(" ");
        let l = &o.latency;
        let pct = |value: f64, per: u64| {
            if enough(answered + o.unknown, per) {
                format!("{value:.1}")
            } else {
                format!("<span title=\"fewer than {per} samples\">–</span>")
            }
        };
        // p50 to p99.9, with the charts' bounds; max is always shown.
        let percentiles: String = PERCENTILES
            .iter()
            .filter(|(name, _, _)| *name != "max")
            .map(|(_, per, pick)| format!("<td>{}</td>", pct(pick(l), *per)))
            .collect();
        let _ = write!(
            t,
            "<tr><td style=\"text-align:left\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{share}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td>{percentiles}\
             <td>{:.1}</td></tr>",
            escape(name),
            o.count,
            o.ok,
            o.fail,
            o.unknown,
            o.skipped,
            o.retries,
            if codes.is_empty() { "–".to_owned() } else { codes },
            l.max
        );
    }
    t.push_str(
        "</table><p class=\"note\">Latency runs from each operation's scheduled time to its final \
         answer (retries included). A percentile is shown once there are samples enough to mean \
         it: 100 for p99, 1,000 for p99.9.</p>",
    );
    t
}

/// The codes that occurred, with what they mean.
pub(super) fn codes(r: &Report) -> String {
    let seen: BTreeSet<&String> = r.ops.values().flat_map(|o| o.codes.keys()).collect();
    if seen.is_empty() {
        return "<p>No operation failed.</p>".to_owned();
    }
    let mut t = String::from("<table class=\"legend\"><tr><th>code</th><th>meaning</th></tr>");
    for code in seen {
        let _ = write!(
            t,
            "<tr><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
            escape(code),
            escape(meaning(code))
        );
    }
    t.push_str("</table>");
    t
}

/// A two-column table of facts.
pub(super) fn facts(rows: &[(String, String)]) -> String {
    let mut t = String::from("<table class=\"facts\">");
    for (k, v) in rows {
        let _ = write!(
            t,
            "<tr><th style=\"text-align:left\">{}</th><td style=\"text-align:left\">{}</td></tr>",
            escape(k),
            escape(v)
        );
    }
    t.push_str("</table>");
    t
}
