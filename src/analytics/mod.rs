//! Creator analytics: the pass-buying funnel (recorded as people move through
//! it) and the figures of a stream and of a channel, each computed by one SQL
//! query from what the app already keeps — `presence` (viewers, watch time,
//! peak), `chat_messages`, `orders` and `funnel_events`. Charts are drawn by
//! `charts`, the CSV export is written by `export`.
//!
//! This module must not decide who may see the figures (the web layer asks
//! `access`), and recording the funnel must never make a page or a payment
//! fail or wait: `note` inserts in a task of its own (errors logged),
//! `record_paid` runs in a savepoint.
//!
//! Definitions (the README's analytics section says the same for creators):
//! - A *viewer* is a participant whose LiveKit identity is a user id, or a
//!   guest's `guest-{id}` (one browser without an account; the
//!   host's `host-{id}`, ingress and egress are not), who is not on the
//!   channel's team (owner, moderators) — as on the broadcast page's count.
//!   Viewers are told apart by that identity, not by `presence.user_id`
//!   (which becomes NULL when the account is deleted), so a stream's figures
//!   do not change when a viewer deletes their account. The team is the
//!   team *now*: someone who later becomes a moderator drops out of past
//!   figures, a former moderator joins them (membership history is not kept).
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
//! - Free passes are orders of 0: they count as passes sold (shown apart as
//!   "free") with no revenue, and as the funnel's last step.
//! - The funnel is a funnel: each step counts only visitors who also reached
//!   the step before, so no step exceeds the one before. Its entry is
//!   "arrived": shown a pass-only stream's watch page without access, *or*
//!   opened a pass page (people come straight from a link); then pass page →
//!   checkout started → paid. A visitor is `u:{user id}` when signed in, else
//!   `a:{random id}` from a long-lived cookie (never an IP); an anonymous
//!   request without that cookie only gets one and counts from the next
//!   request that brings it back (bots without cookies write nothing). The
//!   channel's team is left out, as it is of the viewers.

pub mod charts;
pub mod export;

use chrono::{DateTime, NaiveDate, Utc};
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Date, Double, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::db::orders::Status as OrderStatus;
use crate::db::streams::Status as StreamStatus;
use crate::db::{ChannelId, DbPool, StreamId, UserId};

// ---------------------------------------------------------------------------
// The funnel.

/// The funnel's steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The watch page, shown to someone the access rule denies (sign in,
    /// pass required, pass ended).
    DeniedVisit,
    /// A free preview started (a pass-only stream with a preview).
    Previewed,
    /// A page of passes on sale (a stream's or the channel's).
    PassPage,
    /// An order was created.
    CheckoutStarted,
    /// The order was paid.
    Paid,
}

impl Step {
    pub const ALL: [Step; 5] = [
        Step::DeniedVisit,
        Step::Previewed,
        Step::PassPage,
        Step::CheckoutStarted,
        Step::Paid,
    ];

    /// As stored in `funnel_events.step`.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::DeniedVisit => "denied_visit",
            Step::Previewed => "previewed",
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
            Step::DeniedVisit => "Arrived: the stream without access, or a pass page",
            Step::Previewed => "Watched the free preview",
            Step::PassPage => "Opened a pass page",
            Step::CheckoutStarted => "Then started a checkout",
            Step::Paid => "Then paid (or took a free pass)",
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

/// `record` for pages, off their critical path: the insert runs in a task of
/// its own with its own pool connection, and a failure is logged, never
/// shown — a visitor's page neither waits for nor depends on the creator's
/// statistics.
pub fn note(
    db: &DbPool,
    step: Step,
    channel: ChannelId,
    stream: Option<StreamId>,
    visitor: Visitor,
) {
    let db = db.clone();
    tokio::spawn(async move {
        let result = match db.get().await {
            Ok(mut conn) => record(&mut conn, step, channel, stream, &visitor)
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(anyhow::Error::from(e)),
        };
        if let Err(error) = result {
            tracing::warn!(step = step.as_str(), %channel, %error, "funnel event not recorded");
        }
    });
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
/// A channel's streams, unannounced drafts left out (the team's business, and
/// without figures). `$2`: the draft status.
const CHANNEL_STREAMS: &str = "SELECT id, channel_id, title, status, started_at, ended_at, created_at FROM streams \
     WHERE channel_id = $1 AND NOT (status = $2 AND scheduled_at IS NULL)";

/// The viewers' merged sessions of the streams in `s`: `visits(stream_id,
/// viewer, a, b)`, one row per stretch of uninterrupted presence. `viewer`
/// is the LiveKit identity of a viewer: a user id (the host's `host-{id}`
/// is not a viewer), so deleted accounts (`user_id` NULL) still count, or a
/// guest's `guest-{tag}` (counted as viewers like anyone else, and apart as
/// `guest_viewers`). Reads `presence` through
/// `presence_stream_id_idx`; `OFFSET 0` works `viewer` out once per row (the
/// regex only for rows without a user); MATERIALIZED so that no query
/// rescans the sessions.
const VISITS: &str = "\
raw AS (
  SELECT p.stream_id, p.viewer, p.a, p.b
    FROM s CROSS JOIN LATERAL (
           SELECT q.stream_id, q.joined_at AS a,
                  greatest(q.joined_at, coalesce(q.left_at, s.ended_at, now())) AS b,
                  CASE WHEN q.identity = q.user_id::text THEN q.identity
                       WHEN q.user_id IS NULL AND q.identity ~ '^([0-9]{1,18}|guest-[0-9a-f]{32})$' THEN q.identity
                  END AS viewer
             FROM presence q WHERE q.stream_id = s.id
           OFFSET 0) p
   WHERE p.viewer IS NOT NULL
     AND (p.viewer LIKE 'guest-%' OR (
          NOT EXISTS (SELECT 1 FROM channel_members m
                       WHERE m.channel_id = s.channel_id AND m.user_id::text = p.viewer)
      AND NOT EXISTS (SELECT 1 FROM channels c WHERE c.id = s.channel_id AND c.owner_id::text = p.viewer)))),
marked AS (
  SELECT stream_id, viewer, a, b,
         CASE WHEN a <= max(b) OVER (PARTITION BY stream_id, viewer ORDER BY a, b
                                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
              THEN 0 ELSE 1 END AS fresh
    FROM raw),
islands AS (
  SELECT stream_id, viewer, a, b,
         sum(fresh) OVER (PARTITION BY stream_id, viewer ORDER BY a, b ROWS UNBOUNDED PRECEDING) AS island
    FROM marked),
visits AS MATERIALIZED (
  SELECT stream_id, viewer, min(a) AS a, max(b) AS b FROM islands GROUP BY stream_id, viewer, island)";

/// Per stream of `s`: peak, unique viewers, watch time, chat.
const PER_STREAM: &str = "\
ev AS (SELECT stream_id, a AS t, 1 AS d FROM visits UNION ALL SELECT stream_id, b, -1 FROM visits),
run AS (SELECT stream_id, sum(d) OVER (PARTITION BY stream_id ORDER BY t, d ROWS UNBOUNDED PRECEDING) AS n
          FROM ev),
peak AS (SELECT stream_id, max(n)::int8 AS peak FROM run GROUP BY stream_id),
watch AS (SELECT stream_id, count(DISTINCT viewer) AS viewers,
                 count(DISTINCT viewer) FILTER (WHERE viewer LIKE 'guest-%') AS guests,
                 round(sum(extract(epoch FROM b - a)))::int8 AS seconds
            FROM visits GROUP BY stream_id),
chat AS (SELECT m.stream_id, count(*) FILTER (WHERE m.deleted_at IS NULL) AS messages,
                count(*) FILTER (WHERE m.deleted_at IS NOT NULL) AS deleted
           FROM chat_messages m JOIN s ON s.id = m.stream_id GROUP BY m.stream_id),
per_stream AS (
  SELECT s.id AS stream_id, s.title, s.status, s.started_at, s.ended_at, s.created_at,
         coalesce(peak.peak, 0) AS peak_viewers,
         coalesce(watch.viewers, 0) AS unique_viewers,
         coalesce(watch.guests, 0) AS guest_viewers,
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
    /// Of the unique viewers, guests (no account).
    #[diesel(sql_type = BigInt)]
    pub guest_viewers: i64,
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

/// Every stream of a channel (unannounced drafts left out), the latest
/// first.
pub async fn channel_streams(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
) -> diesel::QueryResult<Vec<StreamFigures>> {
    Ok(channel_overview(conn, channel).await?.1)
}

/// The same figures over all of a channel's streams (unannounced drafts
/// left out): the highest peak of any stream, distinct viewers across them,
/// the sums of the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelTotals {
    pub streams: i64,
    pub peak_viewers: i64,
    pub unique_viewers: i64,
    pub watch_seconds: i64,
    pub average_watch_seconds: Option<i64>,
    pub chat_messages: i64,
    pub deleted_messages: i64,
}

pub async fn channel_totals(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
) -> diesel::QueryResult<ChannelTotals> {
    Ok(channel_overview(conn, channel).await?.0)
}

#[derive(QueryableByName)]
struct OverviewRow {
    #[diesel(embed)]
    figures: StreamFigures,
    /// Distinct viewers over all the channel's streams (the same on every row).
    #[diesel(sql_type = BigInt)]
    channel_viewers: i64,
}

/// The channel's totals and every stream's figures (the latest first) from
/// one query, so the viewers' sessions are worked out once.
pub async fn channel_overview(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
) -> diesel::QueryResult<(ChannelTotals, Vec<StreamFigures>)> {
    let rows: Vec<OverviewRow> = diesel::sql_query(format!(
        "WITH s AS ({CHANNEL_STREAMS}), {VISITS}, {PER_STREAM} \
         SELECT per_stream.*, (SELECT count(DISTINCT viewer) FROM visits) AS channel_viewers \
           FROM per_stream ORDER BY coalesce(started_at, created_at) DESC, stream_id DESC"
    ))
    .bind::<BigInt, _>(channel.0)
    .bind::<Text, _>(StreamStatus::Draft)
    .load(conn)
    .await?;
    let unique = rows.as_slice().first().map_or(0, |r| r.channel_viewers);
    let streams: Vec<StreamFigures> = rows.into_iter().map(|r| r.figures).collect();
    let watch: i64 = streams.iter().map(|f| f.watch_seconds).sum();
    let totals = ChannelTotals {
        streams: streams.len() as i64,
        peak_viewers: streams.iter().map(|f| f.peak_viewers).max().unwrap_or(0),
        unique_viewers: unique,
        watch_seconds: watch,
        // Rounded half up, as `round(numeric)` does for the streams' averages.
        average_watch_seconds: (unique > 0).then(|| (2 * watch + unique) / (2 * unique)),
        chat_messages: streams.iter().map(|f| f.chat_messages).sum(),
        deleted_messages: streams.iter().map(|f| f.deleted_messages).sum(),
    };
    Ok((totals, streams))
}

/// Paid orders in one currency (of one stream when `stream_id` is set).
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName)]
pub struct Sales {
    #[diesel(sql_type = Nullable<BigInt>)]
    pub stream_id: Option<i64>,
    #[diesel(sql_type = Text)]
    pub currency: String,
    /// Paid orders, free passes (orders of 0) included.
    #[diesel(sql_type = BigInt)]
    pub sold: i64,
    /// Of `sold`, the free passes.
    #[diesel(sql_type = BigInt)]
    pub free: i64,
    #[diesel(sql_type = BigInt)]
    pub revenue_cents: i64,
}

/// Sales attributed to `stream`, per currency.
pub async fn stream_sales(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
) -> diesel::QueryResult<Vec<Sales>> {
    sales_by_stream(conn, "s.id", stream.0).await
}

/// Sales of each stream of a channel, per currency (streams without sales absent).
pub async fn channel_sales_by_stream(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
) -> diesel::QueryResult<Vec<Sales>> {
    sales_by_stream(conn, "s.channel_id", channel.0).await
}

/// Paid orders attributed to the streams whose `column` is `id`, per stream
/// and currency: bought from the stream's page, or a pass for that stream.
async fn sales_by_stream(
    conn: &mut AsyncPgConnection,
    column: &'static str,
    id: i64,
) -> diesel::QueryResult<Vec<Sales>> {
    diesel::sql_query(format!(
        "SELECT s.id AS stream_id, o.currency, count(*) AS sold, count(*) FILTER (WHERE o.amount_cents = 0) AS free, sum(o.amount_cents)::int8 AS revenue_cents \
           FROM streams s \
           JOIN access_passes p ON p.channel_id = s.channel_id \
           JOIN orders o ON o.pass_id = p.id AND o.status = $2 \
                        AND (o.stream_id = s.id OR p.stream_id = s.id) \
          WHERE {column} = $1 \
          GROUP BY s.id, o.currency ORDER BY s.id, o.currency"
    ))
    .bind::<BigInt, _>(id)
    .bind::<Text, _>(OrderStatus::Paid)
    .load(conn)
    .await
}

/// All sales of a channel's passes (from a stream or not), per currency.
pub async fn channel_sales(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
) -> diesel::QueryResult<Vec<Sales>> {
    diesel::sql_query(
        "SELECT NULL::int8 AS stream_id, o.currency, count(*) AS sold, count(*) FILTER (WHERE o.amount_cents = 0) AS free, sum(o.amount_cents)::int8 AS revenue_cents \
           FROM orders o JOIN access_passes p ON p.id = o.pass_id \
          WHERE p.channel_id = $1 AND o.status = $2 \
          GROUP BY o.currency ORDER BY o.currency",
    )
    .bind::<BigInt, _>(channel.0)
    .bind::<Text, _>(OrderStatus::Paid)
    .load(conn)
    .await
}

/// One step of the funnel: how many visitors reached it (and every step
/// before it), and what share of the previous step's visitors that is (None
/// for the first step, or when the previous step had nobody).
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

    /// In words, for the creator.
    pub fn label(&self) -> &'static str {
        match self.step() {
            Some(Step::Previewed) => "Of those who arrived: watched the free preview",
            Some(step) => step.label(),
            None if self.step == "preview_paid" => "Of those: then paid",
            None => "?",
        }
    }
}

/// The funnel of one stream (`stream` set: events of that stream only) or
/// of the whole channel (its streams and its channel pass page together).
/// Always the four steps, in order, each counting the visitors who reached
/// it and the step before (so never more than the step before):
/// 1. arrived — a denied visit or a pass page (people come straight to a
///    pass page from a link, without a denied visit);
/// 2. a pass page;
/// 3. a checkout started, by someone who opened a pass page;
/// 4. paid, by someone counted in 3.
///
/// Then the free preview's two rows: of those who arrived, who watched the
/// preview (`previewed`), and of those, who paid (`preview_paid`): the
/// preview's conversion to a purchase.
///
/// The channel's team (looking at their own pages) is not counted.
pub async fn funnel(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    stream: Option<StreamId>,
) -> diesel::QueryResult<Vec<FunnelStep>> {
    diesel::sql_query(
        "WITH reached AS ( \
           SELECT f.visitor, \
                  bool_or(f.step IN ('denied_visit', 'pass_page')) AS arrived, \
                  bool_or(f.step = 'pass_page') AS pass_page, \
                  bool_or(f.step = 'previewed') AS previewed, \
                  bool_or(f.step = 'checkout_started') AS checkout, \
                  bool_or(f.step = 'paid') AS paid \
             FROM funnel_events f \
            WHERE f.channel_id = $1 AND ($2::int8 IS NULL OR f.stream_id = $2) \
              AND NOT EXISTS (SELECT 1 FROM channel_members m WHERE m.channel_id = f.channel_id \
                                AND f.visitor = 'u:' || m.user_id) \
              AND NOT EXISTS (SELECT 1 FROM channels c WHERE c.id = f.channel_id \
                                AND f.visitor = 'u:' || c.owner_id) \
            GROUP BY f.visitor), \
         n AS (SELECT count(*) FILTER (WHERE arrived) AS n1, \
                      count(*) FILTER (WHERE pass_page) AS n2, \
                      count(*) FILTER (WHERE pass_page AND checkout) AS n3, \
                      count(*) FILTER (WHERE pass_page AND checkout AND paid) AS n4, \
                      count(*) FILTER (WHERE arrived AND previewed) AS p1, \
                      count(*) FILTER (WHERE arrived AND previewed AND paid) AS p2 \
                 FROM reached) \
         SELECT steps.step, steps.visitors, \
                (100.0 * steps.visitors / nullif(steps.previous, 0))::float8 AS of_previous \
           FROM n CROSS JOIN LATERAL (VALUES (1, 'denied_visit', n1, NULL::int8), \
                                             (2, 'pass_page', n2, n1), \
                                             (3, 'checkout_started', n3, n2), \
                                             (4, 'paid', n4, n3), \
                                             (5, 'previewed', p1, n1), \
                                             (6, 'preview_paid', p2, p1)) AS steps(pos, step, visitors, previous) \
          ORDER BY steps.pos",
    )
    .bind::<BigInt, _>(channel.0)
    .bind::<Nullable<BigInt>, _>(stream.map(|s| s.0))
    .load(conn)
    .await
}

/// Streams longer than this many points are drawn in wider buckets.
pub const MAX_POINTS: i32 = 720;

/// One bucket of a stream's timeline: viewers present at any time during
/// it (so a bucket can show more people than were ever there at once: the
/// peak is the figure for that), and chat messages (not deleted) posted in it.
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
///
/// One pass over the visits, not one per bucket: each visit covers the
/// buckets `ka..=kb`; a viewer's later visit starts after the last bucket
/// their earlier ones covered (so nobody counts twice in a bucket); +1 at
/// the first bucket, -1 after the last, and a running sum over the buckets.
/// Chat is one grouped count.
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
         grid AS (SELECT first, w, floor(extract(epoch FROM last - first) / (60 * w))::int AS top FROM width), \
         spans AS (SELECT v.viewer, v.a, \
                          greatest(0, floor(extract(epoch FROM v.a - g.first) / (60 * g.w)))::int AS ka, \
                          least(g.top, ceil(extract(epoch FROM v.b - g.first) / (60 * g.w)) - 1)::int AS kb \
                     FROM visits v CROSS JOIN grid g), \
         own AS (SELECT kb, greatest(ka, coalesce(max(kb) OVER (PARTITION BY viewer ORDER BY a \
                                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) + 1, ka)) AS k0 \
                   FROM spans), \
         steps AS (SELECT k, sum(d)::int8 AS d \
                     FROM (SELECT k0 AS k, 1 AS d FROM own WHERE k0 <= kb \
                           UNION ALL SELECT kb + 1, -1 FROM own WHERE k0 <= kb) e GROUP BY k), \
         chat AS (SELECT floor(extract(epoch FROM c.created_at - g.first) / (60 * g.w))::int AS k, count(*) AS n \
                    FROM chat_messages c CROSS JOIN grid g \
                   WHERE c.stream_id = $1 AND c.deleted_at IS NULL AND c.created_at >= g.first \
                     AND c.created_at < g.first + make_interval(mins => g.w * (g.top + 1)) \
                   GROUP BY 1) \
         SELECT g.first + make_interval(mins => g.w * i) AS at, g.w AS minutes, \
                (sum(coalesce(steps.d, 0)) OVER (ORDER BY i))::int8 AS viewers, \
                coalesce(chat.n, 0) AS messages \
           FROM grid g CROSS JOIN generate_series(0, g.top) AS i \
           LEFT JOIN steps ON steps.k = i LEFT JOIN chat ON chat.k = i \
          ORDER BY i"
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
                        WHERE p.channel_id = $1 AND o.status = $2 AND o.paid_at IS NOT NULL \
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
    .bind::<Text, _>(OrderStatus::Paid)
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
