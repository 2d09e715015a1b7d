//! The viewer's side: the watch page, its fragments (status, time left,
//! viewer count and "live for"), and the viewer token. Nothing is shown or
//! issued unless `access::may` says watch (a guest's, on a public stream:
//! `Access::Guest`, limited per address) or `access::preview` gives a free
//! preview (a token ending with it; after it, the paywall in place of the
//! player). Streams are loaded through `access::find_stream*`, so an
//! unannounced draft is a 404 for everyone outside its team, as a missing
//! stream is.

use askama::Template;
use axum::Json;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use diesel::QueryableByName;
use serde::Deserialize;

use super::funnel::{FunnelVisitor, Noted};
use super::view::{TokenResponse, refuse};
use super::view::{live_for, relative_start, utc};
use super::{Htmx, Layout, render};
use crate::access::{self, Access, Denial, Preview};
use crate::analytics::Step;
use crate::auth::MaybeUser;
use crate::auth::guest::GuestId;
use crate::db::StreamId;
use crate::db::channels::Channel;
use crate::db::previews::Previewer;
use crate::db::streams::{AccessKind, Status, Stream};
use crate::error::{AppError, AppResult};
use crate::livekit::tokens;
use crate::state::AppState;
use crate::web::authz::Ids;
use crate::web::passes::buy::{Buyer, PassCard};

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
    /// The free preview, for a visitor without a pass (`access::preview`).
    pub preview: Preview,
    /// In place of the player once the preview is over: the stream's passes
    /// (bought in a new tab: this page plays as soon as the pass is there)
    /// and the code box (`buyer`, `redeem`).
    pub paywall: Option<Vec<PassCard>>,
    pub buyer: Buyer,
    pub redeem: crate::web::view::redeem_form::RedeemForm,
}

impl WatchPage {
    /// The preview's length in words, before it starts.
    pub fn preview_length(&self) -> Option<String> {
        match self.preview {
            Preview::Available { seconds } => Some(preview_words(seconds)),
            _ => None,
        }
    }
}

/// "30 seconds", "2 minutes", "1 minute 30 seconds".
fn preview_words(seconds: i32) -> String {
    let (m, s) = (seconds / 60, seconds % 60);
    let plural = |n: i32, unit: &str| format!("{n} {unit}{}", if n == 1 { "" } else { "s" });
    match (m, s) {
        (0, s) => plural(s, "second"),
        (m, 0) => plural(m, "minute"),
        (m, s) => format!("{} {}", plural(m, "minute"), plural(s, "second")),
    }
}

/// Who asks, as free previews count them: the account, or the guest's
/// identity (their cookie; none yet: a new one at their first token) and address.
pub fn previewer(
    state: &AppState,
    user: Option<crate::db::UserId>,
    guest: Option<GuestId>,
    headers: &axum::http::HeaderMap,
    peer: std::net::SocketAddr,
) -> Previewer {
    Previewer {
        user,
        identity: match (user, guest) {
            (Some(user), _) => crate::livekit::viewer_identity(user),
            (None, Some(guest)) => crate::livekit::guest_identity(guest),
            (None, None) => String::new(),
        },
        address: super::client::client_ip(state, headers, peer),
    }
}

/// What a visit to the watch page brings: its cookies and address (for the
/// free preview), besides the signed-in user.
pub struct Visit {
    pub headers: axum::http::HeaderMap,
    pub peer: std::net::SocketAddr,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Visit {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0)
            .unwrap_or_else(|| ([0, 0, 0, 0], 0).into());
        Ok(Visit {
            headers: parts.headers.clone(),
            peer,
        })
    }
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
    let viewers = state
        .viewer_counts
        .get(&state.db, stream.id, stream.channel_id)
        .await?;
    let seconds = (Utc::now() - started).num_seconds().max(0);
    Ok(Some(LiveStats {
        viewers,
        since: started.to_rfc3339(),
        since_label: live_for(seconds),
    }))
}

/// What the full page reads besides the stage: the chat panel's state and
/// the follow button's, in the page's one statement with the stream
/// (`access::find_stream_with`).
#[derive(QueryableByName)]
struct FullPage {
    #[diesel(embed)]
    chat: crate::db::chat::PanelState,
    #[diesel(embed)]
    follow: crate::db::follows::FollowState,
}

impl access::PageColumns for FullPage {
    fn statement() -> &'static access::StreamStatement {
        static STATEMENT: std::sync::LazyLock<access::StreamStatement> =
            std::sync::LazyLock::new(|| {
                access::statement_with(&format!(
                    "{}, {}",
                    *crate::db::chat::PANEL_COLUMNS,
                    crate::db::follows::STATE_COLUMNS
                ))
            });
        &STATEMENT
    }
}

/// The page without the chat panel, the follow button and the live stats
/// (the status, time-left and live-stats fragments need none of them).
async fn page(
    state: &AppState,
    user: Option<crate::db::UserId>,
    visit: &Visit,
    id: StreamId,
    layout: Layout,
) -> AppResult<WatchPage> {
    let (page, access::NoColumns) = page_with(state, user, visit, id, layout).await?;
    Ok(page)
}

/// `page`, and the columns `X` read with the stream.
async fn page_with<X: access::PageColumns>(
    state: &AppState,
    user: Option<crate::db::UserId>,
    visit: &Visit,
    id: StreamId,
    layout: Layout,
) -> AppResult<(WatchPage, X)> {
    let mut conn = state.db.get().await?;
    let (stream, channel, access, columns) = access::find_stream_with::<X>(&mut conn, user, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let until = access.until();
    let preview = if access::preview_offered(&stream, access).is_some() {
        let guest = GuestId::from_headers(&visit.headers);
        let who = previewer(state, user, guest, &visit.headers, visit.peer);
        access::preview(&mut conn, &stream, access, &who).await?
    } else {
        Preview::None
    };
    // Over: the paywall in place of the player (the stream's passes, the code box).
    let paywall = if preview == Preview::Used {
        let cards = crate::db::passes::on_sale_for_stream(&mut conn, channel.id, stream.id)
            .await?
            .iter()
            .map(|p| PassCard::for_stream(p, &channel, stream.id))
            .collect();
        Some(cards)
    } else {
        None
    };
    let buyer = Buyer {
        signed_in: user.is_some(),
        may_buy: true,
        here: format!("/s/{}", stream.id),
        new_tab: true,
    };
    let redeem = crate::web::view::redeem_form::RedeemForm::new(
        &layout.csrf_token,
        format!("/s/{}", stream.id),
        format!("/s/{}/pass", stream.id),
    );
    let previewing = matches!(preview, Preview::Available { .. } | Preview::Running { .. });
    let page = WatchPage {
        live: None,
        layout,
        access,
        preview,
        paywall,
        buyer,
        redeem,
        denial: if previewing {
            None
        } else if preview == Preview::Used {
            Some("Your free preview of this stream has ended. Get a pass to keep watching.")
        } else {
            access.denial().map(|d| d.reason())
        },
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
            if access.may_watch() {
                "in"
            } else if previewing {
                "preview"
            } else if preview == Preview::Used {
                "paywall"
            } else {
                "out"
            }
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
    };
    Ok((page, columns))
}

pub async fn show(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    visit: Visit,
    visitor: FunnelVisitor,
    layout: Layout,
    Ids(id): Ids<StreamId>,
) -> AppResult<Response> {
    let user = user.map(|u| u.id);
    let (mut page, full) = page_with::<FullPage>(&state, user, &visit, id, layout).await?;
    page.live = live_stats(&state, &page.stream).await?;
    page.chat = Some(
        crate::chat::view::ChatPanel::load_given(&state, &page.stream, page.access, full.chat)
            .await?,
    );
    page.follow = Some(super::view::follow_button::FollowButton::given(
        user,
        &page.channel,
        full.follow,
        &format!("/s/{}", page.stream.id),
        &page.layout.csrf_token,
    ));
    // The funnel's first step: shown a pass-only stream without access (not
    // a ban). A public stream only asks people to sign in: not the funnel.
    let for_pass_holders = page.stream.access == AccessKind::Pass;
    // (A free preview shows the player, but the visit was without access all the same.)
    let noted = if for_pass_holders && page.access.denial().is_some() && !page.banned {
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
    visit: Visit,
    layout: Layout,
    htmx: Htmx,
    Ids(id): Ids<StreamId>,
    Query(q): Query<StatusQuery>,
) -> AppResult<Response> {
    let page = page(&state, user.map(|u| u.id), &visit, id, layout).await?;
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
    visit: Visit,
    layout: Layout,
    Ids(id): Ids<StreamId>,
) -> AppResult<Response> {
    let mut page = page(&state, user.map(|u| u.id), &visit, id, layout).await?;
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
    visitor: FunnelVisitor,
    Ids(id): Ids<StreamId>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    // An unannounced draft is a 404 here too (not a 403 that says it exists).
    let (stream, access) = access::find_stream(&mut conn, user.as_ref().map(|u| u.id), id)
        .await?
        .ok_or(AppError::NotFound)?;
    drop(conn);
    let ttl = match access {
        // No pass, but a free preview on offer: theirs, once.
        Access::Denied(_) if access::preview_offered(&stream, access).is_some() => {
            let visit = Visit { headers, peer };
            return preview_token(&state, &stream, access, user.as_ref(), &visit, visitor).await;
        }
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
    Ok(token_response(
        &state,
        token,
        crate::livekit::viewer_identity(user.id),
    ))
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
    if let Some(refused) = guest_limit(state, headers, peer).await? {
        return Ok(refused);
    }
    let known = GuestId::from_headers(headers);
    let guest = known.unwrap_or_default();
    let token = tokens::guest(&state.config.livekit, guest, &stream.room_name, ttl)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("minting a guest token: {e}")))?;
    metrics::counter!("livekit_tokens_issued_total", "kind" => "guest").increment(1);
    let response = token_response(state, token, crate::livekit::guest_identity(guest));
    Ok(with_guest_cookie(state, response, guest, known))
}

/// Counts a guest's token against the per-address limit: the refusal to
/// answer when it is reached.
async fn guest_limit(
    state: &AppState,
    headers: &axum::http::HeaderMap,
    peer: std::net::SocketAddr,
) -> AppResult<Option<Response>> {
    let ip = super::client::client_ip(state, headers, peer);
    let limit = state.config.limits.guest_tokens_per_address;
    let mut conn = state.db.get().await?;
    let Err(refused) =
        crate::limits::take(&mut conn, crate::limits::Action::GuestToken, &ip, limit).await?
    else {
        return Ok(None);
    };
    tracing::info!(%ip, "guest tokens throttled");
    let mut response = refuse(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "Too many guests are watching from your network. Wait {} or sign in to watch.",
            refused.wait()
        ),
    );
    if let Ok(v) = refused.retry_after_secs().to_string().parse() {
        response
            .headers_mut()
            .insert(axum::http::header::RETRY_AFTER, v);
    }
    Ok(Some(response))
}

fn token_response(state: &AppState, token: String, identity: String) -> Response {
    Json(TokenResponse {
        token,
        url: state.config.livekit.public_url.to_string(),
        identity,
    })
    .into_response()
}

/// Sets the guest cookie when the guest had none (`known`).
fn with_guest_cookie(
    state: &AppState,
    mut response: Response,
    guest: GuestId,
    known: Option<GuestId>,
) -> Response {
    if known.is_none() {
        response.headers_mut().append(
            axum::http::header::SET_COOKIE,
            guest.set_cookie(state.config.secure_cookies()),
        );
    }
    response
}

/// A token for `stream`'s free preview (an account, or a guest limited per
/// address like any guest): it expires no later than the preview's end, and
/// the enforcer removes them then. A preview already over is refused.
async fn preview_token(
    state: &AppState,
    stream: &Stream,
    access: Access,
    user: Option<&crate::db::users::User>,
    visit: &Visit,
    visitor: FunnelVisitor,
) -> AppResult<Response> {
    if stream.status != Status::Live {
        return Ok(refuse(StatusCode::CONFLICT, "This stream is not live."));
    }
    let known = GuestId::from_headers(&visit.headers);
    let guest = known.unwrap_or_default();
    if user.is_none()
        && let Some(refused) = guest_limit(state, &visit.headers, visit.peer).await?
    {
        return Ok(refused);
    }
    let who = previewer(
        state,
        user.map(|u| u.id),
        Some(guest),
        &visit.headers,
        visit.peer,
    );
    let mut conn = state.db.get().await?;
    let (preview, started) = access::start_preview(&mut conn, stream, access, &who).await?;
    drop(conn);
    // Whole seconds, rounded down: the token's `exp` is never past the end.
    let left = match preview {
        Preview::Running { until } => (until - Utc::now())
            .to_std()
            .map(|d| std::time::Duration::from_secs(d.as_secs()))
            .unwrap_or_default(),
        _ => std::time::Duration::ZERO,
    };
    if left.is_zero() {
        metrics::counter!("livekit_tokens_refused_total").increment(1);
        return Ok(refuse(
            StatusCode::FORBIDDEN,
            "Your free preview of this stream has ended. Get a pass to keep watching.",
        ));
    }
    let ttl = left.min(tokens::VIEWER_TTL);
    let (token, identity) = match user {
        Some(user) => (
            tokens::viewer(
                &state.config.livekit,
                user.id,
                &user.display_name,
                &stream.room_name,
                ttl,
            ),
            crate::livekit::viewer_identity(user.id),
        ),
        None => (
            tokens::guest(&state.config.livekit, guest, &stream.room_name, ttl),
            crate::livekit::guest_identity(guest),
        ),
    };
    let token =
        token.map_err(|e| AppError::Internal(anyhow::anyhow!("minting a preview token: {e}")))?;
    metrics::counter!("livekit_tokens_issued_total", "kind" => "preview").increment(1);
    let mut response = token_response(state, token, identity);
    if user.is_none() {
        response = with_guest_cookie(state, response, guest, known);
    }
    if started {
        tracing::info!(stream = %stream.id, "free preview started");
        let noted = visitor.note(
            state,
            user.map(|u| u.id),
            Step::Previewed,
            stream.channel_id,
            Some(stream.id),
        );
        response = noted.apply(response);
    }
    Ok(response)
}

/// The viewer's time left (htmx refreshes it every minute, so an extension
/// bought in another tab shows up without touching the player).
pub async fn time_left(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    visit: Visit,
    layout: Layout,
    Ids(id): Ids<StreamId>,
) -> AppResult<Response> {
    let page = page(&state, user.map(|u| u.id), &visit, id, layout).await?;
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
