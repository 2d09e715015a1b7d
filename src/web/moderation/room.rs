//! Acting on someone in a live stream's room from the participants panel:
//! mute their published tracks, or remove them (a kick, not a ban).

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_htmx::HxResponseTrigger;
use diesel_async::AsyncPgConnection;
use livekit_protocol::ParticipantInfo;
use serde::Deserialize;

use super::participants::{
    PanelFragment, load_panel, room_participants, track_label, unnamed, unreachable_text,
};
use super::{Ask, LIVEKIT_WAIT, NOT_YOURSELF, Note, moderate_path, refusal};
use crate::db::channels::Channel;
use crate::db::streams::Stream;
use crate::db::users;
use crate::error::{AppError, AppResult};
use crate::lifecycle;
use crate::livekit::Participant;
use crate::state::AppState;
use crate::web::Reply;
use crate::web::authz::TeamStream;
use crate::web::{FlashKind, render_with};

/// The answer to a panel action: the panel with what happened (htmx), or
/// back to the moderation page with it as a flash.
async fn answer_panel(
    ask: &Ask<'_>,
    stream: &Stream,
    channel: &Channel,
    status: StatusCode,
    note: Note,
) -> AppResult<Response> {
    let Ask { state, reply, user } = ask;
    if reply.htmx.fragment {
        let ok = note.ok;
        let panel = load_panel(state, &reply.session, user.id, stream, channel, Some(note)).await?;
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
    reply.flash(kind, note.text).await?;
    Ok(reply.redirect(&moderate_path(stream.id)))
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
    reply: Reply,
    Path((_, identity)): Path<(String, String)>,
    Form(form): Form<MuteForm>,
) -> AppResult<Response> {
    let ask = Ask {
        state: &state,
        reply: &reply,
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
    reply: Reply,
    Path((_, identity)): Path<(String, String)>,
) -> AppResult<Response> {
    let ask = Ask {
        state: &state,
        reply: &reply,
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
