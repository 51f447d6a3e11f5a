//! Test cards: the number decides the outcome. The full number lives only in
//! `CardNumber`, whose Debug never shows it; what is kept is brand, last4 and a keyed
//! fingerprint.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// Test numbers with a fixed outcome. Any other number that passes the Luhn check is
/// approved, so load tests can spread traffic over many cards.
pub const TEST_CARDS: &[(&str, CardOutcome)] = &[
    ("4242424242424242", CardOutcome::Approved),
    ("5555555555554444", CardOutcome::Approved),
    ("378282246310005", CardOutcome::Approved),
    ("4000000000000002", CardOutcome::Declined("generic_decline")),
    (
        "4000000000009995",
        CardOutcome::Declined("insufficient_funds"),
    ),
    ("4000000000009987", CardOutcome::Declined("lost_card")),
    ("4000000000000069", CardOutcome::Declined("expired_card")),
    ("4000000000000119", CardOutcome::ProcessorError),
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardOutcome {
    Approved,
    /// The issuer said no; the code is what a client sees as `decline_code`.
    Declined(&'static str),
    /// The processor failed; the payment is recorded as failed with `processing_error`.
    ProcessorError,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CardError {
    #[error("card number must be 12 to 19 digits")]
    BadLength,
    #[error("card number fails the Luhn check")]
    BadChecksum,
    #[error("card has expired")]
    Expired,
    #[error("exp_month must be 1 to 12")]
    BadMonth,
}

/// A full card number (PAN). Debug and Display are redacted; it is dropped after
/// the fingerprint is taken.
#[derive(Clone)]
pub struct CardNumber(String);

impl fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardNumber(****{})", self.last4())
    }
}

impl CardNumber {
    pub fn parse(raw: &str) -> Result<Self, CardError> {
        let digits: String = raw.chars().filter(|c| *c != ' ' && *c != '-').collect();
        if !(12..=19).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CardError::BadLength);
        }
        if !luhn_valid(&digits) {
            return Err(CardError::BadChecksum);
        }
        Ok(CardNumber(digits))
    }

    pub fn last4(&self) -> &str {
        &self.0[self.0.len() - 4..]
    }

    pub fn brand(&self) -> &'static str {
        let n = &self.0;
        let two: u32 = n[..2].parse().unwrap_or(0);
        let four: u32 = n[..4].parse().unwrap_or(0);
        match () {
            _ if n.starts_with('4') => "visa",
            _ if (51..=55).contains(&two) || (2221..=2720).contains(&four) => "mastercard",
            _ if two == 34 || two == 37 => "amex",
            _ if n.starts_with("6011") || n.starts_with("65") => "discover",
            _ => "unknown",
        }
    }

    pub fn outcome(&self) -> CardOutcome {
        TEST_CARDS
            .iter()
            .find(|(number, _)| *number == self.0)
            .map(|(_, o)| *o)
            .unwrap_or(CardOutcome::Approved)
    }

    /// HMAC-SHA256 of the number under the server's key: the same card gives the same
    /// fingerprint on this server, and the number cannot be recovered from it.
    pub fn fingerprint(&self, key: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(self.0.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..12])
    }
}

fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = (b - b'0') as u32;
            if i % 2 == 1 {
                let d2 = d * 2;
                if d2 > 9 { d2 - 9 } else { d2 }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

/// Expiry check against a (year, month) "now".
pub fn check_expiry(exp_month: u8, exp_year: u16, now: (u16, u8)) -> Result<(), CardError> {
    if !(1..=12).contains(&exp_month) {
        return Err(CardError::BadMonth);
    }
    if (exp_year, exp_month) < now {
        return Err(CardError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_test_card_is_luhn_valid() {
        for (n, _) in TEST_CARDS {
            assert!(CardNumber::parse(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn debug_never_shows_the_number() {
        let c = CardNumber::parse("4242 4242 4242 4242").unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("424242424242"));
        assert!(shown.ends_with("4242)"));
    }

    #[test]
    fn brands_and_outcomes() {
        assert_eq!(
            CardNumber::parse("5555555555554444").unwrap().brand(),
            "mastercard"
        );
        assert_eq!(
            CardNumber::parse("378282246310005").unwrap().brand(),
            "amex"
        );
        assert_eq!(
            CardNumber::parse("4000000000009995").unwrap().outcome(),
            CardOutcome::Declined("insufficient_funds")
        );
        assert!(matches!(
            CardNumber::parse("4242424242424241"),
            Err(CardError::BadChecksum)
        ));
    }

    #[test]
    fn fingerprint_is_keyed() {
        let c = CardNumber::parse("4242424242424242").unwrap();
        assert_ne!(c.fingerprint(b"a"), c.fingerprint(b"b"));
        assert_eq!(c.fingerprint(b"a"), c.fingerprint(b"a"));
    }
}
