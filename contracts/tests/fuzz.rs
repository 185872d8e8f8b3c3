//! Property-based fuzzing of the decoders: the NestJS envelope and every payload and reply type of
//! the catalogue. Inputs are arbitrary bytes, mutations of the canonical fixtures (the seed
//! corpus, `contracts/fixtures/`), and arbitrary JSON. Nothing may panic; whatever decodes must
//! re-encode to a value that decodes to itself. Failures are kept by proptest in
//! `contracts/tests/fuzz.proptest-regressions` (commit it: it is the corpus of found cases).
//! `PROPTEST_CASES` raises the budget; the default keeps CI to a few seconds.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use contracts::catalog::{ERROR, SUBJECTS};
use contracts::Codec;
use proptest::prelude::*;
use serde_json::Value;

fn corpus() -> Vec<Vec<u8>> {
    fn walk(dir: &Path, out: &mut Vec<Vec<u8>>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(std::fs::read(&p).unwrap());
            }
        }
    }
    let mut out = Vec::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures"),
        &mut out,
    );
    assert!(out.len() > 50, "the fixtures are the seed corpus");
    out
}

/// Every decoder of the catalogue on `value`: no panic, and a decoded value is stable.
fn every_type(value: &Value) {
    let specs = SUBJECTS
        .iter()
        .flat_map(|s| std::iter::once(s.payload).chain(s.reply))
        .chain(std::iter::once(ERROR));
    for spec in specs {
        if let Ok(encoded) = (spec.roundtrip)(value.clone()) {
            let again = (spec.roundtrip)(encoded.clone())
                .unwrap_or_else(|e| panic!("{spec:?}: re-decoding its own output failed: {e}"));
            assert_eq!(again, encoded, "{spec:?}: not stable");
        }
    }
}

fn every_decoder(bytes: &[u8]) {
    let codec = Codec::default();
    if let Ok(inbound) = codec.decode_inbound(bytes) {
        every_type(&inbound.data);
    }
    if let Ok(reply) = codec.decode_reply(bytes) {
        if let contracts::ReplyOutcome::Response(v) | contracts::ReplyOutcome::Err(v) =
            reply.outcome
        {
            every_type(&v);
        }
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Delete(usize, usize),
    Insert(usize, u8),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (
            any::<usize>(),
            prop::sample::select(b"{}[]\",:0-9e.ntfu\\ ".to_vec())
        )
            .prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match *m {
            Mutation::Flip(i, b) => {
                if let Some(x) = bytes.get_mut(i % len) {
                    *x ^= b;
                }
            }
            Mutation::Delete(i, n) => {
                let at = i % len;
                let end = (at + n).min(bytes.len());
                if at < end {
                    bytes.drain(at..end);
                }
            }
            Mutation::Insert(i, b) => bytes.insert((i % len).min(bytes.len()), b),
            Mutation::Truncate(i) => bytes.truncate(i % len),
        }
    }
    bytes
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-zA-Z0-9가-힣:.@ -]{0,24}".prop_map(Value::from),
        prop::sample::select(vec![
            "2026-12-01",
            "2026-12-01T09:00:00.000Z",
            "09:00",
            "CONFIRMED",
            "card",
            "BK-1234ABCD-5678"
        ])
        .prop_map(Value::from),
    ];
    let keys = prop::sample::select(vec![
        "id",
        "userId",
        "gameTimeSlotId",
        "playerCount",
        "timeSlotId",
        "gameId",
        "date",
        "status",
        "page",
        "limit",
        "dto",
        "reason",
        "bookingNumber",
        "userEmail",
        "userName",
        "idempotencyKey",
        "success",
        "data",
        "error",
        "code",
        "message",
        "maxPlayers",
        "bookedPlayers",
        "price",
        "startTime",
        "endTime",
        "pattern",
        "response",
        "err",
        "isDisposed",
    ]);
    leaf.prop_recursive(4, 48, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(keys.clone(), inner, 0..10).prop_map(|m| Value::Object(
                m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
            )),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_a_decoder(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        every_decoder(&bytes);
    }

    #[test]
    fn mutated_fixtures_never_panic_and_decode_stably(
        pick in any::<prop::sample::Index>(),
        mutations in prop::collection::vec(mutation(), 0..6),
    ) {
        let corpus = corpus();
        let seed = corpus[pick.index(corpus.len())].clone();
        every_decoder(&apply(seed, &mutations));
    }

    #[test]
    fn arbitrary_json_never_panics_a_payload_decoder(value in json()) {
        every_type(&value);
        let body = serde_json::json!({"pattern": "booking.create", "data": value, "id": "x"});
        every_decoder(&serde_json::to_vec(&body).unwrap());
    }
}
