//! Unit tests of `trace`.

use super::*;
use crate::scenario::BUILT_IN;

#[test]
fn the_same_seed_gives_the_same_bytes_and_another_seed_does_not() {
    for (name, _) in BUILT_IN {
        let scenario = Scenario::load(name).unwrap();
        let a = Trace::expand(&scenario, 7);
        let b = Trace::expand(&scenario, 7);
        assert_eq!(a.to_jsonl(), b.to_jsonl(), "{name}");
        assert_eq!(a.hash(), b.hash());
        assert_ne!(a.hash(), Trace::expand(&scenario, 8).hash(), "{name}");
    }
}

#[test]
fn a_written_trace_reads_back_equal() {
    let scenario = Scenario::load("crash-restart").unwrap();
    let trace = Trace::expand(&scenario, 3);
    let back = Trace::parse(&trace.to_jsonl()).unwrap();
    assert_eq!(back, trace);
    assert_eq!(back.hash(), trace.hash());
}

#[test]
fn later_operations_only_name_earlier_creates() {
    let scenario = Scenario::load("steady").unwrap();
    let trace = Trace::expand(&scenario, 1);
    assert!(trace.header.derived.cancels > 0 && trace.header.derived.updates > 0);
    for op in &trace.ops {
        if let Action::Cancel { of } | Action::Update { of, .. } | Action::FindById { of } =
            &op.action
        {
            let target = &trace.ops[*of as usize];
            assert!(matches!(target.action, Action::Create { .. }));
            assert!(target.t_ms + 300 <= op.t_ms);
        }
    }
    let cancelled: Vec<u32> = trace
        .ops
        .iter()
        .filter_map(|o| match o.action {
            Action::Cancel { of } => Some(of),
            _ => None,
        })
        .collect();
    let mut unique = cancelled.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        cancelled.len(),
        "no booking is cancelled twice"
    );
}

#[test]
fn the_rush_lands_on_its_slots_within_its_spread() {
    let scenario = Scenario::load("rush").unwrap();
    let trace = Trace::expand(&scenario, 1);
    let rush: Vec<&Op> = trace
        .ops
        .iter()
        .filter(|o| matches!(o.action, Action::Create { rush: true, .. }))
        .collect();
    assert_eq!(rush.len(), 1000);
    assert!(rush.iter().all(|o| (1000..1200).contains(&o.t_ms)));
    assert!(rush
        .iter()
        .all(|o| matches!(o.action, Action::Create { slot, .. } if slot <= 2)));
}

#[test]
fn ramping_arrivals_follow_their_stages() {
    let scenario = Scenario::load("ramp").unwrap();
    let trace = Trace::expand(&scenario, 1);
    let in_second = |s: u64| trace.ops.iter().filter(|o| o.t_ms / 1000 == s).count() as f64;
    // 50/s rising to 400/s over 6 s: about 79 in the first second, about 371 in the sixth,
    // then 400 a second.
    let (first, sixth, last) = (in_second(0), in_second(5), in_second(7));
    assert!((40.0..130.0).contains(&first), "first second {first}");
    assert!((300.0..450.0).contains(&sixth), "sixth second {sixth}");
    assert!((320.0..480.0).contains(&last), "last second {last}");
    // The same seed, the same bytes.
    assert_eq!(trace.hash(), Trace::expand(&scenario, 1).hash());
}
