//! LiveKit access tokens, one kind per role. Only called after `access::may`
//! said yes. `VideoGrants::default()` allows publishing, so every kind sets
//! every permission explicitly; a test decodes each kind and checks it.

use std::time::Duration;

use livekit_api::access_token::{AccessToken, AccessTokenError, VideoGrants};
use secrecy::ExposeSecret;

use crate::config::LiveKitConfig;
use crate::db::UserId;

/// The longest a viewer token lives; it is also cut at the grant's end.
pub const VIEWER_TTL: Duration = Duration::from_secs(10 * 60);
/// Hosts publish for hours; LiveKit refreshes connected participants' tokens.
pub const HOST_TTL: Duration = Duration::from_secs(60 * 60);

/// Subscribe-only: a viewer can neither publish media nor send data.
pub fn viewer(
    config: &LiveKitConfig,
    user: UserId,
    name: &str,
    room: &str,
    ttl: Duration,
) -> Result<String, AccessTokenError> {
    let grants = VideoGrants {
        room_join: true,
        room: room.to_owned(),
        can_subscribe: Some(true),
        can_publish: Some(false),
        can_publish_data: Some(false),
        can_publish_sources: Vec::new(),
        can_update_own_metadata: Some(false),
        ..Default::default()
    };
    mint(config, &super::viewer_identity(user), name, grants, ttl.min(VIEWER_TTL))
}

/// The channel owner on the broadcast page: publish, subscribe, data, room admin.
pub fn host(
    config: &LiveKitConfig,
    user: UserId,
    name: &str,
    room: &str,
) -> Result<String, AccessTokenError> {
    let grants = VideoGrants {
        room_join: true,
        room_admin: true,
        room: room.to_owned(),
        can_subscribe: Some(true),
        can_publish: Some(true),
        can_publish_data: Some(true),
        can_update_own_metadata: Some(false),
        ..Default::default()
    };
    mint(config, &super::host_identity(user), name, grants, HOST_TTL)
}

fn mint(
    config: &LiveKitConfig,
    identity: &str,
    name: &str,
    grants: VideoGrants,
    ttl: Duration,
) -> Result<String, AccessTokenError> {
    AccessToken::with_api_key(&config.api_key, config.api_secret.expose_secret())
        .with_identity(identity)
        .with_name(name)
        .with_ttl(ttl)
        .with_grants(grants)
        .to_jwt()
}
