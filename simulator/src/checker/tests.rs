//! Unit tests of `checker`.

use super::*;

#[test]
fn oversell_and_cache_drift_are_witnessed() {
    let mut i1 = Verdict::new("I1", "");
    let mut i2 = Verdict::new("I2", "");
    let slots = [
        SlotSnapshot {
            id: 1,
            max_players: 4,
            cached: 4,
            sum: 4,
        },
        SlotSnapshot {
            id: 2,
            max_players: 4,
            cached: 4,
            sum: 6,
        },
    ];
    check_slots(1500, &slots, &mut i1, &mut i2);
    assert!(!i1.held && !i2.held);
    assert_eq!(i1.witnesses, ["t=1.50s slot 2: 6 players on 4 seats"]);
    assert_eq!(i1.checked, 2);
}

#[test]
fn witnesses_are_capped_but_violations_counted() {
    let mut v = Verdict::new("I1", "");
    for n in 0..20 {
        v.violate(n.to_string());
    }
    assert_eq!((v.violations, v.witnesses.len()), (20, WITNESSES));
}

#[test]
fn lost_acknowledgements_and_uncancelled_cancels_fail_i4() {
    let stored = HashMap::from([
        ("BK-1".to_owned(), "CONFIRMED".to_owned()),
        ("BK-2".to_owned(), "CONFIRMED".to_owned()),
    ]);
    let acks = [
        Acknowledged {
            op: 1,
            kind: "create",
            number: "BK-1".into(),
        },
        Acknowledged {
            op: 2,
            kind: "cancel",
            number: "BK-2".into(),
        },
        Acknowledged {
            op: 3,
            kind: "create",
            number: "BK-3".into(),
        },
    ];
    let v = check_acknowledged(&acks, &stored);
    assert_eq!(v.violations, 2, "{:?}", v.witnesses);
}

#[test]
fn a_second_booking_for_one_operation_fails_i5() {
    let per_op = HashMap::from([
        (4, vec!["BK-a".into(), "BK-b".into()]),
        (5, vec!["BK-c".into()]),
    ]);
    let v = check_retries(&per_op, &HashMap::new(), &[], 2);
    assert!(!v.held);
    assert!(v.witnesses[0].contains("op 4"));
}

#[test]
fn a_refusal_of_a_keyed_attempt_whose_key_owns_a_booking_fails_i5() {
    let per_op = HashMap::from([(4, vec!["BK-a".into()])]);
    let late = |op, attempt| LateRefusal {
        op,
        attempt,
        code: "BUS_004".to_owned(),
        after_ms: 41,
    };
    let refused = [late(4, 1), late(9, 0)];
    let v = check_retries(&per_op, &HashMap::new(), &refused, 2);
    assert_eq!(
        v.witnesses,
        ["op 4 attempt 1: refused with BUS_004, decided 41 ms after its key made booking BK-a"]
    );
}

#[test]
fn deliveries_must_match() {
    let good = Deliveries {
        seat_rows: 10,
        applied: 10,
        duplicated: 3,
        deduplicated: 3,
        event_rows: 10,
        stream_messages: Some(10),
        ..Deliveries::default()
    };
    assert!(check_deliveries(&good).held);
    let twice = Deliveries {
        applied: 11,
        ..good.clone()
    };
    assert!(!check_deliveries(&twice).held);
    let undrained = Deliveries {
        stream_messages: Some(9),
        ..good.clone()
    };
    assert!(!check_deliveries(&undrained).held);
    let swallowed = Deliveries {
        refusals_unrecorded: vec![("e-1".into(), "SENT".into())],
        ..good.clone()
    };
    assert_eq!(
        check_deliveries(&swallowed).witnesses,
        ["course-service refused event e-1, but its row is SENT, not REJECTED"]
    );
    let recorded = Deliveries {
        rejected: vec![("gameTimeSlots.book".into(), "no".into())],
        ..good.clone()
    };
    let v = check_deliveries(&recorded);
    assert!(v.held && v.notes.len() == 1);
    let resent = Deliveries {
        stream_messages: None,
        events_seen: Some(vec![EventSeen {
            id: "e-2".into(),
            seen: 12,
            attempts: 12,
            sent: false,
        }]),
        stranded: vec![(
            "booking.confirmed".into(),
            12,
            "JetStream ack timed out".into(),
        )],
        ..good
    };
    assert_eq!(check_deliveries(&resent).violations, 1);
}

#[test]
fn convergence_compares_every_slot() {
    let stub = BTreeMap::from([(1, 2), (2, 0)]);
    let sums = HashMap::from([(1, 2)]);
    let none = HashMap::new();
    assert!(check_convergence(&stub, &sums, &none, Some(0.5)).held);
    let sums = HashMap::from([(1, 3)]);
    let v = check_convergence(&stub, &sums, &none, None);
    assert_eq!(v.witnesses, ["slot 1: course-stub 2, bookings 3"]);
}

#[test]
fn a_divergence_counts_only_when_refusals_do_not_account_for_it() {
    // Course-service booked 2 seats itself and refused a 2-seat book: 4 = 4 + 2 - 2.
    let stub = BTreeMap::from([(1, 4)]);
    let sums = HashMap::from([(1, 4)]);
    let accounted = HashMap::from([(
        1,
        Accounted {
            external: 2,
            undelivered: -2,
            why: Some("Not enough capacity".into()),
        },
    )]);
    assert!(check_convergence(&stub, &sums, &accounted, Some(1.0)).held);
    // The same refusal marked sent: course-service holds 4, but 6 was expected.
    let silent = HashMap::from([(
        1,
        Accounted {
            external: 2,
            undelivered: 0,
            why: None,
        },
    )]);
    let v = check_convergence(&stub, &sums, &silent, Some(1.0));
    assert!(!v.held);
    assert!(v.witnesses[0].starts_with("slot 1: course-stub 4, expected 6"));
    // A refused 2-seat book alone: course-service holds 2 of booking-service's 4, as recorded.
    let refused = HashMap::from([(
        1,
        Accounted {
            external: 0,
            undelivered: -2,
            why: Some("Not enough capacity".into()),
        },
    )]);
    let stub = BTreeMap::from([(1, 2)]);
    let v = check_convergence(&stub, &sums, &refused, Some(1.0));
    assert!(
        v.held && v.notes[0].contains("Not enough capacity"),
        "{v:?}"
    );
}
