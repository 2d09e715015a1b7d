//! Streams: the rows behind the studio, the watch page and the lifecycle.
//! Status changes are conditional UPDATEs (`WHERE status = …`), so racing
//! requests and webhooks cannot move a stream backwards.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::{channels, streams};
use super::{ChannelId, StreamId};
use crate::db::channels::Channel;

super::text_enum! {
    /// Where a stream is in its lifecycle.
    pub enum Status {
        Draft = "draft",
        Live = "live",
        Ended = "ended",
    }
}

super::text_enum! {
    /// Who may watch: anyone, or holders of a pass.
    pub enum AccessKind {
        Public = "public",
        Pass = "pass",
    }
}

#[derive(Clone, Queryable, QueryableByName, Selectable, Identifiable)]
#[diesel(table_name = streams, check_for_backend(diesel::pg::Pg))]
pub struct Stream {
    pub id: StreamId,
    pub channel_id: ChannelId,
    pub title: String,
    pub description: String,
    pub access: AccessKind,
    pub status: Status,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub room_name: String,
    pub record_on_live: bool,
    pub peak_viewers: i32,
    pub created_at: DateTime<Utc>,
    /// A free preview for visitors without a pass (pass-only streams): its
    /// length in seconds, 30–600; None: no preview.
    pub preview_seconds: Option<i32>,
}

// The room name is a capability of sorts (unguessable): keep it out of logs.
impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

impl Stream {
    pub fn is_live(&self) -> bool {
        self.status == Status::Live
    }
}

#[derive(Insertable)]
#[diesel(table_name = streams)]
pub struct NewStream<'a> {
    pub channel_id: ChannelId,
    pub title: &'a str,
    pub description: &'a str,
    pub access: AccessKind,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub room_name: &'a str,
}

#[derive(AsChangeset, Default)]
#[diesel(table_name = streams)]
pub struct StreamChanges<'a> {
    pub title: Option<&'a str>,
    pub description: Option<&'a str>,
    pub access: Option<AccessKind>,
    pub scheduled_at: Option<Option<DateTime<Utc>>>,
    pub record_on_live: Option<bool>,
    pub preview_seconds: Option<Option<i32>>,
}

pub async fn find(conn: &mut AsyncPgConnection, id: StreamId) -> QueryResult<Option<Stream>> {
    streams::table
        .find(id)
        .select(Stream::as_select())
        .first(conn)
        .await
        .optional()
}

/// A stream with its channel (most pages need both).
pub async fn find_with_channel(
    conn: &mut AsyncPgConnection,
    id: StreamId,
) -> QueryResult<Option<(Stream, Channel)>> {
    streams::table
        .inner_join(channels::table)
        .filter(streams::id.eq(id))
        .select((Stream::as_select(), Channel::as_select()))
        .first(conn)
        .await
        .optional()
}

pub async fn find_by_room(conn: &mut AsyncPgConnection, room: &str) -> QueryResult<Option<Stream>> {
    streams::table
        .filter(streams::room_name.eq(room))
        .select(Stream::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn create(conn: &mut AsyncPgConnection, new: &NewStream<'_>) -> QueryResult<Stream> {
    diesel::insert_into(streams::table)
        .values(new)
        .returning(Stream::as_returning())
        .get_result(conn)
        .await
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    id: StreamId,
    changes: StreamChanges<'_>,
) -> QueryResult<Stream> {
    diesel::update(streams::table.find(id))
        .set(changes)
        .returning(Stream::as_returning())
        .get_result(conn)
        .await
}

/// Deletes a stream only while it is a draft; answers whether it went.
pub async fn delete_draft(conn: &mut AsyncPgConnection, id: StreamId) -> QueryResult<bool> {
    let n = diesel::delete(
        streams::table
            .find(id)
            .filter(streams::status.eq(Status::Draft)),
    )
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// A channel's streams, newest first (the channel page and the studio split them by status).
pub async fn for_channel(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
) -> QueryResult<Vec<Stream>> {
    streams::table
        .filter(streams::channel_id.eq(channel))
        .order((
            streams::scheduled_at.desc().nulls_last(),
            streams::created_at.desc(),
        ))
        .select(Stream::as_select())
        .load(conn)
        .await
}

/// draft -> live (or live stays live): sets started_at once. Answers the stream
/// as it is now, or None when it had ended (an ended stream never goes live again).
pub async fn mark_live(conn: &mut AsyncPgConnection, id: StreamId) -> QueryResult<Option<Stream>> {
    use diesel::dsl::now;
    diesel::update(
        streams::table
            .find(id)
            .filter(streams::status.ne(Status::Ended)),
    )
    .set((
        streams::status.eq(Status::Live),
        streams::started_at.eq(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
        >("coalesce(started_at, now())")),
        streams::updated_at.eq(now),
    ))
    .returning(Stream::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// live -> ended; answers the ended stream, or None if it was not live.
pub async fn mark_ended(conn: &mut AsyncPgConnection, id: StreamId) -> QueryResult<Option<Stream>> {
    use diesel::dsl::now;
    diesel::update(
        streams::table
            .find(id)
            .filter(streams::status.eq(Status::Live)),
    )
    .set((
        streams::status.eq(Status::Ended),
        streams::ended_at.eq(now),
        streams::updated_at.eq(now),
    ))
    .returning(Stream::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// Every live stream (for the reconciler).
pub async fn live(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Stream>> {
    streams::table
        .filter(streams::status.eq(Status::Live))
        .select(Stream::as_select())
        .load(conn)
        .await
}

/// The live streams of `channels`.
pub async fn live_in(
    conn: &mut AsyncPgConnection,
    channels: &[ChannelId],
) -> QueryResult<Vec<StreamId>> {
    streams::table
        .filter(streams::status.eq(Status::Live))
        .filter(streams::channel_id.eq_any(channels))
        .select(streams::id)
        .load(conn)
        .await
}

/// Of `rooms`, those whose stream is live here.
pub async fn live_rooms_among(
    conn: &mut AsyncPgConnection,
    rooms: &[String],
) -> QueryResult<Vec<String>> {
    streams::table
        .filter(streams::room_name.eq_any(rooms))
        .filter(streams::status.eq(Status::Live))
        .select(streams::room_name)
        .load(conn)
        .await
}

/// How long a draft stays under "Upcoming" after its scheduled time passes:
/// a creator who starts late is still expected; one who never started drops off.
pub const UPCOMING_GRACE_HOURS: i32 = 12;

/// A channel's streams as its public page shows them. Drafts without a
/// schedule are the owner's business and appear in none of the lists.
#[derive(Debug, Default)]
pub struct Listing {
    /// Live now, most recently started first.
    pub live: Vec<Stream>,
    /// Scheduled drafts, soonest first (see `UPCOMING_GRACE_HOURS`).
    pub upcoming: Vec<Stream>,
    /// Ended, newest first (at most `PAST_LIMIT`).
    pub past: Vec<Stream>,
}

/// How many ended streams the channel page lists.
pub const PAST_LIMIT: i64 = 50;

/// The channel page's three lists; the time window is judged by the database's `now()`.
pub async fn listing(conn: &mut AsyncPgConnection, channel: ChannelId) -> QueryResult<Listing> {
    let live = streams::table
        .filter(streams::channel_id.eq(channel))
        .filter(streams::status.eq(Status::Live))
        .order(streams::started_at.desc())
        .select(Stream::as_select())
        .load(conn)
        .await?;
    let upcoming = streams::table
        .filter(streams::channel_id.eq(channel))
        .filter(streams::status.eq(Status::Draft))
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>(
                "scheduled_at > now() - make_interval(hours => ",
            )
            .bind::<diesel::sql_types::Integer, _>(UPCOMING_GRACE_HOURS)
            .sql(")"),
        )
        .order((streams::scheduled_at.asc(), streams::id.asc()))
        .select(Stream::as_select())
        .load(conn)
        .await?;
    let past = streams::table
        .filter(streams::channel_id.eq(channel))
        .filter(streams::status.eq(Status::Ended))
        .order((streams::ended_at.desc(), streams::id.desc()))
        .limit(PAST_LIMIT)
        .select(Stream::as_select())
        .load(conn)
        .await?;
    Ok(Listing {
        live,
        upcoming,
        past,
    })
}

/// Applies `changes` only while the stream still has `status`: an edit made
/// on a page loaded before the stream went live (or ended) must not change
/// what is fixed from then on. Answers None when the status moved on (or the
/// stream is gone).
pub async fn update_while(
    conn: &mut AsyncPgConnection,
    id: StreamId,
    status: Status,
    changes: StreamChanges<'_>,
) -> QueryResult<Option<Stream>> {
    diesel::update(streams::table.find(id).filter(streams::status.eq(status)))
        .set(changes)
        .returning(Stream::as_returning())
        .get_result(conn)
        .await
        .optional()
}

super::text_enum! {
    /// How OBS reaches the room (see `StreamIngress`).
    pub enum IngressKind {
        Rtmp = "rtmp",
        Whip = "whip",
    }
}

/// A stream's OBS ingress: all four columns or none. `kind` "rtmp" is
/// LiveKit's Ingress service (`ingress_id` is its id); "whip" is
/// livekit-server's own WHIP endpoint, where the stream key is a LiveKit token
/// and `ingress_id` the encoder identity it carries (`obs-{stream}-{generation}`,
/// see `livekit::Participant::Encoder`). The stream key is a credential:
/// `Debug` leaves it out, and it is never logged.
#[derive(Clone, Queryable)]
pub struct StreamIngress {
    pub ingress_id: String,
    pub kind: IngressKind,
    pub url: String,
    pub stream_key: String,
}

impl std::fmt::Debug for StreamIngress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamIngress")
            .field("ingress_id", &self.ingress_id)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// A stream's OBS key as one read: its generation (bumped by every change,
/// so a change made from this read applies only if nothing changed since)
/// and the current ingress, if any.
#[derive(Debug, Clone)]
pub struct IngressSlot {
    pub generation: i32,
    pub current: Option<StreamIngress>,
}

/// The stream's ingress and key generation, read together; None when there
/// is no such stream.
pub async fn ingress_slot(
    conn: &mut AsyncPgConnection,
    id: StreamId,
) -> QueryResult<Option<IngressSlot>> {
    type Columns = (
        i32,
        Option<String>,
        Option<IngressKind>,
        Option<String>,
        Option<String>,
    );
    let row: Option<Columns> = streams::table
        .find(id)
        .select((
            streams::ingress_generation,
            streams::ingress_id,
            streams::ingress_kind,
            streams::ingress_url,
            streams::ingress_stream_key,
        ))
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(|(generation, id, kind, url, key)| {
        let current = match (id, kind, url, key) {
            (Some(ingress_id), Some(kind), Some(url), Some(stream_key)) => Some(StreamIngress {
                ingress_id,
                kind,
                url,
                stream_key,
            }),
            _ => None,
        };
        IngressSlot {
            generation,
            current,
        }
    }))
}

pub async fn ingress_of(
    conn: &mut AsyncPgConnection,
    id: StreamId,
) -> QueryResult<Option<StreamIngress>> {
    Ok(ingress_slot(conn, id).await?.and_then(|slot| slot.current))
}

/// Stores `new` as the stream's ingress, at generation `generation + 1`, if
/// the stream is still at `generation`. False when someone changed it first.
pub async fn set_ingress(
    conn: &mut AsyncPgConnection,
    id: StreamId,
    generation: i32,
    new: &StreamIngress,
) -> QueryResult<bool> {
    let n = diesel::update(
        streams::table
            .find(id)
            .filter(streams::ingress_generation.eq(generation)),
    )
    .set((
        streams::ingress_id.eq(Some(&new.ingress_id)),
        streams::ingress_kind.eq(Some(new.kind)),
        streams::ingress_url.eq(Some(&new.url)),
        streams::ingress_stream_key.eq(Some(&new.stream_key)),
        streams::ingress_generation.eq(generation + 1),
        streams::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Forgets the stream's ingress (and moves to the next generation) if the
/// stream is still at `generation`.
pub async fn clear_ingress(
    conn: &mut AsyncPgConnection,
    id: StreamId,
    generation: i32,
) -> QueryResult<bool> {
    let none: Option<String> = None;
    let n = diesel::update(
        streams::table
            .find(id)
            .filter(streams::ingress_generation.eq(generation)),
    )
    .set((
        streams::ingress_id.eq(none.clone()),
        streams::ingress_kind.eq(none.clone()),
        streams::ingress_url.eq(none.clone()),
        streams::ingress_stream_key.eq(none),
        streams::ingress_generation.eq(generation + 1),
        streams::updated_at.eq(diesel::dsl::now),
    ))
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// Whether `identity` is the encoder the stream's current WHIP key names:
/// false for a reset or deleted key's identity, and for any other stream's.
pub async fn is_current_encoder(
    conn: &mut AsyncPgConnection,
    id: StreamId,
    identity: &str,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        streams::table
            .find(id)
            .filter(streams::ingress_kind.eq(IngressKind::Whip))
            .filter(streams::ingress_id.eq(identity)),
    ))
    .get_result(conn)
    .await
}

pub async fn find_by_ingress(
    conn: &mut AsyncPgConnection,
    ingress_id: &str,
) -> QueryResult<Option<Stream>> {
    streams::table
        .filter(streams::ingress_id.eq(ingress_id))
        .select(Stream::as_select())
        .first(conn)
        .await
        .optional()
}

// ---------------------------------------------------------------------------
// Thumbnails (the image itself lives in S3; see web/thumbnails.rs).

/// The S3 key of the stream's thumbnail; `None` when it uses the default.
pub async fn thumbnail_key(
    conn: &mut AsyncPgConnection,
    id: StreamId,
) -> QueryResult<Option<String>> {
    streams::table
        .find(id)
        .select(streams::thumbnail_key)
        .first(conn)
        .await
}

/// Sets (or with `None` clears) the thumbnail; answers the key it replaced,
/// so the caller deletes that object. `Err(NotFound)` when the stream is gone.
pub async fn replace_thumbnail(
    conn: &mut AsyncPgConnection,
    id: StreamId,
    key: Option<&str>,
) -> QueryResult<Option<String>> {
    #[derive(QueryableByName)]
    struct Old {
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        thumbnail_key: Option<String>,
    }
    let old: Old = diesel::sql_query(
        "UPDATE streams s SET thumbnail_key = $2, updated_at = now() \
         FROM (SELECT id, thumbnail_key FROM streams WHERE id = $1 FOR UPDATE) old \
         WHERE s.id = old.id RETURNING old.thumbnail_key",
    )
    .bind::<diesel::sql_types::BigInt, _>(id)
    .bind::<diesel::sql_types::Nullable<diesel::sql_types::Text>, _>(key)
    .get_result(conn)
    .await?;
    Ok(old.thumbnail_key)
}
