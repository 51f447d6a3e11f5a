//! Why the ledger refused a change.

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LedgerError {
    #[error("payment is {status}; only a payment that requires capture can be {action}")]
    NotCapturable {
        status: &'static str,
        action: &'static str,
    },
    #[error("payment is {status}; only a succeeded payment can be refunded")]
    NotRefundable { status: &'static str },
    #[error("payment is already fully refunded")]
    FullyRefunded,
    #[error("amount {requested} is more than the {what} {available}")]
    AmountTooLarge {
        requested: u64,
        available: u64,
        what: &'static str,
    },
    #[error("amount must be positive")]
    AmountNotPositive,
    #[error("ledger invariant violated: {0}")]
    Invariant(String),
}
