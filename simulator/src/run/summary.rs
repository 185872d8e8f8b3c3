//! The history turned into the report's figures: per-operation counts, codes, retries and latency
//! (from the scheduled time to the final answer, retries included), the timeline (a second per
//! bucket, shorter buckets for short runs) and the fault spans. The scenario's thresholds are
//! checked against them by [`super::judge::thresholds`].

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use hdrhistogram::Histogram;

use super::load::{Attempt, Outcome};
use crate::report::{Bucket, FaultSpan, Latency, OpStats, Report};
use crate::trace::{Phase, Trace};

/// One bucket's completions by outcome, and latency per operation kind.
#[derive(Default)]
struct Completions {
    done: u64,
    ok: u64,
    refused: u64,
    errors: u64,
    unknown: u64,
    latency: BTreeMap<String, Histogram<u64>>,
}

/// The timeline's bucket length for a load of `load_ms`: the longest of 1 s, 500, 250, 100 or
/// 50 ms that still cuts it into 20 buckets, so a 200 ms rush is not drawn as one point.
pub(crate) fn bucket_ms(load_ms: f64) -> u64 {
    [1000, 500, 250, 100]
        .into_iter()
        .find(|b| load_ms / *b as f64 >= 20.0)
        .unwrap_or(50)
}

/// A refusal by a rule (`BUS_*`, `AUT_*`) is the service saying no correctly; anything else
/// that failed is an error.
pub(crate) fn refusal(code: Option<&str>) -> bool {
    code.is_some_and(|c| c.starts_with("BUS_") || c.starts_with("AUT_"))
}

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
    let width = bucket_ms(load_end.as_secs_f64() * 1000.0);
    let mut buckets: BTreeMap<u64, Completions> = BTreeMap::new();
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
        let b = buckets
            .entry((a.end_ms.max(0.0) as u64) / width)
            .or_default();
        b.done += 1;
        match a.outcome {
            Outcome::Ok => b.ok += 1,
            Outcome::Fail if refusal(a.code.as_deref()) => b.refused += 1,
            Outcome::Fail => b.errors += 1,
            Outcome::Unknown | Outcome::Skipped => b.unknown += 1,
        }
        let _ = b
            .latency
            .entry(a.op.clone())
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
    // Offered: operations scheduled in each bucket (the rush, the ramp and the steady rate).
    let mut offered: BTreeMap<u64, u64> = BTreeMap::new();
    for op in &trace.ops {
        *offered.entry(op.t_ms / width).or_default() += 1;
    }
    let last = buckets
        .keys()
        .chain(offered.keys())
        .max()
        .copied()
        .unwrap_or(0);
    let timeline = (0..=last)
        .map(|t| {
            let c = buckets.remove(&t).unwrap_or_default();
            Bucket {
                t_s: (t * width) as f64 / 1000.0,
                offered: offered.get(&t).copied().unwrap_or(0),
                done: c.done,
                ok: c.ok,
                refused: c.refused,
                errors: c.errors,
                unknown: c.unknown,
                ops: c
                    .latency
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
        bucket_s: width as f64 / 1000.0,
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
                    stamped: None,
                }
            })
            .collect();
        let report = summarise(&trace, "h", &history, Duration::from_secs(8));
        let create = &report.ops["create"];
        assert_eq!(create.count as usize, trace.ops.len());
        assert!(create.latency.max < 20.0, "{:?}", create.latency);
    }

    /// A 2-second run is cut into 100 ms buckets, and each completion lands in its outcome.
    #[test]
    fn a_short_run_gets_short_buckets_and_outcomes_per_bucket() {
        assert_eq!(bucket_ms(60_000.0), 1000);
        assert_eq!(bucket_ms(8_000.0), 250);
        assert_eq!(bucket_ms(2_000.0), 100);
        assert_eq!(bucket_ms(300.0), 50);
        let trace = Trace::expand(&Scenario::load("ramp").unwrap(), 1);
        let ends = [
            (Outcome::Ok, None, 50.0),
            (Outcome::Fail, Some("BUS_004"), 150.0),
            (Outcome::Fail, Some("SYS_002"), 160.0),
            (Outcome::Unknown, None, 1_950.0),
        ];
        let history: Vec<Attempt> = trace
            .ops
            .iter()
            .zip(ends)
            .map(|(o, (outcome, code, end_ms))| Attempt {
                i: o.i,
                op: "create".into(),
                attempt: 0,
                invoke_ms: 0.0,
                end_ms,
                outcome,
                code: code.map(str::to_owned),
                number: None,
                stamped: None,
            })
            .collect();
        let report = summarise(&trace, "h", &history, Duration::from_secs(2));
        assert!((report.bucket_s - 0.1).abs() < 1e-9);
        let at = |t: f64| {
            report
                .timeline
                .iter()
                .find(|b| (b.t_s - t).abs() < 1e-9)
                .unwrap()
        };
        assert_eq!((at(0.0).ok, at(0.0).done), (1, 1));
        assert_eq!((at(0.1).refused, at(0.1).errors, at(0.1).done), (1, 1, 2));
        assert_eq!(at(1.9).unknown, 1);
    }
}
