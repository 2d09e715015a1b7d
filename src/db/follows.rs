//! Follows: which viewers follow which channels. Following twice is one
//! follow (the primary key and ON CONFLICT DO NOTHING). Who may follow is the
//! web layer's business; these queries only keep the rows.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::follows;
use super::{ChannelId, StreamId, UserId};

/// Follows `channel`; answers false when `user` already followed it.
pub async fn follow(
    conn: &mut AsyncPgConnection,
    user: UserId,
    channel: ChannelId,
) -> QueryResult<bool> {
    let n = diesel::insert_into(follows::table)
        .values((follows::user_id.eq(user), follows::channel_id.eq(channel)))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(n == 1)
}

/// Stops following; answers whether a follow was there.
pub async fn unfollow(
    conn: &mut AsyncPgConnection,
    user: UserId,
    channel: ChannelId,
) -> QueryResult<bool> {
    let n = diesel::delete(
        follows::table
            .filter(follows::user_id.eq(user))
            .filter(follows::channel_id.eq(channel)),
    )
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Whether a user follows a channel, and how many do.
#[derive(Debug, Clone, Copy, QueryableByName)]
pub struct FollowState {
    #[diesel(sql_type = Bool)]
    pub following: bool,
    #[diesel(sql_type = BigInt)]
    pub followers: i64,
}

/// `FollowState`'s columns over `p.c` (the channel) and `p.u` (the user; NULL
/// or no account's id for nobody): a page's statement selects them beside
/// its own (the watch page's, see `access::PageColumns`).
pub const STATE_COLUMNS: &str = "EXISTS (SELECT 1 FROM follows f WHERE f.channel_id = p.c AND f.user_id = p.u) AS following, \
     (SELECT count(*) FROM follows f WHERE f.channel_id = p.c) AS followers";

/// Whether `user` follows `channel` (None: anonymous, never) and how many do, in one query.
pub async fn state(
    conn: &mut AsyncPgConnection,
    user: Option<UserId>,
    channel: ChannelId,
) -> QueryResult<FollowState> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!("SELECT {STATE_COLUMNS} FROM (SELECT $1::int8 AS c, $2::int8 AS u) p")
    });
    super::Prepared(
        diesel::sql_query(&*SQL)
            .bind::<BigInt, _>(channel)
            .bind::<Nullable<BigInt>, _>(user),
    )
    .get_result(conn)
    .await
}

/// A followed channel on the "Following" page.
#[derive(Debug, QueryableByName)]
pub struct Followed {
    #[diesel(sql_type = BigInt)]
    pub channel_id: ChannelId,
    #[diesel(sql_type = Text)]
    pub handle: String,
    #[diesel(sql_type = Text)]
    pub title: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub avatar_key: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub followers: i64,
    /// Its live stream, if one is live (the most recently started).
    #[diesel(sql_type = Nullable<BigInt>)]
    pub live_id: Option<StreamId>,
    #[diesel(sql_type = Nullable<Text>)]
    pub live_title: Option<String>,
    /// Its next scheduled stream (see `discover::OVERDUE_GRACE_MINUTES`).
    #[diesel(sql_type = Nullable<BigInt>)]
    pub next_id: Option<StreamId>,
    #[diesel(sql_type = Nullable<Text>)]
    pub next_title: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub next_at: Option<DateTime<Utc>>,
    /// Seconds from now to `next_at` (negative: overdue), by the database's clock.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub next_in_seconds: Option<i64>,
}

/// The channels `user` follows, live ones first, then by title: one query.
pub async fn followed(conn: &mut AsyncPgConnection, user: UserId) -> QueryResult<Vec<Followed>> {
    diesel::sql_query(
        "SELECT c.id AS channel_id, c.handle, c.title, c.avatar_key, \
                (SELECT count(*) FROM follows n WHERE n.channel_id = c.id) AS followers, \
                live.id AS live_id, live.title AS live_title, \
                next.id AS next_id, next.title AS next_title, next.scheduled_at AS next_at, \
                floor(extract(epoch FROM next.scheduled_at - now()))::bigint AS next_in_seconds \
         FROM follows f \
         JOIN channels c ON c.id = f.channel_id \
         LEFT JOIN LATERAL (SELECT s.id, s.title FROM streams s \
              WHERE s.channel_id = c.id AND s.status = $3 \
              ORDER BY s.started_at DESC LIMIT 1) live ON true \
         LEFT JOIN LATERAL (SELECT s.id, s.title, s.scheduled_at FROM streams s \
              WHERE s.channel_id = c.id AND s.status = $4 \
                AND s.scheduled_at > now() - make_interval(mins => $2) \
              ORDER BY s.scheduled_at, s.id LIMIT 1) next ON true \
         WHERE f.user_id = $1 \
         ORDER BY live.id IS NULL, lower(c.title), c.id",
    )
    .bind::<BigInt, _>(user)
    .bind::<diesel::sql_types::Integer, _>(super::discover::OVERDUE_GRACE_MINUTES)
    .bind::<diesel::sql_types::Text, _>(super::streams::Status::Live)
    .bind::<diesel::sql_types::Text, _>(super::streams::Status::Draft)
    .load(conn)
    .await
}
