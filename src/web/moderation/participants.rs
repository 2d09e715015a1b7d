//! The participants panel: LiveKit's view of a live stream's room, with who
//! may be muted, removed or sanctioned; rendered in the moderation page and
//! alone by its own endpoint, which htmx polls.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::DateTime;
use diesel_async::AsyncPgConnection;
use livekit_protocol::ParticipantInfo;
use tower_sessions::Session;

use super::{LIVEKIT_WAIT, Note, refusal};
use crate::auth;
use crate::db::bans;
use crate::db::channels::{Channel, Role};
use crate::db::streams::Stream;
use crate::db::{StreamId, UserId};
use crate::error::AppResult;
use crate::livekit::Participant;
use crate::state::AppState;
use crate::web::authz::TeamStream;
use crate::web::render_with;
use crate::web::view::{Moment, StreamState};

pub struct TrackRow {
    pub sid: String,
    pub label: &'static str,
    pub muted: bool,
}

pub struct ParticipantRow {
    pub identity: String,
    pub who: Participant,
    /// The identity, percent-encoded for the action URLs.
    pub path: String,
    /// The identity, made safe for element ids.
    pub dom: String,
    /// Our user, when the identity is one (ingress participants are not).
    pub user_id: Option<UserId>,
    pub name: String,
    pub role: Option<Role>,
    pub is_you: bool,
    pub tracks: Vec<TrackRow>,
    pub joined: Option<Moment>,
    pub timed_out: Option<Moment>,
    /// See `refusal`; and nobody removes themselves.
    pub may_remove: bool,
    /// See `refusal`.
    pub may_mute: bool,
    /// Viewers (not the team) can be timed out and banned.
    pub may_sanction: bool,
}

impl ParticipantRow {
    pub fn publishing(&self) -> bool {
        !self.tracks.is_empty()
    }

    /// What they are doing in the room: the broadcast (however it is sent),
    /// or publishing, or watching.
    pub fn activity(&self) -> &'static str {
        match self.who {
            Participant::Host(_) => "Broadcast from the browser",
            Participant::Encoder { .. } => "Broadcast from an encoder",
            Participant::Ingress(_) => "Broadcast through LiveKit Ingress",
            _ if self.publishing() => "Publishing",
            _ => "Watching",
        }
    }

    pub fn role_label(&self) -> &'static str {
        match self.role {
            Some(Role::Owner) => "Owner",
            Some(Role::Moderator) => "Moderator",
            None => "",
        }
    }
}

/// LiveKit's view of the stream's room, or why there is none to show.
pub enum RoomView {
    NotLive,
    Ended,
    /// LiveKit did not answer or refused; the words say what happened.
    Unreachable(String),
    Listed(Vec<ParticipantRow>),
}

/// The participants panel: rendered inside the moderation page, and alone by
/// its own endpoint (which it polls) for the broadcast page.
pub struct Panel {
    pub stream_id: StreamId,
    pub handle: String,
    pub csrf: String,
    pub view: RoomView,
    pub note: Option<Note>,
}

impl Panel {
    /// An ended stream has no room to watch; anything else may change.
    pub fn polls(&self) -> bool {
        !matches!(self.view, RoomView::Ended)
    }
}

#[derive(Template)]
#[template(path = "partials/moderation/participants.html")]
pub struct PanelFragment {
    pub panel: Panel,
}

/// Who is in the stream's room now, by LiveKit's RoomService. A room LiveKit
/// does not know (it just closed) is an empty room.
pub(super) async fn room_participants(
    state: &AppState,
    stream: &Stream,
) -> Result<Vec<ParticipantInfo>, String> {
    let listed = tokio::time::timeout(
        LIVEKIT_WAIT,
        state.livekit.rooms.list_participants(&stream.room_name),
    )
    .await;
    match listed {
        Err(_) => Err("it did not answer in time".to_owned()),
        Ok(Ok(people)) => Ok(people),
        Ok(Err(e)) if is_not_found(&e.to_string()) => Ok(Vec::new()),
        Ok(Err(e)) => {
            tracing::warn!(error = %short(&e.to_string()), stream = %stream.id, "listing the room's participants");
            Err("it answered with an error".to_owned())
        }
    }
}

fn is_not_found(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("not_found") || m.contains("not found") || m.contains("does not exist")
}

fn short(message: &str) -> String {
    message.chars().take(200).collect()
}

pub(super) fn unreachable_text(why: &str) -> String {
    format!(
        "The media server (LiveKit) could not be reached ({why}), so the room can't be shown or changed right now. This panel tries again every few seconds."
    )
}

pub(super) fn track_label(source: i32, kind: i32) -> &'static str {
    use livekit_protocol::{TrackSource, TrackType};
    match TrackSource::try_from(source) {
        Ok(TrackSource::Microphone) => "Microphone",
        Ok(TrackSource::Camera) => "Camera",
        Ok(TrackSource::ScreenShare) => "Screen share",
        Ok(TrackSource::ScreenShareAudio) => "Screen share audio",
        _ => match TrackType::try_from(kind) {
            Ok(TrackType::Audio) => "Audio",
            Ok(TrackType::Video) => "Video",
            _ => "Track",
        },
    }
}

fn dom_id(identity: &str) -> String {
    identity
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// A participant's name when no account of ours names them: encoders and
/// ingress by what they are, anyone else by LiveKit's name or identity.
pub(super) fn unnamed(who: Participant, p: &ParticipantInfo) -> String {
    match who {
        Participant::Encoder { .. } | Participant::Ingress(_) => "Encoder".to_owned(),
        _ if !p.name.is_empty() => p.name.clone(),
        _ => p.identity.clone(),
    }
}

/// The participants as the panel lists them: the broadcast, then the team,
/// then by arrival. The recorder and LiveKit's other hidden participants
/// (egress) are left out: nobody is watching there.
async fn participant_rows(
    conn: &mut AsyncPgConnection,
    channel: &Channel,
    viewer: UserId,
    people: Vec<ParticipantInfo>,
) -> AppResult<Vec<ParticipantRow>> {
    let people: Vec<(Participant, ParticipantInfo)> = people
        .into_iter()
        .filter(|p| !p.permission.as_ref().is_some_and(|perm| perm.hidden))
        .map(|p| (Participant::parse(&p.identity), p))
        .filter(|(who, _)| !matches!(who, Participant::Recorder(_)))
        .collect();
    let ids: Vec<UserId> = people.iter().filter_map(|(who, _)| who.user()).collect();
    let standing: HashMap<i64, bans::Standing> = bans::standing(conn, channel.id, &ids)
        .await?
        .into_iter()
        .map(|s| (s.user_id, s))
        .collect();
    let mut rows: Vec<(i64, ParticipantRow)> = people
        .into_iter()
        .map(|(who, p)| {
            let user_id = who.user();
            let known = user_id.and_then(|u| standing.get(&u.0));
            let role = known.and_then(|s| s.role);
            let name = match known {
                Some(s) => s.display_name.clone(),
                None => unnamed(who, &p),
            };
            let is_you = user_id == Some(viewer);
            let may_act = refusal(channel.owner_id, viewer, who).is_none();
            let joined_ms = if p.joined_at_ms > 0 {
                p.joined_at_ms
            } else {
                p.joined_at * 1000
            };
            let row = ParticipantRow {
                path: url::form_urlencoded::byte_serialize(p.identity.as_bytes()).collect(),
                dom: dom_id(&p.identity),
                user_id: known.map(|s| UserId(s.user_id)),
                name,
                is_you,
                tracks: p
                    .tracks
                    .iter()
                    .map(|t| TrackRow {
                        sid: t.sid.clone(),
                        label: track_label(t.source, t.r#type),
                        muted: t.muted,
                    })
                    .collect(),
                joined: DateTime::from_timestamp_millis(joined_ms)
                    .filter(|_| joined_ms > 0)
                    .map(Moment::new),
                timed_out: known.and_then(|s| s.timed_out_until).map(Moment::new),
                may_remove: may_act && who != Participant::Viewer(viewer),
                may_mute: may_act,
                may_sanction: known.is_some_and(|s| !s.banned) && role.is_none(),
                role,
                who,
                identity: p.identity,
            };
            (joined_ms, row)
        })
        .collect();
    let rank = |r: &ParticipantRow| match r.role {
        _ if r.who.is_publisher() => 0,
        Some(Role::Owner) => 1,
        Some(Role::Moderator) => 2,
        None => 3,
    };
    rows.sort_by(|(a_at, a), (b_at, b)| rank(a).cmp(&rank(b)).then(a_at.cmp(b_at)));
    Ok(rows.into_iter().map(|(_, r)| r).collect())
}

/// The panel of `stream` as `viewer` sees it now (asks LiveKit when live).
pub(super) async fn load_panel(
    state: &AppState,
    session: &Session,
    viewer: UserId,
    stream: &Stream,
    channel: &Channel,
    note: Option<Note>,
) -> AppResult<Panel> {
    let view = match StreamState::of(stream) {
        StreamState::Ended => RoomView::Ended,
        StreamState::Draft | StreamState::Scheduled => RoomView::NotLive,
        StreamState::Live => match room_participants(state, stream).await {
            Err(why) => RoomView::Unreachable(unreachable_text(&why)),
            Ok(people) => {
                let mut conn = state.db.get().await?;
                RoomView::Listed(participant_rows(&mut conn, channel, viewer, people).await?)
            }
        },
    };
    Ok(Panel {
        stream_id: stream.id,
        handle: channel.handle.clone(),
        csrf: auth::csrf::token(session).await?,
        view,
        note,
    })
}

/// GET /studio/streams/{id}/participants: the panel alone (htmx polls it).
pub async fn participants(
    State(state): State<AppState>,
    TeamStream {
        user,
        stream,
        channel,
        ..
    }: TeamStream,
    session: Session,
) -> AppResult<Response> {
    let panel = load_panel(&state, &session, user.id, &stream, &channel, None).await?;
    render_with(StatusCode::OK, &PanelFragment { panel })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_ids_are_made_of_safe_characters() {
        assert_eq!(dom_id("42"), "42");
        assert_eq!(dom_id("ingress:obs 1"), "ingress-obs-1");
    }
}
