//! Request and response bodies, as the OpenAPI document shows them.

use crate::ledger::{Payment, PaymentStatus};
use crate::store::{BalanceLine, Merchant, Refund};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A test card. The number decides the outcome (see the README's table) and is never
/// stored or logged: only brand, last4 and a keyed fingerprint are kept.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardInput {
    #[schema(example = "4242424242424242")]
    pub number: String,
    #[schema(example = 12)]
    #[serde(deserialize_with = "whole::number")]
    pub exp_month: u8,
    #[schema(example = 2030)]
    #[serde(deserialize_with = "whole::number")]
    pub exp_year: u16,
    #[schema(example = "123")]
    pub cvc: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePaymentRequest {
    /// Integer minor units (cents for usd, yen for jpy), at least 1.
    #[schema(example = 2500)]
    #[serde(deserialize_with = "whole::number")]
    pub amount: i64,
    /// Lowercase ISO 4217 code.
    #[schema(example = "usd")]
    pub currency: String,
    pub card: CardInput,
    /// Capture at once (default), or only authorize and capture later.
    #[serde(default = "default_true")]
    pub capture: bool,
}

/// JSON has one kind of number: 2500.0 is the integer 2500, as JSON Schema (and so the
/// OpenAPI document) counts it; 2500.5, text or a number out of the field's range is
/// refused.
mod whole {
    use serde::de::{Deserializer, Error, Unexpected, Visitor};
    use std::fmt;
    use std::marker::PhantomData;

    pub fn number<'de, D: Deserializer<'de>, T: TryFrom<i128>>(d: D) -> Result<T, D::Error> {
        d.deserialize_any(Whole(PhantomData))
    }

    pub fn option<'de, D: Deserializer<'de>, T: TryFrom<i128>>(
        d: D,
    ) -> Result<Option<T>, D::Error> {
        d.deserialize_option(Optional(PhantomData))
    }

    struct Whole<T>(PhantomData<T>);

    impl<T: TryFrom<i128>> Whole<T> {
        fn fit<E: Error>(&self, v: i128, unexpected: Unexpected) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::invalid_value(unexpected, self))
        }
    }

    impl<T: TryFrom<i128>> Visitor<'_> for Whole<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "an integer that fits {}", std::any::type_name::<T>())
        }

        fn visit_i64<E: Error>(self, v: i64) -> Result<T, E> {
            self.fit(v.into(), Unexpected::Signed(v))
        }

        fn visit_u64<E: Error>(self, v: u64) -> Result<T, E> {
            self.fit(v.into(), Unexpected::Unsigned(v))
        }

        fn visit_f64<E: Error>(self, v: f64) -> Result<T, E> {
            // i128 holds every f64 integer a target type could take; the cast saturates
            // beyond, and the range check then refuses it.
            if v.fract() != 0.0 {
                return Err(E::invalid_type(Unexpected::Float(v), &self));
            }
            self.fit(v as i128, Unexpected::Float(v))
        }
    }

    struct Optional<T>(PhantomData<T>);

    impl<'de, T: TryFrom<i128>> Visitor<'de> for Optional<T> {
        type Value = Option<T>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "an integer or null")
        }

        fn visit_none<E: Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }

        fn visit_unit<E: Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
            number(d).map(Some)
        }
    }
}

fn default_true() -> bool {
    true
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureRequest {
    /// Capture this much (minor units) and release the rest; all of it when absent.
    #[serde(default, deserialize_with = "whole::option")]
    pub amount: Option<i64>,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundRequest {
    /// Refund this much (minor units); all that remains refundable when absent.
    #[serde(default, deserialize_with = "whole::option")]
    pub amount: Option<i64>,
}

#[derive(Deserialize, Default, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMerchantRequest {
    #[schema(example = "Acme Books")]
    pub name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    pub limit: Option<usize>,
    pub starting_after: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CardObject {
    pub brand: String,
    pub last4: String,
    pub fingerprint: String,
}

#[derive(Serialize, ToSchema)]
pub struct PaymentObject {
    #[schema(example = "pay_0193a6f2c1d87a3b9e2f4c5d6e7f8a9b")]
    pub id: String,
    pub object: &'static str,
    pub amount: u64,
    pub amount_capturable: u64,
    pub amount_captured: u64,
    pub amount_refunded: u64,
    pub currency: String,
    pub status: PaymentStatus,
    pub card: CardObject,
    pub failure_code: Option<String>,
    /// Unix seconds.
    pub created: i64,
}

impl From<&Payment> for PaymentObject {
    fn from(p: &Payment) -> Self {
        PaymentObject {
            id: p.id.clone(),
            object: "payment",
            amount: p.amount,
            amount_capturable: p.amount_capturable(),
            amount_captured: p.amount_captured,
            amount_refunded: p.amount_refunded,
            currency: p.currency.code().to_string(),
            status: p.status,
            card: CardObject {
                brand: p.card_brand.clone(),
                last4: p.card_last4.clone(),
                fingerprint: p.card_fingerprint.clone(),
            },
            failure_code: p.failure_code.clone(),
            created: p.created_ms / 1000,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RefundObject {
    pub id: String,
    pub object: &'static str,
    pub payment: String,
    pub amount: u64,
    pub currency: String,
    pub status: &'static str,
    pub created: i64,
}

impl From<&Refund> for RefundObject {
    fn from(r: &Refund) -> Self {
        RefundObject {
            id: r.id.clone(),
            object: "refund",
            payment: r.payment_id.clone(),
            amount: r.amount,
            currency: r.currency.code().to_string(),
            status: "succeeded",
            created: r.created_ms / 1000,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct PaymentList {
    pub object: &'static str,
    pub data: Vec<PaymentObject>,
    pub has_more: bool,
    pub url: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct BalanceAmount {
    pub amount: i64,
    pub currency: String,
}

#[derive(Serialize, ToSchema)]
pub struct BalanceObject {
    pub object: &'static str,
    /// Authorized and not yet captured.
    pub pending: Vec<BalanceAmount>,
    /// Captured, less refunds.
    pub available: Vec<BalanceAmount>,
}

impl From<Vec<BalanceLine>> for BalanceObject {
    fn from(lines: Vec<BalanceLine>) -> Self {
        let pick = |f: fn(&BalanceLine) -> i64| {
            lines
                .iter()
                .map(|l| BalanceAmount {
                    amount: f(l),
                    currency: l.currency.clone(),
                })
                .collect()
        };
        BalanceObject {
            object: "balance",
            pending: pick(|l| l.pending),
            available: pick(|l| l.available),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MerchantCreated {
    pub id: String,
    pub object: &'static str,
    pub name: String,
    /// Shown once; only its hash is stored.
    pub secret_key: String,
    pub created: i64,
}

/// Body of `POST /v1/admin/merchants/{id}/roll_key`; may be absent.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollKeyRequest {
    /// Seconds the old key keeps working (0 to 604800, a week); absent or 0: it stops now.
    #[serde(default, deserialize_with = "whole::option")]
    pub expires_in: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct KeyRolled {
    #[serde(flatten)]
    pub merchant: MerchantCreated,
    /// When the old key stops working (unix seconds); null: it already has.
    pub previous_key_expires: Option<i64>,
}

impl MerchantCreated {
    pub fn new(m: &Merchant, secret_key: String) -> Self {
        MerchantCreated {
            id: m.id.clone(),
            object: "merchant",
            name: m.name.clone(),
            secret_key,
            created: m.created_ms / 1000,
        }
    }
}
