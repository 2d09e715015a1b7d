//! POST /webhooks/stripe: Stripe's events, verified, then applied by
//! `payments::stripe` (a paid checkout session completes its order and makes
//! the grant, once). Signed, so exempt from CSRF (see auth/csrf.rs).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;

use crate::config::PaymentsConfig;
use crate::error::{AppError, AppResult};
use crate::payments::stripe as payments;
use crate::state::AppState;

/// POST /webhooks/stripe: verified against `Stripe-Signature` before
/// anything is read; any failure is 400 and changes nothing. Database
/// trouble answers 5xx, and Stripe retries. Unknown events: 200, ignored.
pub async fn stripe(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult<StatusCode> {
    let PaymentsConfig::Stripe(config) = &state.config.payments else {
        return Err(AppError::NotFound);
    };
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok());
    if let Err(e) = payments::verify_signature(
        &config.webhook_secret,
        signature,
        &body,
        Utc::now().timestamp(),
    ) {
        tracing::warn!(error = %e, "Stripe webhook refused");
        metrics::counter!("stripe_webhooks_total", "outcome" => "refused").increment(1);
        return Ok(StatusCode::BAD_REQUEST);
    }
    let (event_id, event_type, event) = match payments::parse_event(&body) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::warn!(error = %e, "Stripe webhook refused: unreadable event");
            metrics::counter!("stripe_webhooks_total", "outcome" => "refused").increment(1);
            return Ok(StatusCode::BAD_REQUEST);
        }
    };
    let mut conn = state.db.get().await?;
    let applied = payments::apply(&mut conn, &event).await?;
    tracing::info!(%event_id, %event_type, ?applied, "Stripe webhook");
    metrics::counter!("stripe_webhooks_total", "outcome" => "accepted").increment(1);
    Ok(StatusCode::OK)
}
