//! LiveKit access tokens, one kind per role. Only called after `access::may`
//! said yes. `VideoGrants::default()` allows publishing, so every kind sets
//! every permission explicitly; a test decodes each kind and checks it.

use std::time::Duration;

use livekit_api::access_token::{AccessToken, AccessTokenError, VideoGrants};
use secrecy::ExposeSecret;

use crate::config::LiveKitConfig;
use crate::db::{StreamId, UserId};

/// The longest a viewer token lives; it is also cut at the grant's end.
pub const VIEWER_TTL: Duration = Duration::from_secs(10 * 60);
/// Hosts publish for hours; LiveKit refreshes connected participants' tokens.
pub const HOST_TTL: Duration = Duration::from_secs(60 * 60);
/// An encoder's stream key is stored in OBS, so it lives long: a year. What
/// ends it sooner is a reset (a new generation: the old identity is refused
/// on participant_joined), not its expiry.
pub const ENCODER_TTL: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// Joins `room` to watch only: neither media nor data go out.
fn subscribe_only(room: &str) -> VideoGrants {
    VideoGrants {
        room_join: true,
        room: room.to_owned(),
        can_subscribe: Some(true),
        can_publish: Some(false),
        can_publish_data: Some(false),
        can_publish_sources: Vec::new(),
        can_update_own_metadata: Some(false),
        ..Default::default()
    }
}

/// Subscribe-only: a viewer can neither publish media nor send data.
pub fn viewer(
    config: &LiveKitConfig,
    user: UserId,
    name: &str,
    room: &str,
    ttl: Duration,
) -> Result<String, AccessTokenError> {
    mint(
        config,
        &super::viewer_identity(user),
        name,
        subscribe_only(room),
        ttl.min(VIEWER_TTL),
    )
}

/// A guest on a public stream: subscribe-only, like a viewer.
pub fn guest(
    config: &LiveKitConfig,
    guest: crate::auth::guest::GuestId,
    room: &str,
    ttl: Duration,
) -> Result<String, AccessTokenError> {
    mint(
        config,
        &super::guest_identity(guest),
        "Guest",
        subscribe_only(room),
        ttl.min(VIEWER_TTL),
    )
}

/// The channel owner on the broadcast page: publish, subscribe, data, room
/// admin, and their own attributes (`brb`: since when they paused, which the
/// watch page shows as "Be right back").
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
        can_update_own_metadata: Some(true),
        ..Default::default()
    };
    mint(config, &super::host_identity(user), name, grants, HOST_TTL)
}

/// The built-in recorder: a hidden participant that only subscribes (it
/// is left out of the participant lists other clients see) and is marked
/// as a recorder. Short-lived: it is used at once, and a reconnect mints anew.
pub fn recorder(
    config: &LiveKitConfig,
    stream: crate::db::StreamId,
    room: &str,
) -> Result<String, AccessTokenError> {
    let grants = VideoGrants {
        hidden: true,
        recorder: true,
        ..subscribe_only(room)
    };
    let identity = super::Participant::Recorder(stream).identity();
    mint(config, &identity, "Recorder", grants, RECORDER_TTL)
}

/// The recorder joins right after minting its token.
pub const RECORDER_TTL: Duration = Duration::from_secs(5 * 60);

/// An encoder's stream key (OBS over WHIP, the bearer token livekit-server's
/// `/whip/v1` takes): publish-only into one room, as the identity of this key's
/// generation. It carries the room's settings (`room`), because the room may
/// be created by the encoder's join rather than by going live.
pub fn encoder(
    config: &LiveKitConfig,
    stream: StreamId,
    generation: i32,
    room: livekit_protocol::RoomConfiguration,
) -> Result<String, AccessTokenError> {
    let grants = VideoGrants {
        room_join: true,
        room: room.name.clone(),
        can_subscribe: Some(false),
        can_publish: Some(true),
        can_publish_data: Some(false),
        can_update_own_metadata: Some(false),
        ..Default::default()
    };
    let identity = super::Participant::Encoder { stream, generation }.identity();
    AccessToken::with_api_key(&config.api_key, config.api_secret.expose_secret())
        .with_identity(&identity)
        .with_name("OBS")
        .with_ttl(ENCODER_TTL)
        .with_grants(grants)
        .with_room_config(room)
        .to_jwt()
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
