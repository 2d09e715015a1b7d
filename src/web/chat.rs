//! Live chat over HTTP: the panel, posting, the SSE stream, deletion, and the
//! owner's chat settings. Every handler asks `access::may` (through
//! `chat::post` for posting) after loading the stream; the rules themselves
//! live in `crate::chat`.

use std::convert::Infallible;
use std::time::Duration;

use axum::Form;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::Deserialize;

use super::view::panels::{ChatSettingsForm, SettingsFragment};
use super::{FieldErrors, FlashKind, Htmx, Layout, render, render_with};
use crate::access::{self, Access};
use crate::auth::{self, CurrentUser, MaybeUser};
use crate::chat::hub::Holder;
use crate::chat::view::{ChatForm, ChatPanel, FormFragment, PanelFragment};
use crate::chat::{self, Deletion, Refusal};
use crate::db::chat::{self as chat_db, Settings};
use crate::db::streams::Stream;
use crate::db::{StreamId, UserId};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::web::Reply;
use crate::web::authz::Ids;

/// The stream behind a chat URL, and what the access rule says about `user`
/// (an unannounced draft is a 404 outside its team: `access::find_stream`).
async fn chat_stream(
    state: &AppState,
    user: Option<UserId>,
    id: StreamId,
) -> AppResult<(Stream, Access)> {
    let mut conn = state.db.get().await?;
    access::find_stream(&mut conn, user, id)
        .await?
        .ok_or(AppError::NotFound)
}

/// GET /s/{id}/chat: the panel alone (the last 100 messages), or — 403 — the
/// panel saying why this user cannot read the chat.
pub async fn panel(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Ids(id): Ids<StreamId>,
) -> AppResult<Response> {
    let user = user.map(|u| u.id);
    let (stream, access) = chat_stream(&state, user, id).await?;
    let chat = ChatPanel::load_with(&state, user, &stream, access).await?;
    let status = if access.may_watch() {
        StatusCode::OK
    } else {
        StatusCode::FORBIDDEN
    };
    render_with(status, &PanelFragment { chat })
}

#[derive(Deserialize)]
pub struct EventsQuery {
    /// The last event the page already shows (the panel renders it into the
    /// URL); EventSource's Last-Event-ID header wins when it reconnects.
    after: Option<i64>,
}

/// How often an idle chat stream sends a comment, so proxies keep it open.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// GET /s/{id}/chat/events: the SSE stream. 403 unless the access rule says
/// watch — checked before subscribing; the stream itself re-checks and ends
/// when the reader loses access. The caps on open streams are per account,
/// and for guests (public streams) per address (429 past them, see `chat::hub`).
pub async fn events(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    headers: HeaderMap,
    Ids(id): Ids<StreamId>,
    Query(q): Query<EventsQuery>,
) -> AppResult<Response> {
    let user = user.map(|u| u.id);
    let asked_at = state.chat.broadcasts();
    let (stream, access) = chat_stream(&state, user, id).await?;
    // An account reads as itself; a guest (a public stream) is counted by address.
    let holder = match (user, access) {
        (_, Access::Denied(d)) => {
            return Err(AppError::forbidden(crate::chat::view::chat_denial(d)));
        }
        (Some(user), _) => Holder::Account(user),
        (None, Access::Guest) => Holder::Guest(super::client::client_ip(&state, &headers, peer)),
        (None, _) => return Err(AppError::forbidden("Sign in to join the chat.")),
    };
    // Counted until the client goes away (the slot moves into the response
    // stream); past the caps, a 429 that says why.
    let caps = crate::chat::hub::StreamCaps {
        per_stream: state.config.limits.chat_streams_per_user_and_stream,
        per_user: state.config.limits.chat_streams_per_user,
    };
    let slot = state
        .chat
        .open_stream(holder, stream.id, caps)
        .map_err(|cap| AppError::TooManyRequests(cap.reason()))?;
    let resume = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(q.after);
    let frames = chat::events(state, stream, user, access, asked_at, resume)
        .await?
        .map(move |item| {
            let _counted = &slot;
            item.map(|out| out.0)
        });
    Ok(event_stream(frames))
}

/// An SSE response of frames already encoded (`chat::frame`: a live message
/// is encoded once and its bytes shared by every subscriber, where axum's
/// `Sse` would encode each subscriber's copy), with a comment after
/// `KEEP_ALIVE` without one.
fn event_stream(
    frames: impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send + 'static,
) -> Response {
    let frames = Box::pin(frames);
    let body = futures_util::stream::unfold(frames, |mut frames| async move {
        match tokio::time::timeout(KEEP_ALIVE, frames.next()).await {
            Ok(Some(frame)) => Some((frame, frames)),
            Ok(None) => None,
            Err(_idle) => Some((Ok(Bytes::from_static(b":\n\n")), frames)),
        }
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct PostForm {
    #[serde(default)]
    body: String,
}

/// The HTTP status of a refusal: who you are (403), what you sent (422), how fast (429).
fn refusal_status(r: &Refusal) -> StatusCode {
    match r {
        Refusal::Denied(_) | Refusal::TimedOut { .. } | Refusal::FollowersOnly { .. } => {
            StatusCode::FORBIDDEN
        }
        Refusal::ChatOff | Refusal::StreamEnded | Refusal::Empty | Refusal::TooLong { .. } => {
            StatusCode::UNPROCESSABLE_ENTITY
        }
        Refusal::SlowMode { .. } | Refusal::TooFast | Refusal::Duplicate => {
            StatusCode::TOO_MANY_REQUESTS
        }
    }
}

/// POST /s/{id}/chat: answers the message box — emptied after the message
/// went out, or with the text kept and the reason under it (403/422/429).
pub async fn post(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    reply: Reply,
    Ids(id): Ids<StreamId>,
    Form(form): Form<PostForm>,
) -> AppResult<Response> {
    let user = user.map(|u| u.id);
    let (stream, _) = chat_stream(&state, user, id).await?;
    let outcome = chat::post(&state, user, &stream, &form.body).await?;
    if !reply.htmx.request {
        if let Err(refusal) = &outcome {
            reply.flash(FlashKind::Error, refusal.reason()).await?;
        }
        return Ok(auth::redirect(false, &format!("/s/{}", stream.id)));
    }
    let settings = chat_db::settings(&mut *state.db.get().await?, stream.id).await?;
    let mut box_ = ChatForm::new(&stream, &settings);
    match outcome {
        Ok(posted) => {
            if let Some(seconds) = posted.held_for {
                box_.notice = Some(format!(
                    "Sent. Viewers see it in {seconds} second{} unless a moderator removes it.",
                    if seconds == 1 { "" } else { "s" }
                ));
            }
            render(&FormFragment { form: box_ })
        }
        Err(refusal) => {
            box_.body = form.body;
            box_.error = Some(refusal.reason());
            render_with(refusal_status(&refusal), &FormFragment { form: box_ })
        }
    }
}

/// POST /s/{id}/chat/{message}/delete (moderators and the owner): the
/// message disappears for everyone through the chat stream; htmx gets an
/// empty 200 (the button swaps nothing), a plain form a 303 to the stream.
pub async fn delete(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    htmx: Htmx,
    Ids((id, message)): Ids<(StreamId, i64)>,
) -> AppResult<Response> {
    let (stream, access) = chat_stream(&state, Some(user.id), id).await?;
    if !access.may_moderate() {
        return Err(AppError::forbidden(
            "Only the channel's moderators and owner can delete chat messages.",
        ));
    }
    match chat::delete(&state, user.id, &stream, message).await? {
        Deletion::NotFound => Err(AppError::NotFound),
        Deletion::Deleted | Deletion::AlreadyDeleted if htmx.request => {
            Ok(StatusCode::OK.into_response())
        }
        Deletion::Deleted | Deletion::AlreadyDeleted => {
            Ok(auth::redirect(false, &format!("/s/{}", stream.id)))
        }
    }
}

#[derive(Deserialize)]
pub struct SettingsInput {
    /// A checkbox: "on" when ticked, absent otherwise.
    #[serde(default)]
    enabled: Option<String>,
    #[serde(default)]
    slow_mode_seconds: String,
    #[serde(default)]
    delay_seconds: String,
    #[serde(default)]
    max_length: String,
    /// "off", or the follow age in seconds (`db::chat::FOLLOW_AGES`).
    #[serde(default)]
    followers: String,
}

fn whole_number(
    errors: &mut FieldErrors,
    field: &'static str,
    raw: &str,
    range: std::ops::RangeInclusive<i32>,
    what: &str,
) -> i32 {
    match raw.trim().parse::<i32>() {
        Ok(n) if range.contains(&n) => n,
        _ => {
            errors.add(
                field,
                format!(
                    "{what} must be a whole number from {} to {}.",
                    range.start(),
                    range.end()
                ),
            );
            0
        }
    }
}

/// Checks the settings form; None (with `errors` filled) when something is off.
fn check_settings(input: &SettingsInput, errors: &mut FieldErrors) -> Option<Settings> {
    let settings = Settings {
        enabled: input.enabled.is_some(),
        slow_mode_seconds: whole_number(
            errors,
            "slow_mode_seconds",
            &input.slow_mode_seconds,
            0..=3600,
            "Slow mode",
        )
        .max(0),
        delay_seconds: whole_number(
            errors,
            "delay_seconds",
            &input.delay_seconds,
            0..=60,
            "The hold-back delay",
        ),
        max_length: whole_number(
            errors,
            "max_length",
            &input.max_length,
            1..=2000,
            "The maximum length",
        ),
        followers_min_seconds: match input.followers.trim() {
            "" | "off" => None,
            v => match v.parse::<i32>() {
                Ok(age) if crate::db::chat::FOLLOW_AGES.contains(&age) => Some(age),
                _ => {
                    errors.add("followers", "Choose who may chat from the list.");
                    None
                }
            },
        },
    };
    errors.is_empty().then_some(settings)
}

/// POST /studio/streams/{id}/chat-settings (the owner): saves or says what to fix.
pub async fn settings(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    reply: Reply,
    layout: Layout,
    Ids(id): Ids<StreamId>,
    Form(input): Form<SettingsInput>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (stream, access) = access::find_stream(&mut conn, Some(user.id), id)
        .await?
        .ok_or(AppError::NotFound)?;
    if !access.may_publish() {
        return Err(AppError::forbidden(
            "Only the channel's owner can change the chat settings.",
        ));
    }
    drop(conn);
    let mut errors = FieldErrors::default();
    let checked = check_settings(&input, &mut errors);
    let back = format!("/studio/streams/{}", stream.id);
    let Some(new) = checked else {
        if !reply.htmx.request {
            reply
                .flash(
                    FlashKind::Error,
                    "The chat settings were not saved: check the numbers.",
                )
                .await?;
            return Ok(auth::redirect(false, &back));
        }
        let form = ChatSettingsForm {
            stream_id: stream.id,
            enabled: input.enabled.is_some(),
            slow_mode_seconds: input.slow_mode_seconds,
            delay_seconds: input.delay_seconds,
            max_length: input.max_length,
            followers: input.followers,
            errors,
            saved: false,
            csrf_token: layout.csrf_token,
        };
        return render_with(
            StatusCode::UNPROCESSABLE_ENTITY,
            &SettingsFragment {
                chat_settings: form,
            },
        );
    };
    chat::save_settings(&state, user.id, &stream, new).await?;
    if !reply.htmx.request {
        reply
            .flash(FlashKind::Success, "Chat settings saved.")
            .await?;
        return Ok(auth::redirect(false, &back));
    }
    let mut form = ChatSettingsForm::new(stream.id, &new, &layout.csrf_token);
    form.saved = true;
    render(&SettingsFragment {
        chat_settings: form,
    })
}
