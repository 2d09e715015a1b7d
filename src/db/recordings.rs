//! Recordings: one row per egress or built-in recording, from "starting" to
//! "complete" or "failed", and the built-in recorder's parts and lease.
//! Status, backend and part status are `text_enum!`s.
//! Egress webhooks may arrive in any order or twice: a terminal status
//! (complete, failed) is never overwritten by an earlier one.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::StreamId;
use super::schema::{channels, recording_parts, recordings, streams};

/// Placeholder egress ids start with this until LiveKit answers the start
/// request (the row is inserted first, so that racing starts start one egress).
pub const PENDING_PREFIX: &str = "pending-";

super::text_enum! {
    /// Where a recording is: running (starting, active), stopping (ending), or finished.
    pub enum Status {
        Starting = "starting",
        Active = "active",
        Ending = "ending",
        Complete = "complete",
        Failed = "failed",
    }
}

impl Status {
    /// Starting or recording.
    pub const RUNNING: [Status; 2] = [Status::Starting, Status::Active];
    /// Not complete or failed yet (ending included).
    pub const UNFINISHED: [Status; 3] = [Status::Starting, Status::Active, Status::Ending];
}

super::text_enum! {
    /// What writes a recording's files.
    pub enum Backend {
        /// LiveKit Egress (one file, reported by webhooks).
        Egress = "egress",
        /// The built-in recorder (`src/recorder/`, parts under a lease).
        Builtin = "builtin",
    }
}

super::text_enum! {
    /// Where one part of a built-in recording is.
    pub enum PartStatus {
        Writing = "writing",
        Complete = "complete",
        /// Nothing of it reached the bucket.
        Lost = "lost",
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = recordings, check_for_backend(diesel::pg::Pg))]
pub struct Recording {
    pub id: i64,
    pub stream_id: StreamId,
    pub egress_id: String,
    pub status: Status,
    pub object_key: Option<String>,
    pub duration_ms: Option<i64>,
    pub size_bytes: Option<i64>,
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub backend: Backend,
}

impl Recording {
    pub fn is_running(&self) -> bool {
        Status::RUNNING.contains(&self.status)
    }
}

#[derive(Insertable)]
#[diesel(table_name = recordings)]
pub struct NewRecording<'a> {
    pub stream_id: StreamId,
    pub egress_id: &'a str,
    pub object_key: Option<&'a str>,
    pub backend: Backend,
}

/// The constraint that allows one running recording per stream.
pub const ONE_RUNNING: &str = "recordings_one_running_per_stream_key";

/// Inserts a "starting" row; `Ok(None)` when the stream already has one running.
pub async fn insert_starting(
    conn: &mut AsyncPgConnection,
    new: &NewRecording<'_>,
) -> QueryResult<Option<Recording>> {
    match diesel::insert_into(recordings::table)
        .values(new)
        .returning(Recording::as_returning())
        .get_result(conn)
        .await
    {
        Ok(r) => Ok(Some(r)),
        Err(e) if super::is_unique_violation(&e, Some(ONE_RUNNING)) => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn find(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<Option<Recording>> {
    recordings::table
        .find(id)
        .select(Recording::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn by_egress(
    conn: &mut AsyncPgConnection,
    egress_id: &str,
) -> QueryResult<Option<Recording>> {
    recordings::table
        .filter(recordings::egress_id.eq(egress_id))
        .select(Recording::as_select())
        .first(conn)
        .await
        .optional()
}

/// The stream's recording that is starting or running, if any.
pub async fn running(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
) -> QueryResult<Option<Recording>> {
    recordings::table
        .filter(recordings::stream_id.eq(stream))
        .filter(recordings::status.eq_any(Status::RUNNING))
        .select(Recording::as_select())
        .first(conn)
        .await
        .optional()
}

/// The stream's most recent recording (for the broadcast page's status).
pub async fn latest(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
) -> QueryResult<Option<Recording>> {
    recordings::table
        .filter(recordings::stream_id.eq(stream))
        .order((recordings::created_at.desc(), recordings::id.desc()))
        .select(Recording::as_select())
        .first(conn)
        .await
        .optional()
}

/// The stream's finished recordings, newest first (the replays).
pub async fn complete_for(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
) -> QueryResult<Vec<Recording>> {
    recordings::table
        .filter(recordings::stream_id.eq(stream))
        .filter(recordings::status.eq(Status::Complete))
        .order((recordings::created_at.desc(), recordings::id.desc()))
        .select(Recording::as_select())
        .load(conn)
        .await
}

/// LiveKit answered the start request: the real egress id replaces the placeholder.
pub async fn set_egress_id(
    conn: &mut AsyncPgConnection,
    id: i64,
    egress_id: &str,
) -> QueryResult<()> {
    diesel::update(recordings::table.find(id))
        .filter(recordings::egress_id.like(format!("{PENDING_PREFIX}%")))
        .set(recordings::egress_id.eq(egress_id))
        .execute(conn)
        .await
        .map(drop)
}

/// Marks a recording failed (unless it already finished).
pub async fn fail(conn: &mut AsyncPgConnection, id: i64, error: &str) -> QueryResult<()> {
    diesel::update(recordings::table.find(id))
        .filter(recordings::status.ne_all([Status::Complete, Status::Failed]))
        .set((
            recordings::status.eq(Status::Failed),
            recordings::error.eq(error),
            recordings::ended_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// Stop was asked: a running recording is now ending.
pub async fn mark_ending(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<bool> {
    diesel::update(recordings::table.find(id))
        .filter(recordings::status.eq_any(Status::RUNNING))
        .set(recordings::status.eq(Status::Ending))
        .execute(conn)
        .await
        .map(|n| n > 0)
}

/// What an egress webhook says about a recording.
pub struct EgressReport<'a> {
    pub status: Status,
    pub object_key: Option<&'a str>,
    pub duration_ms: Option<i64>,
    pub size_bytes: Option<i64>,
    pub error: Option<&'a str>,
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// Applies a webhook's report: never moves a finished recording, and never
/// moves an ending one back to active.
pub async fn report(
    conn: &mut AsyncPgConnection,
    id: i64,
    r: &EgressReport<'_>,
) -> QueryResult<()> {
    let allowed_from: &[Status] = match r.status {
        Status::Starting => &[Status::Starting],
        Status::Active => &[Status::Starting],
        Status::Ending => &[Status::Starting, Status::Active],
        Status::Complete | Status::Failed => &Status::UNFINISHED,
    };
    diesel::update(recordings::table.find(id))
        .filter(recordings::status.eq_any(allowed_from))
        .set((
            recordings::status.eq(r.status),
            r.object_key.map(|k| recordings::object_key.eq(k)),
            r.duration_ms.map(|d| recordings::duration_ms.eq(d)),
            r.size_bytes.map(|s| recordings::size_bytes.eq(s)),
            r.error.map(|e| recordings::error.eq(e)),
            r.started_at.map(|t| recordings::started_at.eq(t)),
            r.ended_at.map(|t| recordings::ended_at.eq(t)),
        ))
        .execute(conn)
        .await
        .map(drop)
}

pub async fn delete(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<()> {
    diesel::delete(recordings::table.find(id))
        .execute(conn)
        .await
        .map(drop)
}

/// Finished recordings older than their channel's retention period.
pub async fn past_retention(conn: &mut AsyncPgConnection) -> QueryResult<Vec<Recording>> {
    recordings::table
        .inner_join(streams::table.inner_join(channels::table))
        .filter(recordings::status.eq_any([Status::Complete, Status::Failed]))
        .filter(channels::recording_retention_days.is_not_null())
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>(
                "recordings.created_at < now() - make_interval(days => channels.recording_retention_days)",
            ),
        )
        .select(Recording::as_select())
        .load(conn)
        .await
}

/// The channel's retention period in days (`None`: keep forever).
pub async fn retention_days(
    conn: &mut AsyncPgConnection,
    channel: super::ChannelId,
) -> QueryResult<Option<i32>> {
    channels::table
        .find(channel)
        .select(channels::recording_retention_days)
        .first(conn)
        .await
}

pub async fn set_retention_days(
    conn: &mut AsyncPgConnection,
    channel: super::ChannelId,
    days: Option<i32>,
) -> QueryResult<()> {
    diesel::update(channels::table.find(channel))
        .set(channels::recording_retention_days.eq(days))
        .execute(conn)
        .await
        .map(drop)
}

/// Recordings not finished whose row has not changed for `quiet_seconds`:
/// their webhooks may have been lost (the reconciler asks LiveKit).
pub async fn unsettled(
    conn: &mut AsyncPgConnection,
    quiet_seconds: i64,
) -> QueryResult<Vec<Recording>> {
    recordings::table
        .filter(recordings::status.eq_any(Status::UNFINISHED))
        .filter(recordings::backend.eq(Backend::Egress))
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>(
                "recordings.updated_at <= now() - make_interval(secs => ",
            )
            .bind::<diesel::sql_types::BigInt, _>(quiet_seconds)
            .sql(")"),
        )
        .select(Recording::as_select())
        .load(conn)
        .await
}

// ---- The built-in recorder's lease (src/recorder/) ----

/// `now() + seconds` in SQL, so that every lease is judged by the database's clock.
fn lease_end(
    lease: std::time::Duration,
) -> diesel::expression::SqlLiteral<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>> {
    diesel::dsl::sql::<diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>>(&format!(
        "now() + make_interval(secs => {})",
        lease.as_secs_f64()
    ))
}

/// Takes the lease of an unfinished built-in recording when nobody holds it
/// (or `owner` already does); answers its status, `None` when another holds it.
pub async fn claim_lease(
    conn: &mut AsyncPgConnection,
    id: i64,
    owner: uuid::Uuid,
    lease: std::time::Duration,
) -> QueryResult<Option<Status>> {
    diesel::update(recordings::table.find(id))
        .filter(recordings::backend.eq(Backend::Builtin))
        .filter(recordings::status.eq_any(Status::UNFINISHED))
        .filter(
            recordings::lease_owner
                .is_null()
                .or(recordings::lease_owner.eq(owner))
                .or(recordings::lease_until.lt(diesel::dsl::now)),
        )
        .set((
            recordings::lease_owner.eq(owner),
            recordings::lease_until.eq(lease_end(lease)),
        ))
        .returning(recordings::status)
        .get_result(conn)
        .await
        .optional()
}

/// Renews a lease `owner` holds; answers the recording's status (`ending`
/// when stop was asked), `None` when the lease is no longer `owner`'s.
pub async fn renew_lease(
    conn: &mut AsyncPgConnection,
    id: i64,
    owner: uuid::Uuid,
    lease: std::time::Duration,
) -> QueryResult<Option<Status>> {
    diesel::update(recordings::table.find(id))
        .filter(recordings::lease_owner.eq(owner))
        .filter(recordings::status.eq_any(Status::UNFINISHED))
        .set(recordings::lease_until.eq(lease_end(lease)))
        .returning(recordings::status)
        .get_result(conn)
        .await
        .optional()
}

/// Lets go of a lease `owner` holds, so that another instance takes the
/// recording over at once.
pub async fn release_lease(
    conn: &mut AsyncPgConnection,
    id: i64,
    owner: uuid::Uuid,
) -> QueryResult<()> {
    diesel::update(recordings::table.find(id))
        .filter(recordings::lease_owner.eq(owner))
        .set(recordings::lease_until.eq(diesel::dsl::sql::<
            diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
        >("now() - interval '1 second'")))
        .execute(conn)
        .await
        .map(drop)
}

/// Unfinished built-in recordings whose lease lapsed (or was never taken).
pub async fn unheld_builtin(conn: &mut AsyncPgConnection) -> QueryResult<Vec<i64>> {
    recordings::table
        .filter(recordings::backend.eq(Backend::Builtin))
        .filter(recordings::status.eq_any(Status::UNFINISHED))
        // A row just inserted is claimed by its instance a moment later.
        .filter(
            recordings::lease_until
                .is_null()
                .and(diesel::dsl::sql::<diesel::sql_types::Bool>(
                    "recordings.created_at < now() - interval '5 seconds'",
                ))
                .or(recordings::lease_until.lt(diesel::dsl::now)),
        )
        .select(recordings::id)
        .order(recordings::id)
        .limit(100)
        .load(conn)
        .await
}

/// The recorder wrote its first frame.
pub async fn mark_active(conn: &mut AsyncPgConnection, id: i64) -> QueryResult<()> {
    diesel::update(recordings::table.find(id))
        .filter(recordings::status.eq(Status::Starting))
        .set((
            recordings::status.eq(Status::Active),
            recordings::started_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await
        .map(drop)
}

// ---- Parts: the files of a built-in recording, in playing order ----

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = recording_parts, check_for_backend(diesel::pg::Pg))]
pub struct Part {
    pub id: i64,
    pub recording_id: i64,
    pub part_no: i32,
    pub object_key: String,
    /// The multipart upload while the part is being written.
    pub upload_id: Option<String>,
    pub status: PartStatus,
    /// Written: the whole part; while writing: what is safely in the bucket.
    pub duration_ms: Option<i64>,
    pub size_bytes: Option<i64>,
}

/// A part, while it is being written (a part that is complete or lost is
/// final: nothing of it changes).
type WritingPart = diesel::dsl::Filter<
    diesel::dsl::Find<recording_parts::table, i64>,
    diesel::dsl::Eq<recording_parts::status, PartStatus>,
>;

fn writing(part: i64) -> WritingPart {
    recording_parts::table
        .find(part)
        .filter(recording_parts::status.eq(PartStatus::Writing))
}

/// Starts the recording's next part; `key_of(n)` names part `n`'s object.
/// Only the lease holder adds parts, so numbers do not race.
pub async fn new_part(
    conn: &mut AsyncPgConnection,
    recording: i64,
    key_of: impl Fn(i32) -> String,
) -> QueryResult<Part> {
    let last: Option<i32> = recording_parts::table
        .filter(recording_parts::recording_id.eq(recording))
        .select(diesel::dsl::max(recording_parts::part_no))
        .first(conn)
        .await?;
    let part_no = last.unwrap_or(0) + 1;
    diesel::insert_into(recording_parts::table)
        .values((
            recording_parts::recording_id.eq(recording),
            recording_parts::part_no.eq(part_no),
            recording_parts::object_key.eq(key_of(part_no)),
        ))
        .returning(Part::as_returning())
        .get_result(conn)
        .await
}

/// The part's object is named anew (its file type is known once its first
/// frame is; nothing of it is in the bucket yet). `NotFound` when the part
/// is no longer being written (salvaged meanwhile): nothing may go up under
/// a key no row names.
pub async fn set_part_key(conn: &mut AsyncPgConnection, part: i64, key: &str) -> QueryResult<()> {
    let changed = diesel::update(writing(part))
        .set(recording_parts::object_key.eq(key))
        .execute(conn)
        .await?;
    if changed == 0 {
        return Err(diesel::result::Error::NotFound);
    }
    Ok(())
}

/// The part's multipart upload started.
pub async fn set_part_upload(
    conn: &mut AsyncPgConnection,
    part: i64,
    upload_id: &str,
) -> QueryResult<()> {
    diesel::update(recording_parts::table.find(part))
        .set(recording_parts::upload_id.eq(upload_id))
        .execute(conn)
        .await
        .map(drop)
}

/// Another piece of the part is safely in the bucket: its duration so far.
pub async fn set_part_stored(
    conn: &mut AsyncPgConnection,
    part: i64,
    duration_ms: i64,
) -> QueryResult<()> {
    diesel::update(writing(part))
        .set(recording_parts::duration_ms.eq(duration_ms))
        .execute(conn)
        .await
        .map(drop)
}

/// The part's object is complete (`Some` sizes) or lost (`None`).
pub async fn finish_part(
    conn: &mut AsyncPgConnection,
    part: i64,
    written: Option<(Option<i64>, i64)>,
) -> QueryResult<()> {
    let (status, duration, size) = match written {
        Some((duration, size)) => (PartStatus::Complete, duration, Some(size)),
        None => (PartStatus::Lost, None, None),
    };
    diesel::update(writing(part))
        .set((
            recording_parts::status.eq(status),
            recording_parts::upload_id.eq(None::<String>),
            duration.map(|d| recording_parts::duration_ms.eq(d)),
            recording_parts::size_bytes.eq(size),
        ))
        .execute(conn)
        .await
        .map(drop)
}

/// The recording's parts in playing order (all of them, whatever their status).
pub async fn parts(conn: &mut AsyncPgConnection, recording: i64) -> QueryResult<Vec<Part>> {
    recording_parts::table
        .filter(recording_parts::recording_id.eq(recording))
        .order(recording_parts::part_no)
        .select(Part::as_select())
        .load(conn)
        .await
}

/// The complete parts of several recordings, for the replays page.
pub async fn complete_parts(
    conn: &mut AsyncPgConnection,
    recordings: &[i64],
) -> QueryResult<Vec<Part>> {
    recording_parts::table
        .filter(recording_parts::recording_id.eq_any(recordings))
        .filter(recording_parts::status.eq(PartStatus::Complete))
        .order((recording_parts::recording_id, recording_parts::part_no))
        .select(Part::as_select())
        .load(conn)
        .await
}
