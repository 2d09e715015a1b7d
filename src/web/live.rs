//! The owner's side of a live stream: go live, the broadcast page and its
//! host token, live stats, end. Authorization: `authz::OwnedStream` (404 for
//! a missing stream or an unannounced draft outside its team, then 403 unless
//! `access::may` says publish).

use askama::Template;
use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::view::{TokenResponse, refuse};
use super::{FlashKind, Layout, render};
use crate::web::authz::OwnedStream;

use crate::db::channels::Channel;
use crate::db::streams::{Status, Stream};
use crate::db::{StreamId, presence};
use crate::error::{AppError, AppResult};
use crate::lifecycle::{self, LifecycleError};
use crate::livekit::tokens;
use crate::state::AppState;
use crate::web::Reply;

pub async fn go_live(
    State(state): State<AppState>,
    OwnedStream { stream, user, .. }: OwnedStream,
    reply: Reply,
) -> AppResult<Response> {
    match lifecycle::go_live(&state, &stream, user.id).await {
        Ok(_) => {
            reply
                .redirect_with(
                    FlashKind::Success,
                    "You're live. Start your camera here; viewers can join now.",
                    &format!("/studio/streams/{}/broadcast", stream.id),
                )
                .await
        }
        Err(LifecycleError::Db(e)) => Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, stream = %stream.id, "go live failed");
            reply
                .redirect_with(
                    FlashKind::Error,
                    e.to_string(),
                    &format!("/studio/streams/{}", stream.id),
                )
                .await
        }
    }
}

pub async fn end(
    State(state): State<AppState>,
    OwnedStream { stream, user, .. }: OwnedStream,
    reply: Reply,
) -> AppResult<Response> {
    match lifecycle::end_stream(&state, stream.id, Some(user.id)).await {
        Ok(_) => {
            reply
                .flash(
                    FlashKind::Success,
                    "The stream has ended. Everyone was disconnected.",
                )
                .await?
        }
        Err(LifecycleError::Db(e)) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, stream = %stream.id, "end failed");
            reply.flash(FlashKind::Error, e.to_string()).await?;
        }
    }
    Ok(reply.redirect(&format!("/studio/streams/{}", stream.id)))
}

#[derive(Template)]
#[template(path = "pages/studio/broadcast.html")]
pub struct BroadcastPage {
    pub layout: Layout,
    pub stream: Stream,
    pub channel: Channel,
    pub started_at: String,
    pub watch_url: String,
    pub chat: crate::chat::view::ChatPanel,
    pub recording: super::view::panels::RecordingPanel,
}

pub async fn broadcast(
    State(state): State<AppState>,
    OwnedStream {
        user,
        stream,
        channel,
        ..
    }: OwnedStream,
    layout: Layout,
) -> AppResult<Response> {
    let started_at = stream
        .started_at
        .map(|t| t.to_rfc3339())
        .unwrap_or_default();
    let watch_url = format!("{}s/{}", state.config.public_url, stream.id);
    let chat = crate::chat::view::ChatPanel::load(&state, Some(user.id), &stream).await?;
    let recording =
        super::view::panels::RecordingPanel::load(&state, &stream, &layout.csrf_token).await?;
    render(&BroadcastPage {
        layout,
        stream,
        channel,
        started_at,
        watch_url,
        chat,
        recording,
    })
}

/// The host token for the broadcast page: publish, subscribe, data, room admin.
pub async fn host_token(
    State(state): State<AppState>,
    OwnedStream { user, stream, .. }: OwnedStream,
) -> AppResult<Response> {
    if stream.status != Status::Live {
        return Ok(refuse(
            axum::http::StatusCode::CONFLICT,
            "The stream is not live. Go live first.",
        ));
    }
    let token = tokens::host(
        &state.config.livekit,
        user.id,
        &user.display_name,
        &stream.room_name,
    )
    .map_err(|e| AppError::Internal(anyhow::anyhow!("minting a host token: {e}")))?;
    metrics::counter!("livekit_tokens_issued_total", "kind" => "host").increment(1);
    Ok(Json(TokenResponse {
        token,
        url: state.config.livekit.public_url.to_string(),
        identity: crate::livekit::host_identity(user.id),
    })
    .into_response())
}

#[derive(Template)]
#[template(path = "partials/studio/stats.html")]
pub struct StatsFragment {
    pub stream_id: StreamId,
    pub status: Status,
    pub viewers: i64,
    pub peak: i32,
}

/// Live numbers for the broadcast page (htmx polls this fragment).
pub async fn stats(
    State(state): State<AppState>,
    OwnedStream {
        stream, channel, ..
    }: OwnedStream,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let viewers = presence::current_viewers(&mut conn, stream.id, channel.id).await?;
    // The peak is raised by the join webhook; never show it below the current count.
    let peak = stream.peak_viewers.max(viewers as i32);
    render(&StatsFragment {
        stream_id: stream.id,
        status: stream.status,
        viewers,
        peak,
    })
}
