//! LiveKit: the server-to-server clients. Tokens per role, rooms, egress,
//! ingress and webhook verification grow here; nothing in this module decides
//! who may do what (that is `access.rs`).

pub mod tokens;

use livekit_api::services::room::RoomClient;
use secrecy::ExposeSecret;

use crate::config::LiveKitConfig;

/// The LiveKit API clients the app uses.
pub struct LiveKit {
    pub rooms: RoomClient,
}

impl LiveKit {
    pub fn new(config: &LiveKitConfig) -> Self {
        let host = config.url.as_str().trim_end_matches('/');
        Self {
            rooms: RoomClient::with_api_key(
                host,
                &config.api_key,
                config.api_secret.expose_secret(),
            ),
        }
    }
}
