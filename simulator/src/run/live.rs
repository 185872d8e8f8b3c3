//! The line a second `sim run` prints on stderr while the load runs: answers in the last second,
//! their p99, failures by code, requests with no answer, the outbox backlog and attempts so far.

use super::load::{Attempt, Outcome};

/// One live line: `fresh` are the attempts that ended since the last line (about a second).
pub(super) fn live_line(
    now_ms: f64,
    fresh: &[Attempt],
    ended: usize,
    ops: usize,
    backlog: Option<i64>,
) -> String {
    let mut latencies: Vec<f64> = fresh
        .iter()
        .filter(|a| matches!(a.outcome, Outcome::Ok | Outcome::Fail))
        .map(|a| a.end_ms - a.invoke_ms)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies
        .get((latencies.len() * 99).div_ceil(100).saturating_sub(1))
        .map_or_else(|| "-".to_owned(), |ms| format!("{ms:.0} ms"));
    let mut codes: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for a in fresh.iter().filter(|a| a.outcome == Outcome::Fail) {
        *codes.entry(a.code.as_deref().unwrap_or("?")).or_default() += 1;
    }
    let errors = if codes.is_empty() {
        "none".to_owned()
    } else {
        codes
            .iter()
            .map(|(code, n)| format!("{code}×{n}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let unknown = fresh
        .iter()
        .filter(|a| a.outcome == Outcome::Unknown)
        .count();
    format!(
        "sim: {:>5.1} s · {:>5} answered/s · p99 {p99} · errors {errors} · no answer {unknown} · outbox backlog {} · {ended} attempts, {ops} ops",
        now_ms / 1000.0,
        latencies.len(),
        backlog.map_or_else(|| "-".to_owned(), |b| b.to_string()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(ms: f64, outcome: Outcome, code: Option<&str>) -> Attempt {
        Attempt {
            i: 0,
            op: "create".into(),
            attempt: 0,
            invoke_ms: 0.0,
            end_ms: ms,
            outcome,
            code: code.map(str::to_owned),
            number: None,
            stamped: None,
        }
    }

    #[test]
    fn the_live_line_counts_the_last_second() {
        let fresh: Vec<Attempt> = (1..=100)
            .map(|ms| attempt(f64::from(ms), Outcome::Ok, None))
            .chain([attempt(5.0, Outcome::Fail, Some("BUS_004"))])
            .chain([attempt(1000.0, Outcome::Unknown, None)])
            .collect();
        let line = live_line(3_000.0, &fresh, 102, 500, Some(7));
        assert!(line.contains("101 answered/s"), "{line}");
        assert!(line.contains("p99 99 ms"), "{line}");
        assert!(line.contains("errors BUS_004×1"), "{line}");
        assert!(line.contains("no answer 1"), "{line}");
        assert!(line.contains("outbox backlog 7"), "{line}");
    }
}
