//! Double-entry postings: every transition writes a set that sums to zero per currency.

use super::error::LedgerError;
use super::money::Currency;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Account {
    /// Money on the customer's side: negative while held or paid.
    CustomerFunds,
    /// Authorized, not yet captured.
    MerchantPending,
    /// Captured and not refunded: the merchant's to pay out.
    MerchantAvailable,
    /// Paid back to customers.
    Refunds,
}

impl Account {
    pub const ALL: [Account; 4] = [
        Account::CustomerFunds,
        Account::MerchantPending,
        Account::MerchantAvailable,
        Account::Refunds,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Account::CustomerFunds => "customer_funds",
            Account::MerchantPending => "merchant_pending",
            Account::MerchantAvailable => "merchant_available",
            Account::Refunds => "refunds",
        }
    }

    pub fn parse(s: &str) -> Option<Account> {
        Account::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Posting {
    pub account: Account,
    pub currency: Currency,
    /// Signed minor units.
    pub amount: i64,
}

/// The double-entry rule: per currency, the postings of one change sum to zero.
pub fn check_balanced(postings: &[Posting]) -> Result<(), LedgerError> {
    let mut sums: Vec<(Currency, i64)> = Vec::new();
    for p in postings {
        match sums.iter_mut().find(|(c, _)| *c == p.currency) {
            Some((_, s)) => *s += p.amount,
            None => sums.push((p.currency, p.amount)),
        }
    }
    match sums.iter().find(|(_, s)| *s != 0) {
        Some((c, s)) => Err(LedgerError::Invariant(format!(
            "postings in {c} sum to {s}, not zero"
        ))),
        None => Ok(()),
    }
}
