//! The viewer's side: the watch page, its fragments (status, time left,
//! viewer count and "live for"), and the viewer token. Nothing is shown or
//! issued unless `access::may` says watch; streams are loaded through
//! `access::find_stream*`, so an unannounced draft is a 404 for everyone
//! outside its team, as a missing stream is.

use askama::Template;
use axum::Json;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Deserialize;

use super::funnel::{FunnelVisitor, Noted};
use super::view::{TokenResponse, refuse};
use super::view::{live_for, relative_start, utc};
use super::{Htmx, Layout, render};
use crate::access::{self, Access, Denial};
use crate::analytics::Step;
use crate::auth::MaybeUser;
use crate::auth::guest::GuestId;
use crate::db::StreamId;
use crate::db::channels::Channel;
use crate::db::presence;
use crate::db::streams::{AccessKind, Status, Stream};
use crate::error::{AppError, AppResult};
use crate::livekit::tokens;
use crate::state::AppState;
use crate::web::authz::Ids;

#[derive(Template)]
#[template(path = "pages/watch/show.html", blocks = ["stage", "live_stats"])]
pub struct WatchPage {
    pub layout: Layout,
    pub stream: Stream,
    pub channel: Channel,
    /// What the access rule said about the viewer (the chat panel reuses it).
    pub access: Access,
    pub denial: Option<&'static str>,
    pub pass_ended: bool,
    pub banned: bool,
    pub signed_in: bool,
    /// When the viewer's pass ends, for the countdown and the 5-minute warning.
    pub time_left: Option<TimeLeft>,
    /// The chat panel (full page only; the status and time-left fragments skip it).
    pub chat: Option<crate::chat::view::ChatPanel>,
    /// What the page shows: status and whether the viewer may watch. The
    /// status poll swaps the stage only when this changes.
    pub stage_key: String,
    pub scheduled_at: Option<String>,
    pub scheduled_label: String,
    /// "in 2 h 5 min": the same words as the home page's card.
    pub starts_label: String,
    /// The follow button of the stream's channel (full page only).
    pub follow: Option<super::view::follow_button::FollowButton>,
    /// Viewers now and since when, while the stream is live.
    pub live: Option<LiveStats>,
}

/// "12 viewers · live for 1 h 2 min": shown to everyone who sees the page
/// (the full page and its `/live-stats` fragment; the status and time-left
/// polls leave it out, so they cost no presence query).
pub struct LiveStats {
    /// Viewers in the room now, the channel's team not counted.
    pub viewers: i64,
    /// RFC 3339, for the script that ticks "live for" (as on the home card).
    pub since: String,
    pub since_label: String,
}

async fn live_stats(state: &AppState, stream: &Stream) -> AppResult<Option<LiveStats>> {
    let (Status::Live, Some(started)) = (stream.status, stream.started_at) else {
        return Ok(None);
    };
    let mut conn = state.db.get().await?;
    let viewers = presence::current_viewers(&mut conn, stream.id, stream.channel_id).await?;
    let seconds = (Utc::now() - started).num_seconds().max(0);
    Ok(Some(LiveStats {
        viewers,
        since: started.to_rfc3339(),
        since_label: live_for(seconds),
    }))
}

async fn page(
    state: &AppState,
    user: Option<crate::db::UserId>,
    id: StreamId,
    layout: Layout,
) -> AppResult<WatchPage> {
    let mut conn = state.db.get().await?;
    let (stream, channel, access) = access::find_stream_with_channel(&mut conn, user, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let until = match access {
        Access::Watch { until } => until,
        _ => None,
    };
    Ok(WatchPage {
        live: None,
        layout,
        access,
        denial: access.denial().map(|d| d.reason()),
        pass_ended: access.denial() == Some(Denial::PassEnded),
        banned: access.denial() == Some(Denial::Banned),
        time_left: until.map(|t| TimeLeft {
            stream_id: stream.id,
            until: t.to_rfc3339(),
            label: utc(&t),
        }),
        chat: None,
        stage_key: format!(
            "{}-{}",
            stream.status,
            if access.may_watch() { "in" } else { "out" }
        ),
        signed_in: user.is_some(),
        scheduled_at: stream.scheduled_at.map(|t| t.to_rfc3339()),
        scheduled_label: stream.scheduled_at.as_ref().map(utc).unwrap_or_default(),
        starts_label: stream
            .scheduled_at
            .map(|t| relative_start((t - Utc::now()).num_seconds()))
            .unwrap_or_default(),
        follow: None,
        stream,
        channel,
    })
}

pub async fn show(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    visitor: FunnelVisitor,
    layout: Layout,
    Ids(id): Ids<StreamId>,
) -> AppResult<Response> {
    let viewer = user.clone();
    let user = user.map(|u| u.id);
    let mut page = page(&state, user, id, layout).await?;
    page.live = live_stats(&state, &page.stream).await?;
    page.chat = Some(
        crate::chat::view::ChatPanel::load_with(&state, user, &page.stream, page.access).await?,
    );
    let next = format!("/s/{}", page.stream.id);
    page.follow = Some(
        super::view::follow_button::FollowButton::load(
            &mut *state.db.get().await?,
            viewer.as_ref(),
            &page.channel,
            &next,
            &page.layout.csrf_token,
        )
        .await?,
    );
    // The funnel's first step: shown a pass-only stream without access (not
    // a ban). A public stream only asks people to sign in: not the funnel.
    let for_pass_holders = page.stream.access == AccessKind::Pass;
    let noted = if for_pass_holders && page.denial.is_some() && !page.banned {
        visitor.note(
            &state,
            user,
            Step::DeniedVisit,
            page.channel.id,
            Some(page.stream.id),
        )
    } else {
        Noted::nothing()
    };
    Ok(noted.apply(render(&page)?))
}

#[derive(Deserialize)]
pub struct StatusQuery {
    since: Option<String>,
}

/// The stage (player or notice) when the stream's status changed since the
/// page was rendered; 204 (htmx swaps nothing) while it is the same.
pub async fn status(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    layout: Layout,
    htmx: Htmx,
    Ids(id): Ids<StreamId>,
    Query(q): Query<StatusQuery>,
) -> AppResult<Response> {
    let page = page(&state, user.map(|u| u.id), id, layout).await?;
    if q.since.as_deref() == Some(page.stage_key.as_str()) {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if htmx.fragment {
        render(&page.as_stage())
    } else {
        render(&page)
    }
}

/// The viewer count and "live for" line (htmx refreshes it every 15 s).
pub async fn live_stats_fragment(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    layout: Layout,
    Ids(id): Ids<StreamId>,
) -> AppResult<Response> {
    let mut page = page(&state, user.map(|u| u.id), id, layout).await?;
    page.live = live_stats(&state, &page.stream).await?;
    render(&page.as_live_stats())
}

/// A subscribe-only token for the live room, for as long as the access rule
/// allows: at most 10 minutes and never past the end of the viewer's grant.
pub async fn token(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: axum::http::HeaderMap,
    Ids(id): Ids<StreamId>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    // An unannounced draft is a 404 here too (not a 403 that says it exists).
    let (stream, access) = access::find_stream(&mut conn, user.as_ref().map(|u| u.id), id)
        .await?
        .ok_or(AppError::NotFound)?;
    drop(conn);
    let ttl = match access {
        Access::Denied(d) => {
            metrics::counter!("livekit_tokens_refused_total").increment(1);
            return Ok(refuse(StatusCode::FORBIDDEN, d.reason()));
        }
        Access::Watch { until: Some(until) } => match (until - Utc::now()).to_std() {
            Ok(left) => left.min(tokens::VIEWER_TTL),
            Err(_) => return Ok(refuse(StatusCode::FORBIDDEN, "Your pass has ended.")),
        },
        _ => tokens::VIEWER_TTL,
    };
    if stream.status != Status::Live {
        return Ok(refuse(StatusCode::CONFLICT, "This stream is not live."));
    }
    let Some(user) = user else {
        // Only a guest gets this far without an account (`Access::Guest`).
        return guest_token(&state, &stream, &headers, peer, ttl).await;
    };
    let token = tokens::viewer(
        &state.config.livekit,
        user.id,
        &user.display_name,
        &stream.room_name,
        ttl,
    )
    .map_err(|e| AppError::Internal(anyhow::anyhow!("minting a viewer token: {e}")))?;
    metrics::counter!("livekit_tokens_issued_total", "kind" => "viewer").increment(1);
    Ok(Json(TokenResponse {
        token,
        url: state.config.livekit.public_url.to_string(),
        identity: user.id.to_string(),
    })
    .into_response())
}

/// A guest's token for a public stream: their id from the guest cookie (a
/// new one, and the cookie, on their first token), limited per address.
async fn guest_token(
    state: &AppState,
    stream: &Stream,
    headers: &axum::http::HeaderMap,
    peer: std::net::SocketAddr,
    ttl: std::time::Duration,
) -> AppResult<Response> {
    let ip = super::client::client_ip(state, headers, peer);
    let limit = state.config.limits.guest_tokens_per_address;
    let mut conn = state.db.get().await?;
    if let Err(refused) =
        crate::limits::take(&mut conn, crate::limits::Action::GuestToken, &ip, limit).await?
    {
        tracing::info!(%ip, "guest tokens throttled");
        let mut response = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many guests are watching from your network. Wait {} or sign in to watch.",
                refused.wait()
            ),
        );
        if let Ok(v) = refused.retry_after_secs().to_string().parse() {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
        }
        return Ok(response);
    }
    drop(conn);
    let known = GuestId::from_headers(headers);
    let guest = known.unwrap_or_default();
    let token = tokens::guest(&state.config.livekit, guest, &stream.room_name, ttl)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("minting a guest token: {e}")))?;
    metrics::counter!("livekit_tokens_issued_total", "kind" => "guest").increment(1);
    let mut response = Json(TokenResponse {
        token,
        url: state.config.livekit.public_url.to_string(),
        identity: crate::livekit::guest_identity(guest),
    })
    .into_response();
    if known.is_none() {
        response.headers_mut().append(
            axum::http::header::SET_COOKIE,
            guest.set_cookie(state.config.secure_cookies()),
        );
    }
    Ok(response)
}

/// The viewer's time left (htmx refreshes it every minute, so an extension
/// bought in another tab shows up without touching the player).
pub async fn time_left(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    layout: Layout,
    Ids(id): Ids<StreamId>,
) -> AppResult<Response> {
    let page = page(&state, user.map(|u| u.id), id, layout).await?;
    match page.time_left {
        Some(t) => render(&t),
        // No pass end to show (any more): htmx swaps the line away.
        None => Ok(axum::response::Html("").into_response()),
    }
}

/// The "your pass ends …" line of the watch page; also served alone.
#[derive(Template)]
#[template(path = "partials/watch/time_left.html")]
pub struct TimeLeft {
    pub stream_id: StreamId,
    /// RFC 3339, for the script's countdown.
    pub until: String,
    pub label: String,
}
