//! LiveKit: the server-to-server clients. Tokens per role, rooms, egress,
//! ingress and webhook verification grow here; nothing in this module decides
//! who may do what (that is `access.rs`).

pub mod ingress;
pub mod tokens;

use crate::db::{StreamId, UserId};

/// Who a participant in one of our rooms is, read from its LiveKit identity.
/// Every identity the app mints is written and read here, and nowhere else,
/// so that a check such as "is this the host?" cannot compare the wrong form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Participant {
    /// A viewer (or a team member watching): the identity is their user id.
    /// One identity per user means one pass plays on one device at a time.
    Viewer(UserId),
    /// The owner publishing from the broadcast page (`host-{user}`): a separate
    /// identity, so that the owner watching in another tab does not replace
    /// (and so disconnect) their broadcast.
    Host(UserId),
    /// An encoder (OBS over WHIP) publishing with a stream key:
    /// `obs-{stream}-{generation}`; a reset key bumps the generation.
    Encoder { stream: StreamId, generation: i32 },
    /// LiveKit's Ingress service publishing for a stream (`ingress-{stream}`).
    Ingress(StreamId),
    /// The built-in recorder: a hidden, subscribe-only participant
    /// (`recorder-{stream}`). Never a viewer.
    Recorder(StreamId),
    /// A visitor without an account on a public stream (`guest-{id}`,
    /// `auth::guest`): subscribe-only, like a viewer.
    Guest(GuestTag),
    /// Anything else (LiveKit Egress, participants of another deployment).
    Other,
}

impl Participant {
    /// Reads an identity. Only the exact forms `identity()` writes are ours:
    /// `"+8"`, `"08"` or `"host- 8"` are `Other`, so that `parse` and
    /// `identity` are each other's inverse and a check on the parsed form is a
    /// check on the very string LiveKit knows.
    pub fn parse(identity: &str) -> Self {
        let id = |s: &str| canonical(s).filter(|n| *n > 0);
        if let Some(rest) = identity.strip_prefix("host-") {
            return id(rest).map_or(Self::Other, |n| Self::Host(UserId(n)));
        }
        if let Some(rest) = identity.strip_prefix("obs-") {
            return rest
                .split_once('-')
                .and_then(|(stream, generation)| {
                    Some(Self::Encoder {
                        stream: StreamId(id(stream)?),
                        generation: i32::try_from(canonical(generation)?).ok()?,
                    })
                })
                .unwrap_or(Self::Other);
        }
        if let Some(rest) = identity.strip_prefix("ingress-") {
            return id(rest).map_or(Self::Other, |n| Self::Ingress(StreamId(n)));
        }
        if let Some(rest) = identity.strip_prefix("guest-") {
            return GuestTag::parse(rest).map_or(Self::Other, Self::Guest);
        }
        if let Some(rest) = identity.strip_prefix("recorder-") {
            return id(rest).map_or(Self::Other, |n| Self::Recorder(StreamId(n)));
        }
        id(identity).map_or(Self::Other, |n| Self::Viewer(UserId(n)))
    }

    /// The identity LiveKit knows this participant by.
    pub fn identity(&self) -> String {
        match self {
            Self::Viewer(user) => user.to_string(),
            Self::Host(user) => format!("host-{user}"),
            Self::Encoder { stream, generation } => format!("obs-{stream}-{generation}"),
            Self::Ingress(stream) => format!("ingress-{stream}"),
            Self::Recorder(stream) => format!("recorder-{stream}"),
            Self::Guest(tag) => format!("guest-{}", tag.hex()),
            Self::Other => String::new(),
        }
    }

    /// The user behind the participant (viewer or host); `None` for
    /// participants that are not users (encoders, ingress, the recorder, egress).
    pub fn user(&self) -> Option<UserId> {
        match self {
            Self::Viewer(user) | Self::Host(user) => Some(*user),
            _ => None,
        }
    }

    /// Publishes the stream's media (the host, an encoder, LiveKit Ingress).
    pub fn is_publisher(&self) -> bool {
        matches!(
            self,
            Self::Host(_) | Self::Encoder { .. } | Self::Ingress(_)
        )
    }
}

/// A number written as `to_string` writes it: digits only, no sign, no
/// leading zero.
fn canonical(s: &str) -> Option<i64> {
    let plain =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    plain.then(|| s.parse().ok()).flatten()
}

/// A viewer's LiveKit identity: their user id.
pub fn viewer_identity(user: UserId) -> String {
    Participant::Viewer(user).identity()
}

/// A guest's LiveKit identity.
pub fn guest_identity(guest: GuestId) -> String {
    Participant::Guest(guest.tag()).identity()
}

/// The owner publishing from the broadcast page.
pub fn host_identity(user: UserId) -> String {
    Participant::Host(user).identity()
}

/// The user behind a participant identity of ours (viewer or host); `None`
/// for participants that are not users.
pub fn user_of(identity: &str) -> Option<UserId> {
    Participant::parse(identity).user()
}

use crate::auth::guest::{GuestId, GuestTag};
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_identity_we_mint_reads_back_as_itself() {
        let all = [
            Participant::Viewer(UserId(8)),
            Participant::Host(UserId(8)),
            Participant::Encoder {
                stream: StreamId(42),
                generation: 0,
            },
            Participant::Encoder {
                stream: StreamId(42),
                generation: 3,
            },
            Participant::Ingress(StreamId(42)),
            Participant::Recorder(StreamId(42)),
            Participant::Viewer(UserId(i64::MAX)),
            Participant::Guest(GuestTag(0xfeed)),
            Participant::Guest(GuestTag(u128::MAX)),
        ];
        for p in all {
            assert_eq!(Participant::parse(&p.identity()), p, "{}", p.identity());
        }
        assert_eq!(Participant::Host(UserId(8)).identity(), "host-8");
        assert_eq!(
            Participant::Guest(GuestTag(0xfeed)).identity(),
            "guest-0000000000000000000000000000feed"
        );
        assert_eq!(Participant::parse("guest-feed"), Participant::Other);
        assert_eq!(
            Participant::Encoder {
                stream: StreamId(42),
                generation: 3
            }
            .identity(),
            "obs-42-3"
        );
        assert_eq!(Participant::Ingress(StreamId(42)).identity(), "ingress-42");
        assert_eq!(
            Participant::Recorder(StreamId(42)).identity(),
            "recorder-42"
        );
        assert_eq!(viewer_identity(UserId(8)), "8");
        assert_eq!(host_identity(UserId(8)), "host-8");
    }

    #[test]
    fn only_the_exact_forms_are_ours() {
        for identity in [
            "",
            "0",
            "08",
            "+8",
            "-8",
            " 8",
            "8 ",
            "8a",
            "host-",
            "host-0",
            "host-08",
            "host-+8",
            "host--8",
            "host-8-1",
            "Host-8",
            "obs-42",
            "obs-42-",
            "obs--3",
            "obs-0-1",
            "obs-42-01",
            "obs-42--1",
            "obs-42-+1",
            "obs-42-3-1",
            "obs-42-99999999999",
            "ingress-",
            "ingress-abc",
            "recorder-0",
            "recorder-42 ",
            "EG_abc123",
            "99999999999999999999",
        ] {
            assert_eq!(
                Participant::parse(identity),
                Participant::Other,
                "{identity:?}"
            );
        }
    }

    #[test]
    fn only_viewers_and_hosts_are_users_and_only_publishers_publish() {
        let host = Participant::parse("host-8");
        assert_eq!(host.user(), Some(UserId(8)));
        assert!(host.is_publisher());
        assert_eq!(user_of("8"), Some(UserId(8)));
        assert!(!Participant::parse("8").is_publisher());
        for identity in ["obs-42-3", "ingress-42"] {
            let p = Participant::parse(identity);
            assert_eq!(p.user(), None, "{identity}");
            assert!(p.is_publisher(), "{identity}");
        }
        for identity in ["recorder-42", "EG_abc123"] {
            let p = Participant::parse(identity);
            assert_eq!(p.user(), None, "{identity}");
            assert!(!p.is_publisher(), "{identity}");
        }
    }
}
