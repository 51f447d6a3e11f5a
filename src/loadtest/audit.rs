//! The money audit after a run: every payment the API acknowledged exists with that
//! amount and state, the store made no payment under the run's keys that nobody
//! acknowledged (but those an unknown outcome explains), no key made two payments, every
//! answer carrying a payment was logged, and the ledger balances.
//!
//! The run's payments are read back in bulk, a merchant at a time, by the run's own
//! key prefix, in id order beside the log's ids in the same order (a merge, no lookups).

use super::LoadtestError;
use super::target::Admin;
use crate::scenarios::acks::{Acked, keys_prefix};
use crate::scenarios::context::RunContext;
use crate::scenarios::replies::PaymentId;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

const VIOLATIONS_SHOWN_MAX: usize = 50;
/// Resends of one unanswered create before it is left unresolved.
const RESEND_TRIES_MAX: u32 = 5;
/// The first resend's back-off after a 5xx or no answer; doubles each time.
const RESEND_BACKOFF_FIRST: std::time::Duration = std::time::Duration::from_millis(200);
/// Creates resent, and merchants read back, at once.
const IN_FLIGHT_MAX: usize = 16;
/// Payments per page when reading the run's payments back.
const READ_BACK_PAGE: usize = 5_000;

/// How far the audit has got, for a progress line while it runs.
#[derive(Default)]
pub struct Progress {
    phase: AtomicU8,
    done: AtomicU64,
    total: AtomicU64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The load is still running.
    Load,
    /// Resending creates left without an outcome.
    Resending,
    /// Reading the run's payments back and checking them.
    Checking,
    /// The target's ledger audit.
    Ledger,
    /// Writing the reports.
    Reports,
}

impl Progress {
    pub fn set(&self, phase: Phase, total: u64) {
        self.done.store(0, Ordering::Relaxed);
        self.total.store(total, Ordering::Relaxed);
        self.phase.store(phase as u8, Ordering::Relaxed);
    }

    fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
    }

    /// The phase, and how much of it is done out of how much.
    pub fn get(&self) -> (Phase, u64, u64) {
        let phase = match self.phase.load(Ordering::Relaxed) {
            1 => Phase::Resending,
            2 => Phase::Checking,
            3 => Phase::Ledger,
            4 => Phase::Reports,
            _ => Phase::Load,
        };
        (
            phase,
            self.done.load(Ordering::Relaxed),
            self.total.load(Ordering::Relaxed),
        )
    }
}

/// The audit's outcome when it could not run at all (the target is gone): a failure
/// that says why, so the run's reports are still written and its verdict explains.
pub fn could_not_run(ctx: &RunContext, why: &str) -> AuditOutcome {
    AuditOutcome {
        ok: false,
        acknowledged_payments: ctx.acks.len() as u64,
        ledger_shards: None,
        checks: vec![AuditCheck {
            name: "audit_ran".into(),
            ok: false,
            violation_count: 1,
            violations: vec![format!("the audit could not run: {why}")],
        }],
    }
}

/// Creates still without an outcome after the resends: how many were never kept to be
/// resent (the store's read-back may explain them), and why each kept one is unresolved.
struct Unresolved {
    not_kept: u64,
    reasons: Vec<String>,
}

/// Resend every create the run left without a payment, with its own Idempotency-Key, as
/// the API's documentation tells a client to: a create that committed answers with its
/// payment (now acknowledged), one that did not is made now or refused.
async fn resolve_unanswered(admin: &Admin, ctx: &RunContext, progress: &Progress) -> Unresolved {
    let (creates, not_kept) = ctx.unanswered.take();
    progress.set(Phase::Resending, creates.len() as u64);
    let mut reasons = Vec::new();
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
        progress.advance(1);
        match done {
            Ok((c, Ok(Some(payment)))) => ctx.acks.created(c.merchant, &c.key, &payment),
            Ok((_, Ok(None))) => {}
            Ok((c, Err(why))) => reasons.push(format!("key {:?}: {why}", c.key.as_str())),
            Err(e) => reasons.push(format!("a resend task: {e}")),
        }
    }
    Unresolved { not_kept, reasons }
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
        let (status, body) = admin
            .resend_create(merchant_key, c.key.as_str(), &c.body)
            .await;
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

/// What reading one merchant's payments back found.
#[derive(Default)]
struct MerchantFindings {
    missing: Vec<String>,
    wrong_state: Vec<String>,
    /// Payments nobody acknowledged.
    orphans: Vec<String>,
    /// Keys the store made more than one payment under.
    doubled_keys: Vec<String>,
}

/// Read merchant `m`'s payments under the run's prefix back, in id order, beside the
/// ids the log acknowledged for it (in the same order).
async fn read_back(
    admin: &Admin,
    ctx: &RunContext,
    m: usize,
    acked: &[PaymentId],
    progress: &Progress,
) -> Result<MerchantFindings, LoadtestError> {
    let prefix = keys_prefix(ctx.key_prefix());
    let merchant_id = &ctx.merchants[m].id;
    let mut found = MerchantFindings::default();
    let mut keys: HashSet<String> = HashSet::new();
    let mut next_acked = acked.iter().peekable();
    let mut after: Option<String> = None;
    let missing = |found: &mut MerchantFindings, id: &PaymentId| {
        let a = ctx.acks.get(id);
        found.missing.push(match a {
            Some(a) => format!(
                "{} (key {:?}, {} {}) was acknowledged and is not in the store",
                a.id,
                a.idempotency_key,
                a.amount,
                a.currency.as_str()
            ),
            None => format!("{id} was acknowledged and is not in the store"),
        });
    };
    loop {
        let (page, more) = admin
            .payments_with_key_prefix(merchant_id, &prefix, after.as_deref(), READ_BACK_PAGE)
            .await?;
        progress.advance(page.len() as u64);
        for row in &page {
            let text = row["id"].as_str().unwrap_or_default();
            let Some(id) = PaymentId::parse(text) else {
                return Err(LoadtestError::Run(format!(
                    "reading the run's payments back: {text:?} is not a payment id"
                )));
            };
            while let Some(a) = next_acked.next_if(|a| **a < id) {
                missing(&mut found, a);
            }
            let key = row["idempotency_key"].as_str().unwrap_or_default();
            if !keys.insert(key.to_string()) {
                found.doubled_keys.push(format!(
                    "merchant {m}: key {key:?} made more than one payment (one is {id})"
                ));
            }
            if next_acked.next_if(|a| **a == id).is_none() {
                found.orphans.push(format!(
                    "{id} (key {key:?}, {} {}) is in the store and was never acknowledged",
                    row["amount"], row["currency"]
                ));
                continue;
            }
            let Some(a) = ctx.acks.get(&id) else { continue };
            let later = a.if_pending_committed();
            if !(matches(&a, row) || later.as_ref().is_some_and(|l| matches(l, row))) {
                found.wrong_state.push(format!(
                    "{}: acknowledged {} {} {} captured {} refunded {}; the store has {} {} {} captured {} refunded {}",
                    a.id, a.status.as_str(), a.amount, a.currency.as_str(), a.amount_captured, a.amount_refunded,
                    row["status"], row["amount"], row["currency"], row["amount_captured"], row["amount_refunded"]
                ));
            }
        }
        after = page
            .last()
            .and_then(|p| p["id"].as_str())
            .map(str::to_string);
        if !more || after.is_none() {
            break;
        }
    }
    for a in next_acked {
        missing(&mut found, a);
    }
    Ok(found)
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

/// Audit the run whose context is `ctx`: resend what is unresolved, read the run's
/// payments back and check them against the log, then the target's ledger audit.
pub async fn run(
    admin: &Admin,
    ctx: &RunContext,
    progress: &Progress,
) -> Result<AuditOutcome, LoadtestError> {
    let unresolved = resolve_unanswered(admin, ctx, progress).await;
    let acknowledged = ctx.acks.len() as u64;
    progress.set(Phase::Checking, acknowledged);
    let by_merchant = ctx.acks.ids_by_merchant(ctx.merchants.len());
    // Borrowed futures, IN_FLIGHT_MAX merchants at once (no tasks: they share `ctx`).
    let findings: Vec<MerchantFindings> = futures_util::stream::iter(
        by_merchant
            .iter()
            .enumerate()
            .map(|(m, ids)| read_back(admin, ctx, m, ids, progress)),
    )
    .buffer_unordered(IN_FLIGHT_MAX)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<Result<_, _>>()?;

    let mut exist = Check::new("acknowledged_payments_exist");
    let mut states = Check::new("acknowledged_amounts_and_states");
    let mut keys = Check::new("one_payment_per_idempotency_key");
    let mut exact = Check::new("store_holds_exactly_the_acknowledged_payments");
    let mut orphans = Vec::new();
    let mut missing = 0u64;
    for f in findings {
        missing += f.missing.len() as u64;
        f.missing.into_iter().for_each(|v| exist.fail(v));
        f.wrong_state.into_iter().for_each(|v| states.fail(v));
        f.doubled_keys.into_iter().for_each(|v| keys.fail(v));
        orphans.extend(f.orphans);
    }
    for v in ctx
        .storm_violations
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        keys.fail(v.clone());
    }
    // Creates never kept for a resend had unknown outcomes: each may have made one
    // payment nobody acknowledged. More payments than that are unexplained.
    let orphans_seen = orphans.len() as u64;
    if orphans_seen > unresolved.not_kept {
        for o in orphans {
            exact.fail(o);
        }
        exact.fail(format!(
            "{orphans_seen} payments under the run's keys were never acknowledged; {} creates with unknown outcomes could explain at most that many",
            unresolved.not_kept
        ));
    }
    // Exactly means fewer fails too: each missing payment is listed under
    // acknowledged_payments_exist, and counted here as the store's shortfall.
    if missing > 0 {
        let held = acknowledged - missing + orphans_seen;
        exact.fail(format!(
            "the store holds {held} of the run's payments; {acknowledged} were acknowledged and {missing} of them are not there"
        ));
    }
    for u in &unresolved.reasons {
        exact.fail(format!("a create still without an outcome: {u}"));
    }

    // Every answer that carried a new payment, as the transport counted them, against
    // the answers the journeys logged: a 2xx nobody wrote down is a lost acknowledgement.
    let mut logged = Check::new("every_payment_answer_was_logged");
    let (answers, written) = (ctx.payment_answers(), ctx.acks.answers_logged_count());
    if answers != written {
        logged.fail(format!(
            "{answers} answers to creates carried a payment; the acknowledgement log recorded {written}"
        ));
    }

    // Nothing acknowledged while payments were sent is a run that checked nothing:
    // never a pass.
    let mut checked = Check::new("something_was_checked");
    let creates: u64 = ctx
        .recorder
        .requests_of(|name| name.starts_with("POST /v1/payments") && !name.contains('{'));
    if acknowledged == 0 && creates > 0 {
        checked.fail(format!(
            "{creates} payment creates were sent and not one was acknowledged: nothing to audit"
        ));
    }
    let mut checks = vec![
        exist.done(),
        states.done(),
        keys.done(),
        exact.done(),
        logged.done(),
        checked.done(),
    ];
    progress.set(Phase::Ledger, 0);
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
        acknowledged_payments: acknowledged,
        ledger_shards: ledger["shards"].as_u64(),
        checks,
    })
}
