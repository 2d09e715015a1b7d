//! Channels' outgoing webhooks: endpoints (URL + signing secret), the
//! delivery queue (one row per event per endpoint) and every attempt. The
//! worker's claim is a lease (claims of all instances take turns), so several
//! app instances share the queue without delivering one event twice at once,
//! and never send two deliveries to one endpoint at once.
//! A delivery's status is a `DeliveryStatus`; the queue's SQL writes
//! `pending` in (not bound) to match its partial index.
//! What is sent, when to retry and how to sign is `outgoing_webhooks.rs`.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Integer, Jsonb, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::schema::{webhook_attempts, webhook_deliveries, webhook_endpoints};
use super::{ChannelId, UserId};

super::text_enum! {
    /// Where a delivery is: waiting for its (next) attempt, or settled.
    pub enum DeliveryStatus {
        Pending = "pending",
        Delivered = "delivered",
        /// Given up after the last retry.
        Failed = "failed",
    }
}

/// NOTIFY channel raised when deliveries are queued (the worker LISTENs).
pub const NOTIFY_CHANNEL: &str = "stagepass_webhooks";

/// A receiver of a channel's events. The secret signs every delivery; the
/// URL may carry a receiver's own token in its path: `Debug` shows neither.
#[derive(Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_endpoints, check_for_backend(diesel::pg::Pg))]
pub struct Endpoint {
    pub id: i64,
    pub channel_id: ChannelId,
    pub url: String,
    pub secret: String,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("id", &self.id)
            .field("channel_id", &self.channel_id)
            .finish_non_exhaustive()
    }
}

/// One event for one endpoint, as the delivery log shows it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_deliveries, check_for_backend(diesel::pg::Pg))]
pub struct Delivery {
    pub id: i64,
    pub endpoint_id: i64,
    pub event_id: String,
    pub event: String,
    pub subject: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub last_status: Option<i32>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = webhook_attempts, check_for_backend(diesel::pg::Pg))]
pub struct Attempt {
    pub id: i64,
    pub delivery_id: i64,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error: Option<String>,
}

pub async fn for_channel(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
) -> QueryResult<Vec<Endpoint>> {
    webhook_endpoints::table
        .filter(webhook_endpoints::channel_id.eq(channel))
        .order(webhook_endpoints::id)
        .select(Endpoint::as_select())
        .load(conn)
        .await
}

pub async fn find(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    id: i64,
) -> QueryResult<Option<Endpoint>> {
    webhook_endpoints::table
        .filter(webhook_endpoints::channel_id.eq(channel))
        .filter(webhook_endpoints::id.eq(id))
        .select(Endpoint::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn create(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    url: &str,
    secret: &str,
) -> QueryResult<Endpoint> {
    diesel::insert_into(webhook_endpoints::table)
        .values((
            webhook_endpoints::channel_id.eq(channel),
            webhook_endpoints::url.eq(url),
            webhook_endpoints::secret.eq(secret),
        ))
        .returning(Endpoint::as_returning())
        .get_result(conn)
        .await
}

/// Deletes an endpoint of `channel` with its queue and log; answers whether it existed.
pub async fn delete(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    id: i64,
) -> QueryResult<bool> {
    let n = diesel::delete(
        webhook_endpoints::table
            .filter(webhook_endpoints::channel_id.eq(channel))
            .filter(webhook_endpoints::id.eq(id)),
    )
    .execute(conn)
    .await?;
    Ok(n == 1)
}

/// The audit action of "Send test event" (also what its limit counts).
pub const TESTED: &str = "webhook.tested";

/// "Send test event" may go out when the channel sent fewer than `limit` in
/// the last minute (counted in the audit log, where this one is recorded
/// too: one instance or many, the limit holds; the advisory lock keeps two
/// clicks at once from both taking the last one). Answers whether it may.
pub async fn allow_test_event(
    conn: &mut AsyncPgConnection,
    actor: UserId,
    channel: ChannelId,
    endpoint: i64,
    limit: i64,
) -> QueryResult<bool> {
    use super::schema::audit_log;
    conn.transaction(async |conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind::<Text, _>(format!("stagepass:webhook-test:{channel}"))
            .execute(conn)
            .await?;
        let recent: i64 = audit_log::table
            .filter(audit_log::channel_id.eq(channel))
            .filter(audit_log::action.eq(TESTED))
            .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
                "created_at > now() - interval '1 minute'",
            ))
            .count()
            .get_result(conn)
            .await?;
        if recent >= limit {
            return Ok(false);
        }
        super::audit::record(
            conn,
            Some(actor),
            Some(channel),
            TESTED,
            Some(&endpoint.to_string()),
            serde_json::json!({}),
        )
        .await?;
        Ok(true)
    })
    .await
}

/// An endpoint's most recent deliveries, newest first.
pub async fn recent_deliveries(
    conn: &mut AsyncPgConnection,
    endpoint: i64,
    limit: i64,
) -> QueryResult<Vec<Delivery>> {
    webhook_deliveries::table
        .filter(webhook_deliveries::endpoint_id.eq(endpoint))
        .order(webhook_deliveries::id.desc())
        .limit(limit)
        .select(Delivery::as_select())
        .load(conn)
        .await
}

/// Every attempt of these deliveries, in order.
pub async fn attempts_of(
    conn: &mut AsyncPgConnection,
    deliveries: &[i64],
) -> QueryResult<Vec<Attempt>> {
    webhook_attempts::table
        .filter(webhook_attempts::delivery_id.eq_any(deliveries))
        .order((webhook_attempts::delivery_id, webhook_attempts::attempt))
        .select(Attempt::as_select())
        .load(conn)
        .await
}

/// Queues `event` about `subject` for every endpoint of `channel`, once per
/// endpoint (`ON CONFLICT (endpoint_id, event, subject) DO NOTHING`), and
/// wakes the workers (the NOTIFY is delivered when the caller's transaction
/// commits). The stored body is `payload` with the delivery's own event id
/// as `id`. Answers how many deliveries were queued.
pub async fn enqueue(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    event: &str,
    subject: &str,
    payload: &serde_json::Value,
) -> QueryResult<usize> {
    let n = diesel::sql_query(
        "INSERT INTO webhook_deliveries (endpoint_id, event_id, event, subject, payload) \
         SELECT e.endpoint_id, e.event_id, $2, $3, jsonb_build_object('id', e.event_id) || $4 \
         FROM (SELECT id AS endpoint_id, gen_random_uuid()::text AS event_id \
               FROM webhook_endpoints WHERE channel_id = $1) e \
         ON CONFLICT (endpoint_id, event, subject) DO NOTHING",
    )
    .bind::<BigInt, _>(channel.0)
    .bind::<Text, _>(event)
    .bind::<Text, _>(subject)
    .bind::<Jsonb, _>(payload)
    .execute(conn)
    .await?;
    if n > 0 {
        diesel::sql_query(format!("NOTIFY {NOTIFY_CHANNEL}"))
            .execute(conn)
            .await?;
    }
    Ok(n)
}

/// A delivery the worker claimed: what to send, where, signed with what.
#[derive(QueryableByName)]
pub struct Claimed {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    #[diesel(sql_type = Text)]
    pub event_id: String,
    #[diesel(sql_type = Text)]
    pub event: String,
    #[diesel(sql_type = Text)]
    pub body: String,
    /// Including this one.
    #[diesel(sql_type = Integer)]
    pub attempts: i32,
    #[diesel(sql_type = BigInt)]
    pub endpoint_id: i64,
    #[diesel(sql_type = Text)]
    pub url: String,
    #[diesel(sql_type = Text)]
    pub secret: String,
}

impl std::fmt::Debug for Claimed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claimed")
            .field("id", &self.id)
            .field("event", &self.event)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// Pending, written into the queue's SQL rather than bound: the planner then
/// matches the partial index `webhook_deliveries_due_idx` in every plan.
const PENDING: DeliveryStatus = DeliveryStatus::Pending;

/// `d`'s endpoint has a delivery in flight: claimed (its lease, the future
/// `next_attempt_at`, still runs) and that attempt not recorded yet.
fn endpoint_busy() -> String {
    format!(
        "EXISTS (SELECT 1 FROM webhook_deliveries f \
           WHERE f.endpoint_id = d.endpoint_id AND f.status = '{PENDING}' AND f.attempts > 0 \
             AND f.next_attempt_at > now() \
             AND NOT EXISTS (SELECT 1 FROM webhook_attempts a \
                             WHERE a.delivery_id = f.id AND a.attempt = f.attempts))"
    )
}

/// Claims up to `limit` due deliveries, at most one per endpoint and none for
/// an endpoint with a delivery in flight, so a slow receiver holds at most one
/// of the workers' slots and gets its events one at a time. Counts the
/// attempt and leases the row for `lease_seconds` (pushes its next attempt
/// that far), so another instance skips it now, and takes it over only if
/// this one never reports (it crashed). Claims of all instances take turns
/// (a transaction-scoped advisory lock, held for this one statement), so
/// each sees the others' leases. Committed at once: no transaction stays
/// open while sending.
pub async fn claim_due(
    conn: &mut AsyncPgConnection,
    limit: i64,
    lease_seconds: f64,
) -> QueryResult<Vec<Claimed>> {
    conn.transaction(async |conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind::<Text, _>("stagepass:webhook-claim")
            .execute(conn)
            .await?;
        let busy = endpoint_busy();
        diesel::sql_query(format!(
            "WITH due AS ( \
               SELECT DISTINCT ON (d.endpoint_id) d.id, d.next_attempt_at \
               FROM webhook_deliveries d \
               WHERE d.status = '{PENDING}' AND d.next_attempt_at <= now() AND NOT {busy} \
               ORDER BY d.endpoint_id, d.next_attempt_at, d.id), \
             picked AS (SELECT id FROM due ORDER BY next_attempt_at, id LIMIT $1) \
             UPDATE webhook_deliveries d \
             SET attempts = d.attempts + 1, next_attempt_at = now() + make_interval(secs => $2) \
             FROM picked, webhook_endpoints e \
             WHERE d.id = picked.id AND e.id = d.endpoint_id AND d.status = '{PENDING}' \
             RETURNING d.id, d.event_id, d.event, d.payload::text AS body, d.attempts, \
                       e.id AS endpoint_id, e.url, e.secret"
        ))
        .bind::<BigInt, _>(limit)
        .bind::<Double, _>(lease_seconds)
        .load(conn)
        .await
    })
    .await
}

/// Seconds until the next delivery `claim_due` could take is due (≤ 0: due
/// now), if any: pending, and its endpoint has nothing in flight.
pub async fn next_due_in(conn: &mut AsyncPgConnection) -> QueryResult<Option<f64>> {
    #[derive(QueryableByName)]
    struct Next {
        #[diesel(sql_type = Nullable<Double>)]
        seconds: Option<f64>,
    }
    let busy = endpoint_busy();
    let row: Next = diesel::sql_query(format!(
        "SELECT EXTRACT(EPOCH FROM min(d.next_attempt_at) - now())::float8 AS seconds \
         FROM webhook_deliveries d WHERE d.status = '{PENDING}' AND NOT {busy}"
    ))
    .get_result(conn)
    .await?;
    Ok(row.seconds)
}

/// What one attempt came to.
pub struct AttemptResult<'a> {
    pub delivery: i64,
    /// The attempt number the claim gave it.
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub status_code: Option<i32>,
    pub error: Option<&'a str>,
    pub delivered: bool,
    /// When not delivered: retry after this many seconds, or None to give up.
    pub retry_in: Option<f64>,
}

/// What became of an attempt's report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Logged, and the delivery moved on (or it was already another claim's).
    Settled,
    /// The delivery is gone: its endpoint was deleted while it was in flight.
    Gone,
}

/// Logs the attempt and moves the delivery on: delivered, due again after
/// the backoff, or failed for good. Only while it is still this attempt's
/// (a lease that ran out and was claimed again is the new claim's to settle).
/// One transaction: the log and the delivery never disagree, and the row
/// lock makes an endpoint's deletion wait for it (or come first: `Gone`).
pub async fn record_attempt(
    conn: &mut AsyncPgConnection,
    r: &AttemptResult<'_>,
) -> QueryResult<Recorded> {
    conn.transaction(async |conn| {
        let still_there: Option<i64> = webhook_deliveries::table
            .find(r.delivery)
            .select(webhook_deliveries::id)
            .for_update()
            .first(conn)
            .await
            .optional()?;
        if still_there.is_none() {
            return Ok(Recorded::Gone);
        }
        diesel::sql_query(
            "INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, status_code, error) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (delivery_id, attempt) DO NOTHING",
        )
        .bind::<BigInt, _>(r.delivery)
        .bind::<Integer, _>(r.attempt)
        .bind::<Timestamptz, _>(r.started_at)
        .bind::<Integer, _>(r.duration_ms)
        .bind::<Nullable<Integer>, _>(r.status_code)
        .bind::<Nullable<Text>, _>(r.error)
        .execute(conn)
        .await?;
        let (status, retry_in) = match (r.delivered, r.retry_in) {
            (true, _) => (DeliveryStatus::Delivered, None),
            (false, Some(s)) => (DeliveryStatus::Pending, Some(s)),
            (false, None) => (DeliveryStatus::Failed, None),
        };
        diesel::sql_query(
            "UPDATE webhook_deliveries SET \
               status = $3, \
               last_status = $4, \
               last_error = $5, \
               delivered_at = CASE WHEN $3 = $7 THEN now() END, \
               next_attempt_at = CASE WHEN $3 = $8 THEN now() + make_interval(secs => $6) END \
             WHERE id = $1 AND attempts = $2 AND status = $8",
        )
        .bind::<BigInt, _>(r.delivery)
        .bind::<Integer, _>(r.attempt)
        .bind::<Text, _>(status)
        .bind::<Nullable<Integer>, _>(r.status_code)
        .bind::<Nullable<Text>, _>(r.error)
        .bind::<Nullable<Double>, _>(retry_in)
        .bind::<Text, _>(DeliveryStatus::Delivered)
        .bind::<Text, _>(DeliveryStatus::Pending)
        .execute(conn)
        .await?;
        Ok(Recorded::Settled)
    })
    .await
}
