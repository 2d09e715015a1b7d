//! Following channels: the follow button (a self-contained fragment rendered
//! on the channel page, the watch page and discover cards, and returned alone
//! by its own endpoints), follow / unfollow, and the "Following" page.
//!
//! Owners do not follow their own channel: its streams are in their studio
//! already, and a go-live notification about yourself is noise. Moderators may.
//! This module keeps follow rows; it must not decide who may watch anything.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::uploads::avatar_url;
use super::view::follow_button::{FollowButton, Viewer, viewer_of};
use super::view::relative_start;
use super::{FlashKind, Layout, render_with};
use crate::auth::{self, CurrentUser};
use crate::db::{ChannelId, StreamId, follows};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::web::Reply;
use crate::web::authz::PublicChannel;

#[derive(Deserialize, Default)]
pub struct FollowForm {
    #[serde(default)]
    pub next: String,
    /// The discover card's stream id (digits), if the button sits on one.
    #[serde(default)]
    pub slot: String,
}

const OWN_CHANNEL: &str =
    "This is your channel: its streams are in your studio already, so there is nothing to follow.";

pub async fn follow(
    state: State<AppState>,
    user: CurrentUser,
    reply: Reply,
    channel: PublicChannel,
    form: Form<FollowForm>,
) -> AppResult<Response> {
    change(state, user, reply, channel, form, true).await
}

pub async fn unfollow(
    state: State<AppState>,
    user: CurrentUser,
    reply: Reply,
    channel: PublicChannel,
    form: Form<FollowForm>,
) -> AppResult<Response> {
    change(state, user, reply, channel, form, false).await
}

async fn change(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    reply: Reply,
    PublicChannel(channel): PublicChannel,
    Form(form): Form<FollowForm>,
    follow: bool,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    if follow && channel.owner_id == user.id {
        return Err(AppError::forbidden(OWN_CHANNEL));
    }
    let changed = if follow {
        follows::follow(&mut conn, user.id, channel.id).await?
    } else {
        follows::unfollow(&mut conn, user.id, channel.id).await?
    };
    let next = if form.next.is_empty() {
        format!("/c/{}", channel.handle)
    } else {
        auth::safe_next(Some(&form.next))
    };

    if reply.htmx.fragment {
        let follows::FollowState {
            following,
            followers,
        } = follows::state(&mut conn, Some(user.id), channel.id).await?;
        let slot = form.slot.parse::<i64>().ok().map(StreamId);
        let csrf_token = crate::auth::csrf::token(&reply.session).await?;
        let button = FollowButton::new(
            &channel.handle,
            viewer_of(Some(user.id), channel.owner_id),
            following,
            followers,
            &next,
            slot,
            &csrf_token,
        );
        return render_with(StatusCode::OK, &button);
    }
    let message = match (follow, changed) {
        (true, true) => format!("You now follow {}.", channel.title),
        (true, false) => format!("You already follow {}.", channel.title),
        (false, true) => format!("You no longer follow {}.", channel.title),
        (false, false) => format!("You were not following {}.", channel.title),
    };
    reply.flash(FlashKind::Success, message).await?;
    Ok(auth::redirect(false, &next))
}

// ---------------------------------------------------------------------------
// The "Following" page.

pub struct FollowedRow {
    pub id: ChannelId,
    pub handle: String,
    pub title: String,
    pub avatar_url: String,
    pub live: Option<(StreamId, String)>,
    /// The next scheduled stream: id, title, relative start ("in 2 h"), moment.
    pub next: Option<NextStream>,
    pub button: FollowButton,
}

pub struct NextStream {
    pub id: StreamId,
    pub title: String,
    pub starts: String,
    pub when: super::view::Moment,
}

#[derive(Template)]
#[template(path = "pages/follow/following.html")]
pub struct FollowingPage {
    pub layout: Layout,
    pub channels: Vec<FollowedRow>,
}

pub async fn following(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    layout: Layout,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let rows = follows::followed(&mut conn, user.id).await?;
    let channels = rows
        .into_iter()
        .map(|r| FollowedRow {
            button: FollowButton::new(
                &r.handle,
                Viewer::SignedIn,
                true,
                r.followers,
                "/following",
                None,
                &layout.csrf_token,
            ),
            avatar_url: avatar_url(&r.handle, r.avatar_key.as_deref()),
            live: r.live_id.zip(r.live_title),
            next: match (r.next_id, r.next_title, r.next_at) {
                (Some(id), Some(title), Some(at)) => Some(NextStream {
                    id,
                    title,
                    starts: relative_start(r.next_in_seconds.unwrap_or(0)),
                    when: super::view::Moment::new(at),
                }),
                _ => None,
            },
            id: r.channel_id,
            handle: r.handle,
            title: r.title,
        })
        .collect();
    render_with(StatusCode::OK, &FollowingPage { layout, channels })
}
