//! LiveKit: the server-to-server clients. Tokens per role, rooms, egress,
//! ingress and webhook verification grow here; nothing in this module decides
//! who may do what (that is `access.rs`).

pub mod ingress;
pub mod tokens;

use crate::db::UserId;

/// A viewer's LiveKit identity: their user id. One identity per user means
/// one pass plays on one device at a time (a second connection replaces the first).
pub fn viewer_identity(user: UserId) -> String {
    user.to_string()
}

/// The owner publishing from the broadcast page: a separate identity, so that
/// the owner watching their own stream in another tab does not replace (and
/// so disconnect) their broadcast.
pub fn host_identity(user: UserId) -> String {
    format!("host-{user}")
}

/// The user behind a participant identity of ours (viewer or host); `None`
/// for participants that are not users (egress, ingress).
pub fn user_of(identity: &str) -> Option<UserId> {
    identity.strip_prefix("host-").unwrap_or(identity).parse().ok()
}

use livekit_api::services::egress::EgressClient;
use livekit_api::services::ingress::IngressClient;
use livekit_api::services::room::RoomClient;
use secrecy::ExposeSecret;

use crate::config::LiveKitConfig;

/// The LiveKit API clients the app uses.
pub struct LiveKit {
    pub rooms: RoomClient,
    /// Recordings (LiveKit's Egress service, behind the same URL).
    pub egress: EgressClient,
    /// OBS ingress (LiveKit's Ingress service, behind the same URL).
    pub ingress: IngressClient,
}

impl LiveKit {
    pub fn new(config: &LiveKitConfig) -> Self {
        let host = config.url.as_str().trim_end_matches('/');
        let secret = config.api_secret.expose_secret();
        Self {
            rooms: RoomClient::with_api_key(host, &config.api_key, secret),
            egress: EgressClient::with_api_key(host, &config.api_key, secret),
            ingress: IngressClient::with_api_key(host, &config.api_key, secret),
        }
    }
}
