//! Unit tests of `charts`.

#![allow(clippy::unwrap_used)]

#[test]
fn a_written_report_has_its_page() {
    let r = crate::report::tests::sample();
    let dir = tempfile::tempdir().unwrap();
    super::write(&r, dir.path()).unwrap();
    assert!(dir.path().join("index.html").exists());
    assert!(dir.path().join("report.json").exists());
}

/// The page a k6 user reads: HTML tables (no markdown), an error-share column, a legend of the
/// codes that occurred, the scenario's parameters and the host.
#[test]
fn the_page_has_tables_a_code_legend_parameters_and_host() {
    let mut r = crate::report::tests::sample();
    if let Some(create) = r.ops.values_mut().next() {
        create.codes.insert("BUS_004".into(), 3);
    }
    let page = super::html(&r).unwrap();
    assert!(!page.contains("<pre>"), "markdown left in the page");
    assert!(!page.contains("**"), "markdown left in the page");
    assert!(page.contains("<th>error share</th>"));
    assert!(page.contains("<h2>Error codes</h2>") && page.contains("Expected when many users"));
    assert!(page.contains("<h2>Scenario</h2>") && page.contains("duration"));
    assert!(page.contains("<h2>Host</h2>") && page.contains("cores"));
}

/// A report with one fault, a violated I1 seen at 1.2 s, a refused and a failed create, and
/// service counters scraped across a replica restart.
fn eventful() -> crate::report::Report {
    use crate::report::{Bucket, FaultSpan, Latency, MetricsAt};
    let mut r = crate::report::tests::sample();
    r.bucket_s = 0.1;
    r.load_s = 2.0;
    r.timeline = (0..20)
        .map(|i| Bucket {
            t_s: f64::from(i) / 10.0,
            offered: 5,
            done: 5,
            ok: 3,
            refused: 1,
            errors: 1,
            unknown: 0,
            ops: [("create".to_owned(), (5, Latency::default()))].into(),
        })
        .collect();
    r.faults = vec![FaultSpan {
        kind: "kill-replica".into(),
        start_ms: 500,
        end_ms: 900,
    }];
    r.invariants[0].violate_at(1200, "t=1.20s slot 1: 5 players on 4 seats".into());
    r.invariants[0].violate_at(1400, "t=1.40s slot 1: 5 players on 4 seats".into());
    let mut i2 = crate::checker::Verdict::new("I2", "cache");
    i2.violate_at(
        1200,
        "t=1.20s slot 1: cache says 4, bookings sum to 5".into(),
    );
    r.invariants.push(i2);
    r.metrics = [(0, 10.0), (1000, 110.0), (2000, 5.0)]
        .map(|(t_ms, created)| MetricsAt {
            t_ms,
            replicas: 2,
            values: [
                ("booking_created_total".to_owned(), created),
                (
                    "course_service_breaker_state{replica=\"0\"}".to_owned(),
                    1.0,
                ),
            ]
            .into(),
        })
        .to_vec();
    r
}

/// Faults are labelled by kind with a legend, violations are marked at their time, outcomes are
/// stacked per bucket, the breaker has its own chart of named states, counters are rates.
#[test]
fn the_charts_label_faults_mark_violations_and_stack_outcomes() {
    let page = super::html(&eventful()).unwrap();
    assert!(page.contains("fault: kill-replica"), "no fault legend");
    assert!(page.contains("I1, I2 violated"), "no violation marker");
    assert_eq!(
        page.matches("I1, I2 violated").count(),
        7,
        "one mark on each of the 7 charts over time"
    );
    assert!(page.contains("<h2>Outcomes over time</h2>"));
    assert!(page.contains("refused by a rule") && page.contains("no answer"));
    assert!(page.contains("per 100 ms"), "short runs get short buckets");
    assert!(page.contains("half-open") && page.contains("replica 0"));
    assert!(page.contains("booking_created_total /s"));
}

/// Between scrapes 100 bookings in 1 s is 100/s; a drop (a restarted replica) is a gap.
#[test]
fn counters_become_rates_and_a_reset_is_a_gap() {
    let r = eventful();
    let rates = super::list::rates(&r.metrics, "booking_created_total");
    assert_eq!(rates.len(), 2);
    assert_eq!(rates[0], (1.0, 100.0));
    assert!(rates[1].1.is_nan());
}

/// With 5 answers in a bucket, p50 and max are drawn; p90, p99 and p99.9 are gaps.
#[test]
fn percentiles_are_gaps_where_a_bucket_is_thin() {
    let r = eventful();
    let series = super::list::latency(&r, "create", r.bucket_s);
    let drawn: Vec<(&str, bool)> = series
        .iter()
        .map(|s| (s.name.as_str(), s.points.iter().all(|p| p.1.is_finite())))
        .collect();
    assert_eq!(
        drawn,
        [
            ("p50", true),
            ("p90", false),
            ("p99", false),
            ("p99.9", false),
            ("max", true)
        ]
    );
}

/// `(attribute → value, inner text)` of every `<tag …>` in an SVG, for layout assertions.
fn elements(svg: &str, tag: &str) -> Vec<(std::collections::HashMap<String, String>, String)> {
    let open = format!("<{tag} ");
    svg.split(&open)
        .skip(1)
        .map(|rest| {
            let end = rest.find('>').unwrap();
            let attrs = rest[..end]
                .split("\" ")
                .filter_map(|kv| kv.split_once("=\""))
                .map(|(k, v)| {
                    (
                        k.trim().to_owned(),
                        v.trim_end_matches(['"', '/']).to_owned(),
                    )
                })
                .collect();
            let inner = rest[end + 1..]
                .split('<')
                .next()
                .unwrap_or("")
                .trim()
                .to_owned();
            (attrs, inner)
        })
        .collect()
}

/// Each label sits level with the middle of its own bar, the first bar is on top, and lengths
/// are linear: 1,000 is ten times 100, and each bar ends in its count.
#[test]
fn bar_labels_sit_on_their_bars_and_lengths_are_linear() {
    let bars = [("alpha", 1000.0), ("beta", 100.0), ("gamma", 10.0)]
        .map(|(l, v)| (l.to_owned(), v))
        .to_vec();
    let svg = super::bars::bar_chart("t", &bars, "operations").unwrap();
    let num =
        |m: &std::collections::HashMap<String, String>, k: &str| -> f64 { m[k].parse().unwrap() };
    let rects: Vec<_> = elements(&svg, "rect")
        .into_iter()
        .map(|(a, _)| a)
        .filter(|a| {
            a.get("fill")
                .is_some_and(|f| f.eq_ignore_ascii_case("#1F77B4"))
        })
        .collect();
    assert_eq!(rects.len(), 3, "{svg}");
    let texts = elements(&svg, "text");
    let mut middles = Vec::new();
    for (i, (label, _)) in bars.iter().enumerate() {
        let (attrs, _) = texts.iter().find(|(_, t)| t == label).expect(&svg);
        let y = num(attrs, "y");
        let bar = &rects[i];
        let (top, h) = (num(bar, "y"), num(bar, "height"));
        let middle = top + h / 2.0;
        assert!(
            (y - middle).abs() <= h / 4.0,
            "label {label} at y={y}, its bar spans {top}..{}",
            top + h
        );
        middles.push(middle);
        assert!(texts
            .iter()
            .any(|(_, t)| t.trim() == super::bars::thousands(bars[i].1)));
    }
    assert!(
        middles[0] < middles[1] && middles[1] < middles[2],
        "first bar on top"
    );
    let w: Vec<f64> = rects.iter().map(|r| num(r, "width")).collect();
    assert!(
        (w[0] / w[1] - 10.0).abs() < 0.5 && (w[1] / w[2] - 10.0).abs() < 1.5,
        "{w:?}"
    );
}
