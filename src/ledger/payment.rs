//! The payment state machine and the transfers each transition makes. Pure: no I/O.
//!
//! ```text
//! create ──approved, capture=false──▶ requires_capture ──capture──▶ succeeded ──refund*──▶ succeeded
//!    │                                      └──cancel──▶ canceled
//!    ├──approved, capture=true──▶ succeeded
//!    └──declined / processor error──▶ failed
//! ```

use super::error::LedgerError;
use super::money::{Currency, Money};
use super::postings::{Account, Transfer};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    RequiresCapture,
    Succeeded,
    Canceled,
    Failed,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::RequiresCapture => "requires_capture",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Canceled => "canceled",
            PaymentStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "requires_capture" => PaymentStatus::RequiresCapture,
            "succeeded" => PaymentStatus::Succeeded,
            "canceled" => PaymentStatus::Canceled,
            "failed" => PaymentStatus::Failed,
            _ => return None,
        })
    }

    /// The status as a small integer, for stores that keep it in many rows. Stored: a
    /// code, once given, never changes or moves to another status.
    pub fn code(self) -> u8 {
        match self {
            PaymentStatus::RequiresCapture => 0,
            PaymentStatus::Succeeded => 1,
            PaymentStatus::Canceled => 2,
            PaymentStatus::Failed => 3,
        }
    }

    pub fn from_code(code: i64) -> Option<Self> {
        [
            PaymentStatus::RequiresCapture,
            PaymentStatus::Succeeded,
            PaymentStatus::Canceled,
            PaymentStatus::Failed,
        ]
        .into_iter()
        .find(|s| i64::from(s.code()) == code)
    }

    /// The edges of the state machine. A refund keeps a payment `succeeded`.
    pub fn may_become(self, next: PaymentStatus) -> bool {
        use PaymentStatus::*;
        matches!(
            (self, next),
            (RequiresCapture, Succeeded) | (RequiresCapture, Canceled) | (Succeeded, Succeeded)
        )
    }
}

/// What is kept of the card: never the number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CardSummary {
    pub brand: &'static str,
    pub last4: String,
    pub fingerprint: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payment {
    pub id: String,
    pub merchant_id: String,
    /// The authorized amount.
    pub amount: u64,
    pub currency: Currency,
    pub status: PaymentStatus,
    pub amount_captured: u64,
    pub amount_refunded: u64,
    pub card_brand: String,
    pub card_last4: String,
    pub card_fingerprint: String,
    /// Set for failed payments: the decline code or `processing_error`.
    pub failure_code: Option<String>,
    pub created_ms: i64,
}

/// How the card network answered an authorization.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Authorization {
    Approved,
    Failed(&'static str),
}

impl Payment {
    /// Authorize (and, when `capture`, capture in full) a new payment.
    pub fn create(
        id: String,
        merchant_id: String,
        money: Money,
        card: CardSummary,
        auth: Authorization,
        capture: bool,
        created_ms: i64,
    ) -> Result<(Payment, Vec<Transfer>), LedgerError> {
        let mut payment = Payment {
            id,
            merchant_id,
            amount: money.amount_minor(),
            currency: money.currency(),
            status: PaymentStatus::RequiresCapture,
            amount_captured: 0,
            amount_refunded: 0,
            card_brand: card.brand.to_string(),
            card_last4: card.last4,
            card_fingerprint: card.fingerprint,
            failure_code: None,
            created_ms,
        };
        if let Authorization::Failed(code) = auth {
            payment.status = PaymentStatus::Failed;
            payment.failure_code = Some(code.to_string());
            return Ok((payment, Vec::new()));
        }
        // The hold: funds leave the customer and wait as the merchant's pending balance.
        let mut transfers = vec![payment.transfer(
            Account::CustomerFunds,
            Account::MerchantPending,
            payment.amount,
        )?];
        if capture {
            transfers.extend(payment.capture(None)?);
        }
        payment.check()?;
        Ok((payment, transfers))
    }

    /// Capture `amount` (all of it when None); the rest of the hold goes back to the customer.
    pub fn capture(&mut self, amount: Option<u64>) -> Result<Vec<Transfer>, LedgerError> {
        self.require_capturable("captured")?;
        let captured = self.bounded(amount, self.amount, "authorized amount")?;
        let released = self.amount - captured;
        let mut transfers = vec![self.transfer(
            Account::MerchantPending,
            Account::MerchantAvailable,
            captured,
        )?];
        if released > 0 {
            transfers.push(self.transfer(
                Account::MerchantPending,
                Account::CustomerFunds,
                released,
            )?);
        }
        self.transition(PaymentStatus::Succeeded)?;
        self.amount_captured = captured;
        self.check()?;
        Ok(transfers)
    }

    /// Release the whole hold.
    pub fn cancel(&mut self) -> Result<Vec<Transfer>, LedgerError> {
        self.require_capturable("canceled")?;
        let transfers = vec![self.transfer(
            Account::MerchantPending,
            Account::CustomerFunds,
            self.amount,
        )?];
        self.transition(PaymentStatus::Canceled)?;
        self.check()?;
        Ok(transfers)
    }

    /// Refund `amount` (all that remains when None) out of the merchant's available balance.
    pub fn refund(&mut self, amount: Option<u64>) -> Result<(u64, Vec<Transfer>), LedgerError> {
        if self.status != PaymentStatus::Succeeded {
            return Err(LedgerError::NotRefundable {
                status: self.status.as_str(),
            });
        }
        let remaining = self.amount_captured - self.amount_refunded;
        if remaining == 0 {
            return Err(LedgerError::FullyRefunded);
        }
        let refunded = self.bounded(amount, remaining, "amount still refundable")?;
        let transfers =
            vec![self.transfer(Account::MerchantAvailable, Account::Refunds, refunded)?];
        self.transition(PaymentStatus::Succeeded)?;
        self.amount_refunded += refunded;
        self.check()?;
        Ok((refunded, transfers))
    }

    pub fn amount_capturable(&self) -> u64 {
        if self.status == PaymentStatus::RequiresCapture {
            self.amount
        } else {
            0
        }
    }

    /// The invariants money depends on. Checked after every transition and again when a
    /// payment is read back from the store.
    pub fn check(&self) -> Result<(), LedgerError> {
        let fail = |m: String| Err(LedgerError::Invariant(format!("{}: {m}", self.id)));
        if self.amount == 0 {
            return fail("authorized amount is zero".into());
        }
        if self.amount_captured > self.amount {
            return fail(format!(
                "captured {} > authorized {}",
                self.amount_captured, self.amount
            ));
        }
        if self.amount_refunded > self.amount_captured {
            return fail(format!(
                "refunded {} > captured {}",
                self.amount_refunded, self.amount_captured
            ));
        }
        let captured = self.amount_captured > 0;
        let consistent = match self.status {
            PaymentStatus::Succeeded => captured,
            _ => !captured && self.amount_refunded == 0,
        };
        if !consistent {
            return fail(format!(
                "status {} with captured {}",
                self.status.as_str(),
                self.amount_captured
            ));
        }
        if (self.status == PaymentStatus::Failed) != self.failure_code.is_some() {
            return fail("failure code does not match status".into());
        }
        Ok(())
    }

    /// What this payment's postings must sum to, per account, given its state.
    pub fn expected_account_sums(&self) -> [(Account, i64); 4] {
        let (authorized, captured, refunded) = (
            self.amount as i64,
            self.amount_captured as i64,
            self.amount_refunded as i64,
        );
        let (customer, pending) = match self.status {
            PaymentStatus::Failed | PaymentStatus::Canceled => (0, 0),
            PaymentStatus::RequiresCapture => (-authorized, authorized),
            PaymentStatus::Succeeded => (-captured, 0),
        };
        [
            (Account::CustomerFunds, customer),
            (Account::MerchantPending, pending),
            (Account::MerchantAvailable, captured - refunded),
            (Account::Refunds, refunded),
        ]
    }

    fn require_capturable(&self, action: &'static str) -> Result<(), LedgerError> {
        if self.status != PaymentStatus::RequiresCapture {
            return Err(LedgerError::NotCapturable {
                status: self.status.as_str(),
                action,
            });
        }
        Ok(())
    }

    fn bounded(
        &self,
        amount: Option<u64>,
        available: u64,
        what: &'static str,
    ) -> Result<u64, LedgerError> {
        let requested = amount.unwrap_or(available);
        if requested == 0 {
            return Err(LedgerError::AmountNotPositive);
        }
        if requested > available {
            return Err(LedgerError::AmountTooLarge {
                requested,
                available,
                what,
            });
        }
        Ok(requested)
    }

    fn transition(&mut self, next: PaymentStatus) -> Result<(), LedgerError> {
        if !self.status.may_become(next) {
            return Err(LedgerError::Invariant(format!(
                "{}: illegal transition {} -> {}",
                self.id,
                self.status.as_str(),
                next.as_str()
            )));
        }
        self.status = next;
        Ok(())
    }

    fn transfer(&self, from: Account, to: Account, amount: u64) -> Result<Transfer, LedgerError> {
        Transfer::new(from, to, self.currency, amount)
    }
}

#[cfg(test)]
mod tests {
    use super::PaymentStatus;

    #[test]
    fn status_codes_are_fixed_and_round_trip() {
        // Stored in every kept answer: changing one would misread every key kept.
        use PaymentStatus::*;
        let all = [RequiresCapture, Succeeded, Canceled, Failed];
        assert_eq!(all.map(PaymentStatus::code), [0, 1, 2, 3]);
        for s in all {
            assert_eq!(PaymentStatus::from_code(s.code().into()), Some(s));
        }
        assert_eq!(PaymentStatus::from_code(4), None);
    }
}
