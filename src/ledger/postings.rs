//! Double entry: every transition moves money as transfers, each from one account to
//! another, so each one's two postings (the debit and the credit) sum to zero by
//! construction. Postings are the per-account view of the same movements.

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

    /// The account as a small integer, for stores that keep it in every row. Stored:
    /// a code, once given, never changes or moves to another account.
    pub fn code(self) -> u8 {
        match self {
            Account::CustomerFunds => 0,
            Account::MerchantPending => 1,
            Account::MerchantAvailable => 2,
            Account::Refunds => 3,
        }
    }

    pub fn from_code(code: i64) -> Option<Account> {
        Account::ALL
            .into_iter()
            .find(|a| i64::from(a.code()) == code)
    }
}

/// Money moved from one account to another: a positive amount, two different accounts,
/// one currency. The fields are private so that no transfer breaks those rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    from: Account,
    to: Account,
    currency: Currency,
    amount: u64,
}

impl Transfer {
    pub fn new(
        from: Account,
        to: Account,
        currency: Currency,
        amount: u64,
    ) -> Result<Transfer, LedgerError> {
        if amount == 0 || amount > i64::MAX as u64 {
            return Err(LedgerError::Invariant(format!(
                "a transfer of {amount} {currency}: amounts are positive and fit in i64"
            )));
        }
        if from == to {
            return Err(LedgerError::Invariant(format!(
                "a transfer from {} to itself",
                from.as_str()
            )));
        }
        Ok(Transfer {
            from,
            to,
            currency,
            amount,
        })
    }

    pub fn from(&self) -> Account {
        self.from
    }

    pub fn to(&self) -> Account {
        self.to
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn amount(&self) -> u64 {
        self.amount
    }

    /// The debit and the credit: they sum to zero.
    pub fn postings(&self) -> [Posting; 2] {
        let amount = self.amount as i64;
        [
            Posting {
                account: self.from,
                currency: self.currency,
                amount: -amount,
            },
            Posting {
                account: self.to,
                currency: self.currency,
                amount,
            },
        ]
    }
}

/// Every posting of `transfers`, in order.
pub fn postings_of(transfers: &[Transfer]) -> Vec<Posting> {
    transfers.iter().flat_map(Transfer::postings).collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_codes_are_fixed_and_round_trip() {
        // Stored in every transfer row: changing one would misread every row kept.
        let codes: Vec<u8> = Account::ALL.iter().map(|a| a.code()).collect();
        assert_eq!(codes, [0, 1, 2, 3]);
        for a in Account::ALL {
            assert_eq!(Account::from_code(a.code().into()), Some(a));
        }
        assert_eq!(Account::from_code(4), None);
        assert_eq!(Account::from_code(-1), None);
    }

    #[test]
    fn a_transfer_moves_a_positive_amount_between_two_accounts() {
        let usd = Currency::parse("usd").unwrap();
        let t = Transfer::new(Account::CustomerFunds, Account::MerchantPending, usd, 2500).unwrap();
        assert!(check_balanced(&t.postings()).is_ok());
        assert_eq!(t.postings()[0].amount, -2500);
        assert_eq!(t.postings()[1].account, Account::MerchantPending);
        assert!(Transfer::new(Account::Refunds, Account::Refunds, usd, 1).is_err());
        assert!(Transfer::new(Account::CustomerFunds, Account::Refunds, usd, 0).is_err());
        assert!(Transfer::new(Account::CustomerFunds, Account::Refunds, usd, u64::MAX).is_err());
    }
}
