//! Recordings over HTTP: the owner's start/stop and status panel on the
//! broadcast page, the record-on-live setting, and the replays page with its
//! presigned playback URLs, deletion and retention. Authorization: owner
//! actions through `authz::OwnedStream`, playback through
//! `access::find_stream_with_channel` (an unannounced draft is a 404 outside
//! its team) and `access::replay_given`; the rules themselves live in
//! `recording.rs` / `access.rs`.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;
use tower_sessions::Session;

use super::authz::{self, Area, Ids, OwnedStream};
use super::view::panels::{RecordingPanel, duration_label, size_label};
use super::{FlashKind, Htmx, Layout, flash, render, render_with};
use crate::access::{self, ReplayAccess};
use crate::auth::{self, CurrentUser, MaybeUser};
use crate::db::channels::Channel;
use crate::db::recordings::{self as rec_db};
use crate::db::streams::{self, Stream, StreamChanges};
use crate::db::{StreamId, UserId};
use crate::error::{AppError, AppResult};
use crate::recording::{self, RecordingError};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "partials/recordings/panel.html")]
pub struct RecordingPanelFragment {
    pub recording: RecordingPanel,
}

/// The status fragment (htmx polls it).
pub async fn panel(
    State(state): State<AppState>,
    OwnedStream {
        user: _,
        stream,
        channel: _,
    }: OwnedStream,
    layout: Layout,
) -> AppResult<Response> {
    let recording = RecordingPanel::load(&state, &stream, &layout.csrf_token).await?;
    render(&RecordingPanelFragment { recording })
}

pub async fn start(
    State(state): State<AppState>,
    OwnedStream {
        user: _,
        stream,
        channel: _,
    }: OwnedStream,
    session: Session,
    htmx: Htmx,
    layout: Layout,
) -> AppResult<Response> {
    let outcome = recording::start(&state, &stream)
        .await
        .map(|_| "Recording started.");
    answer(&state, &stream, session, htmx, layout, outcome).await
}

pub async fn stop(
    State(state): State<AppState>,
    OwnedStream {
        user: _,
        stream,
        channel: _,
    }: OwnedStream,
    session: Session,
    htmx: Htmx,
    layout: Layout,
) -> AppResult<Response> {
    let outcome = recording::stop(&state, &stream)
        .await
        .map(|stopped| match stopped {
            Some(_) => "Recording stopped; the file is being saved.",
            None => "Nothing is being recorded.",
        });
    answer(&state, &stream, session, htmx, layout, outcome).await
}

/// htmx: the panel with the outcome in it; otherwise a flash and back to the page.
async fn answer(
    state: &AppState,
    stream: &Stream,
    session: Session,
    htmx: Htmx,
    layout: Layout,
    outcome: Result<&'static str, RecordingError>,
) -> AppResult<Response> {
    let (kind, message) = match outcome {
        Ok(m) => (FlashKind::Success, m.to_owned()),
        Err(RecordingError::Db(e)) => return Err(e.into()),
        Err(e) => (FlashKind::Error, e.to_string()),
    };
    if htmx.fragment {
        let mut recording = RecordingPanel::load(state, stream, &layout.csrf_token).await?;
        // A failed recording's reason is on the panel already: once is enough.
        let said = kind == FlashKind::Error
            && recording.status == Some(rec_db::Status::Failed)
            && recording.error.as_deref() == Some(message.as_str());
        if !said {
            recording.message = Some(message);
        }
        return render(&RecordingPanelFragment { recording });
    }
    flash(&session, kind, message).await?;
    Ok(auth::redirect(
        htmx.request,
        &format!("/studio/streams/{}/broadcast", stream.id),
    ))
}

#[derive(Deserialize)]
pub struct SettingsForm {
    #[serde(default)]
    pub record_on_live: Option<String>,
}

/// "Record when going live" (studio stream page).
pub async fn settings(
    State(state): State<AppState>,
    OwnedStream {
        user: _,
        stream,
        channel: _,
    }: OwnedStream,
    session: Session,
    htmx: Htmx,
    Form(form): Form<SettingsForm>,
) -> AppResult<Response> {
    let on = form.record_on_live.is_some();
    let mut conn = state.db.get().await?;
    let changes = StreamChanges {
        record_on_live: Some(on),
        ..Default::default()
    };
    streams::update_while(&mut conn, stream.id, stream.status, changes).await?;
    let message = if on {
        "This stream will be recorded when it goes live."
    } else {
        "This stream will not be recorded automatically."
    };
    flash(&session, FlashKind::Success, message).await?;
    Ok(auth::redirect(
        htmx.request,
        &format!("/studio/streams/{}", stream.id),
    ))
}

pub struct Replay {
    pub id: i64,
    pub recorded: String,
    pub duration: String,
    pub size: String,
    /// The presigned URL; only in pages of those `may_replay` allows.
    pub src: String,
    /// The URLs of the parts after the first (a recording taken over by
    /// another instance), played on in order by `static/js/replays.js`.
    pub next: Vec<String>,
}

#[derive(Template)]
#[template(path = "pages/recordings/replays.html")]
pub struct ReplaysPage {
    pub layout: Layout,
    pub stream: Stream,
    pub channel: Channel,
    pub replays: Vec<Replay>,
    /// Why the viewer may not play them.
    pub denied: Option<&'static str>,
    pub owner: bool,
    pub retention_days: Option<i32>,
}

/// The stream's finished recordings, playable by the team and by holders of
/// a pass that includes replays; everyone else gets 403 and the reason.
pub async fn replays(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    layout: Layout,
    Ids(id): Ids<StreamId>,
) -> AppResult<Response> {
    let user_id: Option<UserId> = user.as_ref().map(|u| u.id);
    let mut conn = state.db.get().await?;
    // An unannounced draft is a 404 outside its team, as a missing stream.
    let (stream, channel, access) = access::find_stream_with_channel(&mut conn, user_id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let replay = access::replay_given(&mut conn, user_id, &stream, access).await?;
    let owner = access.may_publish();
    let mut page = ReplaysPage {
        layout,
        stream,
        channel,
        replays: Vec::new(),
        denied: None,
        owner,
        retention_days: None,
    };
    if let ReplayAccess::Denied(why) = replay {
        page.denied = Some(why);
        return render_with(StatusCode::FORBIDDEN, &page);
    }
    page.retention_days = rec_db::retention_days(&mut conn, page.channel.id).await?;
    let playable = recording::playable(&mut conn, page.stream.id).await?;
    drop(conn);
    let presign = async |key: &str| {
        state.storage.playback_url(key).await.map_err(|e| {
            tracing::warn!(error = %e, "presigning a replay");
            AppError::Unavailable(
                "Replays cannot be played right now: the recordings bucket did not answer. Try again in a moment.".into(),
            )
        })
    };
    for recording::Playable { recording: r, keys } in playable {
        let Some((first, rest)) = keys.split_first() else {
            continue;
        };
        let src = presign(first).await?;
        let mut next = Vec::with_capacity(rest.len());
        for key in rest {
            next.push(presign(key).await?);
        }
        page.replays.push(Replay {
            id: r.id,
            recorded: super::view::utc(&r.started_at.unwrap_or(r.created_at)),
            duration: r.duration_ms.map(duration_label).unwrap_or_default(),
            size: r.size_bytes.map(size_label).unwrap_or_default(),
            src,
            next,
        });
    }
    metrics::counter!("replay_urls_issued_total").increment(page.replays.len() as u64);
    render(&page)
}

/// Deletes a recording: its object, then its row (owner only).
pub async fn delete(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    htmx: Htmx,
    Ids(id): Ids<i64>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let recording = rec_db::find(&mut conn, id)
        .await?
        .ok_or(AppError::NotFound)?;
    drop(conn);
    let (stream, _) = authz::owned_stream(
        &mut *state.db.get().await?,
        user.id,
        recording.stream_id,
        Area::Streams,
    )
    .await?;
    if recording.is_running() {
        return Err(AppError::BadRequest(
            "Stop the recording before deleting it.".into(),
        ));
    }
    recording::delete(&state, &recording).await?;
    flash(&session, FlashKind::Success, "The recording was deleted.").await?;
    Ok(auth::redirect(
        htmx.request,
        &format!("/s/{}/replays", stream.id),
    ))
}

#[derive(Deserialize)]
pub struct RetentionForm {
    /// Days; empty keeps recordings forever.
    #[serde(default)]
    pub days: String,
}

/// Sets the channel's retention period (owner only).
pub async fn retention(
    State(state): State<AppState>,
    OwnedStream {
        user: _,
        stream,
        channel,
    }: OwnedStream,
    session: Session,
    htmx: Htmx,
    Form(form): Form<RetentionForm>,
) -> AppResult<Response> {
    let days = match form.days.trim() {
        "" => None,
        d => match d.parse::<i32>() {
            Ok(n) if (1..=3650).contains(&n) => Some(n),
            _ => {
                return Err(AppError::BadRequest(
                    "Retention must be a whole number of days from 1 to 3650, or empty to keep recordings forever."
                        .into(),
                ));
            }
        },
    };
    let mut conn = state.db.get().await?;
    rec_db::set_retention_days(&mut conn, channel.id, days).await?;
    let message = match days {
        Some(n) => format!("Recordings of this channel are deleted after {n} days."),
        None => "Recordings of this channel are kept until you delete them.".to_owned(),
    };
    flash(&session, FlashKind::Success, message).await?;
    Ok(auth::redirect(
        htmx.request,
        &format!("/s/{}/replays", stream.id),
    ))
}
