//! Access passes: what a viewer buys (or redeems, or is given). A pass is
//! scoped to one stream or the whole channel, lasts a duration from purchase or
//! a fixed window, and may include replays. Archived passes are no longer sold
//! but the grants made from them stay valid.
//!
//! Also the read models of the pages that show passes: the owner's list, what
//! is on sale, and a viewer's own grants ("My passes"; their orders are
//! `db::orders::for_user`). Whether a
//! pass is on sale, a window over, or a grant active is decided in SQL with
//! `now()`, never by comparing times of rows already loaded.

use chrono::{DateTime, Duration, Utc};
use diesel::dsl::{now, sql};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Double, Nullable, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::grants::Source;
use super::orders::Status as OrderStatus;
use super::schema::{access_passes, streams};
use super::streams::Status as StreamStatus;
use super::{ChannelId, GrantId, PassId, StreamId, UserId};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = access_passes, check_for_backend(diesel::pg::Pg))]
pub struct Pass {
    pub id: PassId,
    pub channel_id: ChannelId,
    pub stream_id: Option<StreamId>,
    pub name: String,
    pub price_cents: i64,
    pub currency: String,
    pub scope: Scope,
    pub duration_seconds: Option<i32>,
    pub window_starts_at: Option<DateTime<Utc>>,
    pub window_ends_at: Option<DateTime<Utc>>,
    pub includes_replays: bool,
    pub archived_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

super::text_enum! {
    /// What a pass covers.
    pub enum Scope {
        /// One stream (`stream_id`).
        Stream = "stream",
        /// Every stream of the channel.
        Channel = "channel",
    }
}

impl Pass {
    pub fn is_archived(&self) -> bool {
        self.archived_at.is_some()
    }

    /// The (starts_at, expires_at) of a grant made from this pass, starting no
    /// earlier than `from` (now, or the end of the holder's current grant).
    /// None: a fixed window that is already over.
    pub fn grant_window(&self, from: DateTime<Utc>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
        match (
            self.duration_seconds,
            self.window_starts_at,
            self.window_ends_at,
        ) {
            (Some(secs), _, _) => Some((from, from + Duration::seconds(secs as i64))),
            (None, Some(start), Some(end)) if end > from => Some((start, end)),
            _ => None,
        }
    }

    /// "$9.00" style price for people.
    pub fn price_label(&self) -> String {
        money_label(self.price_cents, &self.currency)
    }
}

/// An amount for people: "$9.00", "€12.50", "CA$5.00", "Free"; currencies
/// without a symbol here as "9.00 CHF".
pub fn money_label(cents: i64, currency: &str) -> String {
    if cents == 0 {
        return "Free".to_owned();
    }
    let symbol = match currency {
        "USD" => "$",
        "EUR" => "€",
        "GBP" => "£",
        "CAD" => "CA$",
        "AUD" => "A$",
        _ => "",
    };
    let amount = format!("{}.{:02}", cents / 100, cents % 100);
    if symbol.is_empty() {
        format!("{amount} {currency}")
    } else {
        format!("{symbol}{amount}")
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = access_passes)]
pub struct NewPass<'a> {
    pub channel_id: ChannelId,
    pub stream_id: Option<StreamId>,
    pub name: &'a str,
    pub price_cents: i64,
    pub currency: &'a str,
    pub scope: Scope,
    pub duration_seconds: Option<i32>,
    pub window_starts_at: Option<DateTime<Utc>>,
    pub window_ends_at: Option<DateTime<Utc>>,
    pub includes_replays: bool,
}

/// An edit. The *terms* (scope, stream, duration, window) are `None` once the
/// pass has been sold; see [`update_terms`].
#[derive(Debug, AsChangeset, Default)]
#[diesel(table_name = access_passes)]
pub struct PassChanges<'a> {
    pub name: Option<&'a str>,
    pub price_cents: Option<i64>,
    pub currency: Option<&'a str>,
    pub includes_replays: Option<bool>,
    pub scope: Option<Scope>,
    pub stream_id: Option<Option<StreamId>>,
    pub duration_seconds: Option<Option<i32>>,
    pub window_starts_at: Option<Option<DateTime<Utc>>>,
    pub window_ends_at: Option<Option<DateTime<Utc>>>,
}

impl PassChanges<'_> {
    pub fn changes_terms(&self) -> bool {
        self.scope.is_some()
            || self.stream_id.is_some()
            || self.duration_seconds.is_some()
            || self.window_starts_at.is_some()
            || self.window_ends_at.is_some()
    }
}

/// SQL: the pass `access_passes` of the current row has been taken up —
/// someone holds a grant made from it (bought, redeemed or given), or paid
/// (or refunded) an order, or is paying for it right now (a pending order of
/// the last day: Stripe's Checkout Sessions expire after 24 hours). Its terms
/// are then what people bought and no longer change.
/// (The order statuses are written in: the fragment sits in several queries.)
fn sold() -> String {
    format!(
        "(EXISTS (SELECT 1 FROM access_grants g WHERE g.pass_id = access_passes.id) \
        OR EXISTS (SELECT 1 FROM orders o WHERE o.pass_id = access_passes.id \
          AND (o.status IN ('{paid}', '{refunded}') \
               OR (o.status = '{pending}' AND o.created_at > now() - interval '1 day'))))",
        paid = OrderStatus::Paid,
        refunded = OrderStatus::Refunded,
        pending = OrderStatus::Pending,
    )
}

/// SQL: a fixed window that has ended (such a pass can no longer be sold).
const WINDOW_OVER: &str =
    "(access_passes.window_ends_at IS NOT NULL AND access_passes.window_ends_at <= now())";

pub async fn find(conn: &mut AsyncPgConnection, id: PassId) -> QueryResult<Option<Pass>> {
    access_passes::table
        .find(id)
        .select(Pass::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn create(conn: &mut AsyncPgConnection, new: &NewPass<'_>) -> QueryResult<Pass> {
    diesel::insert_into(access_passes::table)
        .values(new)
        .returning(Pass::as_returning())
        .get_result(conn)
        .await
}

/// Whether the pass has been sold (see `sold`).
pub async fn is_sold(conn: &mut AsyncPgConnection, id: PassId) -> QueryResult<bool> {
    access_passes::table
        .find(id)
        .select(sql::<Bool>(&sold()))
        .first(conn)
        .await
}

/// Applies `changes` that leave the terms alone.
pub async fn update(
    conn: &mut AsyncPgConnection,
    id: PassId,
    changes: &PassChanges<'_>,
) -> QueryResult<Pass> {
    debug_assert!(
        !changes.changes_terms(),
        "terms change through update_terms"
    );
    diesel::update(access_passes::table.find(id))
        .set(changes)
        .returning(Pass::as_returning())
        .get_result(conn)
        .await
}

/// Applies `changes` including the terms, only while nobody has bought the
/// pass: decided in the same statement, so a sale that lands between loading
/// the edit form and saving it wins. None: it has been sold meanwhile.
pub async fn update_terms(
    conn: &mut AsyncPgConnection,
    id: PassId,
    changes: &PassChanges<'_>,
) -> QueryResult<Option<Pass>> {
    diesel::update(
        access_passes::table
            .find(id)
            .filter(sql::<Bool>(&format!("NOT {}", sold()))),
    )
    .set(changes)
    .returning(Pass::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// Takes a pass off sale (`archived = true`) or puts it back. Grants made from
/// it are untouched. None: it already was in that state.
pub async fn set_archived(
    conn: &mut AsyncPgConnection,
    id: PassId,
    archived: bool,
) -> QueryResult<Option<Pass>> {
    let target = access_passes::table.find(id);
    let query = if archived {
        diesel::update(target.filter(access_passes::archived_at.is_null()))
            .set(access_passes::archived_at.eq(now))
            .returning(Pass::as_returning())
            .get_result(conn)
    } else {
        diesel::update(target.filter(access_passes::archived_at.is_not_null()))
            .set(access_passes::archived_at.eq(None::<DateTime<Utc>>))
            .returning(Pass::as_returning())
            .get_result(conn)
    };
    query.await.optional()
}

/// Passes on sale that cover `stream` (channel-wide ones and the stream's
/// own): not archived, and not a fixed window that is over.
pub async fn on_sale_for_stream(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    stream: StreamId,
) -> QueryResult<Vec<Pass>> {
    access_passes::table
        .filter(access_passes::channel_id.eq(channel))
        .filter(access_passes::archived_at.is_null())
        .filter(sql::<Bool>(&format!("NOT {WINDOW_OVER}")))
        .filter(
            access_passes::stream_id
                .is_null()
                .or(access_passes::stream_id.eq(stream)),
        )
        .order((access_passes::price_cents.asc(), access_passes::id.asc()))
        .select(Pass::as_select())
        .load(conn)
        .await
}

/// A pass on sale on the channel's passes page, with the stream it covers.
#[derive(Debug, Clone, Queryable)]
pub struct OnSale {
    pub pass: Pass,
    pub stream_title: Option<String>,
}

/// The channel's passes on sale: channel-wide ones first, then those of its
/// streams that are live or announced (scheduled). Passes of ended streams and
/// of unannounced drafts are not offered here.
pub async fn on_sale_for_channel(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
) -> QueryResult<Vec<OnSale>> {
    access_passes::table
        .left_join(streams::table)
        .filter(access_passes::channel_id.eq(channel))
        .filter(access_passes::archived_at.is_null())
        .filter(sql::<Bool>(&format!("NOT {WINDOW_OVER}")))
        .filter(
            access_passes::stream_id.is_null().or(streams::status
                .eq(StreamStatus::Live)
                .or(streams::status
                    .eq(StreamStatus::Draft)
                    .and(streams::scheduled_at.is_not_null()))
                .assume_not_null()),
        )
        .order((
            access_passes::stream_id.is_not_null().asc(),
            streams::scheduled_at.asc().nulls_first(),
            access_passes::price_cents.asc(),
            access_passes::id.asc(),
        ))
        .select((Pass::as_select(), streams::title.nullable()))
        .load(conn)
        .await
}

/// A pass in the owner's list, with what the owner wants to know about it.
#[derive(Debug, Clone, Queryable)]
pub struct StudioPass {
    pub pass: Pass,
    pub stream_title: Option<String>,
    pub stream_status: Option<StreamStatus>,
    /// Paid orders.
    pub sales: i64,
    /// People whose grant from this pass is active right now.
    pub holders: i64,
    /// Bought (or held) by someone: the terms are fixed.
    pub sold: bool,
    /// A fixed window that has ended.
    pub window_over: bool,
}

/// All passes of a channel for its owner: on sale first, newest first; archived last.
pub async fn for_studio(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
) -> QueryResult<Vec<StudioPass>> {
    access_passes::table
        .left_join(streams::table)
        .filter(access_passes::channel_id.eq(channel))
        .order((
            access_passes::archived_at.is_not_null().asc(),
            access_passes::created_at.desc(),
            access_passes::id.desc(),
        ))
        .select((
            Pass::as_select(),
            streams::title.nullable(),
            streams::status.nullable(),
            sql::<BigInt>(
                "(SELECT count(*) FROM orders o WHERE o.pass_id = access_passes.id AND o.status = ",
            )
            .bind::<Text, _>(OrderStatus::Paid)
            .sql(")"),
            sql::<BigInt>(
                "(SELECT count(DISTINCT g.user_id) FROM access_grants g WHERE g.pass_id = access_passes.id \
                 AND g.revoked_at IS NULL AND g.starts_at <= now() AND now() < g.expires_at)",
            ),
            sql::<Bool>(&sold()),
            sql::<Bool>(WINDOW_OVER),
        ))
        .load(conn)
        .await
}

// ---------------------------------------------------------------------------
// "My passes": a viewer's grants and orders.

/// Where a grant stands right now, as decided by the database's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Active,
    Upcoming,
    Expired,
    Revoked,
}

/// One of the viewer's grants, with its channel, stream and pass.
#[derive(Debug, Clone, QueryableByName)]
pub struct HeldGrant {
    #[diesel(sql_type = BigInt)]
    pub id: GrantId,
    /// `active | upcoming | expired | revoked` (see [`HeldGrant::standing`]).
    #[diesel(sql_type = Text)]
    pub standing: String,
    #[diesel(sql_type = Text)]
    pub source: Source,
    #[diesel(sql_type = Text)]
    pub channel_handle: String,
    #[diesel(sql_type = Text)]
    pub channel_title: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    pub stream_id: Option<StreamId>,
    #[diesel(sql_type = Nullable<Text>)]
    pub stream_title: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    pub pass_name: Option<String>,
    #[diesel(sql_type = Bool)]
    pub includes_replays: bool,
    #[diesel(sql_type = Timestamptz)]
    pub starts_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    pub expires_at: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub revoked_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Text>)]
    pub revoked_reason: Option<String>,
    /// Active: seconds until it ends; upcoming: until it starts (database clock).
    #[diesel(sql_type = Nullable<Double>)]
    pub seconds_to_go: Option<f64>,
}

impl HeldGrant {
    pub fn standing(&self) -> Standing {
        match self.standing.as_str() {
            "active" => Standing::Active,
            "upcoming" => Standing::Upcoming,
            "revoked" => Standing::Revoked,
            _ => Standing::Expired,
        }
    }
}

/// How many ended grants "My passes" lists.
pub const ENDED_LIMIT: i64 = 50;

/// The user's grants: every active and upcoming one, and the latest ended or
/// revoked ones. Sorted for the page: active by end (soonest first), upcoming
/// by start, the rest newest first.
pub async fn held_by(conn: &mut AsyncPgConnection, user: UserId) -> QueryResult<Vec<HeldGrant>> {
    diesel::sql_query(
        "WITH held AS ( \
           SELECT g.*, CASE \
               WHEN g.revoked_at IS NOT NULL THEN 'revoked' \
               WHEN g.expires_at <= now() THEN 'expired' \
               WHEN g.starts_at > now() THEN 'upcoming' \
               ELSE 'active' END AS standing \
           FROM access_grants g WHERE g.user_id = $1 \
         ), ranked AS ( \
           SELECT held.*, row_number() OVER ( \
               PARTITION BY standing IN ('active', 'upcoming') \
               ORDER BY coalesce(revoked_at, expires_at) DESC, id DESC) AS n \
           FROM held \
         ) \
         SELECT r.id, r.standing, r.source, c.handle AS channel_handle, c.title AS channel_title, \
                r.stream_id, s.title AS stream_title, p.name AS pass_name, r.includes_replays, \
                r.starts_at, r.expires_at, r.revoked_at, r.revoked_reason, \
                CASE r.standing \
                  WHEN 'active' THEN extract(epoch FROM r.expires_at - now())::float8 \
                  WHEN 'upcoming' THEN extract(epoch FROM r.starts_at - now())::float8 \
                END AS seconds_to_go \
         FROM ranked r \
         JOIN channels c ON c.id = r.channel_id \
         LEFT JOIN streams s ON s.id = r.stream_id \
         LEFT JOIN access_passes p ON p.id = r.pass_id \
         WHERE r.standing IN ('active', 'upcoming') OR r.n <= $2 \
         ORDER BY CASE r.standing WHEN 'active' THEN 0 WHEN 'upcoming' THEN 1 ELSE 2 END, \
                  CASE r.standing WHEN 'active' THEN r.expires_at WHEN 'upcoming' THEN r.starts_at END ASC, \
                  coalesce(r.revoked_at, r.expires_at) DESC, r.id DESC",
    )
    .bind::<BigInt, _>(user.0)
    .bind::<BigInt, _>(ENDED_LIMIT)
    .load(conn)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_like_prices() {
        assert_eq!(money_label(900, "USD"), "$9.00");
        assert_eq!(money_label(1250, "EUR"), "€12.50");
        assert_eq!(money_label(5, "GBP"), "£0.05");
        assert_eq!(money_label(500, "CAD"), "CA$5.00");
        assert_eq!(money_label(10_000_000, "AUD"), "A$100000.00");
        assert_eq!(money_label(999, "CHF"), "9.99 CHF");
        assert_eq!(money_label(0, "USD"), "Free");
    }
}
