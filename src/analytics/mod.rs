//! Creator analytics: the pass-buying funnel (recorded as people move through
//! it) and the figures of a stream and of a channel, each computed by one SQL
//! query from what the app already keeps — `presence` (viewers, watch time,
//! peak), `chat_messages`, `orders` and `funnel_events`. Charts are drawn by
//! `charts`, the CSV export is written by `export`.
//!
//! This module must not decide who may see the figures (the web layer asks
//! `access`), and recording the funnel must never make a page or a payment
//! fail: `note` logs and carries on, `record_paid` runs in a savepoint.
//!
//! Definitions (the README's analytics section says the same for creators):
//! - A *viewer* is a participant whose LiveKit identity is a user id (the
//!   host's `host-{id}`, ingress and egress are not), who is not on the
//!   channel's team (owner, moderators) — as on the broadcast page's count.
//! - A viewer's sessions that overlap or touch are merged first (a reconnect
//!   replaces a connection; its join can arrive before the old leave), so
//!   nobody is counted twice at one moment and no second is counted twice.
//!   An open session lasts until the stream ended, or until now while live.
//! - *Peak concurrent viewers* is the most merged sessions open at one
//!   instant, computed from those intervals (not `streams.peak_viewers`,
//!   which only sees the moments a webhook arrived, and counts team members
//!   and tabs that are gone).
//! - *Chat messages* counts messages not deleted by a moderator; deleted ones
//!   are counted apart.
//! - *Passes sold* and *revenue* count orders that are paid now (refunded
//!   ones are not), attributed to a stream by `orders.stream_id` (the stream
//!   the buyer came from) or by the pass being for that stream alone; always
//!   per currency, never added up across currencies.
//! - The funnel counts each visitor once per step: watch page without access
//!   → pass page → checkout started → paid. A visitor is `u:{user id}` when
//!   signed in, else `a:{random id}` from a long-lived cookie (never an IP).
//!   The channel's team is left out, as it is of the viewers.

pub mod charts;
pub mod export;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Date, Double, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::db::{ChannelId, DbPool, StreamId, UserId};

// ---------------------------------------------------------------------------
// The funnel.

/// The funnel's steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The watch page, shown to someone the access rule denies (sign in,
    /// pass required, pass ended).
    DeniedVisit,
    /// A page of passes on sale (a stream's or the channel's).
    PassPage,
    /// An order was created.
    CheckoutStarted,
    /// The order was paid.
    Paid,
}

impl Step {
    pub const ALL: [Step; 4] = [
        Step::DeniedVisit,
        Step::PassPage,
        Step::CheckoutStarted,
        Step::Paid,
    ];

    /// As stored in `funnel_events.step`.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::DeniedVisit => "denied_visit",
            Step::PassPage => "pass_page",
            Step::CheckoutStarted => "checkout_started",
            Step::Paid => "paid",
        }
    }

    pub fn parse(s: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|step| step.as_str() == s)
    }

    /// In words, for the creator.
    pub fn label(self) -> &'static str {
        match self {
            Step::DeniedVisit => "Visited the stream without access",
            Step::PassPage => "Opened a pass page",
            Step::CheckoutStarted => "Started a checkout",
            Step::Paid => "Paid",
        }
    }
}

/// Who moves through the funnel: `u:{user id}` or `a:{anonymous id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visitor(String);

impl Visitor {
    pub fn user(id: UserId) -> Self {
        Visitor(format!("u:{id}"))
    }

    /// The visitor behind an anonymous cookie's value, if it is one of ours
    /// in shape (the database checks the same pattern).
    pub fn anonymous(id: &str) -> Option<Self> {
        is_anonymous_id(id).then(|| Visitor(format!("a:{id}")))
    }

    /// A new anonymous id (for the cookie) and its visitor.
    pub fn new_anonymous() -> (String, Self) {
        use rand::Rng;
        let id: String = rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(22)
            .map(char::from)
            .collect();
        let visitor = Visitor(format!("a:{id}"));
        (id, visitor)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// `[A-Za-z0-9_-]{1,64}`, as `funnel_events_visitor_check` wants it.
pub fn is_anonymous_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Records that `visitor` reached `step` (of `stream`, or of the channel when
/// None); a second time changes nothing. One INSERT … ON CONFLICT DO NOTHING.
pub async fn record(
    conn: &mut AsyncPgConnection,
    step: Step,
    channel: ChannelId,
    stream: Option<StreamId>,
    visitor: &Visitor,
) -> diesel::QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO funnel_events (channel_id, stream_id, step, visitor) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind::<BigInt, _>(channel.0)
    .bind::<Nullable<BigInt>, _>(stream.map(|s| s.0))
    .bind::<Text, _>(step.as_str())
    .bind::<Text, _>(visitor.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// `record` for pages: a failure is logged, never shown — a visitor's page
/// does not depend on the creator's statistics.
pub async fn note(
    db: &DbPool,
    step: Step,
    channel: ChannelId,
    stream: Option<StreamId>,
    visitor: &Visitor,
) {
    let result = match db.get().await {
        Ok(mut conn) => record(&mut conn, step, channel, stream, visitor)
            .await
            .map_err(anyhow::Error::from),
        Err(e) => Err(anyhow::Error::from(e)),
    };
    if let Err(error) = result {
        tracing::warn!(step = step.as_str(), %channel, %error, "funnel event not recorded");
    }
}

/// `record` inside the transaction that marks an order paid, as a savepoint:
/// if it fails the payment still goes through (logged).
pub async fn record_paid(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    stream: Option<StreamId>,
    buyer: UserId,
) -> diesel::QueryResult<()> {
    let visitor = Visitor::user(buyer);
    let result = conn
        .transaction(async |conn| record(conn, Step::Paid, channel, stream, &visitor).await)
        .await;
    if let Err(error) = result {
        tracing::warn!(%channel, %error, "funnel event 'paid' not recorded");
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The figures.

/// `s`: the streams measured. Each query below starts `WITH s AS (…)`.
const ONE_STREAM: &str = "SELECT id, channel_id, title, status, started_at, ended_at, created_at FROM streams WHERE id = $1";
const CHANNEL_STREAMS: &str = "SELECT id, channel_id, title, status, started_at, ended_at, created_at FROM streams WHERE channel_id = $1";

/// The viewers' merged sessions of the streams in `s`: `visits(stream_id,
/// user_id, a, b)`, one row per stretch of uninterrupted presence.
const VISITS: &str = "\
raw AS (
  SELECT p.stream_id, p.user_id, p.joined_at AS a,
         greatest(p.joined_at, coalesce(p.left_at, s.ended_at, now())) AS b
    FROM presence p JOIN s ON s.id = p.stream_id
   WHERE p.user_id IS NOT NULL AND p.identity = p.user_id::text
     AND NOT EXISTS (SELECT 1 FROM channel_members m
                      WHERE m.channel_id = s.channel_id AND m.user_id = p.user_id)
     AND NOT EXISTS (SELECT 1 FROM channels c WHERE c.id = s.channel_id AND c.owner_id = p.user_id)),
marked AS (
  SELECT stream_id, user_id, a, b,
         CASE WHEN a <= max(b) OVER (PARTITION BY stream_id, user_id ORDER BY a, b
                                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
              THEN 0 ELSE 1 END AS fresh
    FROM raw),
islands AS (
  SELECT stream_id, user_id, a, b,
         sum(fresh) OVER (PARTITION BY stream_id, user_id ORDER BY a, b ROWS UNBOUNDED PRECEDING) AS island
    FROM marked),
visits AS (
  SELECT stream_id, user_id, min(a) AS a, max(b) AS b FROM islands GROUP BY stream_id, user_id, island)";

/// Per stream of `s`: peak, unique viewers, watch time, chat.
const PER_STREAM: &str = "\
ev AS (SELECT stream_id, a AS t, 1 AS d FROM visits UNION ALL SELECT stream_id, b, -1 FROM visits),
run AS (SELECT stream_id, sum(d) OVER (PARTITION BY stream_id ORDER BY t, d ROWS UNBOUNDED PRECEDING) AS n
          FROM ev),
peak AS (SELECT stream_id, max(n)::int8 AS peak FROM run GROUP BY stream_id),
watch AS (SELECT stream_id, count(DISTINCT user_id) AS viewers,
                 round(sum(extract(epoch FROM b - a)))::int8 AS seconds
            FROM visits GROUP BY stream_id),
chat AS (SELECT m.stream_id, count(*) FILTER (WHERE m.deleted_at IS NULL) AS messages,
                count(*) FILTER (WHERE m.deleted_at IS NOT NULL) AS deleted
           FROM chat_messages m JOIN s ON s.id = m.stream_id GROUP BY m.stream_id),
per_stream AS (
  SELECT s.id AS stream_id, s.title, s.status, s.started_at, s.ended_at, s.created_at,
         coalesce(peak.peak, 0) AS peak_viewers,
         coalesce(watch.viewers, 0) AS unique_viewers,
         coalesce(watch.seconds, 0) AS watch_seconds,
         CASE WHEN watch.viewers > 0 THEN round(watch.seconds::numeric / watch.viewers)::int8 END
           AS average_watch_seconds,
         coalesce(chat.messages, 0) AS chat_messages,
         coalesce(chat.deleted, 0) AS deleted_messages
    FROM s LEFT JOIN peak ON peak.stream_id = s.id
           LEFT JOIN watch ON watch.stream_id = s.id
           LEFT JOIN chat ON chat.stream_id = s.id)";

/// How one stream did.
#[derive(Debug, Clone, QueryableByName)]
pub struct StreamFigures {
    #[diesel(sql_type = BigInt)]
    pub stream_id: i64,
    #[diesel(sql_type = Text)]
    pub title: String,
    #[diesel(sql_type = Text)]
    pub status: String,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub started_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub ended_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = BigInt)]
    pub peak_viewers: i64,
    #[diesel(sql_type = BigInt)]
    pub unique_viewers: i64,
    /// Total watch time, whole seconds.
    #[diesel(sql_type = BigInt)]
    pub watch_seconds: i64,
    /// Per unique viewer (None: nobody watched).
    #[diesel(sql_type = Nullable<BigInt>)]
    pub average_watch_seconds: Option<i64>,
    #[diesel(sql_type = BigInt)]
    pub chat_messages: i64,
    #[diesel(sql_type = BigInt)]
    pub deleted_messages: i64,
}

pub async fn stream_figures(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
) -> diesel::QueryResult<StreamFigures> {
    diesel::sql_query(format!(
        "WITH s AS ({ONE_STREAM}), {VISITS}, {PER_STREAM} SELECT * FROM per_stream"
    ))
    .bind::<BigInt, _>(stream.0)
    .get_result(conn)
    .await
}

/// Every stream of a channel, the latest first.
pub async fn channel_streams(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
) -> diesel::QueryResult<Vec<StreamFigures>> {
    diesel::sql_query(format!(
        "WITH s AS ({CHANNEL_STREAMS}), {VISITS}, {PER_STREAM} SELECT * FROM per_stream \
         ORDER BY coalesce(started_at, created_at) DESC, stream_id DESC"
    ))
    .bind::<BigInt, _>(channel.0)
    .load(conn)
    .await
}

/// The same figures over all of a channel's streams: the highest peak of
/// any stream, distinct viewers across them, the sums of the rest.
#[derive(Debug, Clone, QueryableByName)]
pub struct ChannelTotals {
    #[diesel(sql_type = BigInt)]
    pub streams: i64,
    #[diesel(sql_type = BigInt)]
    pub peak_viewers: i64,
    #[diesel(sql_type = BigInt)]
    pub unique_viewers: i64,
    #[diesel(sql_type = BigInt)]
    pub watch_seconds: i64,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub average_watch_seconds: Option<i64>,
    #[diesel(sql_type = BigInt)]
    pub chat_messages: i64,
    #[diesel(sql_type = BigInt)]
    pub deleted_messages: i64,
}

pub async fn channel_totals(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
) -> diesel::QueryResult<ChannelTotals> {
    diesel::sql_query(format!(
        "WITH s AS ({CHANNEL_STREAMS}), {VISITS}, {PER_STREAM}, \
         viewers AS (SELECT count(DISTINCT user_id) AS n FROM visits) \
         SELECT count(*) AS streams, \
                coalesce(max(peak_viewers), 0)::int8 AS peak_viewers, \
                (SELECT n FROM viewers) AS unique_viewers, \
                coalesce(sum(watch_seconds), 0)::int8 AS watch_seconds, \
                CASE WHEN (SELECT n FROM viewers) > 0 \
                     THEN round(coalesce(sum(watch_seconds), 0)::numeric / (SELECT n FROM viewers))::int8 END \
                  AS average_watch_seconds, \
                coalesce(sum(chat_messages), 0)::int8 AS chat_messages, \
                coalesce(sum(deleted_messages), 0)::int8 AS deleted_messages \
           FROM per_stream"
    ))
    .bind::<BigInt, _>(channel.0)
    .get_result(conn)
    .await
}

/// Paid orders in one currency (of one stream when `stream_id` is set).
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Sales {
    #[diesel(sql_type = Nullable<BigInt>)]
    pub stream_id: Option<i64>,
    #[diesel(sql_type = Text)]
    pub currency: String,
    #[diesel(sql_type = BigInt)]
    pub sold: i64,
    #[diesel(sql_type = BigInt)]
    pub revenue_cents: i64,
}

/// Sales attributed to `stream`, per currency.
pub async fn stream_sales(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
) -> diesel::QueryResult<Vec<Sales>> {
    diesel::sql_query(
        "SELECT s.id AS stream_id, o.currency, count(*) AS sold, sum(o.amount_cents)::int8 AS revenue_cents \
           FROM streams s \
           JOIN access_passes p ON p.channel_id = s.channel_id \
           JOIN orders o ON o.pass_id = p.id AND o.status = 'paid' \
                        AND (o.stream_id = s.id OR p.stream_id = s.id) \
          WHERE s.id = $1 \
          GROUP BY s.id, o.currency ORDER BY o.currency",
    )
    .bind::<BigInt, _>(stream.0)
    .load(conn)
    .await
}

/// Sales of each stream of a channel, per currency (streams without sales absent).
pub async fn channel_sales_by_stream(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
) -> diesel::QueryResult<Vec<Sales>> {
    diesel::sql_query(
        "SELECT s.id AS stream_id, o.currency, count(*) AS sold, sum(o.amount_cents)::int8 AS revenue_cents \
           FROM streams s \
           JOIN access_passes p ON p.channel_id = s.channel_id \
           JOIN orders o ON o.pass_id = p.id AND o.status = 'paid' \
                        AND (o.stream_id = s.id OR p.stream_id = s.id) \
          WHERE s.channel_id = $1 \
          GROUP BY s.id, o.currency ORDER BY s.id, o.currency",
    )
    .bind::<BigInt, _>(channel.0)
    .load(conn)
    .await
}

/// All sales of a channel's passes (from a stream or not), per currency.
pub async fn channel_sales(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
) -> diesel::QueryResult<Vec<Sales>> {
    diesel::sql_query(
        "SELECT NULL::int8 AS stream_id, o.currency, count(*) AS sold, sum(o.amount_cents)::int8 AS revenue_cents \
           FROM orders o JOIN access_passes p ON p.id = o.pass_id \
          WHERE p.channel_id = $1 AND o.status = 'paid' \
          GROUP BY o.currency ORDER BY o.currency",
    )
    .bind::<BigInt, _>(channel.0)
    .load(conn)
    .await
}

/// One step of the funnel: how many visitors reached it, and what share of
/// the previous step's visitors that is (None for the first step, or when
/// the previous step had nobody).
#[derive(Debug, Clone, QueryableByName)]
pub struct FunnelStep {
    #[diesel(sql_type = Text)]
    pub step: String,
    #[diesel(sql_type = BigInt)]
    pub visitors: i64,
    #[diesel(sql_type = Nullable<Double>)]
    pub of_previous: Option<f64>,
}

impl FunnelStep {
    pub fn step(&self) -> Option<Step> {
        Step::parse(&self.step)
    }
}

/// The funnel of one stream (`stream` set: events of that stream only) or
/// of the whole channel (each visitor once per step across its streams and
/// its channel pass page). Always the four steps, in order. The channel's
/// team (looking at their own pages) is not counted.
pub async fn funnel(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    stream: Option<StreamId>,
) -> diesel::QueryResult<Vec<FunnelStep>> {
    diesel::sql_query(
        "WITH steps(step, pos) AS (VALUES ('denied_visit', 1), ('pass_page', 2), \
                                          ('checkout_started', 3), ('paid', 4)), \
              counts AS (SELECT f.step, count(DISTINCT f.visitor) AS n FROM funnel_events f \
                          WHERE f.channel_id = $1 AND ($2::int8 IS NULL OR f.stream_id = $2) \
                            AND NOT EXISTS (SELECT 1 FROM channel_members m WHERE m.channel_id = f.channel_id \
                                              AND f.visitor = 'u:' || m.user_id) \
                            AND NOT EXISTS (SELECT 1 FROM channels c WHERE c.id = f.channel_id \
                                              AND f.visitor = 'u:' || c.owner_id) \
                          GROUP BY f.step) \
         SELECT steps.step, coalesce(counts.n, 0) AS visitors, \
                (100.0 * coalesce(counts.n, 0) \
                   / nullif(lag(coalesce(counts.n, 0)) OVER (ORDER BY pos), 0))::float8 AS of_previous \
           FROM steps LEFT JOIN counts USING (step) ORDER BY pos",
    )
    .bind::<BigInt, _>(channel.0)
    .bind::<Nullable<BigInt>, _>(stream.map(|s| s.0))
    .load(conn)
    .await
}

/// Streams longer than this many points are drawn in wider buckets.
pub const MAX_POINTS: i32 = 720;

/// One bucket of a stream's timeline: viewers present at any time during
/// it, and chat messages (not deleted) posted in it.
#[derive(Debug, Clone, QueryableByName)]
pub struct Bucket {
    #[diesel(sql_type = Timestamptz)]
    pub at: DateTime<Utc>,
    /// The bucket's width: 1 minute, or more for streams longer than 12 hours.
    #[diesel(sql_type = Integer)]
    pub minutes: i32,
    #[diesel(sql_type = BigInt)]
    pub viewers: i64,
    #[diesel(sql_type = BigInt)]
    pub messages: i64,
}

/// A stream's timeline: one bucket per minute from the minute it started to
/// the minute it ended (or now, while live), both included; empty if it
/// never went live. Longer than `MAX_POINTS` minutes, the buckets widen to
/// keep at most that many.
pub async fn timeline(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
) -> diesel::QueryResult<Vec<Bucket>> {
    diesel::sql_query(format!(
        "WITH s AS ({ONE_STREAM}), {VISITS}, \
         bounds AS (SELECT date_trunc('minute', started_at) AS first, \
                           date_trunc('minute', coalesce(ended_at, greatest(now(), started_at))) AS last \
                      FROM s WHERE started_at IS NOT NULL), \
         width AS (SELECT first, last, \
                          greatest(1, ceil((extract(epoch FROM last - first) / 60 + 1) / {MAX_POINTS}.0))::int AS w \
                     FROM bounds), \
         buckets AS (SELECT m, w FROM width, generate_series(first, last, make_interval(mins => w)) AS m) \
         SELECT b.m AS at, b.w AS minutes, \
                (SELECT count(DISTINCT v.user_id) FROM visits v \
                  WHERE v.a < b.m + make_interval(mins => b.w) AND v.b > b.m) AS viewers, \
                (SELECT count(*) FROM chat_messages c \
                  WHERE c.stream_id = $1 AND c.deleted_at IS NULL \
                    AND c.created_at >= b.m AND c.created_at < b.m + make_interval(mins => b.w)) AS messages \
           FROM buckets b ORDER BY b.m"
    ))
    .bind::<BigInt, _>(stream.0)
    .load(conn)
    .await
}

/// Days of revenue the channel overview shows.
pub const REVENUE_DAYS: i32 = 30;

/// One day's paid orders in one currency (`currency` None: no sales at all
/// in the period — the days are still there, at zero).
#[derive(Debug, Clone, QueryableByName)]
pub struct DayRevenue {
    #[diesel(sql_type = Date)]
    pub day: NaiveDate,
    #[diesel(sql_type = Nullable<Text>)]
    pub currency: Option<String>,
    #[diesel(sql_type = BigInt)]
    pub sold: i64,
    #[diesel(sql_type = BigInt)]
    pub revenue_cents: i64,
}

/// Revenue per day (UTC) over the last `REVENUE_DAYS` days, today included,
/// per currency sold in that period: every day of every such currency, zero
/// on days without sales. Ordered by currency, then day.
pub async fn revenue_per_day(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
) -> diesel::QueryResult<Vec<DayRevenue>> {
    diesel::sql_query(format!(
        "WITH today AS (SELECT (now() AT TIME ZONE 'UTC')::date AS d), \
              days AS (SELECT g::date AS day FROM today, \
                         generate_series(today.d - {back}, today.d, interval '1 day') AS g), \
              paid AS (SELECT o.currency, o.amount_cents, (o.paid_at AT TIME ZONE 'UTC')::date AS day \
                         FROM orders o JOIN access_passes p ON p.id = o.pass_id \
                        WHERE p.channel_id = $1 AND o.status = 'paid' AND o.paid_at IS NOT NULL \
                          AND (o.paid_at AT TIME ZONE 'UTC')::date >= (SELECT d FROM today) - {back}), \
              currencies AS (SELECT DISTINCT currency FROM paid) \
         SELECT days.day, c.currency, count(paid.day) AS sold, \
                coalesce(sum(paid.amount_cents), 0)::int8 AS revenue_cents \
           FROM days LEFT JOIN currencies c ON true \
           LEFT JOIN paid ON paid.day = days.day AND paid.currency = c.currency \
          GROUP BY c.currency, days.day ORDER BY c.currency, days.day",
        back = REVENUE_DAYS - 1,
    ))
    .bind::<BigInt, _>(channel.0)
    .load(conn)
    .await
}

// ---------------------------------------------------------------------------
// Words and numbers for people.

/// "1 h 02 min", "3 min 20 s", "45 s".
pub fn duration_label(seconds: i64) -> String {
    let s = seconds.max(0);
    let (h, m, sec) = (s / 3600, (s % 3600) / 60, s % 60);
    if h > 0 {
        format!("{h} h {m:02} min")
    } else if m > 0 {
        format!("{m} min {sec:02} s")
    } else {
        format!("{sec} s")
    }
}

/// An amount in a currency, "0.00 EUR" for nothing (not "Free": this is revenue).
pub fn money(cents: i64, currency: &str) -> String {
    if cents == 0 {
        format!("0.00 {currency}")
    } else {
        crate::db::passes::money_label(cents, currency)
    }
}

/// Cents as a plain decimal, "18.00", for tables and the CSV.
pub fn decimal(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let c = cents.unsigned_abs();
    format!("{sign}{}.{:02}", c / 100, c % 100)
}

/// "42.5 %", or "—" when there is nothing to compare with.
pub fn percent(value: Option<f64>) -> String {
    match value {
        Some(v) => format!("{v:.1} %"),
        None => "—".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_ids_are_checked_like_the_database_does() {
        assert!(Visitor::anonymous("abcXYZ019_-").is_some());
        assert!(Visitor::anonymous("").is_none());
        assert!(Visitor::anonymous(&"a".repeat(65)).is_none());
        assert!(Visitor::anonymous("a b").is_none());
        assert!(Visitor::anonymous("1.2.3.4").is_none());
        let (id, v) = Visitor::new_anonymous();
        assert!(is_anonymous_id(&id));
        assert_eq!(v.as_str(), format!("a:{id}"));
        assert_eq!(Visitor::user(UserId(7)).as_str(), "u:7");
    }

    #[test]
    fn figures_read_as_people_expect() {
        assert_eq!(duration_label(45), "45 s");
        assert_eq!(duration_label(200), "3 min 20 s");
        assert_eq!(duration_label(3720), "1 h 02 min");
        assert_eq!(decimal(1800), "18.00");
        assert_eq!(decimal(5), "0.05");
        assert_eq!(money(0, "EUR"), "0.00 EUR");
        assert_eq!(money(900, "USD"), "$9.00");
        assert_eq!(percent(Some(50.0)), "50.0 %");
        assert_eq!(percent(None), "—");
        for step in Step::ALL {
            assert_eq!(Step::parse(step.as_str()), Some(step));
        }
    }
}
