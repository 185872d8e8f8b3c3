//! I7 no phantom: an operation answered with an error that does not say "outcome unknown" left
//! nothing behind. A create so answered has no booking (unless a later attempt of it succeeded);
//! a cancel so answered did not cancel (unless another cancel of the booking succeeded or its
//! outcome is unknown).

use super::Verdict;

/// An operation whose every attempt was answered with a definite error, and what the database
/// holds that the answer says is not there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phantom {
    /// The operation.
    pub op: u32,
    /// `create` or `cancel`.
    pub kind: &'static str,
    /// The last attempt's code.
    pub code: String,
    /// What was applied all the same: a booking number, or a cancelled booking.
    pub left: String,
}

/// I7 over `checked` operations answered only with errors; `phantoms` are those whose effect is
/// in the database all the same.
pub fn check_phantoms(checked: usize, phantoms: &[Phantom]) -> Verdict {
    let mut v = Verdict::new(
        "I7",
        "an error answer (other than \"outcome unknown\") leaves nothing behind",
    );
    v.checked = checked;
    for p in phantoms {
        v.violate(format!(
            "op {} ({}): answered {} (not applied) but {}",
            p.op, p.kind, p.code, p.left
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phantom_breaks_i7_and_none_holds_it() {
        assert!(check_phantoms(3, &[]).held);
        let v = check_phantoms(
            3,
            &[Phantom {
                op: 7,
                kind: "create",
                code: "SYS_002".into(),
                left: "booking BK1 exists".into(),
            }],
        );
        assert!(!v.held);
        assert_eq!(v.violations, 1);
        assert!(v.witnesses[0].contains("op 7"), "{:?}", v.witnesses);
    }
}
