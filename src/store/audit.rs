//! The ledger audit's bookkeeping, shared by the backends: each walks its shards and
//! fills the same named checks, and the parts combine into one report.

use super::{AUDIT_VIOLATIONS_SHOWN_MAX, AuditCheck, AuditReport};

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
