//! Moderation: a stream's moderation page and its participants panel
//! (LiveKit's view of the room: mute a published track, remove someone),
//! channel bans and chat timeouts, the owner's audit log, and the moderators'
//! dashboard.
//!
//! Who may moderate is `authz`'s (`TeamStream` for a stream, `team_channel`
//! for a channel: 404 before 403); who may touch which participant is
//! `refusal` below. This module must not decide access itself, and it does not
//! remove banned viewers from rooms: the trigger on `bans` wakes the enforcer
//! on every app instance, which does. Removing goes through
//! `lifecycle::remove_participant` (which also revokes the participant's
//! tokens); muting is LiveKit's MutePublishedTrack. Who is in the room is read
//! from their identity by `livekit::Participant` only, never by comparing
//! strings here. Every action is written to the audit log with who did it and
//! to whom.
//!
//! Moderators see people by display name, never by email: ban and timeout
//! lists carry emails only on the owner's view (`bans::Emails`), the
//! participants panel shows LiveKit's names, and the audit log (which names
//! actors by email) is the owner's alone.
//!
//! One file per section: `participants` (the panel), `room` (mute, remove),
//! `page` (the moderation page), `sanctions` (bans, timeouts, lifting),
//! `audit` (the owner's log) and `dashboard`; this file keeps what they share.

pub mod audit;
pub mod dashboard;
pub mod page;
pub mod participants;
pub mod room;
pub mod sanctions;

pub use audit::audit;
pub use dashboard::dashboard;
pub use page::show;
pub use participants::participants;
pub use room::{mute, remove};
pub use sanctions::{ban, lift_ban, timeout};

use std::time::Duration;

use axum::http::StatusCode;

use crate::db::users::User;
use crate::db::{StreamId, UserId};
use crate::livekit::Participant;
use crate::state::AppState;
use crate::web::Reply;

const OWNER_ONLY_BROADCAST: &str = "Only the channel's owner can remove or mute the broadcast.";
const OWNER_ONLY_OWNER: &str = "A moderator can't remove or mute the channel's owner.";
const NOT_THE_RECORDER: &str =
    "The recorder is not a viewer: stop the recording from the studio instead.";
const NOT_YOURSELF: &str = "That's you: leave the room instead.";
/// How long the panel waits for LiveKit before saying it did not answer.
const LIVEKIT_WAIT: Duration = Duration::from_secs(4);
/// The lengths of a chat timeout, in minutes.
const TIMEOUT_MINUTES: [i32; 3] = [1, 10, 60];

// ---------------------------------------------------------------------------
// Who may.

/// Why `actor` (on the team of a channel `owner` owns) may not mute or
/// remove `who` in one of its streams, or `None` when they may. The
/// broadcast — the owner's host, an encoder, LiveKit Ingress — and the owner
/// watching are the owner's alone: a moderator taking them off the air would
/// end the show. The recorder is nobody's to kick: it is not a viewer, and
/// stopping it is the studio's recording control. Asked by the panel (which
/// buttons to show) and by the actions, so the two cannot disagree.
fn refusal(owner: UserId, actor: UserId, who: Participant) -> Option<(StatusCode, &'static str)> {
    match who {
        Participant::Recorder(_) => Some((StatusCode::UNPROCESSABLE_ENTITY, NOT_THE_RECORDER)),
        _ if actor == owner => None,
        who if who.is_publisher() => Some((StatusCode::FORBIDDEN, OWNER_ONLY_BROADCAST)),
        Participant::Viewer(user) if user == owner => {
            Some((StatusCode::FORBIDDEN, OWNER_ONLY_OWNER))
        }
        // Not ours to judge (LiveKit Egress, another service): the owner's.
        Participant::Other => Some((StatusCode::FORBIDDEN, OWNER_ONLY_BROADCAST)),
        _ => None,
    }
}

/// One moderator's request: what every answer to it needs.
struct Ask<'a> {
    state: &'a AppState,
    reply: &'a Reply,
    user: &'a User,
}

fn moderate_path(stream: StreamId) -> String {
    format!("/studio/streams/{stream}/moderate")
}

/// What a moderation action did, said where the moderator is looking.
pub struct Note {
    pub ok: bool,
    pub text: String,
}

impl Note {
    fn done(text: impl Into<String>) -> Self {
        Note {
            ok: true,
            text: text.into(),
        }
    }

    fn refused(text: impl Into<String>) -> Self {
        Note {
            ok: false,
            text: text.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_broadcast_and_the_owner_are_the_owners_to_mute_or_remove() {
        let (owner, moderator, viewer) = (UserId(8), UserId(9), UserId(10));
        let broadcast = [
            Participant::Host(owner),
            Participant::Encoder {
                stream: StreamId(4),
                generation: 2,
            },
            Participant::Ingress(StreamId(4)),
        ];
        for who in broadcast {
            assert_eq!(
                refusal(owner, moderator, who),
                Some((StatusCode::FORBIDDEN, OWNER_ONLY_BROADCAST)),
                "{who:?}"
            );
            assert_eq!(refusal(owner, owner, who), None, "{who:?}");
        }
        assert_eq!(
            refusal(owner, moderator, Participant::Viewer(owner)),
            Some((StatusCode::FORBIDDEN, OWNER_ONLY_OWNER))
        );
        for actor in [owner, moderator] {
            assert_eq!(
                refusal(owner, actor, Participant::Recorder(StreamId(4))),
                Some((StatusCode::UNPROCESSABLE_ENTITY, NOT_THE_RECORDER))
            );
            assert_eq!(refusal(owner, actor, Participant::Viewer(viewer)), None);
        }
        assert_eq!(
            refusal(owner, moderator, Participant::Viewer(moderator)),
            None
        );
    }
}
