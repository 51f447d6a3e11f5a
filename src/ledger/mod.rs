//! Money, the payment state machine, transfers and postings and their invariants. Pure: no I/O.

pub mod cards;
mod error;
pub mod money;
pub mod payment;
pub mod postings;

pub use error::LedgerError;
pub use money::{Currency, Money, MoneyError};
pub use payment::{Authorization, CardSummary, Payment, PaymentStatus};
pub use postings::{Account, Posting, Transfer, check_balanced, postings_of};

#[cfg(test)]
mod proptests;
