//! The moderators' dashboard: every channel the user is on the team of, with
//! its live and coming streams and how many bans and timeouts it has.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};

use crate::auth::CurrentUser;
use crate::db::bans::{self, Kind};
use crate::db::channels::{self, Role};
use crate::db::streams::{self, Stream};
use crate::db::{ChannelId, StreamId};
use crate::error::AppResult;
use crate::state::AppState;
use crate::web::view::{Moment, access_label};
use crate::web::{Layout, render_with};

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
            access: access_label(s.access),
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
        let bans = active.iter().filter(|b| b.kind == Kind::Ban).count();
        cards.push(DashChannel {
            id: channel.id,
            is_owner: role == Role::Owner || channel.owner_id == user.id,
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
