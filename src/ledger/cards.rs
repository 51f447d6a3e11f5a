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

/// Fewest digits in a row that may be a card number (the shortest PANs in use have 12).
pub const PAN_DIGITS_MIN: usize = 12;

/// `text` with every run of `PAN_DIGITS_MIN` or more digits (single spaces or dashes
/// between them allowed, as people write card numbers) replaced by `[redacted]`: for any
/// text that may echo what a client sent (an error message, a field name), so a card
/// number never comes back in a response or goes into a log, whatever field or type it
/// was sent in.
pub fn redact_card_numbers(text: &str) -> std::borrow::Cow<'_, str> {
    let mut out = String::new();
    let mut copied = 0;
    for run in digit_runs(text).filter(|r| r.digits.len() >= PAN_DIGITS_MIN) {
        out.push_str(&text[copied..run.start]);
        out.push_str("[redacted]");
        copied = run.end;
    }
    if copied == 0 {
        std::borrow::Cow::Borrowed(text)
    } else {
        out.push_str(&text[copied..]);
        std::borrow::Cow::Owned(out)
    }
}

/// Whether `text` holds a card number: 13 to 19 digits written as people write them,
/// passing the Luhn check. For text the API would store (a merchant's name, an
/// Idempotency-Key), which is refused rather than kept; narrower than the redaction, so
/// ids and timestamps in keys pass.
pub fn contains_card_number(text: &str) -> bool {
    digit_runs(text).any(|r| {
        (13..=19).contains(&r.digits.len())
            && grouped_as_cards_are(&r.groups)
            && luhn_valid(&r.digits)
    })
}

/// Written in one piece, in fours (the last group shorter), or as 4-6-5 (Amex) or 4-6-4
/// (Diners): a date and time such as 20261128-022945 is not a card number.
fn grouped_as_cards_are(groups: &[usize]) -> bool {
    match groups {
        [_] => true,
        [4, 6, 5] | [4, 6, 4] => true,
        [rest @ .., last] => rest.iter().all(|g| *g == 4) && (1..=4).contains(last),
        [] => false,
    }
}

/// A run of digits, single spaces or dashes between them allowed.
struct DigitRun {
    start: usize,
    end: usize,
    digits: String,
    /// The digits between separators, in order.
    groups: Vec<usize>,
}

fn digit_runs(text: &str) -> impl Iterator<Item = DigitRun> + '_ {
    let bytes = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() && !bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i >= bytes.len() {
            return None;
        }
        // Digits, each separator followed by a digit.
        let (start, mut end, mut j) = (i, i, i);
        let mut digits = String::new();
        let mut groups = vec![0];
        while j < bytes.len() {
            if bytes[j].is_ascii_digit() {
                digits.push(bytes[j] as char);
                *groups.last_mut().expect("one group at least") += 1;
                j += 1;
                end = j;
            } else if matches!(bytes[j], b' ' | b'-')
                && bytes.get(j + 1).is_some_and(u8::is_ascii_digit)
            {
                groups.push(0);
                j += 1;
            } else {
                break;
            }
        }
        i = end;
        Some(DigitRun {
            start,
            end,
            digits,
            groups,
        })
    })
}

#[cfg(test)]
mod redaction_tests {
    use super::{TEST_CARDS, contains_card_number, redact_card_numbers as r};

    #[test]
    fn card_numbers_are_found_in_text_and_ids_and_uuids_are_not() {
        for (number, _) in TEST_CARDS {
            assert!(contains_card_number(number), "{number}");
            assert!(contains_card_number(&format!("key-{number}-x")), "{number}");
        }
        assert!(contains_card_number("Acme 4242 4242 4242 4242"));
        assert!(contains_card_number("4242-4242-4242-4242"));
        assert!(contains_card_number("3782 822463 10005"));
        for fine in [
            "123e4567-e89b-12d3-a456-426614174000",
            "20261128-021223-kill3-s0-123456",
            "20261128-022945-smoke-m0",
            "3782 822463 10005 9",
            "1700000000000",
            "4242424242424241",
            "order 12345",
        ] {
            assert!(!contains_card_number(fine), "{fine}");
        }
    }

    #[test]
    fn card_numbers_are_redacted_however_written_and_short_numbers_are_kept() {
        assert_eq!(
            r("invalid type: integer `4242424242424242`, expected a string"),
            "invalid type: integer `[redacted]`, expected a string"
        );
        assert_eq!(r("card 4242 4242 4242 4242 x"), "card [redacted] x");
        assert_eq!(r("4000-0000-0000-0002"), "[redacted]");
        assert_eq!(
            r("a 378282246310005 b 5555555555554444"),
            "a [redacted] b [redacted]"
        );
        assert_eq!(
            r("amount 99999999999 is too large"),
            "amount 99999999999 is too large"
        );
        assert_eq!(r("line 1 column 12"), "line 1 column 12");
        assert_eq!(r("1234 5678 - 9"), "1234 5678 - 9");
        assert_eq!(r("ends with 4242424242424242"), "ends with [redacted]");
    }
}
