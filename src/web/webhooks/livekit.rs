//! POST /webhooks/livekit: LiveKit's events, verified and applied once.
//!
//! The raw body is verified against the `Authorization` JWT (its `sha256`
//! claim) with livekit-api's `WebhookReceiver`: a bad or missing signature is
//! 401 and changes nothing. Each event id is recorded (unique) before it is
//! applied, so a redelivered event is applied once. Events may come in any
//! order; each handler only moves state forward. Rooms without our prefix, or
//! unknown to this database, are someone else's and are ignored. What is
//! stored of a payload is `db::events`' allowlist, never the whole body: it
//! carries credentials.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use livekit_api::access_token::TokenVerifier;
use livekit_api::webhooks::WebhookReceiver;
use secrecy::ExposeSecret;

use crate::error::{AppError, AppResult};
use crate::lifecycle;
use crate::state::AppState;

pub async fn livekit(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult<StatusCode> {
    let config = &state.config.livekit;
    let receiver = WebhookReceiver::new(TokenVerifier::with_api_key(
        &config.api_key,
        config.api_secret.expose_secret(),
    ));
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let auth = auth.strip_prefix("Bearer ").unwrap_or(auth);
    let Ok(body) = std::str::from_utf8(&body) else {
        return Ok(StatusCode::BAD_REQUEST);
    };
    let event = match receiver.receive(body, auth) {
        Ok(event) => event,
        Err(e) => {
            tracing::warn!(error = %e, "webhook refused: bad signature");
            metrics::counter!("livekit_webhooks_total", "outcome" => "refused").increment(1);
            return Ok(StatusCode::UNAUTHORIZED);
        }
    };
    // Egress and ingress events name their room in their info, not in `room`.
    let room = lifecycle::room_of(&event).unwrap_or_default();
    if !room.starts_with(config.room_prefix.as_str()) {
        return Ok(StatusCode::OK);
    }
    // Events carry credentials (TURN password, stream key, egress's S3 keys):
    // the event log keeps an allowlist of fields only (`db::events`).
    let payload: serde_json::Value =
        serde_json::from_str(body).map_err(|e| AppError::Internal(e.into()))?;
    let mut conn = state.db.get().await?;
    if !crate::db::events::record(&mut conn, &event.id, &event.event, &payload).await? {
        metrics::counter!("livekit_webhooks_total", "outcome" => "duplicate").increment(1);
        return Ok(StatusCode::OK);
    }
    drop(conn);
    metrics::counter!("livekit_webhooks_total", "outcome" => "applied", "event" => event.event.clone()).increment(1);
    if let Err(e) = lifecycle::apply_event(&state, &event).await {
        // Not applied: forget it, and LiveKit's retry (after our 500) applies it.
        let mut conn = state.db.get().await?;
        crate::db::events::forget(&mut conn, &event.id).await?;
        return Err(e.into());
    }
    Ok(StatusCode::OK)
}
