//! What an Idempotency-Key's answer showed, kept instead of its body by both stores: the
//! payment (and refund) it showed and the payment's state then. A replay puts the
//! payment, as it stands now, back in that state and renders it again with the
//! request's own renderer, which is deterministic, so the replay is the first answer
//! byte for byte (a third of the bytes a stored body took).

use crate::ledger::{Payment, PaymentStatus};
use crate::store::{Outcome, Refund, StoreError, StoredResponse};

/// Renders an outcome as the API answers it (`WriteRequest::render`).
pub type Render = fn(&Outcome) -> StoredResponse;

/// The state an answer showed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shown {
    pub payment_id: String,
    /// `ledger::PaymentStatus::code`.
    pub payment_status: i64,
    pub amount_captured: i64,
    pub amount_refunded: i64,
    pub refund_id: Option<String>,
}

impl Shown {
    /// What `outcome` shows.
    pub fn of(outcome: &Outcome) -> Shown {
        let (payment, refund_id) = match outcome {
            Outcome::Payment(p) => (p, None),
            Outcome::Refund { refund, payment } => (payment, Some(refund.id.clone())),
        };
        Shown {
            payment_id: payment.id.clone(),
            payment_status: i64::from(payment.status.code()),
            amount_captured: payment.amount_captured as i64,
            amount_refunded: payment.amount_refunded as i64,
            refund_id,
        }
    }

    /// The answer again: `payment` as stored now, put back in the state shown, with
    /// `refund` (loaded by `refund_id`), rendered by `render`, whose status must be the
    /// one answered then.
    pub fn render_again(
        &self,
        mut payment: Payment,
        refund: Option<Refund>,
        answered: u16,
        render: Render,
    ) -> Result<Vec<u8>, StoreError> {
        let merchant_id = payment.merchant_id.clone();
        let broken = |what: String| {
            StoreError::Internal(format!(
                "the answer kept for {merchant_id}'s payment {}: {what}",
                self.payment_id
            ))
        };
        if payment.id != self.payment_id {
            return Err(broken(format!("loaded payment {} instead", payment.id)));
        }
        let status = PaymentStatus::from_code(self.payment_status)
            .ok_or_else(|| broken(format!("unknown status code {}", self.payment_status)))?;
        let captured = u64::try_from(self.amount_captured)
            .map_err(|_| broken(format!("amount_captured {}", self.amount_captured)))?;
        let refunded = u64::try_from(self.amount_refunded)
            .map_err(|_| broken(format!("amount_refunded {}", self.amount_refunded)))?;
        let outcome = match (&self.refund_id, refund) {
            (None, _) => None,
            (Some(id), Some(refund)) if refund.id == *id => Some(refund),
            (Some(id), _) => return Err(broken(format!("its refund {id} is not in the store"))),
        };
        payment.status = status;
        payment.amount_captured = captured;
        payment.amount_refunded = refunded;
        // The state kept must be one the payment could have been in.
        if let Err(e) = payment.check() {
            return Err(broken(e.to_string()));
        }
        let outcome = match outcome {
            None => Outcome::Payment(payment),
            Some(refund) => Outcome::Refund { refund, payment },
        };
        let again = render(&outcome);
        if again.status != answered {
            return Err(broken(format!(
                "answered {answered} then, renders as {} now",
                again.status
            )));
        }
        Ok(again.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::{Authorization, CardSummary, Currency, Money};

    fn payment() -> Payment {
        let card = CardSummary {
            brand: "visa",
            last4: "4242".into(),
            fingerprint: "f".into(),
        };
        let money = Money::new(900, Currency::parse("usd").unwrap()).unwrap();
        let (payment, _) = Payment::create(
            "pay_1".into(),
            "mer_1".into(),
            money,
            card,
            Authorization::Approved,
            false,
            0,
        )
        .unwrap();
        payment
    }

    fn render(o: &Outcome) -> StoredResponse {
        let body = match o {
            Outcome::Payment(p) => format!("{} {:?} {}", p.id, p.status, p.amount_captured),
            Outcome::Refund { refund, payment } => format!("{} {}", payment.id, refund.id),
        };
        StoredResponse {
            status: 200,
            body: body.into_bytes(),
            replayed: false,
        }
    }

    #[test]
    fn renders_the_state_shown_not_the_state_now() {
        let then = payment();
        let shown = Shown::of(&Outcome::Payment(then.clone()));
        let mut now = then.clone();
        now.capture(None).unwrap();
        let again = shown.render_again(now, None, 200, render).unwrap();
        assert_eq!(again, render(&Outcome::Payment(then)).body);
    }

    #[test]
    fn refuses_a_state_status_or_refund_that_does_not_fit() {
        let p = payment();
        let mut shown = Shown::of(&Outcome::Payment(p.clone()));
        let err = shown
            .render_again(p.clone(), None, 201, render)
            .unwrap_err();
        assert!(err.to_string().contains("renders as 200"), "{err}");
        shown.amount_captured = 901;
        let err = shown
            .render_again(p.clone(), None, 200, render)
            .unwrap_err();
        assert!(matches!(err, StoreError::Internal(_)), "{err}");
        shown.amount_captured = 0;
        shown.refund_id = Some("re_1".into());
        let err = shown.render_again(p, None, 200, render).unwrap_err();
        assert!(err.to_string().contains("re_1"), "{err}");
    }
}
