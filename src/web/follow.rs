//! Following channels: the follow button (a self-contained fragment rendered
//! on the channel page, the watch page and discover cards, and returned alone
//! by its own endpoints), follow / unfollow, and the "Following" page.
//!
//! Owners do not follow their own channel: its streams are in their studio
//! already, and a go-live notification about yourself is noise. Moderators may.
//! This module keeps follow rows; it must not decide who may watch anything.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use diesel_async::AsyncPgConnection;
use serde::Deserialize;
use tower_sessions::Session;

use super::home::relative_start;
use super::{FlashKind, Htmx, Layout, flash, render_with};
use crate::auth::{self, CurrentUser};
use crate::db::channels::{self, Channel};
use crate::db::users::User;
use crate::db::{ChannelId, StreamId, UserId, follows};
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// Who is looking at the button.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// Gets a sign-in link that comes back to `next`.
    Anonymous,
    /// Sees the follower count only.
    Owner,
    SignedIn,
}

/// The follow button with the follower count (both change together).
#[derive(Template)]
#[template(path = "partials/follow/button.html")]
pub struct FollowButton {
    /// `follow-{handle}`, or `follow-{handle}-s{stream}` on a discover card
    /// (one page may show several cards of one channel).
    pub dom_id: String,
    pub handle: String,
    pub viewer: Viewer,
    pub following: bool,
    pub followers: i64,
    /// Where to come back to after signing in or a plain-form follow.
    pub next: String,
    /// The card's stream, so the returned fragment keeps its id.
    pub slot: Option<StreamId>,
    pub csrf_token: String,
}

impl FollowButton {
    pub fn new(
        handle: &str,
        viewer: Viewer,
        following: bool,
        followers: i64,
        next: &str,
        slot: Option<StreamId>,
        csrf_token: &str,
    ) -> Self {
        FollowButton {
            dom_id: match slot {
                Some(s) => format!("follow-{handle}-s{s}"),
                None => format!("follow-{handle}"),
            },
            handle: handle.to_owned(),
            viewer,
            following,
            followers,
            next: next.to_owned(),
            slot,
            csrf_token: csrf_token.to_owned(),
        }
    }

    /// Loads the button's state for `user` looking at `channel` (two counts, one query).
    pub async fn load(
        conn: &mut AsyncPgConnection,
        user: Option<&User>,
        channel: &Channel,
        next: &str,
        csrf_token: &str,
    ) -> AppResult<Self> {
        let (following, followers) = follows::state(conn, user.map(|u| u.id), channel.id).await?;
        Ok(Self::new(
            &channel.handle,
            viewer_of(user.map(|u| u.id), channel.owner_id),
            following,
            followers,
            next,
            None,
            csrf_token,
        ))
    }

    /// What a click does.
    pub fn action(&self) -> &'static str {
        if self.following { "unfollow" } else { "follow" }
    }

    pub fn followers_label(&self) -> String {
        followers_label(self.followers)
    }
}

pub fn viewer_of(user: Option<UserId>, owner: UserId) -> Viewer {
    match user {
        None => Viewer::Anonymous,
        Some(u) if u == owner => Viewer::Owner,
        Some(_) => Viewer::SignedIn,
    }
}

pub fn followers_label(n: i64) -> String {
    if n == 1 {
        "1 follower".to_owned()
    } else {
        format!("{n} followers")
    }
}

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
    session: Session,
    htmx: Htmx,
    handle: Path<String>,
    form: Form<FollowForm>,
) -> AppResult<Response> {
    change(state, user, session, htmx, handle, form, true).await
}

pub async fn unfollow(
    state: State<AppState>,
    user: CurrentUser,
    session: Session,
    htmx: Htmx,
    handle: Path<String>,
    form: Form<FollowForm>,
) -> AppResult<Response> {
    change(state, user, session, htmx, handle, form, false).await
}

async fn change(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    htmx: Htmx,
    Path(handle): Path<String>,
    Form(form): Form<FollowForm>,
    follow: bool,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let channel = channels::find_by_handle(&mut conn, &handle)
        .await?
        .ok_or(AppError::NotFound)?;
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

    if htmx.fragment {
        let (following, followers) = follows::state(&mut conn, Some(user.id), channel.id).await?;
        let slot = form.slot.parse::<i64>().ok().map(StreamId);
        let csrf_token = crate::auth::csrf::token(&session).await?;
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
    flash(&session, FlashKind::Success, message).await?;
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

/// The avatar's URL, versioned by its key so a new avatar is a new URL.
pub fn avatar_url(handle: &str, key: Option<&str>) -> String {
    super::images::versioned(&format!("/c/{handle}/avatar"), key)
}
