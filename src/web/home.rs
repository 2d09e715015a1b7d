//! The home page: discover and search. For a signed-in viewer the live and
//! upcoming streams of the channels they follow come first; then "Live now"
//! (newest first, with viewer counts and time live) and "Starting soon"
//! (soonest first, with a countdown; a stream past its time is "starting any
//! minute" for a grace period, then dropped). `?q=` searches streams and
//! channels by name. The lists are paged ("More" loads the next page in place
//! with htmx, or as a plain link); what a list may contain is decided in SQL
//! (`db::discover`), never here.

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;

use super::uploads::avatar_url;
use super::uploads::versioned;
use super::view::follow_button::{FollowButton, viewer_of};
use super::view::{Moment, access_label};
use super::view::{live_for, relative_start};
use super::{Htmx, Layout, render};
use crate::auth::MaybeUser;
use crate::db::discover::{self, Card, ChannelHit, Cursor};
use crate::db::streams::Status;
use crate::db::{ChannelId, StreamId};
use crate::error::AppResult;
use crate::state::AppState;

/// A stream card of the home page and search results.
pub struct CardView {
    pub id: StreamId,
    pub title: String,
    pub channel_title: String,
    pub handle: String,
    pub thumbnail_url: String,
    pub access: &'static str,
    /// `live`, `scheduled` or `ended` (the badge).
    pub state: &'static str,
    pub viewers: i64,
    /// "live for 12 min", "in 2 h", "any minute now", "ended …".
    pub when_label: String,
    pub when: Option<Moment>,
    pub follow: FollowButton,
}

impl CardView {
    pub fn viewers_label(&self) -> String {
        match self.viewers {
            1 => "1 viewer".to_owned(),
            n => format!("{n} viewers"),
        }
    }
}

fn card(c: Card, user: Option<crate::db::UserId>, next: &str, csrf: &str) -> CardView {
    let (state, when_label, when) = match c.status {
        Status::Live => (
            "live",
            live_for(c.live_seconds.unwrap_or(0)),
            c.started_at.map(Moment::new),
        ),
        Status::Ended => (
            "ended",
            c.ended_at
                .map(|t| format!("ended {}", super::view::utc(&t)))
                .unwrap_or_else(|| "ended".to_owned()),
            c.ended_at.map(Moment::new),
        ),
        Status::Draft => (
            "scheduled",
            relative_start(c.starts_in_seconds.unwrap_or(0)),
            c.scheduled_at.map(Moment::new),
        ),
    };
    let viewer = viewer_of(user, c.owner_id);
    CardView {
        thumbnail_url: versioned(
            &format!("/s/{}/thumbnail", c.stream_id),
            c.thumbnail_key.as_deref(),
        ),
        access: access_label(c.access),
        follow: FollowButton::new(
            &c.handle,
            viewer,
            c.following,
            c.followers,
            next,
            Some(c.stream_id),
            csrf,
        ),
        id: c.stream_id,
        title: c.title,
        channel_title: c.channel_title,
        handle: c.handle,
        state,
        viewers: c.viewers,
        when_label,
        when,
    }
}

pub struct ChannelView {
    pub id: ChannelId,
    pub handle: String,
    pub title: String,
    pub avatar_url: String,
    pub live: bool,
    pub follow: FollowButton,
}

#[derive(Deserialize, Default)]
pub struct HomeQuery {
    #[serde(default)]
    pub q: String,
    /// The search results page, from 1 (anything else is page 1).
    #[serde(default)]
    pub page: Option<String>,
    /// Cursor of the next page of "Live now".
    #[serde(default)]
    pub live_after: Option<String>,
    /// Cursor of the next page of "Starting soon".
    #[serde(default)]
    pub soon_after: Option<String>,
}

pub struct SearchResults {
    pub query: String,
    pub channels: Vec<ChannelView>,
    pub streams: Vec<CardView>,
    pub page: i64,
    pub prev_url: Option<String>,
    pub next_url: Option<String>,
}

/// One page of a card list and its "More" button: part of the home page,
/// and returned alone when htmx asks for the next page.
#[derive(Template, Default)]
#[template(path = "partials/discover/cards.html")]
pub struct CardList {
    pub cards: Vec<CardView>,
    /// The next page's URL.
    pub more: Option<String>,
    pub more_id: &'static str,
    pub more_label: &'static str,
}

#[derive(Template)]
#[template(path = "pages/home.html")]
pub struct HomePage {
    pub layout: Layout,
    pub query: String,
    pub search: Option<SearchResults>,
    pub followed: Vec<CardView>,
    pub live: CardList,
    pub soon: CardList,
}

pub async fn show(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    layout: Layout,
    htmx: Htmx,
    Query(q): Query<HomeQuery>,
) -> AppResult<Response> {
    let user_id = user.as_ref().map(|u| u.id);
    let csrf = layout.csrf_token.clone();
    let query = discover::clean_query(&q.q);
    let mut conn = state.db.get().await?;
    let mut page = HomePage {
        layout,
        query: query.clone(),
        search: None,
        followed: Vec::new(),
        live: CardList::default(),
        soon: CardList::default(),
    };

    if !query.is_empty() {
        let n = q
            .page
            .as_deref()
            .and_then(|p| p.parse::<i64>().ok())
            .unwrap_or(1)
            .clamp(1, discover::MAX_SEARCH_PAGE + 1)
            - 1;
        let here = format!("/?q={}", enc(&query));
        let streams = discover::search_streams(&mut conn, user_id, &query, n).await?;
        let channels = discover::search_channels(&mut conn, user_id, &query, n).await?;
        let more = streams.next.is_some() || channels.next.is_some();
        page.search = Some(SearchResults {
            channels: channels
                .items
                .into_iter()
                .map(|c: ChannelHit| ChannelView {
                    follow: FollowButton::new(
                        &c.handle,
                        viewer_of(user_id, c.owner_id),
                        c.following,
                        c.followers,
                        &here,
                        None,
                        &csrf,
                    ),
                    avatar_url: avatar_url(&c.handle, c.avatar_key.as_deref()),
                    id: c.channel_id,
                    handle: c.handle,
                    title: c.title,
                    live: c.live,
                })
                .collect(),
            streams: streams
                .items
                .into_iter()
                .map(|c| card(c, user_id, &here, &csrf))
                .collect(),
            page: n + 1,
            prev_url: (n > 0).then(|| format!("{here}&page={n}")),
            next_url: (more && n < discover::MAX_SEARCH_PAGE)
                .then(|| format!("{here}&page={}", n + 2)),
            query,
        });
        return render(&page);
    }

    // "More" of one list, asked by htmx: only that list's next cards.
    let live_after = q.live_after.as_deref().and_then(Cursor::decode);
    let soon_after = q.soon_after.as_deref().and_then(Cursor::decode);
    if htmx.fragment && (live_after.is_some() || soon_after.is_some()) {
        if live_after.is_some() {
            page.live = card_list(
                discover::live(&mut conn, user_id, live_after).await?,
                LIVE,
                user_id,
                &csrf,
            );
            return render(&page.live);
        }
        page.soon = card_list(
            discover::upcoming(&mut conn, user_id, soon_after).await?,
            SOON,
            user_id,
            &csrf,
        );
        return render(&page.soon);
    }

    if let Some(u) = user_id {
        page.followed = discover::followed(&mut conn, u)
            .await?
            .into_iter()
            .map(|c| card(c, user_id, "/", &csrf))
            .collect();
    }
    page.live = card_list(
        discover::live(&mut conn, user_id, live_after).await?,
        LIVE,
        user_id,
        &csrf,
    );
    page.soon = card_list(
        discover::upcoming(&mut conn, user_id, soon_after).await?,
        SOON,
        user_id,
        &csrf,
    );
    render(&page)
}

/// One list of the home page, with its "More" link (the list's own query
/// parameter, `param`, carries the cursor).
struct ListOf {
    param: &'static str,
    more_id: &'static str,
    more_label: &'static str,
}

const LIVE: ListOf = ListOf {
    param: "live_after",
    more_id: "live-more",
    more_label: "More live streams",
};

const SOON: ListOf = ListOf {
    param: "soon_after",
    more_id: "soon-more",
    more_label: "More upcoming streams",
};

fn card_list(
    list: discover::Page<discover::Card, Cursor>,
    of: ListOf,
    user: Option<crate::db::UserId>,
    csrf: &str,
) -> CardList {
    CardList {
        more: list.next.map(|c| format!("/?{}={}", of.param, c.encode())),
        cards: list
            .items
            .into_iter()
            .map(|c| card(c, user, "/", csrf))
            .collect(),
        more_id: of.more_id,
        more_label: of.more_label,
    }
}

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        assert_eq!(relative_start(-300), "any minute now");
        assert_eq!(relative_start(30), "any minute now");
        assert_eq!(relative_start(125 * 60), "in 2 h 5 min");
        assert_eq!(relative_start(3 * 86_400 + 5), "in 3 days");
        assert_eq!(live_for(20), "just started");
        assert_eq!(live_for(12 * 60 + 3), "live for 12 min");
        assert_eq!(live_for(3600), "live for 1 h");
    }
}
