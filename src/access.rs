//! THE access rule: who may watch, moderate or publish a stream. One place.
//!
//! `may(conn, user, stream)` answers from one SQL query evaluated at the
//! moment of the check — grant time bounds (`starts_at <= now() < expires_at`,
//! not revoked) and bans are compared with the database's `now()`, never by
//! filtering rows loaded earlier. Every token, chat post, SSE subscription,
//! recording playback and moderation action asks here first; nothing else in
//! the crate decides access. Callers load the stream first (404 before 403).
//!
//! - channel owner: publish + moderate + watch
//! - channel moderator: moderate + watch (no pass needed)
//! - anyone else signed in, not banned from the channel: watch with an active
//!   grant covering the stream (or the whole channel), or when the stream is public
//! - anonymous: nothing (sign in first)

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::channels::Role;
use crate::db::streams::{AccessKind, Stream};
use crate::db::{ChannelId, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The channel's owner.
    Publish,
    /// A moderator of the channel.
    Moderate,
    /// A viewer, until `until` (the end of their grant; `None` on a public stream).
    Watch {
        until: Option<DateTime<Utc>>,
    },
    Denied(Denial),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    SignInRequired,
    PassRequired,
    Banned,
}

impl Denial {
    /// Why, in words for the viewer.
    pub fn reason(self) -> &'static str {
        match self {
            Denial::SignInRequired => "Sign in to watch this stream.",
            Denial::PassRequired => "This stream is for access pass holders. Get a pass to watch.",
            Denial::Banned => "You have been banned from this channel.",
        }
    }
}

impl Access {
    pub fn may_watch(self) -> bool {
        !matches!(self, Access::Denied(_))
    }

    pub fn may_moderate(self) -> bool {
        matches!(self, Access::Publish | Access::Moderate)
    }

    pub fn may_publish(self) -> bool {
        matches!(self, Access::Publish)
    }

    pub fn denial(self) -> Option<Denial> {
        match self {
            Access::Denied(d) => Some(d),
            _ => None,
        }
    }
}

#[derive(diesel::QueryableByName)]
struct Facts {
    #[diesel(sql_type = Nullable<Text>)]
    role: Option<String>,
    #[diesel(sql_type = Bool)]
    owner: bool,
    #[diesel(sql_type = Bool)]
    banned: bool,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    grant_until: Option<DateTime<Utc>>,
}

/// Everything the rule needs about (user, channel, stream), in one round trip.
async fn facts(
    conn: &mut AsyncPgConnection,
    user: UserId,
    channel: ChannelId,
    stream: Option<i64>,
) -> diesel::QueryResult<Facts> {
    diesel::sql_query(
        "SELECT \
           (SELECT m.role FROM channel_members m WHERE m.channel_id = $1 AND m.user_id = $2) AS role, \
           EXISTS (SELECT 1 FROM channels c WHERE c.id = $1 AND c.owner_id = $2) AS owner, \
           EXISTS (SELECT 1 FROM bans b WHERE b.channel_id = $1 AND b.user_id = $2 AND b.kind = 'ban' \
                   AND b.lifted_at IS NULL AND (b.until IS NULL OR now() < b.until)) AS banned, \
           (SELECT max(g.expires_at) FROM access_grants g \
             WHERE g.user_id = $2 AND g.channel_id = $1 \
               AND (g.stream_id IS NULL OR g.stream_id = $3) \
               AND g.revoked_at IS NULL AND g.starts_at <= now() AND now() < g.expires_at) AS grant_until",
    )
    .bind::<BigInt, _>(channel.0)
    .bind::<BigInt, _>(user.0)
    .bind::<Nullable<BigInt>, _>(stream)
    .get_result(conn)
    .await
}

/// May `user` watch, moderate or publish `stream`?
pub async fn may(
    conn: &mut AsyncPgConnection,
    user: Option<UserId>,
    stream: &Stream,
) -> diesel::QueryResult<Access> {
    let Some(user) = user else {
        return Ok(Access::Denied(Denial::SignInRequired));
    };
    let f = facts(conn, user, stream.channel_id, Some(stream.id.0)).await?;
    Ok(decide(&f, stream.access_kind()))
}

fn decide(f: &Facts, kind: AccessKind) -> Access {
    if f.owner || f.role.as_deref() == Some(Role::Owner.as_str()) {
        return Access::Publish;
    }
    if f.role.as_deref() == Some(Role::Moderator.as_str()) {
        return Access::Moderate;
    }
    if f.banned {
        return Access::Denied(Denial::Banned);
    }
    if let Some(until) = f.grant_until {
        return Access::Watch { until: Some(until) };
    }
    match kind {
        AccessKind::Public => Access::Watch { until: None },
        AccessKind::Pass => Access::Denied(Denial::PassRequired),
    }
}

/// The user's role in a channel's team, for pages that manage the channel itself
/// (team, passes, new streams). `None`: not on the team.
pub async fn channel_role(
    conn: &mut AsyncPgConnection,
    user: UserId,
    channel: ChannelId,
) -> diesel::QueryResult<Option<Role>> {
    let f = facts(conn, user, channel, None).await?;
    Ok(if f.owner || f.role.as_deref() == Some("owner") {
        Some(Role::Owner)
    } else if f.role.as_deref() == Some("moderator") {
        Some(Role::Moderator)
    } else {
        None
    })
}
