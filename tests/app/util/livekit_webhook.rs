//! LiveKit webhooks as the server receives them: signed the way LiveKit
//! signs them and posted to /webhooks/livekit.

use base64::Engine;
use livekit_api::access_token::AccessToken;
use reqwest::StatusCode;
use sha2::Digest;

use super::{TestApp, services};

/// A webhook body signed the way LiveKit signs it.
pub fn signed(event: &livekit_protocol::WebhookEvent, secret: &str) -> (String, String) {
    let body = serde_json::to_string(event).unwrap();
    let hash =
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(body.as_bytes()));
    let token = AccessToken::with_api_key(services::LIVEKIT_KEY, secret)
        .with_sha256(&hash)
        .to_jwt()
        .unwrap();
    (body, token)
}

pub async fn post_webhook(app: &TestApp, body: &str, auth: &str) -> StatusCode {
    reqwest::Client::new()
        .post(format!("{}/webhooks/livekit", app.url))
        .header("Authorization", auth)
        .header("Content-Type", "application/webhook+json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
}
