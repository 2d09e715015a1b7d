//! The follow button with the follower count: a self-contained fragment
//! (root id `follow-{handle}`) on the channel page, the watch page and the
//! discover cards, returned alone by the follow endpoints (`web::follow`).

use askama::Template;
use diesel_async::AsyncPgConnection;

use crate::db::channels::Channel;
use crate::db::users::User;
use crate::db::{StreamId, UserId, follows};
use crate::error::AppResult;

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
        let given = follows::state(conn, user.map(|u| u.id), channel.id).await?;
        Ok(Self::given(
            user.map(|u| u.id),
            channel,
            given,
            next,
            csrf_token,
        ))
    }

    /// The button from a state read with something else (the watch page's
    /// one statement).
    pub fn given(
        user: Option<UserId>,
        channel: &Channel,
        given: follows::FollowState,
        next: &str,
        csrf_token: &str,
    ) -> Self {
        Self::new(
            &channel.handle,
            viewer_of(user, channel.owner_id),
            given.following,
            given.followers,
            next,
            None,
            csrf_token,
        )
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
