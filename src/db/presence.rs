//! Presence: who is in which room since when, kept from LiveKit's
//! participant_joined / participant_left webhooks, which may arrive in any
//! order or twice (one row per participant sid).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::{channel_members, presence, streams};
use super::{ChannelId, StreamId, UserId};

/// A participant in a room at a moment: a join, or a leave.
#[derive(Insertable)]
#[diesel(table_name = presence)]
pub struct Joined<'a> {
    pub stream_id: StreamId,
    pub room_name: &'a str,
    pub user_id: Option<UserId>,
    pub identity: &'a str,
    pub participant_sid: &'a str,
    #[diesel(column_name = joined_at)]
    pub at: DateTime<Utc>,
}

/// Records a join; a join that arrives after its leave changes nothing.
pub async fn joined(conn: &mut AsyncPgConnection, j: &Joined<'_>) -> QueryResult<()> {
    diesel::insert_into(presence::table)
        .values(j)
        .on_conflict(presence::participant_sid)
        .do_nothing()
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a leave; a leave without its join yet records both at once.
pub async fn left(conn: &mut AsyncPgConnection, j: &Joined<'_>) -> QueryResult<()> {
    diesel::insert_into(presence::table)
        .values((j, presence::left_at.eq(Some(j.at))))
        .on_conflict(presence::participant_sid)
        .do_update()
        .set(presence::left_at.eq(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
        >(
            "coalesce(presence.left_at, greatest(excluded.left_at, presence.joined_at))",
        )))
        .execute(conn)
        .await?;
    Ok(())
}

/// SQL: how many viewers stream `s` of channel `c` has now (as
/// `current_viewers` counts them), for lists of streams.
pub const VIEWERS_NOW: &str = "SELECT count(DISTINCT p.identity) FROM presence p \
     WHERE p.stream_id = s.id AND p.left_at IS NULL \
       AND p.identity ~ '^([0-9]{1,18}|guest-[0-9a-f]{32})$' \
       AND (p.user_id IS NULL OR NOT EXISTS ( \
           SELECT 1 FROM channel_members m WHERE m.channel_id = c.id AND m.user_id = p.user_id)) \
       AND p.user_id IS DISTINCT FROM c.owner_id";

/// Viewer counts by stream as this instance last counted them, each kept
/// for `ViewerCounts::FRESH`: a popular stream's watch pages, thousands a
/// second, count its viewers about once a second instead of on every view
/// (the number on the page refreshes every 15 s anyway).
#[derive(Default)]
pub struct ViewerCounts(Mutex<HashMap<StreamId, (Instant, i64)>>);

impl ViewerCounts {
    pub const FRESH: Duration = Duration::from_secs(1);

    /// `current_viewers` of `stream`, counted at most `FRESH` ago.
    pub async fn get(
        &self,
        pool: &super::DbPool,
        stream: StreamId,
        channel: ChannelId,
    ) -> super::DbResult<i64> {
        let fresh = |(at, n): &(Instant, i64)| (at.elapsed() < Self::FRESH).then_some(*n);
        if let Some(n) = self.lock().get(&stream).and_then(fresh) {
            return Ok(n);
        }
        let n = current_viewers(&mut *pool.get().await?, stream, channel).await?;
        let mut counts = self.lock();
        counts.retain(|_, (at, _)| at.elapsed() < Self::FRESH);
        counts.insert(stream, (Instant::now(), n));
        Ok(n)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, (Instant, i64)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Viewers in the room now: open presence of people other than the team of
/// `channel` (the stream's), in one query.
pub async fn current_viewers(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
    channel: ChannelId,
) -> QueryResult<i64> {
    let team = channel_members::table
        .filter(channel_members::channel_id.eq(channel))
        .select(channel_members::user_id.nullable());
    super::Prepared(
        presence::table
            .filter(presence::stream_id.eq(stream))
            .filter(presence::left_at.is_null())
            // Viewers only (`livekit::Participant::Viewer`: the identity is a user
            // id; `Guest`: `guest-{id}`): not the host, an encoder, ingress,
            // egress or the recorder.
            .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
                "presence.identity ~ '^([0-9]{1,18}|guest-[0-9a-f]{32})$'",
            ))
            .filter(
                presence::user_id
                    .is_null()
                    .or(diesel::dsl::not(presence::user_id.eq_any(team))),
            )
            .select(diesel::dsl::count(presence::identity).aggregate_distinct()),
    )
    .get_result(conn)
    .await
}

/// Raises the stream's peak to `now` when higher.
pub async fn bump_peak(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
    now: i64,
) -> QueryResult<()> {
    diesel::update(streams::table.find(stream))
        .set(
            streams::peak_viewers.eq(diesel::dsl::sql::<diesel::sql_types::Integer>(&format!(
                "greatest(peak_viewers, {})",
                now.clamp(0, i32::MAX as i64)
            ))),
        )
        .execute(conn)
        .await?;
    Ok(())
}

/// Closes every open presence of a stream (the room ended).
pub async fn close_all(conn: &mut AsyncPgConnection, stream: StreamId) -> QueryResult<usize> {
    diesel::update(
        presence::table
            .filter(presence::stream_id.eq(stream))
            .filter(presence::left_at.is_null()),
    )
    .set(presence::left_at.eq(diesel::dsl::now))
    .execute(conn)
    .await
}

/// Closes a participant's open presence (they were removed from the room).
pub async fn close_identity(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
    identity: &str,
) -> QueryResult<usize> {
    diesel::update(
        presence::table
            .filter(presence::stream_id.eq(stream))
            .filter(presence::identity.eq(identity))
            .filter(presence::left_at.is_null()),
    )
    .set(presence::left_at.eq(diesel::dsl::now))
    .execute(conn)
    .await
}
