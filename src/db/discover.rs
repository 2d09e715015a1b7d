//! The home page's lists and search: live now, starting soon, the followed
//! channels' streams, and streams and channels by name. One query per list
//! (viewer counts, follow state and follower counts are subqueries, never a
//! query per card), paginated with a bounded page size: keyset for the live
//! and upcoming lists, offset for search. Time windows use the database's
//! `now()`. What a list may show is decided here, in SQL: never unscheduled
//! drafts, never ended streams (search shows ended ones, marked as such).
//!
//! The indexes these rely on are in migrations/…000008_discover_follow:
//! `streams_live_started_at_idx`, `streams_scheduled_at_idx` (partial), and
//! the trigram (pg_trgm) indexes on stream titles, channel titles and handles.

use super::channels::VISIBLE;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::streams::{AccessKind, Status};
use super::{ChannelId, StreamId, UserId, contains_pattern};

/// A scheduled stream whose time has passed stays listed this long as
/// "any minute now" (creators start late); after that it has not
/// happened and is dropped from discovery.
pub const OVERDUE_GRACE_MINUTES: i32 = 30;

/// Cards per page of the live and upcoming lists and of search results.
pub const PAGE_SIZE: i64 = 12;
/// Streams of followed channels on the home page (the rest: /following).
pub const FOLLOWED_LIMIT: i64 = 12;
/// The longest search term used (longer input is cut, not refused).
pub const MAX_QUERY_CHARS: usize = 100;
/// Search pages beyond this are not served (offset pagination stays cheap).
pub const MAX_SEARCH_PAGE: i64 = 50;

/// A stream as a discover card shows it.
#[derive(Debug, QueryableByName)]
pub struct Card {
    #[diesel(sql_type = BigInt)]
    pub stream_id: StreamId,
    #[diesel(sql_type = Text)]
    pub title: String,
    #[diesel(sql_type = Text)]
    pub access: AccessKind,
    #[diesel(sql_type = Text)]
    pub status: Status,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub scheduled_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub started_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub ended_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    pub thumbnail_key: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub channel_id: ChannelId,
    #[diesel(sql_type = Text)]
    pub handle: String,
    #[diesel(sql_type = Text)]
    pub channel_title: String,
    #[diesel(sql_type = BigInt)]
    pub owner_id: UserId,
    /// People in the room now who are not on the channel's team (live only).
    #[diesel(sql_type = BigInt)]
    pub viewers: i64,
    /// Seconds since it started (live) — by the database's clock.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub live_seconds: Option<i64>,
    /// Seconds until its scheduled start (negative: overdue).
    #[diesel(sql_type = Nullable<BigInt>)]
    pub starts_in_seconds: Option<i64>,
    #[diesel(sql_type = Bool)]
    pub following: bool,
    #[diesel(sql_type = BigInt)]
    pub followers: i64,
}

/// The statuses as the partial indexes spell them, written into the SQL
/// (not bound) so that the planner matches those indexes in every plan.
const LIVE: Status = Status::Live;
const DRAFT: Status = Status::Draft;
const ENDED: Status = Status::Ended;

/// The columns of a `Card`, for the stream `s` of channel `c`; `$1` is the
/// viewer (NULL when anonymous).
fn card_columns() -> String {
    format!(
        "s.id AS stream_id, s.title, s.access, s.status, s.scheduled_at, \
    s.started_at, s.ended_at, s.thumbnail_key, c.id AS channel_id, c.handle, c.title AS channel_title, c.owner_id, \
    CASE WHEN s.status = '{LIVE}' THEN ({viewers}) ELSE 0 END AS viewers, \
    CASE WHEN s.status = '{LIVE}' THEN floor(extract(epoch FROM now() - s.started_at))::bigint END AS live_seconds, \
    CASE WHEN s.status = '{DRAFT}' THEN floor(extract(epoch FROM s.scheduled_at - now()))::bigint END AS starts_in_seconds, \
    EXISTS (SELECT 1 FROM follows f WHERE f.user_id = $1 AND f.channel_id = c.id) AS following, \
    (SELECT count(*) FROM follows f WHERE f.channel_id = c.id) AS followers",
        viewers = super::presence::VIEWERS_NOW,
    )
}

/// An announced draft still worth listing: scheduled, not overdue past the grace.
fn announced() -> String {
    format!(
        "s.status = '{DRAFT}' AND s.scheduled_at IS NOT NULL \
    AND s.scheduled_at > now() - make_interval(mins => $2)"
    )
}

/// Keeps the followed channels out of the general lists (they have their own, first).
const NOT_FOLLOWED: &str =
    "NOT EXISTS (SELECT 1 FROM follows f WHERE f.user_id = $1 AND f.channel_id = s.channel_id)";

/// Where a keyset page starts: after the card with this time and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub at: DateTime<Utc>,
    pub id: StreamId,
}

impl Cursor {
    /// `{microseconds}_{id}`, safe in a URL.
    pub fn encode(&self) -> String {
        format!("{}_{}", self.at.timestamp_micros(), self.id)
    }

    pub fn decode(raw: &str) -> Option<Self> {
        let (at, id) = raw.split_once('_')?;
        Some(Cursor {
            at: DateTime::from_timestamp_micros(at.parse().ok()?)?,
            id: StreamId(id.parse().ok()?),
        })
    }
}

/// One page of a list, and where the next one starts (None: this was the last).
#[derive(Debug)]
pub struct Page<T, C> {
    pub items: Vec<T>,
    pub next: Option<C>,
}

fn split_page<C>(mut items: Vec<Card>, size: i64, next: impl Fn(&Card) -> C) -> Page<Card, C> {
    let more = items.len() as i64 > size;
    items.truncate(size as usize);
    let next = if more { items.last().map(next) } else { None };
    Page { items, next }
}

/// Live and upcoming streams of the channels `user` follows: live first
/// (most recently started), then upcoming (soonest first).
pub async fn followed(conn: &mut AsyncPgConnection, user: UserId) -> QueryResult<Vec<Card>> {
    diesel::sql_query(format!(
        "SELECT {card} FROM follows fw \
         JOIN channels c ON c.id = fw.channel_id \
         JOIN streams s ON s.channel_id = c.id \
         WHERE fw.user_id = $1 AND (s.status = '{LIVE}' OR ({announced})) AND {VISIBLE} \
         ORDER BY s.status <> '{LIVE}', \
                  CASE WHEN s.status = '{LIVE}' THEN s.started_at END DESC, \
                  s.scheduled_at, s.id \
         LIMIT $3",
        card = card_columns(),
        announced = announced(),
    ))
    .bind::<Nullable<BigInt>, _>(Some(user))
    .bind::<Integer, _>(OVERDUE_GRACE_MINUTES)
    .bind::<BigInt, _>(FOLLOWED_LIMIT)
    .load(conn)
    .await
}

/// Live now, most recently started first; without the channels `user` follows.
pub async fn live(
    conn: &mut AsyncPgConnection,
    user: Option<UserId>,
    after: Option<Cursor>,
) -> QueryResult<Page<Card, Cursor>> {
    let items: Vec<Card> = diesel::sql_query(format!(
        "SELECT {card} FROM streams s JOIN channels c ON c.id = s.channel_id \
         WHERE s.status = '{LIVE}' AND {NOT_FOLLOWED} AND {VISIBLE} \
           AND ($2::timestamptz IS NULL OR (s.started_at, s.id) < ($2, $3)) \
         ORDER BY s.started_at DESC, s.id DESC \
         LIMIT $4",
        card = card_columns(),
    ))
    .bind::<Nullable<BigInt>, _>(user)
    .bind::<Nullable<Timestamptz>, _>(after.map(|c| c.at))
    .bind::<BigInt, _>(after.map(|c| c.id.0).unwrap_or(0))
    .bind::<BigInt, _>(PAGE_SIZE + 1)
    .load(conn)
    .await?;
    Ok(split_page(items, PAGE_SIZE, |c| Cursor {
        at: c.started_at.unwrap_or_default(),
        id: c.stream_id,
    }))
}

/// Starting soon: announced drafts, soonest first (overdue ones within the
/// grace come first, "any minute now"); without the channels `user` follows.
pub async fn upcoming(
    conn: &mut AsyncPgConnection,
    user: Option<UserId>,
    after: Option<Cursor>,
) -> QueryResult<Page<Card, Cursor>> {
    let items: Vec<Card> = diesel::sql_query(format!(
        "SELECT {card} FROM streams s JOIN channels c ON c.id = s.channel_id \
         WHERE {announced} AND {NOT_FOLLOWED} AND {VISIBLE} \
           AND ($3::timestamptz IS NULL OR (s.scheduled_at, s.id) > ($3, $4)) \
         ORDER BY s.scheduled_at, s.id \
         LIMIT $5",
        card = card_columns(),
        announced = announced(),
    ))
    .bind::<Nullable<BigInt>, _>(user)
    .bind::<Integer, _>(OVERDUE_GRACE_MINUTES)
    .bind::<Nullable<Timestamptz>, _>(after.map(|c| c.at))
    .bind::<BigInt, _>(after.map(|c| c.id.0).unwrap_or(0))
    .bind::<BigInt, _>(PAGE_SIZE + 1)
    .load(conn)
    .await?;
    Ok(split_page(items, PAGE_SIZE, |c| Cursor {
        at: c.scheduled_at.unwrap_or_default(),
        id: c.stream_id,
    }))
}

/// The search term as used: trimmed, at most `MAX_QUERY_CHARS` characters.
pub fn clean_query(raw: &str) -> String {
    raw.trim()
        .chars()
        .take(MAX_QUERY_CHARS)
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Streams whose title, or whose channel's title or handle, contains `term`
/// (searching a channel's name finds its streams): live, then upcoming, then ended
/// (newest first); never unscheduled drafts. `page` counts from 0.
pub async fn search_streams(
    conn: &mut AsyncPgConnection,
    user: Option<UserId>,
    term: &str,
    page: i64,
) -> QueryResult<Page<Card, i64>> {
    let page = page.clamp(0, MAX_SEARCH_PAGE);
    let items: Vec<Card> = diesel::sql_query(format!(
        "SELECT {card} FROM streams s JOIN channels c ON c.id = s.channel_id \
         WHERE (s.title ILIKE $3 OR c.title ILIKE $3 OR c.handle ILIKE $3) AND (s.status IN ('{LIVE}', '{ENDED}') OR ({announced})) AND {VISIBLE} \
         ORDER BY CASE s.status WHEN '{LIVE}' THEN 0 WHEN '{DRAFT}' THEN 1 ELSE 2 END, \
                  coalesce(s.started_at, s.scheduled_at) DESC, s.id DESC \
         LIMIT $4 OFFSET $5",
        card = card_columns(),
        announced = announced(),
    ))
    .bind::<Nullable<BigInt>, _>(user)
    .bind::<Integer, _>(OVERDUE_GRACE_MINUTES)
    .bind::<Text, _>(contains_pattern(term))
    .bind::<BigInt, _>(PAGE_SIZE + 1)
    .bind::<BigInt, _>(page * PAGE_SIZE)
    .load(conn)
    .await?;
    Ok(split_page(items, PAGE_SIZE, |_| page + 1))
}

/// A channel in search results.
#[derive(Debug, QueryableByName)]
pub struct ChannelHit {
    #[diesel(sql_type = BigInt)]
    pub channel_id: ChannelId,
    #[diesel(sql_type = Text)]
    pub handle: String,
    #[diesel(sql_type = Text)]
    pub title: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub avatar_key: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub owner_id: UserId,
    #[diesel(sql_type = Bool)]
    pub live: bool,
    #[diesel(sql_type = Bool)]
    pub following: bool,
    #[diesel(sql_type = BigInt)]
    pub followers: i64,
}

/// Channels whose title or handle contains `term`, by title. `page` counts from 0.
pub async fn search_channels(
    conn: &mut AsyncPgConnection,
    user: Option<UserId>,
    term: &str,
    page: i64,
) -> QueryResult<Page<ChannelHit, i64>> {
    let page = page.clamp(0, MAX_SEARCH_PAGE);
    let mut items: Vec<ChannelHit> = diesel::sql_query(format!(
        "SELECT c.id AS channel_id, c.handle, c.title, c.avatar_key, c.owner_id, \
                EXISTS (SELECT 1 FROM streams s WHERE s.channel_id = c.id AND s.status = '{LIVE}') AS live, \
                EXISTS (SELECT 1 FROM follows f WHERE f.user_id = $1 AND f.channel_id = c.id) AS following, \
                (SELECT count(*) FROM follows f WHERE f.channel_id = c.id) AS followers \
         FROM channels c \
         WHERE (c.title ILIKE $2 OR c.handle ILIKE $2) AND {VISIBLE} \
         ORDER BY lower(c.title), c.id \
         LIMIT $3 OFFSET $4"
    ))
    .bind::<Nullable<BigInt>, _>(user)
    .bind::<Text, _>(contains_pattern(term))
    .bind::<BigInt, _>(PAGE_SIZE + 1)
    .bind::<BigInt, _>(page * PAGE_SIZE)
    .load(conn)
    .await?;
    let more = items.len() as i64 > PAGE_SIZE;
    items.truncate(PAGE_SIZE as usize);
    Ok(Page {
        items,
        next: more.then_some(page + 1),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_terms_match_themselves() {
        assert_eq!(clean_query("  jazz  "), "jazz");
        assert_eq!(clean_query(&"x".repeat(500)).len(), MAX_QUERY_CHARS);
    }

    #[test]
    fn cursors_round_trip() {
        let c = Cursor {
            at: DateTime::from_timestamp_micros(1_790_000_000_123_456).unwrap(),
            id: StreamId(42),
        };
        assert_eq!(Cursor::decode(&c.encode()), Some(c));
        assert_eq!(Cursor::decode("nonsense"), None);
        assert_eq!(Cursor::decode("1_x"), None);
    }
}
