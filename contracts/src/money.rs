//! Whole-won amounts.
//!
//! Prices are whole Korean won. The reference stores them as `DECIMAL(10,2)` and, depending on the
//! code path, sends them as JSON numbers (`15000`), as fractional numbers (`15000.00` after a
//! `Number(...)`) or as strings (Prisma's `Decimal` serializes as `"15000"`). [`Won`] accepts all of
//! those on input when the value is a whole number, and always prints a JSON integer.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The largest amount a `DECIMAL(10,2)` column holds, in whole won.
pub const MAX_WON: i64 = 99_999_999;

/// An amount of money in whole won, `0..=MAX_WON`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, JsonSchema)]
#[schemars(transparent)]
pub struct Won(#[schemars(range(min = 0, max = 99_999_999))] pub i64);

impl Won {
    /// Zero won.
    pub const ZERO: Won = Won(0);

    /// The amount as an integer.
    pub fn get(self) -> i64 {
        self.0
    }

    /// `floor(self * percent / 100)`, the reference's fee rule.
    pub fn percent_floor(self, percent: i64) -> Won {
        Won(self.0 * percent / 100)
    }
}

/// The reference's service fee: 3 % of the players' total, floored.
pub const SERVICE_FEE_PERCENT: i64 = 3;

/// What a booking costs: the players' total, the service fee and the sum the payment asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// `price_per_person × players`.
    pub amount: Won,
    /// [`SERVICE_FEE_PERCENT`] of `amount`, floored.
    pub fee: Won,
    /// `amount + fee`.
    pub total: Won,
}

impl Charge {
    /// The charge for `players` at `price_per_person`, or `None` when its total would pass
    /// [`MAX_WON`], the most the money columns (`DECIMAL(10,2)`) hold.
    pub fn checked(price_per_person: Won, players: i32) -> Option<Self> {
        let amount = price_per_person.get().checked_mul(i64::from(players))?;
        let fee = amount.checked_mul(SERVICE_FEE_PERCENT)? / 100;
        let total = amount.checked_add(fee)?;
        (0..=MAX_WON).contains(&total).then_some(Self {
            amount: Won(amount),
            fee: Won(fee),
            total: Won(total),
        })
    }

    /// The charge for `players` at `price_per_person`, the one fee rule every writer uses.
    pub fn of(price_per_person: Won, players: i32) -> Self {
        let amount = Won(price_per_person.get() * i64::from(players));
        let fee = amount.percent_floor(SERVICE_FEE_PERCENT);
        Self {
            amount,
            fee,
            total: Won(amount.get() + fee.get()),
        }
    }
}

impl std::fmt::Display for Won {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for Won {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.0)
    }
}

impl<'de> Deserialize<'de> for Won {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Won;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "a whole number of won between 0 and {MAX_WON}")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Won, E> {
                if (0..=MAX_WON).contains(&v) {
                    Ok(Won(v))
                } else {
                    Err(E::custom(format!("amount {v} is outside 0..={MAX_WON}")))
                }
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Won, E> {
                i64::try_from(v)
                    .map_err(|_| E::custom(format!("amount {v} is too large")))
                    .and_then(|v| self.visit_i64(v))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Won, E> {
                if v.fract() == 0.0 && v >= 0.0 && v <= MAX_WON as f64 {
                    self.visit_i64(v as i64)
                } else {
                    Err(E::custom(format!(
                        "amount {v} is not a whole number of won in range"
                    )))
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Won, E> {
                let whole = v
                    .strip_suffix(".00")
                    .or_else(|| v.strip_suffix(".0"))
                    .unwrap_or(v);
                if whole.is_empty() || whole.len() > 8 || !whole.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(E::custom(format!(
                        "amount {v:?} is not a whole number of won"
                    )));
                }
                whole
                    .parse::<i64>()
                    .map_err(|e| E::custom(format!("amount {v:?}: {e}")))
                    .and_then(|n| self.visit_i64(n))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<Won, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn integers_fractions_and_decimal_strings_are_accepted_when_whole() {
        assert_eq!(parse("15000").unwrap(), Won(15000));
        assert_eq!(parse("15000.0").unwrap(), Won(15000));
        assert_eq!(parse("\"15000\"").unwrap(), Won(15000));
        assert_eq!(parse("\"15000.00\"").unwrap(), Won(15000));
    }

    #[test]
    fn fractions_negatives_and_huge_amounts_are_rejected() {
        assert!(parse("15000.5").is_err());
        assert!(parse("-1").is_err());
        assert!(parse("100000000").is_err());
        assert!(parse("\"12a\"").is_err());
        assert!(parse("\"\"").is_err());
        assert!(parse("true").is_err());
    }

    #[test]
    fn the_fee_is_floored() {
        assert_eq!(Won(15_050).percent_floor(3), Won(451));
    }

    #[test]
    fn a_charge_past_what_the_money_columns_hold_is_none() {
        assert_eq!(
            Charge::checked(Won(15_050), 3),
            Some(Charge::of(Won(15_050), 3))
        );
        // 97,087,378 + 2,912,621 = 99,999,999: the most a booking may cost.
        assert_eq!(
            Charge::checked(Won(97_087_378), 1).map(|c| c.total),
            Some(Won(MAX_WON))
        );
        assert_eq!(Charge::checked(Won(97_087_379), 1), None);
        assert_eq!(Charge::checked(Won(MAX_WON), 3), None);
        assert_eq!(Charge::checked(Won(MAX_WON), i32::MAX), None);
    }

    #[test]
    fn a_charge_is_the_players_total_plus_the_floored_fee() {
        let c = Charge::of(Won(15_050), 3);
        assert_eq!(
            (c.amount, c.fee, c.total),
            (Won(45_150), Won(1_354), Won(46_504))
        );
    }
}
