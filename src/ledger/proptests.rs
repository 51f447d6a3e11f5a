//! Random sequences of operations against the state machine: whatever the order, the
//! postings balance, captured <= authorized, refunded <= captured, every account sums to
//! what the payment's state says, and states only move along the machine's edges.

use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

#[derive(Clone, Debug)]
enum Op {
    Capture(Option<u64>),
    Cancel,
    Refund(Option<u64>),
}

fn op() -> impl Strategy<Value = Op> {
    let amount = prop_oneof![Just(None), (0u64..1_500).prop_map(Some)];
    prop_oneof![
        amount.clone().prop_map(Op::Capture),
        Just(Op::Cancel),
        amount.prop_map(Op::Refund),
    ]
}

fn card() -> CardSummary {
    CardSummary {
        brand: "visa",
        last4: "4242".into(),
        fingerprint: "f".into(),
    }
}

proptest! {
    #[test]
    fn any_sequence_keeps_the_books_balanced(
        amount in 1i64..1_000,
        currency in prop::sample::select(vec!["usd", "jpy", "kwd"]),
        approved in any::<bool>(),
        capture in any::<bool>(),
        ops in prop::collection::vec(op(), 0..12),
    ) {
        let money = Money::new(amount, Currency::parse(currency).unwrap()).unwrap();
        let auth = if approved { Authorization::Approved } else { Authorization::Failed("generic_decline") };
        let (mut payment, transfers) =
            Payment::create("pay_1".into(), "mer_1".into(), money, card(), auth, capture, 0).unwrap();
        let mut ledger = postings_of(&transfers);
        for op in ops {
            let before = payment.clone();
            let result = match op {
                Op::Capture(a) => payment.capture(a),
                Op::Cancel => payment.cancel(),
                Op::Refund(a) => payment.refund(a).map(|(_, p)| p),
            };
            match result {
                Ok(transfers) => {
                    let postings = postings_of(&transfers);
                    prop_assert!(check_balanced(&postings).is_ok());
                    prop_assert!(before.status.may_become(payment.status),
                        "{:?} -> {:?}", before.status, payment.status);
                    ledger.extend(postings);
                }
                // A refused operation changes nothing.
                Err(_) => prop_assert_eq!(&before, &payment),
            }
            prop_assert!(payment.check().is_ok(), "{:?}", payment.check());
            prop_assert!(payment.amount_captured <= payment.amount);
            prop_assert!(payment.amount_refunded <= payment.amount_captured);
            prop_assert!(check_balanced(&ledger).is_ok());
            let mut sums: HashMap<Account, i64> = HashMap::new();
            for p in &ledger {
                *sums.entry(p.account).or_default() += p.amount;
            }
            for (account, expected) in payment.expected_account_sums() {
                prop_assert_eq!(sums.get(&account).copied().unwrap_or(0), expected, "{:?}", account);
            }
        }
    }
}
