//! Money as integer minor units with a currency. Never floats.

use serde::{Deserialize, Serialize};
use std::fmt;

/// ISO 4217 currencies we accept, with their minor-unit exponent.
/// Zero-decimal currencies (JPY, KRW, ...) take amounts in whole units; three-decimal
/// ones (BHD, KWD, ...) in thousandths.
const CURRENCIES: &[(&str, u8)] = &[
    ("aed", 2),
    ("aud", 2),
    ("bhd", 3),
    ("brl", 2),
    ("cad", 2),
    ("chf", 2),
    ("clp", 0),
    ("cny", 2),
    ("czk", 2),
    ("dkk", 2),
    ("eur", 2),
    ("gbp", 2),
    ("hkd", 2),
    ("huf", 2),
    ("idr", 2),
    ("ils", 2),
    ("inr", 2),
    ("isk", 0),
    ("jod", 3),
    ("jpy", 0),
    ("krw", 0),
    ("kwd", 3),
    ("mxn", 2),
    ("myr", 2),
    ("nok", 2),
    ("nzd", 2),
    ("omr", 3),
    ("php", 2),
    ("pln", 2),
    ("pyg", 0),
    ("sar", 2),
    ("sek", 2),
    ("sgd", 2),
    ("thb", 2),
    ("tnd", 3),
    ("try", 2),
    ("ugx", 0),
    ("usd", 2),
    ("vnd", 0),
    ("xaf", 0),
    ("xof", 0),
    ("zar", 2),
];

/// The largest amount accepted, in major units, whatever the currency: 100 million
/// less one minor unit. Bounds every sum we keep far below i64::MAX.
const AMOUNT_MAX_MAJOR: u64 = 100_000_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MoneyError {
    #[error("unsupported currency {0:?}: use a lowercase ISO 4217 code such as \"usd\"")]
    UnknownCurrency(String),
    #[error("amount must be a positive integer number of minor units")]
    NotPositive,
    #[error("amount {amount} is above the maximum {max} for {currency}")]
    TooLarge {
        amount: u64,
        max: u64,
        currency: Currency,
    },
}

/// A supported ISO 4217 currency, stored as its lowercase code.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency {
    index: u8,
}

impl Currency {
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        CURRENCIES
            .iter()
            .position(|(c, _)| *c == code)
            .map(|i| Currency { index: i as u8 })
            .ok_or_else(|| MoneyError::UnknownCurrency(code.to_string()))
    }

    pub fn code(self) -> &'static str {
        CURRENCIES[self.index as usize].0
    }

    /// Digits after the decimal point: 2 for USD, 0 for JPY, 3 for KWD.
    pub fn exponent(self) -> u8 {
        CURRENCIES[self.index as usize].1
    }

    /// The largest amount in minor units this currency accepts.
    pub fn amount_max_minor(self) -> u64 {
        AMOUNT_MAX_MAJOR * 10u64.pow(self.exponent() as u32) - 1
    }

    pub fn all() -> impl Iterator<Item = &'static str> {
        CURRENCIES.iter().map(|(c, _)| *c)
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Currency::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.code().to_string()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A positive amount of one currency in minor units, within the currency's bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Money {
    amount_minor: u64,
    currency: Currency,
}

impl Money {
    pub fn new(amount_minor: i64, currency: Currency) -> Result<Self, MoneyError> {
        if amount_minor <= 0 {
            return Err(MoneyError::NotPositive);
        }
        let amount = amount_minor as u64;
        let max = currency.amount_max_minor();
        if amount > max {
            return Err(MoneyError::TooLarge {
                amount,
                max,
                currency,
            });
        }
        Ok(Money {
            amount_minor: amount,
            currency,
        })
    }

    pub fn amount_minor(self) -> u64 {
        self.amount_minor
    }

    pub fn currency(self) -> Currency {
        self.currency
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_decimal_currencies_have_their_own_bound() {
        let jpy = Currency::parse("jpy").unwrap();
        let usd = Currency::parse("usd").unwrap();
        assert_eq!(jpy.exponent(), 0);
        assert_eq!(jpy.amount_max_minor(), 99_999_999);
        assert_eq!(usd.amount_max_minor(), 9_999_999_999);
        assert!(Money::new(100_000_000, jpy).is_err());
        assert!(Money::new(100_000_000, usd).is_ok());
    }

    #[test]
    fn rejects_unknown_and_uppercase_codes() {
        assert!(Currency::parse("USD").is_err());
        assert!(Currency::parse("xyz").is_err());
        assert_eq!(Currency::parse("kwd").unwrap().exponent(), 3);
    }

    #[test]
    fn rejects_zero_and_negative() {
        let usd = Currency::parse("usd").unwrap();
        assert_eq!(Money::new(0, usd), Err(MoneyError::NotPositive));
        assert_eq!(Money::new(-5, usd), Err(MoneyError::NotPositive));
    }
}
