//! Money, the payment state machine, postings and their invariants. Pure: no I/O.

pub mod cards;
pub mod money;
pub mod payment;
pub mod postings;

pub use money::{Currency, Money, MoneyError};
pub use payment::{Authorization, CardSummary, LedgerError, Payment, PaymentStatus};
pub use postings::{Account, Posting, check_balanced};

#[cfg(test)]
mod proptests;
