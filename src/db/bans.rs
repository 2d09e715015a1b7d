//! Channel bans and chat timeouts: one table, told apart by `kind`.
//!
//! A `ban` keeps a user out of the channel (no tokens, no chat; the enforcer
//! removes them from live rooms, woken by the table's trigger); `until` NULL
//! means permanent. A `timeout` keeps them out of the chat only and always
//! ends. Either is active iff `lifted_at IS NULL AND (until IS NULL OR now() <
//! until)`, judged by the database's clock at the moment of the question.
//! Rows are never deleted: lifting sets `lifted_at` / `lifted_by`, so the
//! history stays. Whether someone may watch is still `access.rs`'s question;
//! this module only keeps the rows and reads them for the moderation pages.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::channels::Role;
use super::schema::bans;
use super::{ChannelId, UserId};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    diesel_derive_newtype::DieselNewType,
)]
#[serde(transparent)]
pub struct BanId(pub i64);

impl std::fmt::Display for BanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for BanId {
    type Err = std::num::ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(BanId)
    }
}

super::text_enum! {
    /// What a row keeps someone out of.
    pub enum Kind {
        /// The channel: no tokens, no chat, removed from live rooms.
        Ban = "ban",
        /// The chat only, for a while.
        Timeout = "timeout",
    }
}

/// The rule of an active row, for queries over `bans` (as in `access.rs`).
pub(crate) const ACTIVE: &str =
    "bans.lifted_at IS NULL AND (bans.until IS NULL OR now() < bans.until)";

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = bans, check_for_backend(diesel::pg::Pg))]
pub struct Ban {
    pub id: BanId,
    pub channel_id: ChannelId,
    pub user_id: UserId,
    pub kind: Kind,
    pub until: Option<DateTime<Utc>>,
    pub reason: Option<String>,
    pub banned_by: Option<UserId>,
    pub created_at: DateTime<Utc>,
    pub lifted_at: Option<DateTime<Utc>>,
    pub lifted_by: Option<UserId>,
}

/// A ban or timeout to place. Its end is `now() + minutes` in SQL (None: a
/// permanent ban; timeouts always give minutes).
#[derive(Debug)]
pub struct NewBan<'a> {
    pub channel_id: ChannelId,
    pub user_id: UserId,
    pub kind: Kind,
    pub minutes: Option<i32>,
    pub reason: Option<&'a str>,
    pub banned_by: UserId,
}

pub async fn insert(conn: &mut AsyncPgConnection, new: &NewBan<'_>) -> QueryResult<Ban> {
    // make_interval is strict: no minutes, no end.
    let until = diesel::dsl::sql::<Nullable<Timestamptz>>("now() + make_interval(mins => ")
        .bind::<Nullable<diesel::sql_types::Integer>, _>(new.minutes)
        .sql(")");
    diesel::insert_into(bans::table)
        .values((
            bans::channel_id.eq(new.channel_id),
            bans::user_id.eq(new.user_id),
            bans::kind.eq(new.kind),
            bans::until.eq(until),
            bans::reason.eq(new.reason),
            bans::banned_by.eq(new.banned_by),
        ))
        .returning(Ban::as_returning())
        .get_result(conn)
        .await
}

/// Times a user out of a channel's chat, replacing a timeout still running
/// (it is lifted by the same moderator), so there is one active timeout per
/// user and the latest choice of length wins.
pub async fn time_out(conn: &mut AsyncPgConnection, new: &NewBan<'_>) -> QueryResult<Ban> {
    conn.transaction(async |conn| {
        diesel::update(
            bans::table
                .filter(bans::channel_id.eq(new.channel_id))
                .filter(bans::user_id.eq(new.user_id))
                .filter(bans::kind.eq(Kind::Timeout))
                .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(ACTIVE)),
        )
        .set((
            bans::lifted_at.eq(diesel::dsl::now),
            bans::lifted_by.eq(new.banned_by),
        ))
        .execute(conn)
        .await?;
        insert(conn, new).await
    })
    .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: BanId) -> QueryResult<Option<Ban>> {
    bans::table
        .find(id)
        .select(Ban::as_select())
        .first(conn)
        .await
        .optional()
}

/// The user's active row of `kind` in the channel, if any (the latest).
pub async fn active(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    user: UserId,
    kind: Kind,
) -> QueryResult<Option<Ban>> {
    bans::table
        .filter(bans::channel_id.eq(channel))
        .filter(bans::user_id.eq(user))
        .filter(bans::kind.eq(kind))
        .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(ACTIVE))
        .order(bans::created_at.desc())
        .select(Ban::as_select())
        .first(conn)
        .await
        .optional()
}

/// Until when the user is timed out of the channel's chat (None: they are
/// not). The chat's question, with the same rule as everywhere else.
pub async fn timed_out_until(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    user: UserId,
) -> QueryResult<Option<DateTime<Utc>>> {
    Ok(active(conn, channel, user, Kind::Timeout)
        .await?
        .and_then(|b| b.until))
}

/// Lifts a ban or timeout of `channel` that is still active; answers it, or
/// None when it is not (lifted already, over, or another channel's).
pub async fn lift(
    conn: &mut AsyncPgConnection,
    id: BanId,
    channel: ChannelId,
    by: UserId,
) -> QueryResult<Option<Ban>> {
    conn.transaction(async |conn| {
        let lifted = diesel::update(
            bans::table
                .find(id)
                .filter(bans::channel_id.eq(channel))
                .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(ACTIVE)),
        )
        .set((bans::lifted_at.eq(diesel::dsl::now), bans::lifted_by.eq(by)))
        .returning(Ban::as_returning())
        .get_result(conn)
        .await
        .optional()?;
        // Two moderators banning at the same instant can leave two active rows
        // of one kind: lifting means lifting them all, so "lifted" is true.
        if let Some(ban) = &lifted {
            diesel::update(
                bans::table
                    .filter(bans::channel_id.eq(channel))
                    .filter(bans::user_id.eq(ban.user_id))
                    .filter(bans::kind.eq(ban.kind))
                    .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(ACTIVE)),
            )
            .set((bans::lifted_at.eq(diesel::dsl::now), bans::lifted_by.eq(by)))
            .execute(conn)
            .await?;
        }
        Ok(lifted)
    })
    .await
}

/// An active ban or timeout as the moderation page lists it.
#[derive(Debug, Clone, QueryableByName)]
pub struct Listed {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub kind: Kind,
    #[diesel(sql_type = BigInt)]
    pub user_id: i64,
    #[diesel(sql_type = Text)]
    pub user_name: String,
    /// Only when asked for (the owner's view): moderators never see emails.
    #[diesel(sql_type = Nullable<Text>)]
    pub user_email: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub until: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    pub reason: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub banned_by_name: Option<String>,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
}

/// Whose emails a list of people carries: the channel owner's lists do (they
/// sell passes and comp grants by email); a moderator's never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emails {
    Shown,
    Hidden,
}

/// The channel's active bans and timeouts, bans first, newest first.
pub async fn active_in_channel(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    emails: Emails,
) -> QueryResult<Vec<Listed>> {
    diesel::sql_query(format!(
        "SELECT bans.id, bans.kind, bans.user_id, u.display_name AS user_name, \
                CASE WHEN $2 THEN u.email END AS user_email, \
                bans.until, bans.reason, m.display_name AS banned_by_name, bans.created_at \
         FROM bans JOIN users u ON u.id = bans.user_id LEFT JOIN users m ON m.id = bans.banned_by \
         WHERE bans.channel_id = $1 AND {ACTIVE} \
         ORDER BY bans.kind = $3 DESC, bans.created_at DESC, bans.id DESC"
    ))
    .bind::<BigInt, _>(channel.0)
    .bind::<diesel::sql_types::Bool, _>(emails == Emails::Shown)
    .bind::<Text, _>(Kind::Ban)
    .load(conn)
    .await
}

/// Where a user stands in a channel: who they are, their role on the team
/// and what keeps them out right now. For the participants panel.
#[derive(Debug, Clone, QueryableByName)]
pub struct Standing {
    #[diesel(sql_type = BigInt)]
    pub user_id: i64,
    #[diesel(sql_type = Text)]
    pub display_name: String,
    /// None when not on the team.
    #[diesel(sql_type = Nullable<Text>)]
    pub role: Option<Role>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub banned: bool,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub timed_out_until: Option<DateTime<Utc>>,
}

pub async fn standing(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    users: &[UserId],
) -> QueryResult<Vec<Standing>> {
    if users.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = users.iter().map(|u| u.0).collect();
    diesel::sql_query(format!(
        "SELECT u.id AS user_id, u.display_name, \
                CASE WHEN c.owner_id = u.id THEN $3 ELSE cm.role END AS role, \
                EXISTS (SELECT 1 FROM bans WHERE bans.channel_id = $1 AND bans.user_id = u.id \
                        AND bans.kind = $4 AND {ACTIVE}) AS banned, \
                (SELECT max(bans.until) FROM bans WHERE bans.channel_id = $1 AND bans.user_id = u.id \
                        AND bans.kind = $5 AND {ACTIVE}) AS timed_out_until \
         FROM users u JOIN channels c ON c.id = $1 \
         LEFT JOIN channel_members cm ON cm.channel_id = $1 AND cm.user_id = u.id \
         WHERE u.id = ANY($2)"
    ))
    .bind::<BigInt, _>(channel.0)
    .bind::<diesel::sql_types::Array<BigInt>, _>(ids)
    .bind::<Text, _>(Role::Owner)
    .bind::<Text, _>(Kind::Ban)
    .bind::<Text, _>(Kind::Timeout)
    .load(conn)
    .await
}
