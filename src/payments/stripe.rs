//! Stripe: Checkout Sessions over Stripe's HTTP API, and the webhook events
//! that are the only proof of payment.
//!
//! - `StripeProvider::start_checkout` creates a Checkout Session (form-encoded
//!   POST /v1/checkout/sessions) with an `Idempotency-Key` derived from the
//!   order, so a retried request never opens a second session.
//! - `verify_signature` checks `Stripe-Signature` (HMAC-SHA256 of
//!   "{t}.{raw body}", any matching `v1`, constant-time, 300 s tolerance).
//! - `apply` turns a verified event into order changes, each in one
//!   transaction, idempotently: replays and concurrent duplicates change nothing.
//!
//! Never logs the secret key, the webhook secret, or request/response bodies.

use std::time::Duration;

use async_trait::async_trait;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tracing::instrument;
use url::Url;

use super::{Checkout, CheckoutUrls, PaymentError, PaymentProvider, ProviderKind, count};
use crate::config::StripeConfig;
use crate::db::orders::{self, Order, Status};
use crate::db::passes::Pass;
use crate::db::{GrantId, OrderId};

/// How far a webhook's timestamp may be from our clock (Stripe's libraries use the same).
pub const TOLERANCE_SECONDS: i64 = 300;

pub struct StripeProvider {
    client: reqwest::Client,
    api_base: Url,
    secret_key: SecretString,
}

impl StripeProvider {
    pub fn new(config: &StripeConfig) -> Self {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .user_agent(concat!("stagepass/", env!("CARGO_PKG_VERSION")))
            .build()
            // Fails only when no TLS backend can be initialised: a broken build.
            .expect("building the HTTP client for Stripe");
        Self {
            client,
            api_base: config.api_base.clone(),
            secret_key: config.secret_key.clone(),
        }
    }

    /// Stripe's messages may quote what was sent (stripe-mock echoes the
    /// Authorization header): never let the key reach a log.
    fn redact(&self, message: &str) -> String {
        let key = self.secret_key.expose_secret();
        let message = if key.is_empty() {
            message.to_owned()
        } else {
            message.replace(key, "[redacted]")
        };
        message.chars().take(300).collect()
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.api_base.as_str().trim_end_matches('/'))
    }
}

/// Same order, same key: Stripe answers a retried request with the session it
/// already created. The creation time keeps keys distinct across databases
/// that reuse order ids (a reset development database, say).
pub fn idempotency_key(order: &Order) -> String {
    format!(
        "stagepass-order-{}-{}",
        order.id,
        order.created_at.timestamp_micros()
    )
}

/// The Checkout Session's form fields (Stripe's bracketed form encoding).
fn session_form(order: &Order, pass: &Pass, urls: &CheckoutUrls) -> Vec<(&'static str, String)> {
    vec![
        ("mode", "payment".into()),
        (
            "line_items[0][price_data][currency]",
            order.currency.to_ascii_lowercase(),
        ),
        (
            "line_items[0][price_data][unit_amount]",
            order.amount_cents.to_string(),
        ),
        (
            "line_items[0][price_data][product_data][name]",
            pass.name.clone(),
        ),
        ("line_items[0][quantity]", "1".into()),
        ("success_url", urls.success.to_string()),
        ("cancel_url", urls.cancel.to_string()),
        ("client_reference_id", order.id.to_string()),
        ("metadata[order_id]", order.id.to_string()),
        ("metadata[pass_id]", pass.id.to_string()),
    ]
}

#[derive(Deserialize)]
struct SessionCreated {
    id: String,
    url: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    message: Option<String>,
}

#[async_trait]
impl PaymentProvider for StripeProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Stripe
    }

    #[instrument(skip_all, fields(order_id = %order.id))]
    async fn start_checkout(
        &self,
        order: &Order,
        pass: &Pass,
        urls: &CheckoutUrls,
    ) -> Result<Checkout, PaymentError> {
        let form = session_form(order, pass, urls);
        let key = idempotency_key(order);
        let url = self.endpoint("/v1/checkout/sessions");
        // One retry, with the same idempotency key, for what Stripe says is
        // worth retrying: network trouble, 409 (a concurrent request with the
        // same key), 429 and 5xx.
        let mut attempt = 0;
        let response = loop {
            attempt += 1;
            let sent = self
                .client
                .post(&url)
                .bearer_auth(self.secret_key.expose_secret())
                .header("Idempotency-Key", &key)
                .form(&form)
                .send()
                .await;
            let retry = match &sent {
                Err(e) => e.is_connect() || e.is_timeout(),
                Ok(r) => {
                    let should = r
                        .headers()
                        .get("stripe-should-retry")
                        .and_then(|v| v.to_str().ok());
                    let status = r.status().as_u16();
                    should != Some("false")
                        && (should == Some("true") || matches!(status, 409 | 429 | 500..=599))
                }
            };
            if retry && attempt < 2 {
                tracing::warn!(attempt, "Stripe checkout request failed; retrying");
                tokio::time::sleep(Duration::from_millis(300)).await;
                continue;
            }
            break sent;
        };
        let response = response.map_err(|e| {
            PaymentError::Unreachable(if e.is_timeout() {
                "timed out".to_owned()
            } else {
                e.without_url().to_string()
            })
        })?;
        let status = response.status();
        if !status.is_success() {
            let message = response
                .json::<ErrorBody>()
                .await
                .ok()
                .and_then(|b| b.error.message)
                .map(|m| self.redact(&m))
                .unwrap_or_else(|| "no reason given".to_owned());
            tracing::warn!(status = status.as_u16(), %message, "Stripe refused the checkout");
            return Err(PaymentError::Refused {
                status: status.as_u16(),
                message,
            });
        }
        let session: SessionCreated = response
            .json()
            .await
            .map_err(|e| PaymentError::Unexpected(e.without_url().to_string()))?;
        let Some(redirect_url) = session
            .url
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        else {
            return Err(PaymentError::Unexpected(
                "the Checkout Session has no URL".to_owned(),
            ));
        };
        tracing::info!(session = %session.id, "Stripe Checkout Session created");
        Ok(Checkout {
            provider_ref: Some(session.id),
            redirect_url,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    Missing,
    #[error("Stripe-Signature has no timestamp or no v1 signature")]
    Malformed,
    #[error("no v1 signature matches")]
    Mismatch,
    #[error("the timestamp is more than {TOLERANCE_SECONDS} s away from now")]
    OutsideTolerance,
}

/// Checks a `Stripe-Signature` header (`t=…,v1=…[,v1=…][,v0=…]`) against the
/// raw body: some `v1` must be the hex HMAC-SHA256 of "{t}.{body}" under
/// `secret`, and `t` within `TOLERANCE_SECONDS` of `now` (Unix seconds).
pub fn verify_signature(
    secret: &SecretString,
    header: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => timestamp = Some(v),
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let (Some(t), false) = (timestamp, signatures.is_empty()) else {
        return Err(SignatureError::Malformed);
    };
    let at: i64 = t.parse().map_err(|_| SignatureError::Malformed)?;

    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
        .map_err(|_| SignatureError::Mismatch)?;
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = to_hex(&mac.finalize().into_bytes());
    let matches = signatures
        .iter()
        .any(|s| bool::from(s.as_bytes().ct_eq(expected.as_bytes())));
    if !matches {
        return Err(SignatureError::Mismatch);
    }
    if (now - at).abs() > TOLERANCE_SECONDS {
        return Err(SignatureError::OutsideTolerance);
    }
    Ok(())
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A verified event, reduced to what we act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `checkout.session.completed`: paid now, or (`paid == false`) an
    /// asynchronous payment method that settles later.
    CheckoutCompleted(SessionEvent),
    /// `checkout.session.async_payment_succeeded`.
    AsyncPaymentSucceeded(SessionEvent),
    /// `checkout.session.async_payment_failed`.
    AsyncPaymentFailed(SessionEvent),
    /// `checkout.session.expired`: the buyer never paid.
    CheckoutExpired(SessionEvent),
    /// `charge.refunded`; `fully` is false for a partial refund.
    ChargeRefunded {
        payment_intent: Option<String>,
        fully: bool,
    },
    /// Anything else: acknowledged and ignored.
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEvent {
    pub session: String,
    /// Our order id, from the session's `metadata.order_id` — only sessions we
    /// created carry it (`client_reference_id` can be set by anyone on a
    /// Payment Link, so it is never trusted).
    pub client_reference: Option<OrderId>,
    pub payment_intent: Option<String>,
    pub paid: bool,
    /// What Stripe charged, checked against the order before completing it.
    pub amount_total: Option<i64>,
    pub currency: Option<String>,
}

#[derive(Deserialize)]
struct RawEvent {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: RawData,
}

#[derive(Deserialize)]
struct RawData {
    object: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
#[error("not a Stripe event: {0}")]
pub struct ParseError(String);

/// Parses a (verified) event body: its id, type, and what we act on.
pub fn parse_event(body: &[u8]) -> Result<(String, String, Event), ParseError> {
    let raw: RawEvent = serde_json::from_slice(body).map_err(|e| ParseError(e.to_string()))?;
    let object = &raw.data.object;
    let text = |key: &str| object.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    // Expandable fields arrive as an id, or as the object with its id.
    let id_of = |key: &str| {
        object.get(key).and_then(|v| {
            v.as_str()
                .or_else(|| v.get("id").and_then(|i| i.as_str()))
                .map(str::to_owned)
        })
    };
    let session = || -> Result<SessionEvent, ParseError> {
        Ok(SessionEvent {
            session: text("id").ok_or_else(|| ParseError("a session without an id".into()))?,
            client_reference: object
                .pointer("/metadata/order_id")
                .and_then(|v| v.as_str())
                .and_then(|r| r.parse().ok()),
            amount_total: object.get("amount_total").and_then(|v| v.as_i64()),
            currency: text("currency").map(|c| c.to_ascii_uppercase()),
            payment_intent: id_of("payment_intent"),
            paid: matches!(
                text("payment_status").as_deref(),
                Some("paid" | "no_payment_required")
            ),
        })
    };
    let event = match raw.kind.as_str() {
        "checkout.session.completed" => Event::CheckoutCompleted(session()?),
        "checkout.session.async_payment_succeeded" => Event::AsyncPaymentSucceeded(session()?),
        "checkout.session.async_payment_failed" => Event::AsyncPaymentFailed(session()?),
        "checkout.session.expired" => Event::CheckoutExpired(session()?),
        "charge.refunded" => Event::ChargeRefunded {
            payment_intent: id_of("payment_intent"),
            fully: object
                .get("refunded")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
        },
        _ => Event::Other,
    };
    Ok((raw.id, raw.kind, event))
}

/// What an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    Paid {
        order: OrderId,
        grant: Option<GrantId>,
    },
    Refunded {
        order: OrderId,
    },
    Failed {
        order: OrderId,
    },
    Canceled {
        order: OrderId,
    },
    /// A replay, a duplicate, or an event that comes too late to matter.
    NothingToDo,
    /// Paid later (an asynchronous payment method): wait for its outcome.
    AwaitingPayment,
    /// No order of ours has this session or payment.
    UnknownOrder,
    Ignored,
}

/// Applies a verified event. Each change is one transaction that locks the
/// order row first, so replays and concurrent duplicates find it done.
#[instrument(skip_all)]
pub async fn apply(conn: &mut AsyncPgConnection, event: &Event) -> diesel::QueryResult<Applied> {
    let applied = match event {
        Event::CheckoutCompleted(s) if !s.paid => Applied::AwaitingPayment,
        Event::CheckoutCompleted(s) | Event::AsyncPaymentSucceeded(s) => {
            conn.transaction(async |conn| {
                let Some(order) =
                    orders::lock_by_checkout_ref(conn, &s.session, s.client_reference).await?
                else {
                    return Ok::<_, diesel::result::Error>(Applied::UnknownOrder);
                };
                // A session that charged something else than this order is not its payment.
                let amount_differs = s.amount_total.is_some_and(|a| a != order.amount_cents);
                let currency_differs = s.currency.as_deref().is_some_and(|c| c != order.currency);
                if amount_differs || currency_differs {
                    tracing::error!(order = %order.id, "a completed session's amount or currency differs from its order; not granted");
                    return Ok(Applied::UnknownOrder);
                }
                let before = order.status;
                let grant =
                    orders::complete_order(conn, order.id, s.payment_intent.as_deref()).await?;
                let now = orders::find(conn, order.id).await?.map(|o| o.status);
                Ok(if before != Status::Paid && now == Some(Status::Paid) {
                    Applied::Paid {
                        order: order.id,
                        grant: grant.map(|g| g.id),
                    }
                } else {
                    Applied::NothingToDo
                })
            })
            .await?
        }
        Event::AsyncPaymentFailed(s) | Event::CheckoutExpired(s) => {
            let to = if matches!(event, Event::AsyncPaymentFailed(_)) {
                Status::Failed
            } else {
                Status::Canceled
            };
            conn.transaction(async |conn| {
                let Some(order) =
                    orders::lock_by_checkout_ref(conn, &s.session, s.client_reference).await?
                else {
                    return Ok::<_, diesel::result::Error>(Applied::UnknownOrder);
                };
                Ok(match orders::close_pending(conn, order.id, to).await? {
                    Some(o) if to == Status::Failed => Applied::Failed { order: o.id },
                    Some(o) => Applied::Canceled { order: o.id },
                    None => Applied::NothingToDo,
                })
            })
            .await?
        }
        // A partial refund is a goodwill gesture, not the end of the purchase.
        Event::ChargeRefunded { fully: false, .. } => Applied::Ignored,
        Event::ChargeRefunded {
            payment_intent: Some(pi),
            fully: true,
        } => match orders::refund(conn, pi).await? {
            Some(order) => Applied::Refunded { order: order.id },
            None => Applied::NothingToDo,
        },
        Event::ChargeRefunded { .. } => Applied::UnknownOrder,
        Event::Other => Applied::Ignored,
    };
    match &applied {
        Applied::Paid { .. } => count(ProviderKind::Stripe, "paid"),
        Applied::Refunded { .. } => count(ProviderKind::Stripe, "refunded"),
        Applied::Failed { .. } => count(ProviderKind::Stripe, "failed"),
        Applied::Canceled { .. } => count(ProviderKind::Stripe, "canceled"),
        _ => {}
    }
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> SecretString {
        SecretString::from("whsec_test".to_owned())
    }

    fn sign(t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(b"whsec_test").unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        to_hex(&mac.finalize().into_bytes())
    }

    #[test]
    fn a_matching_v1_within_tolerance_is_accepted() {
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_700_000_000;
        let good = sign(now, body);
        let header = format!("t={now},v1={good}");
        assert_eq!(
            verify_signature(&secret(), Some(&header), body, now),
            Ok(())
        );
        // Any of several v1 signatures (a secret being rolled), v0 ignored.
        let header = format!("t={now}, v1={}, v1={good}, v0=abc", "0".repeat(64));
        assert_eq!(
            verify_signature(&secret(), Some(&header), body, now + 299),
            Ok(())
        );
    }

    #[test]
    fn everything_else_is_refused() {
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_700_000_000;
        let good = sign(now, body);
        let check = |h: &str, at: i64| verify_signature(&secret(), Some(h), body, at);
        assert_eq!(
            verify_signature(&secret(), None, body, now),
            Err(SignatureError::Missing)
        );
        assert_eq!(check("", now), Err(SignatureError::Malformed));
        assert_eq!(
            check(&format!("v1={good}"), now),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            check(&format!("t={now}"), now),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            check(&format!("t={now},v1={}", sign(now, b"other body")), now),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed: changing it breaks the signature.
        assert_eq!(
            check(&format!("t={},v1={good}", now + 1), now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            check(&format!("t={now},v1={good}"), now + 301),
            Err(SignatureError::OutsideTolerance)
        );
        assert_eq!(
            check(&format!("t={now},v1={good}"), now - 301),
            Err(SignatureError::OutsideTolerance)
        );
        assert_eq!(
            check(&format!("t={now},v1={}", good.to_uppercase()), now),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn events_are_reduced_to_what_we_act_on() {
        let body = br#"{"id":"evt_1","type":"checkout.session.completed","data":{"object":
            {"id":"cs_test_1","client_reference_id":"99","metadata":{"order_id":"12"},"payment_intent":"pi_1",
             "payment_status":"paid","amount_total":900,"currency":"usd"}}}"#;
        let (id, kind, event) = parse_event(body).unwrap();
        assert_eq!(
            (id.as_str(), kind.as_str()),
            ("evt_1", "checkout.session.completed")
        );
        assert_eq!(
            event,
            Event::CheckoutCompleted(SessionEvent {
                session: "cs_test_1".into(),
                client_reference: Some(OrderId(12)),
                payment_intent: Some("pi_1".into()),
                paid: true,
                amount_total: Some(900),
                currency: Some("USD".into()),
            })
        );
        let body = br#"{"id":"evt_2","type":"charge.refunded","data":{"object":
            {"id":"ch_1","payment_intent":{"id":"pi_1"},"refunded":true}}}"#;
        assert_eq!(
            parse_event(body).unwrap().2,
            Event::ChargeRefunded {
                payment_intent: Some("pi_1".into()),
                fully: true
            }
        );
        let body = br#"{"id":"evt_3","type":"customer.created","data":{"object":{}}}"#;
        assert_eq!(parse_event(body).unwrap().2, Event::Other);
        assert!(parse_event(b"not json").is_err());
    }
}
