//! `sim compare`: two reports side by side, and the gates CI sets on the change (a p99 that grew,
//! a throughput that fell, more errors or no-answers, an invariant that no longer holds).

use std::fmt::Write as _;

use super::{OpStats, Report};

/// How much worse B may be than A before `sim compare` fails; `None` leaves a measure ungated.
#[derive(Debug, Clone, Default)]
pub struct Gates {
    /// Largest growth of any operation's p99, percent.
    pub p99_increase_pct: Option<f64>,
    /// Largest fall of throughput, percent.
    pub throughput_drop_pct: Option<f64>,
    /// Largest growth of any operation's failures plus no-answers, percent (from zero, any
    /// growth counts).
    pub errors_increase_pct: Option<f64>,
    /// Fail when B holds fewer invariants than A.
    pub invariants: bool,
}

/// A change past a gate.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression(pub String);

/// A measure's change from `x` to `y`, percent (`None` from zero).
fn change_pct(x: f64, y: f64) -> Option<f64> {
    (x.abs() > f64::EPSILON).then(|| (y - x) / x * 100.0)
}

/// The table of A against B, and every gate B fails.
pub fn compare(a: &Report, b: &Report, gates: &Gates) -> (String, Vec<Regression>) {
    let mut out = format!(
        "| | A: {} seed {} | B: {} seed {} | change |\n|---|---:|---:|---:|\n",
        a.scenario, a.seed, b.scenario, b.seed
    );
    let mut regressions = Vec::new();
    // Counts print as counts, measures with two decimals.
    let mut row = |name: &str, x: f64, y: f64, count: bool| {
        let change = match change_pct(x, y) {
            Some(pct) => format!("{pct:+.1}%"),
            None if (y - x).abs() > f64::EPSILON => "new".to_owned(),
            None => "=".to_owned(),
        };
        let _ = if count {
            writeln!(out, "| {name} | {x:.0} | {y:.0} | {change} |")
        } else {
            writeln!(out, "| {name} | {x:.2} | {y:.2} | {change} |")
        };
    };
    row("throughput ops/s", a.throughput, b.throughput, false);
    if let Some(max) = gates.throughput_drop_pct {
        if change_pct(a.throughput, b.throughput).is_some_and(|pct| -pct > max) {
            regressions.push(Regression(format!(
                "throughput fell from {:.1} to {:.1} ops/s (more than {max}%)",
                a.throughput, b.throughput
            )));
        }
    }
    row("load s", a.load_s, b.load_s, false);
    row(
        "convergence s",
        a.convergence_s.unwrap_or(f64::NAN),
        b.convergence_s.unwrap_or(f64::NAN),
        false,
    );
    let names: std::collections::BTreeSet<&String> = a.ops.keys().chain(b.ops.keys()).collect();
    let empty = OpStats::default();
    for name in names {
        let (x, y) = (
            a.ops.get(name).unwrap_or(&empty),
            b.ops.get(name).unwrap_or(&empty),
        );
        row(
            &format!("{name} count"),
            x.count as f64,
            y.count as f64,
            true,
        );
        row(&format!("{name} ok"), x.ok as f64, y.ok as f64, true);
        row(
            &format!("{name} p50 ms"),
            x.latency.p50,
            y.latency.p50,
            false,
        );
        row(
            &format!("{name} p99 ms"),
            x.latency.p99,
            y.latency.p99,
            false,
        );
        row(
            &format!("{name} max ms"),
            x.latency.max,
            y.latency.max,
            false,
        );
        row(
            &format!("{name} errors"),
            x.fail as f64,
            y.fail as f64,
            true,
        );
        row(
            &format!("{name} unknown"),
            x.unknown as f64,
            y.unknown as f64,
            true,
        );
        if let Some(max) = gates.p99_increase_pct {
            if change_pct(x.latency.p99, y.latency.p99).is_some_and(|pct| pct > max) {
                regressions.push(Regression(format!(
                    "{name} p99 grew from {:.1} to {:.1} ms (more than {max}%)",
                    x.latency.p99, y.latency.p99
                )));
            }
        }
        if let Some(max) = gates.errors_increase_pct {
            let (before, after) = ((x.fail + x.unknown) as f64, (y.fail + y.unknown) as f64);
            let worse = match change_pct(before, after) {
                Some(pct) => pct > max,
                None => after > 0.0,
            };
            if worse {
                regressions.push(Regression(format!(
                    "{name} errors and no-answers grew from {before:.0} to {after:.0} (more than {max}%)"
                )));
            }
        }
    }
    let held = |r: &Report| r.invariants.iter().filter(|v| v.held).count() as f64;
    row("invariants held", held(a), held(b), true);
    if gates.invariants && held(b) < held(a) {
        regressions.push(Regression(format!(
            "B holds {:.0} invariants, A held {:.0}",
            held(b),
            held(a)
        )));
    }
    (out, regressions)
}
