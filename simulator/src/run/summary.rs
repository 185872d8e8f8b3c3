//! The history turned into the report's figures: per-operation counts, codes, retries and latency
//! (from the scheduled time to the final answer, retries included), the per-second timeline, the
//! fault spans, and the scenario's thresholds checked against them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::load::{Attempt, Outcome};
use crate::report::{Bucket, Check, FaultSpan, Latency, OpStats, Report};
use crate::trace::{Phase, Trace};

/// One second's completions: done, succeeded, latency per operation kind.
type Second = (u64, u64, BTreeMap<String, Histogram<u64>>);

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant, valid histogram bounds")
}

/// Per-operation figures and the per-second timeline from the history. An operation's latency
/// runs from its scheduled time to its final answer, retries included.
pub fn summarise(trace: &Trace, hash: &str, history: &[Attempt], load_end: Duration) -> Report {
    let scheduled: HashMap<u32, u64> = trace.ops.iter().map(|o| (o.i, o.t_ms)).collect();
    let warmup_ms = trace.header.scenario.workload.warmup_s * 1000.0;
    let mut finals: BTreeMap<u32, &Attempt> = BTreeMap::new();
    let mut retries: HashMap<String, u64> = HashMap::new();
    for a in history {
        if a.attempt > 0 {
            *retries.entry(a.op.clone()).or_default() += 1;
        }
        let keep = finals.get(&a.i).is_none_or(|b| a.attempt >= b.attempt);
        if keep {
            finals.insert(a.i, a);
        }
    }
    let mut hists: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
    let mut stats: BTreeMap<String, OpStats> = BTreeMap::new();
    let mut buckets: BTreeMap<u64, Second> = BTreeMap::new();
    for a in finals.values() {
        let s = stats.entry(a.op.clone()).or_default();
        s.count += 1;
        match a.outcome {
            Outcome::Ok => s.ok += 1,
            Outcome::Fail => {
                s.fail += 1;
                *s.codes
                    .entry(a.code.clone().unwrap_or_default())
                    .or_default() += 1;
            }
            Outcome::Unknown => s.unknown += 1,
            Outcome::Skipped => {
                s.skipped += 1;
                continue;
            }
        }
        let at = scheduled.get(&a.i).copied().unwrap_or(0) as f64;
        let micros = ((a.end_ms - at).max(0.001) * 1000.0) as u64;
        // The warm-up counts in outcomes and the timeline, not in the percentiles.
        if at >= warmup_ms {
            let _ = hists
                .entry(a.op.clone())
                .or_insert_with(histogram)
                .record(micros.clamp(1, 600_000_000));
        }
        let b = buckets.entry((a.end_ms / 1000.0) as u64).or_default();
        b.0 += 1;
        if a.outcome == Outcome::Ok {
            b.1 += 1;
        }
        let _ =
            b.2.entry(a.op.clone())
                .or_insert_with(histogram)
                .record(micros.clamp(1, 600_000_000));
    }
    for (op, h) in &hists {
        if let Some(s) = stats.get_mut(op) {
            s.latency = Latency::of(h);
            let mut bins = Vec::new();
            let mut le = 1.0f64;
            let mut below = 0u64;
            while below < h.len() && le <= 600_000.0 {
                let upto = h.count_between(0, (le * 1000.0) as u64);
                bins.push((le, upto - below));
                below = upto;
                le *= 2.0;
            }
            s.histogram = bins.into_iter().filter(|(_, n)| *n > 0).collect();
        }
    }
    for (op, n) in retries {
        if let Some(s) = stats.get_mut(&op) {
            s.retries = n;
        }
    }
    // Offered: operations scheduled in each second (the rush, the ramp and the steady rate).
    let mut offered: BTreeMap<u64, u64> = BTreeMap::new();
    for op in &trace.ops {
        *offered.entry(op.t_ms / 1000).or_default() += 1;
    }
    let last = buckets
        .keys()
        .chain(offered.keys())
        .max()
        .copied()
        .unwrap_or(0);
    let timeline = (0..=last)
        .map(|t| {
            let (done, ok, per) = buckets.remove(&t).unwrap_or_default();
            Bucket {
                t_s: t,
                offered: offered.get(&t).copied().unwrap_or(0),
                done,
                ok,
                ops: per
                    .into_iter()
                    .map(|(op, h)| (op, (h.len(), Latency::of(&h))))
                    .collect(),
            }
        })
        .collect();
    let completed: u64 = stats.values().map(|s| s.count - s.skipped).sum();
    let load_s = load_end.as_secs_f64();
    let scenario = &trace.header.scenario;
    let faults = trace
        .faults
        .iter()
        .filter(|e| e.phase == Phase::Start)
        .map(|start| FaultSpan {
            kind: start.kind.name().to_owned(),
            start_ms: start.t_ms,
            end_ms: trace
                .faults
                .iter()
                .find(|e| e.fault == start.fault && e.phase == Phase::End)
                .map_or(start.t_ms, |e| e.t_ms),
        })
        .collect();
    Report {
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        seed: trace.header.seed,
        trace_hash: hash.to_owned(),
        replicas: scenario.replicas,
        reproduce: String::new(),
        offered_rate: scenario.workload.rate,
        load_s,
        throughput: completed as f64 / load_s.max(1e-9),
        ops: stats,
        timeline,
        probes: Vec::new(),
        metrics: Vec::new(),
        faults,
        happenings: Vec::new(),
        convergence_s: None,
        invariants: Vec::new(),
        wire: BTreeMap::new(),
        thresholds: Vec::new(),
        parameters: parameters(scenario),
        host: Vec::new(),
    }
}

/// The scenario's parameters, as the report lists them.
fn parameters(s: &crate::scenario::Scenario) -> Vec<(String, String)> {
    let w = &s.workload;
    let c = &s.catalog;
    let mut out = vec![
        ("duration".to_owned(), format!("{} s", s.duration_s)),
        ("replicas".to_owned(), s.replicas.to_string()),
        (
            "arrival rate".to_owned(),
            format!("{}/s (Poisson, open model)", w.rate),
        ),
    ];
    if !w.stages.is_empty() {
        let stages: Vec<String> = w
            .stages
            .iter()
            .map(|st| format!("to {}/s over {} s", st.target, st.duration_s))
            .collect();
        out.push(("stages".to_owned(), stages.join(", then ")));
    }
    if w.warmup_s > 0.0 {
        out.push((
            "warm-up".to_owned(),
            format!("{} s, left out of the percentiles", w.warmup_s),
        ));
    }
    if w.rush_users > 0 {
        out.push((
            "rush".to_owned(),
            format!(
                "{} users on {} slot(s) at {} s within {} ms",
                w.rush_users, w.rush_slots, w.rush_at_s, w.rush_spread_ms
            ),
        ));
    }
    let total = f64::from((w.create + w.cancel + w.update + w.read).max(1));
    let pct = |x: u32| f64::from(x) / total * 100.0;
    out.extend([
        (
            "mix".to_owned(),
            format!(
                "create {:.0}%, cancel {:.0}%, update {:.0}%, read {:.0}%",
                pct(w.create),
                pct(w.cancel),
                pct(w.update),
                pct(w.read)
            ),
        ),
        (
            "hot slots".to_owned(),
            format!(
                "{:.0}% of creates on {} slots",
                w.hot_share * 100.0,
                w.hot_slots
            ),
        ),
        (
            "keyed creates".to_owned(),
            format!("{:.0}% (retried with their key)", w.keyed_share * 100.0),
        ),
        (
            "client".to_owned(),
            format!("{} ms timeout, {} retries", w.client_timeout_ms, w.retries),
        ),
        (
            "catalogue".to_owned(),
            format!(
                "{} club(s) × {} game(s) × {} day(s) × {} slot(s) a day, {} seats each",
                c.clubs, c.games_per_club, c.days, c.slots_per_day, c.max_players
            ),
        ),
        ("faults".to_owned(), s.faults.len().to_string()),
    ]);
    out
}

/// The scenario's thresholds against the report.
pub(crate) fn thresholds(trace: &Trace, report: &Report) -> Vec<Check> {
    let t = &trace.header.scenario.thresholds;
    let mut out = Vec::new();
    if let Some(bound) = t.min_throughput {
        out.push(Check {
            name: "min throughput ops/s".into(),
            bound,
            actual: report.throughput,
            held: report.throughput >= bound,
        });
    }
    for (op, bound) in &t.max_p99_ms {
        let actual = report.ops.get(op).map_or(0.0, |s| s.latency.p99);
        out.push(Check {
            name: format!("max {op} p99 ms"),
            bound: *bound,
            actual,
            held: actual <= *bound,
        });
    }
    if let Some(bound) = t.max_convergence_s {
        let actual = report.convergence_s.unwrap_or(f64::INFINITY);
        out.push(Check {
            name: "max convergence s".into(),
            bound,
            actual,
            held: actual <= bound,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;

    /// Operations scheduled in the warm-up answered slowly (a cold cache, say): they count, but
    /// the percentiles are those of the rest.
    #[test]
    fn the_warm_up_counts_in_outcomes_but_not_in_percentiles() {
        let trace = Trace::expand(&Scenario::load("ramp").unwrap(), 1);
        let history: Vec<Attempt> = trace
            .ops
            .iter()
            .map(|o| {
                let slow = o.t_ms < 1000;
                let at = o.t_ms as f64;
                Attempt {
                    i: o.i,
                    op: "create".into(),
                    attempt: 0,
                    invoke_ms: at,
                    end_ms: at + if slow { 5000.0 } else { 10.0 },
                    outcome: Outcome::Ok,
                    code: None,
                    number: None,
                }
            })
            .collect();
        let report = summarise(&trace, "h", &history, Duration::from_secs(8));
        let create = &report.ops["create"];
        assert_eq!(create.count as usize, trace.ops.len());
        assert!(create.latency.max < 20.0, "{:?}", create.latency);
    }
}
