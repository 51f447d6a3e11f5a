//! The parts of the API's answers a journey relies on, parsed strictly: a field the
//! acknowledgement log needs that is missing or mistyped makes the request a failure.
//! These are the client's view of the API (it may be a remote one), not `api::types`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A payment object as the API returned it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct PaymentSeen {
    pub id: PaymentId,
    pub amount: u64,
    pub currency: CurrencyCode,
    pub status: Status,
    pub amount_captured: u64,
    pub amount_refunded: u64,
}

/// A refund object.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct RefundSeen {
    pub id: String,
    /// The refunded payment's id.
    pub payment: PaymentId,
    pub amount: u64,
}

/// A payment id as the API documents it, `pay_` and a UUID's 32 hex digits, held in 16
/// bytes: the acknowledgement log keeps one per payment of a long run. Hex digits sort
/// as the number does, so the ids' order is the number's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PaymentId(u128);

impl PaymentId {
    /// The low 64 bits (random in a UUIDv7), for spreading ids over shards.
    pub fn low_bits(&self) -> u64 {
        self.0 as u64
    }

    pub fn parse(text: &str) -> Option<PaymentId> {
        let hex = text.strip_prefix("pay_")?;
        if hex.len() != 32 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        u128::from_str_radix(hex, 16).ok().map(PaymentId)
    }
}

impl fmt::Display for PaymentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pay_{:032x}", self.0)
    }
}

impl<'de> Deserialize<'de> for PaymentId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        PaymentId::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{text:?} is not a payment id (pay_ and 32 hex digits)"
            ))
        })
    }
}

impl Serialize for PaymentId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An ISO 4217 code as the API writes it: three lowercase letters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CurrencyCode([u8; 3]);

impl CurrencyCode {
    pub fn parse(text: &str) -> Option<CurrencyCode> {
        let b: [u8; 3] = text.as_bytes().try_into().ok()?;
        b.iter()
            .all(u8::is_ascii_lowercase)
            .then_some(CurrencyCode(b))
    }

    pub fn as_str(&self) -> &str {
        // Three ASCII letters, checked by `parse`.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }
}

impl<'de> Deserialize<'de> for CurrencyCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        CurrencyCode::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "{text:?} is not a currency code (3 lowercase letters)"
            ))
        })
    }
}

impl Serialize for CurrencyCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A payment's status, as the API documents them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    RequiresCapture,
    Succeeded,
    Canceled,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::RequiresCapture => "requires_capture",
            Status::Succeeded => "succeeded",
            Status::Canceled => "canceled",
            Status::Failed => "failed",
        }
    }
}

/// A page of `GET /v1/payments`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Page {
    pub data: Vec<PaymentSeen>,
    pub has_more: bool,
}

/// A decline: the error shape with the failed payment inside.
#[derive(Deserialize)]
pub(super) struct DeclinedPayment {
    pub error: DeclineError,
}

#[derive(Deserialize)]
pub(super) struct DeclineError {
    pub payment: PaymentSeen,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_codes_round_trip_and_refuse_other_shapes() {
        let text = "pay_0190f3a2b4c5d6e7f8091a2b3c4d5e6f";
        let id = PaymentId::parse(text).unwrap();
        assert_eq!(id.to_string(), text);
        assert_eq!(serde_json::to_string(&id).unwrap(), format!("{text:?}"));
        for bad in [
            "pay_1",
            "pay_0190F3A2B4C5D6E7F8091A2B3C4D5E6F",
            "re_0190f3a2b4c5d6e7f8091a2b3c4d5e6f",
            "",
        ] {
            assert_eq!(PaymentId::parse(bad), None, "{bad}");
        }
        let a = PaymentId::parse("pay_0000000000000000000000000000000a").unwrap();
        let b = PaymentId::parse("pay_00000000000000000000000000000010").unwrap();
        assert!(
            a < b && a.to_string() < b.to_string(),
            "ids sort as their text"
        );
        assert_eq!(
            CurrencyCode::parse("eur").map(|c| c.as_str().to_string()),
            Some("eur".into())
        );
        assert!(CurrencyCode::parse("EUR").is_none() && CurrencyCode::parse("euro").is_none());
        assert!(serde_json::from_str::<PaymentSeen>(
            r#"{"id":"pay_1","amount":1,"currency":"usd","status":"succeeded","amount_captured":1,"amount_refunded":0}"#
        )
        .is_err());
    }
}
