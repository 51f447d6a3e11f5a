//! What a journey sends and how an answer is judged, apart from how it is sent.
//!
//! A journey is written once against [`Client`]; Goose users send through
//! [`GooseClient`] (closed model), the open model's workers through their own lean
//! connection (`loadtest::open_model`). Both judge every answer with [`judge`], so a
//! request counts as a success by one rule: the expected status *and* a body of the
//! expected shape. A 2xx whose body is not what the API promised is a failed request
//! with the reason, never a silent success missing from the acknowledgement log.

use super::cadence::{self, Cadence, CoMitigation};
use super::context::RunContext;
use super::replies::{DeclinedPayment, Page, PaymentSeen, RefundSeen};
use goose::prelude::*;
use serde_json::Value;
use std::future::Future;
use std::time::{Duration, Instant};

pub type JourneyResult<T = ()> = Result<T, Box<TransactionError>>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
        }
    }

    fn goose(self) -> GooseMethod {
        match self {
            Method::Get => GooseMethod::Get,
            Method::Post => GooseMethod::Post,
        }
    }
}

/// The body a successful answer must carry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// Anything (a health check's text).
    Any,
    /// Any JSON value.
    Json,
    Payment,
    /// A 402 whose error carries the failed payment.
    DeclinedPayment,
    Refund,
    Page,
}

/// Which answers count as success.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// A 2xx with a body of this shape.
    Success(Shape),
    /// Exactly this status with a body of this shape.
    Status(u16, Shape),
    /// Whatever comes back, or nothing (the client chose to give up early); a 2xx
    /// body of this shape is still read.
    Anything(Shape),
}

/// One API call from a journey.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: Method,
    pub path: String,
    /// The request name in reports and thresholds (Goose prefixes the method).
    pub name: &'static str,
    /// The merchant whose secret key authenticates the call; None for public routes.
    pub merchant: Option<usize>,
    pub idempotency_key: Option<String>,
    pub body: Option<Value>,
    pub expect: Expect,
    /// A shorter timeout than the run's, for a client that gives up early.
    pub timeout: Option<Duration>,
}

impl Call {
    pub fn get(path: impl Into<String>, name: &'static str, merchant: Option<usize>) -> Self {
        Call {
            method: Method::Get,
            path: path.into(),
            name,
            merchant,
            idempotency_key: None,
            body: None,
            expect: Expect::Success(Shape::Json),
            timeout: None,
        }
    }

    pub fn post(
        path: impl Into<String>,
        name: &'static str,
        merchant: usize,
        idempotency_key: String,
        body: Value,
    ) -> Self {
        Call {
            method: Method::Post,
            path: path.into(),
            name,
            merchant: Some(merchant),
            idempotency_key: Some(idempotency_key),
            body: Some(body),
            expect: Expect::Success(Shape::Json),
            timeout: None,
        }
    }

    pub fn expect(mut self, expect: Expect) -> Self {
        self.expect = expect;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

/// An answer's body, parsed into the shape the call expected.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    None,
    Json(Value),
    Payment(PaymentSeen),
    Refund(RefundSeen),
    Page(Page),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    /// None: no answer (connection failure or timeout).
    pub status: Option<u16>,
    /// The request never reached the server (its connection could not be made): it
    /// certainly changed nothing.
    pub unsent: bool,
    pub ok: bool,
    /// Why the request failed, as reports show it.
    pub error: Option<String>,
    pub body: Body,
}

impl Reply {
    /// Certainly nothing was made or changed: never sent, or refused whole (a 4xx, but
    /// a 402, which carries the failed payment it recorded, and a 409, whose key another
    /// request may yet commit).
    pub fn made_nothing(&self) -> bool {
        self.unsent
            || self
                .status
                .is_some_and(|s| (400..500).contains(&s) && s != 402 && s != 409)
    }

    pub fn payment(&self) -> Option<&PaymentSeen> {
        match (&self.body, self.ok) {
            (Body::Payment(p), true) => Some(p),
            _ => None,
        }
    }

    pub fn refund(&self) -> Option<&RefundSeen> {
        match (&self.body, self.ok) {
            (Body::Refund(r), true) => Some(r),
            _ => None,
        }
    }
}

/// Judge an answer (or its absence) against what the call expected.
pub fn judge(expect: Expect, status: Option<u16>, bytes: &[u8]) -> Reply {
    let Some(status) = status else {
        let ok = matches!(expect, Expect::Anything(_));
        return Reply {
            status,
            unsent: false,
            ok,
            error: (!ok).then(|| "no answer".to_string()),
            body: Body::None,
        };
    };
    let shape = match expect {
        Expect::Anything(shape) => {
            let body = match (200..300).contains(&status) {
                true => parse(shape, bytes).unwrap_or(Body::None),
                false => Body::None,
            };
            return Reply {
                status: Some(status),
                unsent: false,
                ok: true,
                error: None,
                body,
            };
        }
        Expect::Success(shape) if (200..300).contains(&status) => shape,
        Expect::Status(want, shape) if status == want => shape,
        _ => {
            return Reply {
                status: Some(status),
                unsent: false,
                ok: false,
                error: Some(format!("unexpected status {status}")),
                body: parse(Shape::Json, bytes).unwrap_or(Body::None),
            };
        }
    };
    match parse(shape, bytes) {
        Ok(body) => Reply {
            status: Some(status),
            unsent: false,
            ok: true,
            error: None,
            body,
        },
        Err(e) => Reply {
            status: Some(status),
            unsent: false,
            ok: false,
            error: Some(format!(
                "a {status} whose body is not {}: {e}",
                shape.noun()
            )),
            body: Body::None,
        },
    }
}

impl Shape {
    fn noun(self) -> &'static str {
        match self {
            Shape::Any => "anything",
            Shape::Json => "JSON",
            Shape::Payment => "a payment",
            Shape::DeclinedPayment => "an error carrying a payment",
            Shape::Refund => "a refund",
            Shape::Page => "a page of payments",
        }
    }
}

fn parse(shape: Shape, bytes: &[u8]) -> Result<Body, serde_json::Error> {
    Ok(match shape {
        Shape::Any => Body::None,
        Shape::Json => Body::Json(serde_json::from_slice(bytes)?),
        Shape::Payment => Body::Payment(serde_json::from_slice(bytes)?),
        Shape::DeclinedPayment => Body::Payment(
            serde_json::from_slice::<DeclinedPayment>(bytes)?
                .error
                .payment,
        ),
        Shape::Refund => Body::Refund(serde_json::from_slice(bytes)?),
        Shape::Page => Body::Page(serde_json::from_slice(bytes)?),
    })
}

/// How a journey sends its calls. Implementations record every call in the run's
/// metrics (Goose's and the live figures) and judge every answer with [`judge`].
pub trait Client: Send {
    fn send(&mut self, call: Call) -> impl Future<Output = JourneyResult<Reply>> + Send;

    /// Send all at once, each on its own connection, and answer in the calls' order.
    fn send_concurrently(
        &mut self,
        calls: Vec<Call>,
    ) -> impl Future<Output = JourneyResult<Vec<Reply>>> + Send;
}

/// A Goose user's client: requests go through Goose, so they land in its metrics and
/// reports, and success is marked by [`judge`], not by Goose's own status rule. Each
/// request goes to the run's next instance in turn (`RunContext::instances`).
pub struct GooseClient<'a> {
    user: &'a mut GooseUser,
    ctx: &'a RunContext,
}

impl<'a> GooseClient<'a> {
    pub fn new(user: &'a mut GooseUser, ctx: &'a RunContext) -> Self {
        GooseClient { user, ctx }
    }

    /// With mitigation on: a request starts now, in this user's cadence.
    fn starting(&mut self, now: Instant) {
        if self.ctx.co_mitigation == CoMitigation::Disabled {
            return;
        }
        match self.user.get_session_data_mut::<Cadence>() {
            Some(c) => c.started(now),
            None => {
                let mut c = Cadence::default();
                c.started(now);
                self.user.set_session_data(c);
            }
        }
    }

    /// With mitigation on: the requests this user would have sent while `call` took
    /// `latency`, into the histograms.
    fn backfill(&self, call: &Call, latency: Duration, reply: &Reply) {
        let expected = self
            .user
            .get_session_data::<Cadence>()
            .and_then(|c| c.expected(self.ctx.co_mitigation));
        if let Some(cadence) = expected {
            for l in cadence::backfill(latency, cadence) {
                self.ctx.record_backfill(
                    call.method.as_str(),
                    call.name,
                    l,
                    reply.ok,
                    reply.status,
                );
            }
        }
    }

    fn builder(&self, call: &Call) -> JourneyResult<reqwest::RequestBuilder> {
        let method = match call.method {
            Method::Get => GooseMethod::Get,
            Method::Post => GooseMethod::Post,
        };
        // An absolute URL: Goose uses it as it is, instead of joining its one host.
        let instance = self.ctx.instances.next();
        self.ctx.instances.sent_to(instance);
        let url = format!("{}{}", self.ctx.instances.base(instance), call.path);
        let mut b = self.user.get_request_builder(&method, &url)?;
        if let Some(m) = call.merchant {
            b = b.bearer_auth(&self.ctx.merchants[m].key);
        }
        if let Some(k) = &call.idempotency_key {
            b = b.header("Idempotency-Key", k);
        }
        if let Some(body) = &call.body {
            b = b.json(body);
        }
        if let Some(t) = call.timeout {
            b = b.timeout(t);
        }
        Ok(b)
    }
}

impl Client for GooseClient<'_> {
    async fn send(&mut self, call: Call) -> JourneyResult<Reply> {
        let builder = self.builder(&call)?;
        let request = GooseRequest::builder()
            .method(call.method.goose())
            .path(call.path.as_str())
            .name(call.name)
            .set_request_builder(builder)
            .build();
        let started = Instant::now();
        self.starting(started);
        let mut goose = self.user.request(request).await?;
        let (status, bytes, unsent) = match goose.response {
            Ok(r) => {
                let status = r.status().as_u16();
                match r.bytes().await {
                    Ok(b) => (Some(status), b.to_vec(), false),
                    Err(_) => (None, Vec::new(), false),
                }
            }
            Err(e) => (None, Vec::new(), e.is_connect()),
        };
        let mut reply = judge(call.expect, status, &bytes);
        reply.unsent = unsent;
        // Before the verdict: set_failure ends the transaction with an error, and a
        // failure the live figures (and the chaos windows) never saw would not count.
        let latency = started.elapsed();
        self.ctx.record(
            call.method.as_str(),
            call.name,
            latency,
            reply.ok,
            reply.status,
        );
        self.backfill(&call, latency, &reply);
        match (&reply.error, goose.request.success) {
            (None, false) => self.user.set_success(&mut goose.request)?,
            // set_failure records the failure, then returns an error to end the
            // transaction; the journey decides instead (a create with no answer is
            // noted for its resend, see `acks::Unanswered`).
            (Some(e), _) => {
                let _ = self.user.set_failure(e, &mut goose.request, None, None);
            }
            (None, true) => {}
        }
        Ok(reply)
    }

    async fn send_concurrently(&mut self, calls: Vec<Call>) -> JourneyResult<Vec<Reply>> {
        self.starting(Instant::now());
        let mut tries = Vec::with_capacity(calls.len());
        for call in calls {
            let builder = self.builder(&call)?;
            tries.push((
                call,
                tokio::spawn(async move {
                    let started = Instant::now();
                    let (answer, unsent) = match builder.send().await {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            (r.bytes().await.ok().map(|b| (status, b)), false)
                        }
                        Err(e) => (None, e.is_connect()),
                    };
                    (started.elapsed(), answer, unsent)
                }),
            ));
        }
        let mut replies = Vec::with_capacity(tries.len());
        for (call, task) in tries {
            let (elapsed, answer, unsent) = task
                .await
                .map_err(|e| Box::new(TransactionError::Custom(e.to_string())))?;
            let mut reply = match &answer {
                Some((status, bytes)) => judge(call.expect, Some(*status), bytes),
                None => judge(call.expect, None, &[]),
            };
            reply.unsent = unsent;
            self.ctx.record(
                call.method.as_str(),
                call.name,
                elapsed,
                reply.ok,
                reply.status,
            );
            self.backfill(&call, elapsed, &reply);
            self.user
                .record_custom_request_duration(
                    call.method.as_str(),
                    call.name,
                    elapsed,
                    reply.ok,
                    reply.status,
                    reply.error.as_deref(),
                )
                .await?;
            replies.push(reply);
        }
        Ok(replies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAYMENT: &str = r#"{"id":"pay_0190f3a2b4c5d6e7f8091a2b3c4d5e6f","amount":500,"currency":"usd","status":"succeeded","amount_captured":500,"amount_refunded":0}"#;

    #[test]
    fn a_2xx_with_the_promised_body_succeeds() {
        let r = judge(
            Expect::Success(Shape::Payment),
            Some(200),
            PAYMENT.as_bytes(),
        );
        assert!(r.ok, "{r:?}");
        assert_eq!(r.payment().map(|p| p.amount), Some(500));
    }

    #[test]
    fn a_2xx_whose_body_does_not_parse_fails_with_the_reason() {
        let short_id = PAYMENT.replace("pay_0", "pay_");
        for body in ["", "not json", r#"{"amount":5}"#, short_id.as_str()] {
            let r = judge(Expect::Success(Shape::Payment), Some(200), body.as_bytes());
            assert!(!r.ok, "{body:?} passed");
            let e = r.error.clone().unwrap();
            assert!(e.contains("is not a payment"), "{e}");
            assert_eq!(r.payment(), None);
        }
    }

    #[test]
    fn an_unexpected_status_fails_and_keeps_the_error_body() {
        let r = judge(
            Expect::Success(Shape::Payment),
            Some(503),
            br#"{"error":{"type":"api_error"}}"#,
        );
        assert!(!r.ok);
        assert_eq!(r.error.as_deref(), Some("unexpected status 503"));
        assert!(matches!(r.body, Body::Json(_)));
    }

    #[test]
    fn a_decline_is_judged_by_its_status_and_carried_payment() {
        let declined = format!(r#"{{"error":{{"type":"card_error","payment":{PAYMENT}}}}}"#);
        let expect = Expect::Status(402, Shape::DeclinedPayment);
        assert!(judge(expect, Some(402), declined.as_bytes()).ok);
        assert!(!judge(expect, Some(402), br#"{"error":{}}"#).ok);
        assert!(!judge(expect, Some(200), PAYMENT.as_bytes()).ok);
    }

    #[test]
    fn no_answer_fails_unless_the_client_gave_up_by_choice() {
        assert!(!judge(Expect::Success(Shape::Any), None, b"").ok);
        let anything = Expect::Anything(Shape::Payment);
        assert!(judge(anything, None, b"").ok);
        assert!(judge(anything, Some(500), b"").ok);
        let read = judge(anything, Some(200), PAYMENT.as_bytes());
        assert_eq!(
            read.payment().map(|p| p.id.to_string()).as_deref(),
            Some("pay_0190f3a2b4c5d6e7f8091a2b3c4d5e6f")
        );
    }
}
