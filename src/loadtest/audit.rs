//! The money audit after a run: every payment the API acknowledged exists with that
//! amount and state, no idempotency key made two payments, and the ledger balances.

use super::LoadtestError;
use super::target::Admin;
use crate::scenarios::acks::Acked;
use crate::scenarios::context::RunContext;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

const VIOLATIONS_SHOWN_MAX: usize = 50;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AuditCheck {
    pub name: String,
    pub ok: bool,
    pub violation_count: u64,
    pub violations: Vec<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AuditOutcome {
    pub ok: bool,
    pub acknowledged_payments: u64,
    /// How many shards the target's ledger audit covered (it audits every one).
    #[serde(default)]
    pub ledger_shards: Option<u64>,
    pub checks: Vec<AuditCheck>,
}

struct Check {
    name: String,
    violations: Vec<String>,
    count: u64,
}

impl Check {
    fn new(name: &str) -> Self {
        Check {
            name: name.into(),
            violations: Vec::new(),
            count: 0,
        }
    }
    fn fail(&mut self, v: String) {
        self.count += 1;
        if self.violations.len() < VIOLATIONS_SHOWN_MAX {
            self.violations.push(v);
        }
    }
    fn done(self) -> AuditCheck {
        AuditCheck {
            ok: self.count == 0,
            name: self.name,
            violation_count: self.count,
            violations: self.violations,
        }
    }
}

fn matches(acked: &Acked, found: &Value) -> bool {
    found["amount"].as_u64() == Some(acked.amount)
        && found["currency"].as_str() == Some(acked.currency.as_str())
        && found["status"].as_str() == Some(acked.status.as_str())
        && found["amount_captured"].as_u64() == Some(acked.amount_captured)
        && found["amount_refunded"].as_u64() == Some(acked.amount_refunded)
}

pub async fn run(admin: &Admin, ctx: &RunContext) -> Result<AuditOutcome, LoadtestError> {
    let acks = ctx.acks.all();
    let pairs: Vec<(String, String)> = acks
        .iter()
        .map(|a| (ctx.merchants[a.merchant].id.clone(), a.id.clone()))
        .collect();
    let found: HashMap<String, Value> = admin
        .lookup(&pairs)
        .await?
        .into_iter()
        .filter_map(|p| Some((p["id"].as_str()?.to_string(), p)))
        .collect();

    let mut exist = Check::new("acknowledged_payments_exist");
    let mut states = Check::new("acknowledged_amounts_and_states");
    for a in &acks {
        let Some(f) = found.get(&a.id) else {
            exist.fail(format!(
                "{} (key {:?}, {} {}) was acknowledged and is not in the store",
                a.id, a.idempotency_key, a.amount, a.currency
            ));
            continue;
        };
        let later = a.if_pending_committed();
        if !(matches(a, f) || later.as_ref().is_some_and(|l| matches(l, f))) {
            states.fail(format!(
                "{}: acknowledged {} {} {} captured {} refunded {}; the store has {} {} {} captured {} refunded {}",
                a.id, a.status, a.amount, a.currency, a.amount_captured, a.amount_refunded,
                f["status"], f["amount"], f["currency"], f["amount_captured"], f["amount_refunded"]
            ));
        }
    }

    let mut keys = Check::new("one_payment_per_idempotency_key");
    let mut by_key: HashMap<(usize, &str), Vec<&str>> = HashMap::new();
    for a in &acks {
        by_key
            .entry((a.merchant, a.idempotency_key.as_str()))
            .or_default()
            .push(a.id.as_str());
    }
    for ((merchant, key), ids) in by_key.iter().filter(|(_, ids)| ids.len() > 1) {
        keys.fail(format!(
            "merchant {merchant}: key {key:?} was acknowledged as {} payments: {}",
            ids.len(),
            ids.join(", ")
        ));
    }
    for v in ctx
        .storm_violations
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        keys.fail(v.clone());
    }

    let mut checks = vec![exist.done(), states.done(), keys.done()];
    let ledger = admin.ledger_audit().await?;
    for c in ledger["checks"].as_array().cloned().unwrap_or_default() {
        checks.push(AuditCheck {
            name: format!("ledger: {}", c["name"].as_str().unwrap_or("?")),
            ok: c["ok"] == true,
            violation_count: c["violation_count"].as_u64().unwrap_or(0),
            violations: c["violations"]
                .as_array()
                .map(|v| {
                    v.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        });
    }
    if ledger["checks"].as_array().is_none_or(|c| c.is_empty()) {
        checks.push(AuditCheck {
            name: "ledger".into(),
            ok: false,
            violation_count: 1,
            violations: vec![format!(
                "the target's ledger audit returned no checks: {ledger}"
            )],
        });
    }
    Ok(AuditOutcome {
        ok: checks.iter().all(|c| c.ok),
        acknowledged_payments: acks.len() as u64,
        ledger_shards: ledger["shards"].as_u64(),
        checks,
    })
}
