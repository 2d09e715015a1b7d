//! The whole instance at a glance, for the operator's console: its figures,
//! what is live now, sign-ups per day, and the admins' audit log. Read-only.

use chrono::{DateTime, NaiveDate, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Date, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::channels::VISIBLE;
use super::presence::VIEWERS_NOW;
use super::recordings::Status as RecordingStatus;
use super::streams::Status;
use super::webhooks::DeliveryStatus;

#[derive(Debug, Clone, QueryableByName)]
pub struct Figures {
    #[diesel(sql_type = BigInt)]
    pub users: i64,
    #[diesel(sql_type = BigInt)]
    pub suspended_users: i64,
    #[diesel(sql_type = BigInt)]
    pub channels: i64,
    #[diesel(sql_type = BigInt)]
    pub hidden_channels: i64,
    #[diesel(sql_type = BigInt)]
    pub streams_live: i64,
    #[diesel(sql_type = BigInt)]
    pub viewers_now: i64,
    #[diesel(sql_type = BigInt)]
    pub recordings: i64,
    #[diesel(sql_type = BigInt)]
    pub recording_bytes: i64,
    /// Outgoing webhook deliveries still to be made.
    #[diesel(sql_type = BigInt)]
    pub webhook_backlog: i64,
    #[diesel(sql_type = BigInt)]
    pub pending_applications: i64,
}

pub async fn figures(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Figures> {
    diesel::sql_query(format!(
        "SELECT (SELECT count(*) FROM users) AS users, \
                (SELECT count(*) FROM users WHERE suspended_at IS NOT NULL) AS suspended_users, \
                (SELECT count(*) FROM channels) AS channels, \
                (SELECT count(*) FROM channels c WHERE NOT {VISIBLE}) AS hidden_channels, \
                (SELECT count(*) FROM streams WHERE status = $1) AS streams_live, \
                (SELECT coalesce(sum(({VIEWERS_NOW})), 0)::int8 FROM streams s \
                   JOIN channels c ON c.id = s.channel_id WHERE s.status = $1) AS viewers_now, \
                (SELECT count(*) FROM recordings WHERE status = $2) AS recordings, \
                (SELECT coalesce(sum(size_bytes), 0)::int8 FROM recordings WHERE status = $2) AS recording_bytes, \
                (SELECT count(*) FROM webhook_deliveries WHERE status = $3) AS webhook_backlog, \
                (SELECT count(*) FROM creator_applications WHERE status = 'pending') AS pending_applications"
    ))
    .bind::<Text, _>(Status::Live)
    .bind::<Text, _>(RecordingStatus::Complete)
    .bind::<Text, _>(DeliveryStatus::Pending)
    .get_result(conn)
    .await
}

/// A live stream anywhere on the instance.
#[derive(Debug, Clone, QueryableByName)]
pub struct LiveNow {
    #[diesel(sql_type = BigInt)]
    pub stream_id: i64,
    #[diesel(sql_type = Text)]
    pub title: String,
    #[diesel(sql_type = Text)]
    pub handle: String,
    #[diesel(sql_type = Text)]
    pub channel_title: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub started_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = BigInt)]
    pub viewers: i64,
}

/// Every live stream, the most watched first.
pub async fn live_now(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Vec<LiveNow>> {
    diesel::sql_query(format!(
        "SELECT s.id AS stream_id, s.title, c.handle, c.title AS channel_title, s.started_at, \
                ({VIEWERS_NOW}) AS viewers \
         FROM streams s JOIN channels c ON c.id = s.channel_id \
         WHERE s.status = $1 ORDER BY viewers DESC, s.started_at DESC LIMIT 200"
    ))
    .bind::<Text, _>(Status::Live)
    .load(conn)
    .await
}

#[derive(Debug, Clone, QueryableByName)]
pub struct SignUps {
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

/// Sign-ups per UTC day over the last `days` days (days without any included).
pub async fn sign_ups_per_day(
    conn: &mut AsyncPgConnection,
    days: i32,
) -> diesel::QueryResult<Vec<SignUps>> {
    diesel::sql_query(
        "SELECT d::date AS day, count(u.id) AS n \
         FROM generate_series((now() AT TIME ZONE 'UTC')::date - ($1 - 1), (now() AT TIME ZONE 'UTC')::date, interval '1 day') d \
         LEFT JOIN users u ON (u.created_at AT TIME ZONE 'UTC')::date = d::date \
         GROUP BY d ORDER BY d DESC",
    )
    .bind::<diesel::sql_types::Integer, _>(days)
    .load(conn)
    .await
}

/// One entry of the admins' audit log.
#[derive(Debug, Clone, QueryableByName)]
pub struct AdminEntry {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub actor_email: Option<String>,
    #[diesel(sql_type = Text)]
    pub action: String,
    #[diesel(sql_type = Nullable<Text>)]
    pub subject: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Jsonb)]
    pub details: serde_json::Value,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
}

/// The admins' actions (`admin.*` in the audit log), newest first.
pub async fn admin_log(
    conn: &mut AsyncPgConnection,
    limit: i64,
) -> diesel::QueryResult<Vec<AdminEntry>> {
    diesel::sql_query(
        "SELECT a.id, u.email AS actor_email, a.action, a.subject, a.details, a.created_at \
         FROM audit_log a LEFT JOIN users u ON u.id = a.actor_id \
         WHERE a.action LIKE 'admin.%' ORDER BY a.id DESC LIMIT $1",
    )
    .bind::<BigInt, _>(limit)
    .load(conn)
    .await
}
