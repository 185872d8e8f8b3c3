//! Unit tests of `scenario`.

use super::*;

#[test]
fn every_built_in_scenario_parses_and_checks() {
    for (name, text) in BUILT_IN {
        let s = Scenario::parse(text).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(&s.name, name);
    }
}

#[test]
fn a_bad_value_is_named() {
    let err = Scenario::parse("name='x'\nduration_s=1\n[workload]\nhot_share=2.0\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("hot_share"), "{err}");
    let err = Scenario::parse(
        "name='x'\nduration_s=1\n[[faults]]\nkind='kill-service'\nat_s=1\nreplica=3\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("replica 3"), "{err}");
    let err = Scenario::parse("name='x'\nduration_s=1\nspeed=3\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("speed"), "{err}");
}

#[test]
fn unknown_names_list_the_built_ins() {
    let err = Scenario::load("no-such").unwrap_err().to_string();
    assert!(
        err.contains("rush") && err.contains("crash-restart"),
        "{err}"
    );
}
