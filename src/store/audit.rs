//! The ledger audit's bookkeeping, shared by the backends: each walks its shards and
//! fills the same named checks, and the parts combine into one report.

use super::{AUDIT_VIOLATIONS_SHOWN_MAX, AuditCheck, AuditReport, StoreError};
use crate::ledger::{Account, Payment};
use std::collections::HashMap;

pub struct ShardAudit {
    pub payments: u64,
    pub postings: u64,
    pub checks: Vec<AuditCheck>,
}

pub struct Check {
    name: &'static str,
    count: u64,
    shown: Vec<String>,
}

impl Check {
    pub fn new(name: &'static str) -> Self {
        Check {
            name,
            count: 0,
            shown: Vec::new(),
        }
    }
    pub fn fail(&mut self, what: String) {
        self.count += 1;
        if self.shown.len() < AUDIT_VIOLATIONS_SHOWN_MAX {
            self.shown.push(what);
        }
    }
    pub fn done(self) -> AuditCheck {
        AuditCheck {
            name: self.name,
            ok: self.count == 0,
            violation_count: self.count,
            violations: self.shown,
        }
    }
}

pub fn combine(parts: Vec<ShardAudit>, merchants: u64) -> AuditReport {
    let shards = parts.len();
    let mut payments = 0;
    let mut postings = 0;
    let mut checks: Vec<AuditCheck> = Vec::new();
    for part in parts {
        payments += part.payments;
        postings += part.postings;
        for c in part.checks {
            match checks.iter_mut().find(|x| x.name == c.name) {
                Some(x) => {
                    x.ok &= c.ok;
                    x.violation_count += c.violation_count;
                    let room = AUDIT_VIOLATIONS_SHOWN_MAX.saturating_sub(x.violations.len());
                    x.violations.extend(c.violations.into_iter().take(room));
                }
                None => checks.push(c),
            }
        }
    }
    AuditReport {
        ok: checks.iter().all(|c| c.ok),
        shards,
        merchants,
        payments,
        postings,
        checks,
    }
}

/// The per-payment checks, fed each payment read from a shard: its invariants, its
/// postings against its state, its refunds against `amount_refunded`; postings and
/// refunds left over at the end belong to no payment.
pub struct PaymentChecks {
    /// (payment id, account) -> what the postings add up to.
    sums: HashMap<(String, Account), i64>,
    /// payment id -> what its refunds add up to.
    refunds: HashMap<String, i64>,
    pub payments: u64,
    invariants: Check,
    matches_postings: Check,
    matches_refunds: Check,
}

impl PaymentChecks {
    pub fn new(sums: HashMap<(String, Account), i64>, refunds: HashMap<String, i64>) -> Self {
        PaymentChecks {
            sums,
            refunds,
            payments: 0,
            invariants: Check::new("payment_invariants"),
            matches_postings: Check::new("payment_matches_postings"),
            matches_refunds: Check::new("refunds_match_payment"),
        }
    }

    /// A posting whose account the ledger does not know.
    pub fn unknown_account(&mut self, account: &str) {
        self.matches_postings
            .fail(format!("unknown account {account:?} in postings"));
    }

    /// One payment row, read (or refused by the ledger's checks).
    pub fn payment(&mut self, read: Result<Payment, StoreError>) {
        self.payments += 1;
        let payment = match read {
            Ok(p) => p,
            Err(e) => return self.invariants.fail(e.to_string()),
        };
        for (account, expected) in payment.expected_account_sums() {
            let found = self
                .sums
                .remove(&(payment.id.clone(), account))
                .unwrap_or(0);
            if found != expected {
                self.matches_postings.fail(format!(
                    "{}: {} postings sum to {found}, the payment's state says {expected}",
                    payment.id,
                    account.as_str()
                ));
            }
        }
        let refunded = self.refunds.remove(&payment.id).unwrap_or(0);
        if refunded != payment.amount_refunded as i64 {
            self.matches_refunds.fail(format!(
                "{}: refunds sum to {refunded}, amount_refunded is {}",
                payment.id, payment.amount_refunded
            ));
        }
    }

    /// The three checks, with whatever is left over counted against them.
    pub fn finish(mut self) -> [AuditCheck; 3] {
        for ((payment_id, account), sum) in self.sums.into_iter().filter(|(_, s)| *s != 0) {
            self.matches_postings.fail(format!(
                "{payment_id}: {} postings of {sum} with no payment",
                account.as_str()
            ));
        }
        for (payment_id, sum) in self.refunds {
            self.matches_refunds
                .fail(format!("{payment_id}: refunds of {sum} with no payment"));
        }
        [
            self.invariants.done(),
            self.matches_postings.done(),
            self.matches_refunds.done(),
        ]
    }
}
