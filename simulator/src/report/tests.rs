//! Unit tests of `report`.

use super::*;

pub(crate) fn sample() -> Report {
    let mut ops = BTreeMap::new();
    ops.insert(
        "create".to_owned(),
        OpStats {
            count: 10,
            ok: 8,
            fail: 2,
            codes: BTreeMap::from([("BUS_004".to_owned(), 2)]),
            latency: Latency {
                p50: 2.0,
                p90: 3.0,
                p99: 4.0,
                p999: 5.0,
                max: 6.0,
            },
            ..OpStats::default()
        },
    );
    Report {
        scenario: "rush".into(),
        description: "d".into(),
        seed: 1,
        trace_hash: "ab".repeat(32),
        replicas: 2,
        reproduce: "sim run rush --seed 1".into(),
        offered_rate: 100.0,
        load_s: 2.0,
        throughput: 5.0,
        ops,
        bucket_s: 1.0,
        timeline: vec![],
        probes: vec![],
        metrics: vec![],
        faults: vec![],
        happenings: vec![],
        convergence_s: Some(0.1),
        invariants: vec![Verdict::new("I1", "no oversell")],
        wire: BTreeMap::new(),
        thresholds: vec![],
        parameters: vec![("duration".into(), "2 s".into())],
        host: vec![("cores".into(), "2".into())],
    }
}

#[test]
fn the_summary_names_every_figure_and_the_reproduction_on_failure() {
    let mut r = sample();
    let md = r.markdown();
    assert!(
        md.contains("| create | 10 | 8 | 2 |") && md.contains("BUS_004×2"),
        "{md}"
    );
    assert!(!md.contains("Reproduce"));
    r.invariants[0].violate("slot 1: 5 players on 4 seats".into());
    let md = r.markdown();
    assert!(
        md.contains("VIOLATED") && md.contains("sim run rush --seed 1"),
        "{md}"
    );
}

#[test]
fn compare_shows_changes() {
    let a = sample();
    let mut b = sample();
    b.throughput = 10.0;
    let (table, regressions) = compare(&a, &b, &Gates::default());
    assert!(
        table.contains("| throughput ops/s | 5.00 | 10.00 | +100.0% |"),
        "{table}"
    );
    assert!(regressions.is_empty());
}

#[test]
fn compare_fails_only_past_the_gates_it_is_given() {
    let a = sample();
    let mut b = sample();
    b.throughput = a.throughput * 0.8;
    let gates = Gates {
        throughput_drop_pct: Some(10.0),
        ..Gates::default()
    };
    let (_, regressions) = compare(&a, &b, &gates);
    assert_eq!(regressions.len(), 1, "{regressions:?}");
    assert!(
        regressions[0].0.contains("throughput fell"),
        "{regressions:?}"
    );
    let lenient = Gates {
        throughput_drop_pct: Some(25.0),
        ..Gates::default()
    };
    assert!(compare(&a, &b, &lenient).1.is_empty());
    // Ungated: a report, never a failure.
    assert!(compare(&a, &b, &Gates::default()).1.is_empty());
}

#[test]
fn a_report_round_trips_through_json() {
    let r = sample();
    let dir = tempfile::tempdir().unwrap();
    r.write_data(dir.path()).unwrap();
    assert_eq!(Report::load(dir.path()).unwrap(), r);
}
