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

use std::collections::HashMap;
use std::time::Duration;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_htmx::{HxResponseTrigger, HxTarget};
use chrono::{DateTime, NaiveDate, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use livekit_protocol::ParticipantInfo;
use serde::Deserialize;
use tower_sessions::Session;

use super::authz::{self, Area, Ids, TeamStream};
use super::forms::normalize_text;
use super::view::utc;
use super::view::{Moment, StreamState, access_label};
use super::{FieldErrors, FlashKind, Htmx, Layout, flash, render_with};
use crate::access;
use crate::auth::{self, CurrentUser};
use crate::db::audit::{self, AuditQuery};
use crate::db::bans::{self, BanId, Kind, NewBan};
use crate::db::channels::{self, Channel, Role};
use crate::db::streams::{self, Stream};
use crate::db::users::{self, User};
use crate::db::{ChannelId, StreamId, UserId};
use crate::error::{AppError, AppResult};
use crate::lifecycle;
use crate::livekit::Participant;
use crate::state::AppState;

const OWNER_ONLY_BROADCAST: &str = "Only the channel's owner can remove or mute the broadcast.";
const OWNER_ONLY_OWNER: &str = "A moderator can't remove or mute the channel's owner.";
const NOT_THE_RECORDER: &str =
    "The recorder is not a viewer: stop the recording from the studio instead.";
const NOT_YOURSELF: &str = "That's you: leave the room instead.";
/// How long the panel waits for LiveKit before saying it did not answer.
const LIVEKIT_WAIT: Duration = Duration::from_secs(4);
/// The lengths of a chat timeout, in minutes.
const TIMEOUT_MINUTES: [i32; 3] = [1, 10, 60];
const MAX_REASON: usize = 200;
/// The longest temporary ban; longer is permanent.
const MAX_BAN_DAYS: i64 = 366;
const AUDIT_PER_PAGE: i64 = 50;

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
    session: &'a Session,
    htmx: &'a Htmx,
    user: &'a User,
}

fn moderate_path(stream: StreamId) -> String {
    format!("/studio/streams/{stream}/moderate")
}

// ---------------------------------------------------------------------------
// The participants panel: LiveKit's view of the room.

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
async fn room_participants(
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

fn unreachable_text(why: &str) -> String {
    format!(
        "The media server (LiveKit) could not be reached ({why}), so the room can't be shown or changed right now. This panel tries again every few seconds."
    )
}

fn track_label(source: i32, kind: i32) -> &'static str {
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
fn unnamed(who: Participant, p: &ParticipantInfo) -> String {
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
            let role = known.and_then(|s| s.role.as_deref()).and_then(Role::parse);
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
async fn load_panel(
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

/// The answer to a panel action: the panel with what happened (htmx), or
/// back to the moderation page with it as a flash.
async fn answer_panel(
    ask: &Ask<'_>,
    stream: &Stream,
    channel: &Channel,
    status: StatusCode,
    note: Note,
) -> AppResult<Response> {
    let Ask {
        state,
        session,
        htmx,
        user,
    } = ask;
    if htmx.fragment {
        let ok = note.ok;
        let panel = load_panel(state, session, user.id, stream, channel, Some(note)).await?;
        let page = render_with(status, &PanelFragment { panel })?;
        if ok {
            return Ok((HxResponseTrigger::normal(["bans-changed"]), page).into_response());
        }
        return Ok(page);
    }
    if status == StatusCode::FORBIDDEN {
        // Not a slip to correct on the page: the answer is no, with why.
        return Err(AppError::forbidden(note.text));
    }
    let kind = if note.ok {
        FlashKind::Success
    } else {
        FlashKind::Error
    };
    flash(session, kind, note.text).await?;
    Ok(auth::redirect(htmx.request, &moderate_path(stream.id)))
}

/// The participant `identity` in the stream's room, or the note saying why
/// there is nobody to act on.
async fn present(
    state: &AppState,
    stream: &Stream,
    identity: &str,
) -> Result<ParticipantInfo, (StatusCode, Note)> {
    if !stream.is_live() {
        return Err((
            StatusCode::CONFLICT,
            Note::refused("The stream is not live."),
        ));
    }
    match room_participants(state, stream).await {
        Err(why) => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            Note::refused(unreachable_text(&why)),
        )),
        Ok(people) => people
            .into_iter()
            .find(|p| p.identity == identity)
            .ok_or_else(|| {
                (
                    StatusCode::CONFLICT,
                    Note::refused("They are no longer in the room."),
                )
            }),
    }
}

/// Whom an action was done to, for the audit log: the user behind the
/// identity (the host is its owner), else the identity itself.
fn audit_subject(who: Participant, identity: &str) -> String {
    who.user()
        .map_or_else(|| identity.to_owned(), |u| u.to_string())
}

/// Their name in our words, as the panel shows it.
async fn name_of(conn: &mut AsyncPgConnection, p: &ParticipantInfo) -> AppResult<String> {
    let who = Participant::parse(&p.identity);
    if let Some(id) = who.user()
        && let Some(u) = users::find(conn, id).await?
    {
        return Ok(u.display_name);
    }
    Ok(unnamed(who, p))
}

#[derive(Deserialize, Default)]
pub struct MuteForm {
    /// The track's sid; empty: every unmuted track of theirs.
    #[serde(default)]
    pub track: String,
}

/// POST …/participants/{identity}/mute: mutes a published track through
/// LiveKit's MutePublishedTrack (the broadcast's only when the owner asks:
/// see `refusal`). They may unmute it again themselves; removing or banning
/// is the stronger step.
pub async fn mute(
    State(state): State<AppState>,
    TeamStream {
        user,
        stream,
        channel,
        ..
    }: TeamStream,
    session: Session,
    htmx: Htmx,
    Path((_, identity)): Path<(String, String)>,
    Form(form): Form<MuteForm>,
) -> AppResult<Response> {
    let ask = Ask {
        state: &state,
        session: &session,
        htmx: &htmx,
        user: &user,
    };
    let answer = |status, note| answer_panel(&ask, &stream, &channel, status, note);
    let who = Participant::parse(&identity);
    if let Some((status, why)) = refusal(channel.owner_id, user.id, who) {
        return answer(status, Note::refused(why)).await;
    }
    let participant = match present(&state, &stream, &identity).await {
        Ok(p) => p,
        Err((status, note)) => return answer(status, note).await,
    };
    let wanted = form.track.trim();
    let tracks: Vec<&livekit_protocol::TrackInfo> = participant
        .tracks
        .iter()
        .filter(|t| {
            if wanted.is_empty() {
                !t.muted
            } else {
                t.sid == wanted
            }
        })
        .collect();
    let mut conn = state.db.get().await?;
    let name = name_of(&mut conn, &participant).await?;
    drop(conn);
    if tracks.is_empty() {
        let text = if wanted.is_empty() {
            format!("{name} has no unmuted track.")
        } else {
            format!("{name} no longer publishes that track.")
        };
        return answer(StatusCode::CONFLICT, Note::refused(text)).await;
    }
    let mut muted = Vec::new();
    for track in tracks {
        let label = track_label(track.source, track.r#type);
        let done = tokio::time::timeout(
            LIVEKIT_WAIT,
            state.livekit.rooms.mute_published_track(
                &stream.room_name,
                &identity,
                &track.sid,
                true,
            ),
        )
        .await;
        match done {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, stream = %stream.id, "muting a track failed");
                let text = format!(
                    "{name}'s {} could not be muted: the media server (LiveKit) refused. Try again in a moment.",
                    label.to_lowercase(),
                );
                return answer(StatusCode::SERVICE_UNAVAILABLE, Note::refused(text)).await;
            }
            Err(_) => {
                let text = unreachable_text("it did not answer in time");
                return answer(StatusCode::SERVICE_UNAVAILABLE, Note::refused(text)).await;
            }
        }
        let mut conn = state.db.get().await?;
        crate::db::audit::record(
            &mut conn,
            Some(user.id),
            Some(channel.id),
            "moderation.track_muted",
            Some(&audit_subject(who, &identity)),
            serde_json::json!({
                "stream_id": stream.id,
                "track_sid": track.sid,
                "source": label,
                "name": name,
            }),
        )
        .await?;
        muted.push(label.to_lowercase());
    }
    let text = format!("Muted {name}'s {}.", muted.join(" and "));
    answer(StatusCode::OK, Note::done(text)).await
}

/// POST …/participants/{identity}/remove: removes them from the room now and
/// revokes the tokens they hold (the broadcast only when the owner asks: see
/// `refusal`). It is a kick, not a ban: someone who may watch can come back
/// with a new token; ban them to keep them out.
pub async fn remove(
    State(state): State<AppState>,
    TeamStream {
        user,
        stream,
        channel,
        ..
    }: TeamStream,
    session: Session,
    htmx: Htmx,
    Path((_, identity)): Path<(String, String)>,
) -> AppResult<Response> {
    let ask = Ask {
        state: &state,
        session: &session,
        htmx: &htmx,
        user: &user,
    };
    let answer = |status, note| answer_panel(&ask, &stream, &channel, status, note);
    let who = Participant::parse(&identity);
    if who == Participant::Viewer(user.id) {
        let note = Note::refused(NOT_YOURSELF);
        return answer(StatusCode::UNPROCESSABLE_ENTITY, note).await;
    }
    if let Some((status, why)) = refusal(channel.owner_id, user.id, who) {
        return answer(status, Note::refused(why)).await;
    }
    let participant = match present(&state, &stream, &identity).await {
        Ok(p) => p,
        Err((status, note)) => return answer(status, note).await,
    };
    let mut conn = state.db.get().await?;
    let name = name_of(&mut conn, &participant).await?;
    drop(conn);
    if let Err(why) = lifecycle::remove_participant(
        &state,
        &stream,
        &identity,
        "participant.removed_by_moderator",
    )
    .await
    {
        tracing::warn!(error = %why, stream = %stream.id, "removing a participant");
        return Err(AppError::Unavailable(
            "The media server (LiveKit) did not remove them. Try again in a moment.".into(),
        ));
    }
    let mut conn = state.db.get().await?;
    crate::db::audit::record(
        &mut conn,
        Some(user.id),
        Some(channel.id),
        "moderation.participant_removed",
        Some(&audit_subject(who, &identity)),
        serde_json::json!({ "stream_id": stream.id, "name": name }),
    )
    .await?;
    let text = format!(
        "{name} was removed from the room. They can come back while they may watch; ban them to keep them out."
    );
    answer(StatusCode::OK, Note::done(text)).await
}

// ---------------------------------------------------------------------------
// The moderation page: the stream, its room, the channel's bans.

/// The ban form, as typed.
pub struct BanFields {
    pub user_id: String,
    pub email: String,
    pub reason: String,
    /// `permanent`, `hours` or `days`.
    pub length: String,
    pub amount: String,
}

impl Default for BanFields {
    fn default() -> Self {
        BanFields {
            user_id: String::new(),
            email: String::new(),
            reason: String::new(),
            length: "permanent".to_owned(),
            amount: "24".to_owned(),
        }
    }
}

/// The timeout form, as typed.
pub struct TimeoutFields {
    pub user_id: String,
    pub email: String,
    pub minutes: String,
}

impl Default for TimeoutFields {
    fn default() -> Self {
        TimeoutFields {
            user_id: String::new(),
            email: String::new(),
            minutes: "10".to_owned(),
        }
    }
}

/// The bans section's forms and what the last action there said.
#[derive(Default)]
pub struct Forms {
    pub ban: BanFields,
    pub ban_errors: FieldErrors,
    pub timeout: TimeoutFields,
    pub timeout_errors: FieldErrors,
    pub note: Option<Note>,
}

/// Someone in the room who can be banned or timed out, for the forms' pickers.
pub struct Candidate {
    pub id: UserId,
    pub name: String,
}

pub struct BanRow {
    pub id: BanId,
    pub is_ban: bool,
    pub user_id: UserId,
    pub user_name: String,
    /// The owner's view only: a moderator sees display names, never emails.
    pub user_email: Option<String>,
    /// None: permanent (bans only).
    pub until: Option<Moment>,
    pub reason: Option<String>,
    pub by: Option<String>,
    pub since: Moment,
}

#[derive(Template)]
#[template(path = "pages/moderation/stream.html", blocks = ["bans"])]
pub struct ModerationPage {
    pub layout: Layout,
    pub channel: Channel,
    pub stream_id: StreamId,
    pub title: String,
    pub state: StreamState,
    pub access: &'static str,
    pub started: Option<Moment>,
    pub ended: Option<Moment>,
    pub is_owner: bool,
    pub panel: Panel,
    pub candidates: Vec<Candidate>,
    pub bans: Vec<BanRow>,
    pub forms: Forms,
    pub timeout_choices: [i32; 3],
}

impl ModerationPage {
    async fn load(
        ask: &Ask<'_>,
        layout: Layout,
        stream: &Stream,
        channel: Channel,
        forms: Forms,
        panel_note: Option<Note>,
    ) -> AppResult<Self> {
        let Ask {
            state,
            session,
            user,
            ..
        } = ask;
        let panel = load_panel(state, session, user.id, stream, &channel, panel_note).await?;
        let candidates = match &panel.view {
            RoomView::Listed(rows) => rows
                .iter()
                .filter(|r| r.may_sanction)
                .filter_map(|r| {
                    Some(Candidate {
                        id: r.user_id?,
                        name: r.name.clone(),
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut conn = state.db.get().await?;
        let is_owner =
            access::channel_role(&mut conn, user.id, channel.id).await? == Some(Role::Owner);
        let emails = if is_owner {
            bans::Emails::Shown
        } else {
            bans::Emails::Hidden
        };
        let bans = bans::active_in_channel(&mut conn, channel.id, emails)
            .await?
            .into_iter()
            .map(|b| BanRow {
                id: BanId(b.id),
                is_ban: Kind::parse(&b.kind) == Some(Kind::Ban),
                user_id: UserId(b.user_id),
                user_name: b.user_name,
                user_email: b.user_email,
                until: b.until.map(Moment::new),
                reason: b.reason,
                by: b.banned_by_name,
                since: Moment::new(b.created_at),
            })
            .collect();
        Ok(ModerationPage {
            layout,
            stream_id: stream.id,
            title: stream.title.clone(),
            state: StreamState::of(stream),
            access: access_label(stream.access_kind()),
            started: stream.started_at.map(Moment::new),
            ended: stream.ended_at.map(Moment::new),
            is_owner,
            panel,
            candidates,
            bans,
            forms,
            channel,
            timeout_choices: TIMEOUT_MINUTES,
        })
    }

    pub fn has_bans(&self) -> bool {
        self.bans.iter().any(|b| b.is_ban)
    }

    pub fn has_timeouts(&self) -> bool {
        self.bans.iter().any(|b| !b.is_ban)
    }
}

/// GET /studio/streams/{id}/moderate: the page; to htmx, the bans section
/// alone (it reloads itself when the panel bans or times someone out).
pub async fn page(
    State(state): State<AppState>,
    TeamStream {
        user,
        stream,
        channel,
        ..
    }: TeamStream,
    session: Session,
    htmx: Htmx,
) -> AppResult<Response> {
    let layout = if htmx.fragment {
        Layout::fragment(&session).await?
    } else {
        Layout::for_user(&session, &user).await?
    };
    let ask = Ask {
        state: &state,
        session: &session,
        htmx: &htmx,
        user: &user,
    };
    let page = ModerationPage::load(&ask, layout, &stream, channel, Forms::default(), None).await?;
    if htmx.fragment {
        render_with(StatusCode::OK, &page.as_bans())
    } else {
        render_with(StatusCode::OK, &page)
    }
}

// ---------------------------------------------------------------------------
// Bans, timeouts, lifting.

/// Where a channel action was asked from, which decides the answer's shape.
enum Origin {
    /// A button of the participants panel (htmx).
    Panel(Stream),
    /// The bans section of a moderation page (htmx).
    Section(Stream),
    /// A plain form post, from a moderation page when `Some`.
    Plain(Option<Stream>),
}

/// Reads the hidden `stream` field: one of this channel's streams, else none.
async fn origin(
    conn: &mut AsyncPgConnection,
    htmx: &Htmx,
    target: Option<&str>,
    channel: &Channel,
    raw_stream: &str,
) -> AppResult<Origin> {
    let stream = match raw_stream.trim().parse::<StreamId>() {
        Ok(id) => streams::find(conn, id)
            .await?
            .filter(|s| s.channel_id == channel.id),
        Err(_) => None,
    };
    Ok(match (htmx.fragment, stream) {
        (true, Some(s)) if target == Some("participants") => Origin::Panel(s),
        (true, Some(s)) => Origin::Section(s),
        (_, s) => Origin::Plain(s),
    })
}

/// Answers a ban, timeout or lift: the panel or the bans section with what
/// happened (htmx, the other one told to refresh), or back to where the form
/// was with a flash — or, for a plain form with errors, its page with them.
async fn answer_channel_action(
    ask: &Ask<'_>,
    channel: Channel,
    origin: Origin,
    status: StatusCode,
    forms: Forms,
) -> AppResult<Response> {
    let Ask {
        state,
        session,
        htmx,
        user,
    } = ask;
    let ok = status.is_success();
    match origin {
        Origin::Panel(stream) => {
            let note = forms.note.unwrap_or_else(|| {
                // A field error of a form the panel has no room for: say it.
                let text = [&forms.ban_errors, &forms.timeout_errors]
                    .iter()
                    .find_map(|e| {
                        ["user", "length", "minutes", "reason", ""]
                            .iter()
                            .find_map(|f| e.get(f))
                    })
                    .unwrap_or("That didn't work.")
                    .to_owned();
                Note::refused(text)
            });
            let panel = load_panel(state, session, user.id, &stream, &channel, Some(note)).await?;
            let page = render_with(status, &PanelFragment { panel })?;
            Ok(if ok {
                (HxResponseTrigger::normal(["bans-changed"]), page).into_response()
            } else {
                page
            })
        }
        Origin::Section(stream) => {
            let layout = Layout::fragment(session).await?;
            let page = ModerationPage::load(ask, layout, &stream, channel, forms, None).await?;
            let html = render_with(status, &page.as_bans())?;
            Ok(if ok {
                (HxResponseTrigger::normal(["participants-changed"]), html).into_response()
            } else {
                html
            })
        }
        Origin::Plain(stream) => {
            if ok || stream.is_none() {
                let text = forms
                    .note
                    .as_ref()
                    .map(|n| n.text.clone())
                    .or_else(|| {
                        [&forms.ban_errors, &forms.timeout_errors]
                            .iter()
                            .find_map(|e| {
                                ["user", "length", "minutes", "reason", ""]
                                    .iter()
                                    .find_map(|f| e.get(f))
                            })
                            .map(str::to_owned)
                    })
                    .unwrap_or_default();
                let kind = if ok && forms.note.as_ref().is_none_or(|n| n.ok) {
                    FlashKind::Success
                } else {
                    FlashKind::Error
                };
                if !text.is_empty() {
                    flash(session, kind, text).await?;
                }
                let to = stream
                    .map(|s| moderate_path(s.id))
                    .unwrap_or_else(|| "/moderation".to_owned());
                return Ok(auth::redirect(htmx.request, &to));
            }
            let stream = stream.expect("checked above");
            let layout = Layout::for_user(session, user).await?;
            let page = ModerationPage::load(ask, layout, &stream, channel, forms, None).await?;
            render_with(status, &page)
        }
    }
}

/// Who a ban or timeout is for: someone picked from the room (`user_id`), or
/// the account with `email`. Refused with words for the form otherwise.
async fn sanction_target(
    conn: &mut AsyncPgConnection,
    channel: &Channel,
    user_id: &str,
    email: &str,
    kind: Kind,
) -> AppResult<Result<User, String>> {
    let (user_id, email) = (user_id.trim(), email.trim());
    let found = if !user_id.is_empty() {
        match user_id.parse::<UserId>() {
            Ok(id) => users::find(conn, id).await?,
            Err(_) => None,
        }
    } else if !email.is_empty() {
        users::find_by_email(conn, email).await?
    } else {
        return Ok(Err(
            "Choose someone in the room, or enter the email of their account.".to_owned(),
        ));
    };
    let Some(target) = found else {
        return Ok(Err(if user_id.is_empty() {
            "No account uses that email.".to_owned()
        } else {
            "That account no longer exists.".to_owned()
        }));
    };
    let verb = match kind {
        Kind::Ban => "banned",
        Kind::Timeout => "timed out",
    };
    match access::channel_role(conn, target.id, channel.id).await? {
        Some(Role::Owner) => {
            return Ok(Err(format!("The channel's owner can't be {verb}.")));
        }
        Some(Role::Moderator) => {
            return Ok(Err(format!(
                "{} is a moderator of this channel and can't be {verb}. The owner can remove them from the team first.",
                target.display_name
            )));
        }
        None => {}
    }
    if let Some(ban) = bans::active(conn, channel.id, target.id, Kind::Ban).await? {
        let until = match ban.until {
            None => "permanently".to_owned(),
            Some(t) => format!("until {}", utc(&t)),
        };
        return Ok(Err(match kind {
            Kind::Ban => format!(
                "{} is already banned {until}. Lift that ban first to change it.",
                target.display_name
            ),
            Kind::Timeout => format!(
                "{} is banned from this channel {until}; a chat timeout would change nothing.",
                target.display_name
            ),
        }));
    }
    Ok(Ok(target))
}

/// A ban's length from the form: None for permanent, else minutes (1 hour to 366 days).
fn ban_minutes(length: &str, amount: &str) -> Result<Option<i32>, &'static str> {
    const RANGE: &str = "Give between 1 hour and 366 days, or choose permanent.";
    let per = match length.trim() {
        "" | "permanent" => return Ok(None),
        "hours" => 60,
        "days" => 24 * 60,
        _ => return Err("Choose permanent, hours or days."),
    };
    let n: i64 = amount
        .trim()
        .parse()
        .map_err(|_| "Enter a whole number of hours or days.")?;
    let minutes = n.checked_mul(per).ok_or(RANGE)?;
    if !(60..=MAX_BAN_DAYS * 24 * 60).contains(&minutes) {
        return Err(RANGE);
    }
    Ok(Some(minutes as i32))
}

fn read_reason(raw: &str) -> Result<Option<String>, &'static str> {
    let reason = normalize_text(raw);
    if reason.chars().count() > MAX_REASON {
        return Err("Use at most 200 characters.");
    }
    Ok(Some(reason).filter(|r| !r.is_empty()))
}

#[derive(Deserialize, Default)]
pub struct BanForm {
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub length: String,
    #[serde(default)]
    pub amount: String,
    /// The stream whose moderation page (or panel) the form is on.
    #[serde(default)]
    pub stream: String,
}

/// POST /studio/channels/{handle}/bans: bans someone from the channel. The
/// enforcer removes them from any live room of the channel at once (the
/// `bans` trigger wakes it); the access rule refuses them tokens and chat.
pub async fn ban(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    htmx: Htmx,
    HxTarget(target): HxTarget,
    Path(handle): Path<String>,
    Form(form): Form<BanForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (channel, _) =
        authz::team_channel(&mut conn, user.id, &handle, Area::ModerateChannel).await?;
    let origin = origin(&mut conn, &htmx, target.as_deref(), &channel, &form.stream).await?;
    let mut forms = Forms::default();
    let errors = &mut forms.ban_errors;

    let subject = sanction_target(&mut conn, &channel, &form.user_id, &form.email, Kind::Ban)
        .await?
        .map_err(|e| errors.add("user", e))
        .ok();
    let minutes = ban_minutes(&form.length, &form.amount)
        .map_err(|e| errors.add("length", e))
        .ok();
    let reason = read_reason(&form.reason)
        .map_err(|e| errors.add("reason", e))
        .ok();

    let (status, forms) = match (subject, minutes, reason) {
        (Some(subject), Some(minutes), Some(reason)) => {
            let stream_id = match &origin {
                Origin::Panel(s) | Origin::Section(s) | Origin::Plain(Some(s)) => Some(s.id),
                Origin::Plain(None) => None,
            };
            let new = NewBan {
                channel_id: channel.id,
                user_id: subject.id,
                kind: Kind::Ban,
                minutes,
                reason: reason.as_deref(),
                banned_by: user.id,
            };
            let placed = conn
                .transaction(async |conn| {
                    let placed = bans::insert(conn, &new).await?;
                    audit::record(
                        conn,
                        Some(user.id),
                        Some(channel.id),
                        "moderation.banned",
                        Some(&subject.id.to_string()),
                        serde_json::json!({
                            "ban_id": placed.id,
                            "until": placed.until,
                            "reason": placed.reason,
                            "stream_id": stream_id,
                        }),
                    )
                    .await?;
                    Ok::<_, diesel::result::Error>(placed)
                })
                .await?;
            let until = match placed.until {
                None => "permanently".to_owned(),
                Some(t) => format!("until {}", utc(&t)),
            };
            let forms = Forms {
                note: Some(Note::done(format!(
                    "{} is banned from {} {until}. If they are watching, they are removed from the stream now.",
                    subject.display_name, channel.title
                ))),
                ..Forms::default()
            };
            (StatusCode::OK, forms)
        }
        _ => {
            forms.ban = BanFields {
                user_id: form.user_id.trim().to_owned(),
                email: form.email.trim().to_owned(),
                reason: form.reason.trim().to_owned(),
                length: form.length.trim().to_owned(),
                amount: form.amount.trim().to_owned(),
            };
            (StatusCode::UNPROCESSABLE_ENTITY, forms)
        }
    };
    drop(conn);
    let ask = Ask {
        state: &state,
        session: &session,
        htmx: &htmx,
        user: &user,
    };
    answer_channel_action(&ask, channel, origin, status, forms).await
}

#[derive(Deserialize, Default)]
pub struct TimeoutForm {
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub minutes: String,
    #[serde(default)]
    pub stream: String,
}

/// POST /studio/channels/{handle}/timeouts: keeps someone out of the chat for
/// 1, 10 or 60 minutes. They stay in the room and keep watching.
pub async fn timeout(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    htmx: Htmx,
    HxTarget(target): HxTarget,
    Path(handle): Path<String>,
    Form(form): Form<TimeoutForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (channel, _) =
        authz::team_channel(&mut conn, user.id, &handle, Area::ModerateChannel).await?;
    let origin = origin(&mut conn, &htmx, target.as_deref(), &channel, &form.stream).await?;
    let mut forms = Forms::default();
    let errors = &mut forms.timeout_errors;

    let subject = sanction_target(
        &mut conn,
        &channel,
        &form.user_id,
        &form.email,
        Kind::Timeout,
    )
    .await?
    .map_err(|e| errors.add("user", e))
    .ok();
    let minutes = form
        .minutes
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|m| TIMEOUT_MINUTES.contains(m));
    if minutes.is_none() {
        errors.add("minutes", "Choose 1, 10 or 60 minutes.");
    }

    let (status, forms) = match (subject, minutes) {
        (Some(subject), Some(minutes)) => {
            let stream_id = match &origin {
                Origin::Panel(s) | Origin::Section(s) | Origin::Plain(Some(s)) => Some(s.id),
                Origin::Plain(None) => None,
            };
            let new = NewBan {
                channel_id: channel.id,
                user_id: subject.id,
                kind: Kind::Timeout,
                minutes: Some(minutes),
                reason: None,
                banned_by: user.id,
            };
            let placed = conn
                .transaction(async |conn| {
                    let placed = bans::time_out(conn, &new).await?;
                    audit::record(
                        conn,
                        Some(user.id),
                        Some(channel.id),
                        "moderation.timed_out",
                        Some(&subject.id.to_string()),
                        serde_json::json!({
                            "ban_id": placed.id,
                            "minutes": minutes,
                            "until": placed.until,
                            "stream_id": stream_id,
                        }),
                    )
                    .await?;
                    Ok::<_, diesel::result::Error>(placed)
                })
                .await?;
            let until = placed
                .until
                .map(|t| format!(" (until {})", utc(&t)))
                .unwrap_or_default();
            let forms = Forms {
                note: Some(Note::done(format!(
                    "{} can't chat for {minutes} minute{}{until}. They keep watching.",
                    subject.display_name,
                    if minutes == 1 { "" } else { "s" }
                ))),
                ..Forms::default()
            };
            (StatusCode::OK, forms)
        }
        _ => {
            forms.timeout = TimeoutFields {
                user_id: form.user_id.trim().to_owned(),
                email: form.email.trim().to_owned(),
                minutes: form.minutes.trim().to_owned(),
            };
            (StatusCode::UNPROCESSABLE_ENTITY, forms)
        }
    };
    drop(conn);
    let ask = Ask {
        state: &state,
        session: &session,
        htmx: &htmx,
        user: &user,
    };
    answer_channel_action(&ask, channel, origin, status, forms).await
}

#[derive(Deserialize, Default)]
pub struct LiftForm {
    #[serde(default)]
    pub stream: String,
}

/// POST /studio/channels/{handle}/bans/{ban}/lift: ends a ban or a timeout
/// now. The row stays, with who lifted it and when.
pub async fn lift_ban(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    htmx: Htmx,
    HxTarget(target): HxTarget,
    Ids((handle, ban)): Ids<(String, BanId)>,
    Form(form): Form<LiftForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (channel, _) =
        authz::team_channel(&mut conn, user.id, &handle, Area::ModerateChannel).await?;
    let existing = bans::find(&mut conn, ban)
        .await?
        .filter(|b| b.channel_id == channel.id)
        .ok_or(AppError::NotFound)?;
    let origin = origin(&mut conn, &htmx, target.as_deref(), &channel, &form.stream).await?;
    let subject = users::find(&mut conn, existing.user_id)
        .await?
        .map(|u| u.display_name)
        .unwrap_or_else(|| "They".to_owned());
    let action = match existing.kind() {
        Kind::Ban => "moderation.ban_lifted",
        Kind::Timeout => "moderation.timeout_lifted",
    };
    let lifted = conn
        .transaction(async |conn| {
            let lifted = bans::lift(conn, ban, channel.id, user.id).await?;
            if let Some(b) = &lifted {
                audit::record(
                    conn,
                    Some(user.id),
                    Some(channel.id),
                    action,
                    Some(&b.user_id.to_string()),
                    serde_json::json!({
                        "ban_id": b.id,
                        "kind": b.kind,
                        "until": b.until,
                    }),
                )
                .await?;
            }
            Ok::<_, diesel::result::Error>(lifted)
        })
        .await?;
    drop(conn);
    let note = match (lifted.is_some(), existing.kind()) {
        (true, Kind::Ban) => Note::done(format!(
            "{subject}'s ban is lifted: they can watch with a pass and chat again."
        )),
        (true, Kind::Timeout) => Note::done(format!("{subject} can chat again.")),
        (false, Kind::Ban) => Note::done(format!("{subject}'s ban was already lifted or over.")),
        (false, Kind::Timeout) => {
            Note::done(format!("{subject}'s timeout was already lifted or over."))
        }
    };
    let forms = Forms {
        note: Some(note),
        ..Forms::default()
    };
    let ask = Ask {
        state: &state,
        session: &session,
        htmx: &htmx,
        user: &user,
    };
    answer_channel_action(&ask, channel, origin, StatusCode::OK, forms).await
}

// ---------------------------------------------------------------------------
// The owner's audit log.

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditParams {
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub actor: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub page: String,
}

/// The filters in force, read leniently: what we can't use means "no filter".
pub struct AuditFilters {
    pub action: String,
    pub actor: String,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub page: i64,
}

impl AuditFilters {
    fn read(p: &AuditParams) -> Self {
        let date = |s: &str| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok();
        AuditFilters {
            action: p.action.trim().chars().take(100).collect(),
            actor: p.actor.trim().chars().take(254).collect(),
            from: date(&p.from),
            to: date(&p.to),
            page: p.page.trim().parse().unwrap_or(1).max(1),
        }
    }

    fn query(&self) -> AuditQuery {
        AuditQuery {
            action: Some(self.action.clone()).filter(|a| !a.is_empty()),
            actor: Some(self.actor.clone()).filter(|a| !a.is_empty()),
            from: self.from,
            to: self.to,
        }
    }

    fn query_string(&self, page: i64) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if !self.action.is_empty() {
            q.append_pair("action", &self.action);
        }
        if !self.actor.is_empty() {
            q.append_pair("actor", &self.actor);
        }
        if let Some(d) = self.from {
            q.append_pair("from", &d.to_string());
        }
        if let Some(d) = self.to {
            q.append_pair("to", &d.to_string());
        }
        if page > 1 {
            q.append_pair("page", &page.to_string());
        }
        let q = q.finish();
        if q.is_empty() { q } else { format!("?{q}") }
    }

    pub fn from_value(&self) -> String {
        self.from.map(|d| d.to_string()).unwrap_or_default()
    }

    pub fn to_value(&self) -> String {
        self.to.map(|d| d.to_string()).unwrap_or_default()
    }

    pub fn any(&self) -> bool {
        !self.action.is_empty()
            || !self.actor.is_empty()
            || self.from.is_some()
            || self.to.is_some()
    }
}

pub struct AuditRow {
    pub id: i64,
    pub when: Moment,
    /// The actor's name, or None for the server's own actions.
    pub who: Option<String>,
    pub who_email: Option<String>,
    pub what: String,
    pub action: String,
    pub subject: String,
    pub details: String,
}

#[derive(Template)]
#[template(path = "pages/moderation/audit.html", blocks = ["audit"])]
pub struct AuditPage {
    pub layout: Layout,
    pub channel: Channel,
    pub actions: Vec<String>,
    pub filters: AuditFilters,
    pub rows: Vec<AuditRow>,
    pub total: i64,
    pub pages: i64,
    pub prev: Option<String>,
    pub next: Option<String>,
}

/// The subject of entries about people is a user id (or a LiveKit identity,
/// which is one for our users).
fn subject_is_user(action: &str) -> bool {
    ["moderation.", "team.", "participant."]
        .iter()
        .any(|p| action.starts_with(p))
}

/// What an entry says, as a sentence where that is easy, else its action name.
fn describe(action: &str, details: &serde_json::Value) -> String {
    let until = || {
        details["until"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| utc(&t.to_utc()))
    };
    match action {
        "moderation.banned" => match until() {
            Some(t) => format!("Banned from the channel until {t}"),
            None => "Banned from the channel permanently".to_owned(),
        },
        "moderation.ban_lifted" => "Lifted a ban".to_owned(),
        "moderation.timed_out" => match details["minutes"].as_i64() {
            Some(m) => format!("Timed out of chat for {m} min"),
            None => "Timed out of chat".to_owned(),
        },
        "moderation.timeout_lifted" => "Lifted a chat timeout".to_owned(),
        "moderation.participant_removed" => "Removed from the live room".to_owned(),
        "moderation.track_muted" => match details["source"].as_str() {
            Some(s) => format!("Muted their {}", s.to_lowercase()),
            None => "Muted a track".to_owned(),
        },
        "participant.removed_by_moderator" => {
            "Removed from the live room by the server, at a moderator's request".to_owned()
        }
        "participant.removed_access_ended" => {
            "Removed from the live room by the server: no longer allowed to watch".to_owned()
        }
        "participant.removed_on_join" => {
            "Removed on joining the room: not allowed to watch".to_owned()
        }
        "stream.created" => "Created a stream".to_owned(),
        "stream.deleted" => "Deleted a draft stream".to_owned(),
        "stream.live" => "Went live".to_owned(),
        "stream.ended" => "Ended the stream".to_owned(),
        "stream.ended_by_livekit" => "The stream ended: its room closed".to_owned(),
        "stream.ended_by_reconciler" => "The stream ended: its room was gone".to_owned(),
        "grant.comped" => "Comped a grant".to_owned(),
        "grant.extended" => "Extended a grant".to_owned(),
        "grant.revoked" => "Revoked a grant".to_owned(),
        "team.moderator_added" => "Added a moderator".to_owned(),
        "team.moderator_removed" => "Removed a moderator".to_owned(),
        "channel.created" => "Created the channel".to_owned(),
        other => other.to_owned(),
    }
}

/// An entry's details on one line: `key: value · …`, long values cut.
fn compact(details: &serde_json::Value) -> String {
    let Some(map) = details.as_object() else {
        return String::new();
    };
    map.iter()
        .map(|(k, v)| {
            let value = match v {
                serde_json::Value::Null => "—".to_owned(),
                serde_json::Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
                serde_json::Value::String(s) => match DateTime::parse_from_rfc3339(s) {
                    Ok(t) => utc(&t.to_utc()),
                    Err(_) => s.clone(),
                },
                other => other.to_string(),
            };
            let value: String = if value.chars().count() > 80 {
                value.chars().take(79).chain(['…']).collect()
            } else {
                value
            };
            format!("{}: {value}", k.replace('_', " "))
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

async fn audit_rows(
    conn: &mut AsyncPgConnection,
    entries: Vec<audit::Entry>,
) -> AppResult<Vec<AuditRow>> {
    let user_ids: Vec<UserId> = entries
        .iter()
        .filter_map(|e| {
            if subject_is_user(&e.action) {
                e.subject.as_deref()?.parse().ok()
            } else {
                e.details["user_id"].as_i64().map(UserId)
            }
        })
        .collect();
    let stream_ids: Vec<StreamId> = entries
        .iter()
        .filter(|e| e.action.starts_with("stream."))
        .filter_map(|e| e.subject.as_deref()?.parse().ok())
        .collect();
    let people: HashMap<UserId, (String, String)> = audit::user_names(conn, &user_ids)
        .await?
        .into_iter()
        .map(|(id, name, email)| (id, (name, email)))
        .collect();
    let titles: HashMap<StreamId, String> = audit::stream_titles(conn, &stream_ids)
        .await?
        .into_iter()
        .collect();
    let person = |id: UserId| match people.get(&id) {
        Some((name, email)) => format!("{name} ({email})"),
        None => format!("user #{id}"),
    };
    Ok(entries
        .into_iter()
        .map(|e| {
            let raw = e.subject.clone().unwrap_or_default();
            let subject = if subject_is_user(&e.action) {
                match raw.parse::<UserId>() {
                    Ok(id) => person(id),
                    Err(_) => raw,
                }
            } else if e.action.starts_with("stream.") {
                match raw.parse::<StreamId>() {
                    Ok(id) => titles
                        .get(&id)
                        .cloned()
                        .unwrap_or_else(|| format!("stream #{id}")),
                    Err(_) => raw,
                }
            } else if e.action.starts_with("grant.") {
                match e.details["user_id"].as_i64() {
                    Some(u) => format!("{} — grant #{raw}", person(UserId(u))),
                    None => format!("grant #{raw}"),
                }
            } else {
                raw
            };
            AuditRow {
                id: e.id,
                when: Moment::new(e.created_at),
                who: e.actor_id.map(|id| {
                    e.actor_name
                        .clone()
                        .unwrap_or_else(|| format!("user #{id}"))
                }),
                who_email: e.actor_email.clone(),
                what: describe(&e.action, &e.details),
                details: compact(&e.details),
                action: e.action,
                subject,
            }
        })
        .collect())
}

/// GET /studio/channels/{handle}/audit: the channel's log for its owner,
/// newest first, 50 a page; to htmx, the filtered list alone.
pub async fn audit(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    htmx: Htmx,
    Path(handle): Path<String>,
    Query(params): Query<AuditParams>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let channel = authz::owned_channel(&mut conn, user.id, &handle, Area::AuditLog).await?;
    let mut filters = AuditFilters::read(&params);
    let query = filters.query();
    let (mut entries, total) = audit::list(
        &mut conn,
        channel.id,
        &query,
        (filters.page - 1).saturating_mul(AUDIT_PER_PAGE),
        AUDIT_PER_PAGE,
    )
    .await?;
    let pages = (total + AUDIT_PER_PAGE - 1) / AUDIT_PER_PAGE;
    if filters.page > pages && pages > 0 {
        // Past the end (an old link): the last page.
        filters.page = pages;
        entries = audit::list(
            &mut conn,
            channel.id,
            &query,
            (pages - 1) * AUDIT_PER_PAGE,
            AUDIT_PER_PAGE,
        )
        .await?
        .0;
    }
    let pages = pages.max(1);
    let rows = audit_rows(&mut conn, entries).await?;
    let actions = audit::actions(&mut conn, channel.id).await?;
    drop(conn);
    let layout = if htmx.fragment {
        Layout::fragment(&session).await?
    } else {
        Layout::for_user(&session, &user).await?
    };
    let page_no = filters.page;
    let page = AuditPage {
        layout,
        channel,
        actions,
        rows,
        total,
        pages,
        prev: (page_no > 1).then(|| filters.query_string(page_no - 1)),
        next: (page_no < pages).then(|| filters.query_string(page_no + 1)),
        filters,
    };
    if htmx.fragment {
        render_with(StatusCode::OK, &page.as_audit())
    } else {
        render_with(StatusCode::OK, &page)
    }
}

// ---------------------------------------------------------------------------
// The moderators' dashboard.

pub struct DashStream {
    pub id: StreamId,
    pub title: String,
    pub access: &'static str,
    pub when: Option<Moment>,
}

impl DashStream {
    fn new(s: &Stream, when: Option<DateTime<Utc>>) -> Self {
        DashStream {
            id: s.id,
            title: s.title.clone(),
            access: access_label(s.access_kind()),
            when: when.map(Moment::new),
        }
    }
}

pub struct DashChannel {
    pub id: ChannelId,
    pub handle: String,
    pub title: String,
    pub is_owner: bool,
    pub live: Vec<DashStream>,
    pub upcoming: Vec<DashStream>,
    pub bans: usize,
    pub timeouts: usize,
}

#[derive(Template)]
#[template(path = "pages/moderation/dashboard.html")]
pub struct DashboardPage {
    pub layout: Layout,
    pub channels: Vec<DashChannel>,
}

/// GET /moderation: the channels the user moderates (and owns, marked), each
/// with its live streams — watch them without a pass, or moderate them — and
/// what is coming.
pub async fn dashboard(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    layout: Layout,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let mut cards = Vec::new();
    for (channel, role) in channels::for_member(&mut conn, user.id).await? {
        let listing = streams::listing(&mut conn, channel.id).await?;
        // Counts only: no emails.
        let active = bans::active_in_channel(&mut conn, channel.id, bans::Emails::Hidden).await?;
        let bans = active
            .iter()
            .filter(|b| Kind::parse(&b.kind) == Some(Kind::Ban))
            .count();
        cards.push(DashChannel {
            id: channel.id,
            is_owner: Role::parse(&role) == Some(Role::Owner) || channel.owner_id == user.id,
            live: listing
                .live
                .iter()
                .map(|s| DashStream::new(s, s.started_at))
                .collect(),
            upcoming: listing
                .upcoming
                .iter()
                .map(|s| DashStream::new(s, s.scheduled_at))
                .collect(),
            bans,
            timeouts: active.len() - bans,
            handle: channel.handle,
            title: channel.title,
        });
    }
    render_with(
        StatusCode::OK,
        &DashboardPage {
            layout,
            channels: cards,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_lengths_are_permanent_or_an_hour_to_366_days() {
        assert_eq!(ban_minutes("permanent", "5"), Ok(None));
        assert_eq!(ban_minutes("", ""), Ok(None));
        assert_eq!(ban_minutes("hours", "1"), Ok(Some(60)));
        assert_eq!(ban_minutes("days", " 2 "), Ok(Some(2 * 24 * 60)));
        assert_eq!(ban_minutes("days", "366"), Ok(Some(366 * 24 * 60)));
        for (length, amount) in [
            ("hours", "0"),
            ("days", "367"),
            ("hours", "-1"),
            ("hours", "1.5"),
            ("weeks", "1"),
            ("days", "99999999999999999"),
        ] {
            assert!(ban_minutes(length, amount).is_err(), "{length} {amount}");
        }
    }

    #[test]
    fn reasons_are_optional_and_short() {
        assert_eq!(read_reason("  "), Ok(None));
        assert_eq!(
            read_reason(" spam\r\nlinks "),
            Ok(Some("spam\nlinks".to_owned()))
        );
        assert!(read_reason(&"x".repeat(201)).is_err());
    }

    #[test]
    fn audit_entries_read_as_sentences_with_compact_details() {
        let details = serde_json::json!({ "until": null, "reason": "spam", "stream_id": 4 });
        assert_eq!(
            describe("moderation.banned", &details),
            "Banned from the channel permanently"
        );
        let later = serde_json::json!({ "until": "2026-11-22T18:00:00Z" });
        assert_eq!(
            describe("moderation.banned", &later),
            "Banned from the channel until 2026-11-22 18:00 UTC"
        );
        assert_eq!(
            describe(
                "moderation.timed_out",
                &serde_json::json!({ "minutes": 10 })
            ),
            "Timed out of chat for 10 min"
        );
        assert_eq!(
            describe("chat.something_new", &details),
            "chat.something_new"
        );
        assert_eq!(compact(&details), "reason: spam · stream id: 4 · until: —");
        assert_eq!(compact(&later), "until: 2026-11-22 18:00 UTC");
    }

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

    #[test]
    fn element_ids_are_made_of_safe_characters() {
        assert_eq!(dom_id("42"), "42");
        assert_eq!(dom_id("ingress:obs 1"), "ingress-obs-1");
    }
}
