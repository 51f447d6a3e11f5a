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
/// Resends of one unanswered create before it is left unresolved.
const RESEND_TRIES_MAX: u32 = 5;
/// The first resend's back-off after a 5xx or no answer; doubles each time.
const RESEND_BACKOFF_FIRST: std::time::Duration = std::time::Duration::from_millis(200);
/// Creates resent, and merchants counted, at once.
const IN_FLIGHT_MAX: usize = 16;

/// The audit's outcome when it could not run at all (the target is gone): a failure
/// that says why, so the run's reports are still written and its verdict explains.
pub fn could_not_run(ctx: &RunContext, why: &str) -> AuditOutcome {
    AuditOutcome {
        ok: false,
        acknowledged_payments: ctx.acks.all().len() as u64,
        ledger_shards: None,
        checks: vec![AuditCheck {
            name: "audit_ran".into(),
            ok: false,
            violation_count: 1,
            violations: vec![format!("the audit could not run: {why}")],
        }],
    }
}

/// Resend every create the run left without a payment, with its own Idempotency-Key, as
/// the API's documentation tells a client to: a create that committed answers with its
/// payment (now acknowledged), one that did not is made now or refused. Returns the
/// creates still without an outcome.
pub async fn resolve_unanswered(admin: &Admin, ctx: &RunContext) -> Vec<String> {
    let (creates, overflow) = ctx.unanswered.take();
    let mut unresolved = Vec::new();
    if overflow > 0 {
        unresolved.push(format!(
            "{overflow} creates without an outcome did not fit in the set the run resends ({} kept)",
            creates.len()
        ));
    }
    let mut pending = tokio::task::JoinSet::new();
    let mut creates = creates.into_iter();
    loop {
        while pending.len() < IN_FLIGHT_MAX {
            let Some(c) = creates.next() else { break };
            let (admin, key) = (admin.clone(), ctx.merchants[c.merchant].key.clone());
            pending.spawn(async move {
                let outcome = resend(&admin, &key, &c).await;
                (c, outcome)
            });
        }
        let Some(done) = pending.join_next().await else {
            break;
        };
        match done {
            Ok((c, Ok(Some(payment)))) => ctx.acks.created(c.merchant, &c.key, &payment),
            Ok((_, Ok(None))) => {}
            Ok((c, Err(why))) => unresolved.push(format!("key {:?}: {why}", c.key)),
            Err(e) => unresolved.push(format!("a resend task: {e}")),
        }
    }
    unresolved
}

/// The payment a resend was answered with, None for a refusal (nothing made), or why
/// no outcome came.
async fn resend(
    admin: &Admin,
    merchant_key: &str,
    c: &crate::scenarios::acks::SentCreate,
) -> Result<Option<crate::scenarios::replies::PaymentSeen>, String> {
    let mut last = String::new();
    for attempt in 0..RESEND_TRIES_MAX {
        let (status, body) = admin.resend_create(merchant_key, &c.key, &c.body).await;
        let payment = match status {
            Some(200..=299) => serde_json::from_value(body.clone()).ok(),
            Some(402) => serde_json::from_value(body["error"]["payment"].clone()).ok(),
            _ => None,
        };
        match status {
            Some(200..=299 | 402) if payment.is_some() => return Ok(payment),
            // Refused whole: nothing was made under this key.
            Some(s @ 400..=499) if s != 408 && s != 409 && s != 429 => return Ok(None),
            _ => {
                last = match status {
                    Some(s) => format!("answered {s}: {body}"),
                    None => "no answer".into(),
                };
                tokio::time::sleep(RESEND_BACKOFF_FIRST * 2u32.pow(attempt)).await;
            }
        }
    }
    Err(format!("{last} after {RESEND_TRIES_MAX} resends"))
}

/// The check that the store made exactly the payments the client was acknowledged:
/// every merchant's payments, counted through the API, against `acknowledged`.
async fn store_count(
    admin: &Admin,
    ctx: &RunContext,
    acknowledged: u64,
    unresolved: &[String],
) -> Result<Check, LoadtestError> {
    let mut check = Check::new("store_holds_exactly_the_acknowledged_payments");
    let mut counts = tokio::task::JoinSet::new();
    let mut total = 0u64;
    for m in &ctx.merchants {
        if counts.len() >= IN_FLIGHT_MAX
            && let Some(n) = counts.join_next().await
        {
            total += n.map_err(|e| LoadtestError::Run(e.to_string()))??;
        }
        let (admin, key) = (admin.clone(), m.key.clone());
        counts.spawn(async move { admin.count_payments(&key).await });
    }
    while let Some(n) = counts.join_next().await {
        total += n.map_err(|e| LoadtestError::Run(e.to_string()))??;
    }
    if total != acknowledged {
        check.fail(format!(
            "the store holds {total} payments for the run's merchants; the client was acknowledged {acknowledged}"
        ));
    }
    for u in unresolved {
        check.fail(format!("a create still without an outcome: {u}"));
    }
    Ok(check)
}

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

/// `acked_before`: payments acknowledged to the same merchants in earlier steps of the
/// run, which the store also holds; None when the merchants are shared with other
/// generators, whose payments the store holds too (no count is checked then).
pub async fn run(
    admin: &Admin,
    ctx: &RunContext,
    acked_before: Option<u64>,
) -> Result<AuditOutcome, LoadtestError> {
    let unresolved = resolve_unanswered(admin, ctx).await;
    let acks = ctx.acks.all();
    let count = match acked_before {
        Some(before) => {
            Some(store_count(admin, ctx, before + acks.len() as u64, &unresolved).await?)
        }
        None => None,
    };
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

    // Nothing acknowledged while payments were sent is a run that checked nothing:
    // never a pass.
    let mut checked = Check::new("something_was_checked");
    let creates: u64 = ctx
        .recorder
        .requests_of(|name| name.starts_with("POST /v1/payments") && !name.contains('{'));
    if acks.is_empty() && creates > 0 {
        checked.fail(format!(
            "{creates} payment creates were sent and not one was acknowledged: nothing to audit"
        ));
    }
    let mut checks = vec![exist.done(), states.done(), keys.done(), checked.done()];
    checks.extend(count.map(Check::done));
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
