//! Who hears about what: a channel's followers get an in-app notification
//! when it goes live and when it schedules a stream.
//!
//! - Going live notifies once per stream (`UNIQUE (user_id, stream_id, kind)`,
//!   `ON CONFLICT DO NOTHING`): going live twice, or a retried fan-out, is one
//!   notification.
//! - Scheduling notifies; a reschedule replaces the notification with a new
//!   one (new time, unread, a new id: the list is newest first by id, so it
//!   comes back to the top, and "Mark all read" on a page shown before does
//!   not mark it); removing the schedule withdraws it.
//! - The channel's own team (owner, moderators) is not told about its own
//!   streams — they made them — and nor is anyone banned from the channel.
//!
//! Each fan-out is one `INSERT … SELECT` over `follows` (indexed by channel),
//! run by the caller inside the transaction that changes the stream, so a
//! stream is never live without its followers having been told. This module
//! must not know about HTTP; reading and marking notifications is `db::notifications`.

use chrono::{DateTime, Utc};
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::db::StreamId;
use crate::db::bans::Kind as BanKind;
use crate::db::channels::VISIBLE;
use crate::db::notifications::Kind;
use crate::db::streams::{Status, Stream};

/// Followers of the stream's channel who should hear about it: not on its
/// team, not banned from it (the same ban as `access.rs`'s rule). Every use
/// adds `AND {VISIBLE}`: nobody hears from a hidden channel.
const RECIPIENTS: &str = "FROM streams s \
     JOIN channels c ON c.id = s.channel_id \
     JOIN follows f ON f.channel_id = s.channel_id \
     WHERE s.id = $1 \
       AND f.user_id <> c.owner_id \
       AND NOT EXISTS (SELECT 1 FROM channel_members m \
                       WHERE m.channel_id = s.channel_id AND m.user_id = f.user_id) \
       AND NOT EXISTS (SELECT 1 FROM bans b \
                       WHERE b.channel_id = s.channel_id AND b.user_id = f.user_id AND b.kind = $3 \
                         AND b.lifted_at IS NULL AND (b.until IS NULL OR now() < b.until))";

/// The stream went live: every follower gets a "went live" notification,
/// once. Answers how many were created now.
pub async fn stream_live(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
) -> diesel::QueryResult<usize> {
    let n = diesel::sql_query(format!(
        "INSERT INTO notifications (user_id, kind, channel_id, stream_id) \
         SELECT f.user_id, $2, s.channel_id, s.id {RECIPIENTS} AND {VISIBLE} \
         ON CONFLICT (user_id, stream_id, kind) DO NOTHING"
    ))
    .bind::<BigInt, _>(stream.0)
    .bind::<Text, _>(Kind::Live)
    .bind::<Text, _>(BanKind::Ban)
    .execute(conn)
    .await?;
    if n > 0 {
        metrics::counter!("notifications_created_total", "kind" => "live").increment(n as u64);
    }
    Ok(n)
}

/// The stream's schedule was set or changed (`before`: the schedule it had).
/// A draft with a new time tells every follower (again: what they were told
/// before is replaced by a new, unread notification); a schedule taken away
/// withdraws what they were told. Saving without changing the time tells
/// nobody anything. Call it inside the transaction that changed the stream.
pub async fn schedule_changed(
    conn: &mut AsyncPgConnection,
    stream: &Stream,
    before: Option<DateTime<Utc>>,
) -> diesel::QueryResult<usize> {
    if stream.status != Status::Draft || stream.scheduled_at == before {
        return Ok(0);
    }
    let withdrawn =
        diesel::sql_query("DELETE FROM notifications WHERE stream_id = $1 AND kind = $2")
            .bind::<BigInt, _>(stream.id.0)
            .bind::<Text, _>(Kind::Scheduled)
            .bind::<Text, _>(BanKind::Ban)
            .execute(conn)
            .await?;
    if stream.scheduled_at.is_none() {
        return Ok(withdrawn);
    }
    let n = diesel::sql_query(format!(
        "INSERT INTO notifications (user_id, kind, channel_id, stream_id) \
         SELECT f.user_id, $2, s.channel_id, s.id {RECIPIENTS} AND {VISIBLE} \
         ON CONFLICT (user_id, stream_id, kind) DO NOTHING"
    ))
    .bind::<BigInt, _>(stream.id.0)
    .bind::<Text, _>(Kind::Scheduled)
    .bind::<Text, _>(BanKind::Ban)
    .execute(conn)
    .await?;
    if n > 0 {
        metrics::counter!("notifications_created_total", "kind" => "scheduled").increment(n as u64);
    }
    Ok(n)
}
