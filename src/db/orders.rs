//! Orders: one checkout of one pass by one user, and every step it goes
//! through (`pending` → `paid` → `refunded`, or `failed` / `canceled`).
//!
//! The only way to a purchased grant is `complete_order`: it locks the order,
//! and only when the order is still open marks it paid and creates the grant,
//! in one transaction. Whoever calls it twice, or ten times at once (a
//! replayed webhook, a double click), gets one grant. Nothing here talks to a
//! payment provider or knows about HTTP.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::channels::Channel;
use super::grants::{self, Grant, NewGrant, Source};
use super::passes::{self, Pass};
use super::schema::{access_passes, channels, orders};
use super::{GrantId, OrderId, PassId, StreamId, UserId};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = orders, check_for_backend(diesel::pg::Pg))]
pub struct Order {
    pub id: OrderId,
    pub user_id: UserId,
    pub pass_id: PassId,
    pub amount_cents: i64,
    pub currency: String,
    pub provider: ProviderKind,
    /// The provider's checkout reference (Stripe Checkout Session id).
    pub provider_ref: Option<String>,
    /// The provider's payment reference (Stripe PaymentIntent id).
    pub provider_payment_ref: Option<String>,
    pub status: Status,
    pub grant_id: Option<GrantId>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The stream the buyer came from (or the pass's own), for analytics.
    pub stream_id: Option<StreamId>,
    /// When it was paid (set with the status; a refund keeps it).
    pub paid_at: Option<DateTime<Utc>>,
}

super::text_enum! {
    /// Where an order is: awaiting payment, or settled one way or another.
    pub enum Status {
        Pending = "pending",
        Paid = "paid",
        Failed = "failed",
        Refunded = "refunded",
        Canceled = "canceled",
    }
}

super::text_enum! {
    /// The payment provider an order went through.
    pub enum ProviderKind {
        Dev = "dev",
        Stripe = "stripe",
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = orders)]
pub struct NewOrder<'a> {
    pub user_id: UserId,
    pub pass_id: PassId,
    pub amount_cents: i64,
    pub currency: &'a str,
    pub provider: ProviderKind,
    /// The stream the buyer came from, checked to be of the pass's channel.
    pub stream_id: Option<StreamId>,
}

pub async fn insert(conn: &mut AsyncPgConnection, new: &NewOrder<'_>) -> QueryResult<Order> {
    diesel::insert_into(orders::table)
        .values(new)
        .returning(Order::as_returning())
        .get_result(conn)
        .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: OrderId) -> QueryResult<Option<Order>> {
    orders::table
        .find(id)
        .select(Order::as_select())
        .first(conn)
        .await
        .optional()
}

/// Records the provider's checkout reference of an order that has none yet.
pub async fn set_provider_ref(
    conn: &mut AsyncPgConnection,
    id: OrderId,
    provider_ref: &str,
) -> QueryResult<()> {
    diesel::update(
        orders::table
            .find(id)
            .filter(orders::provider_ref.is_null()),
    )
    .set(orders::provider_ref.eq(provider_ref))
    .execute(conn)
    .await?;
    Ok(())
}

/// Moves an order that is still pending to `to` (failed or canceled);
/// answers it, or None when it had already moved on.
pub async fn close_pending(
    conn: &mut AsyncPgConnection,
    id: OrderId,
    to: Status,
) -> QueryResult<Option<Order>> {
    debug_assert!(matches!(to, Status::Failed | Status::Canceled));
    diesel::update(
        orders::table
            .find(id)
            .filter(orders::status.eq(Status::Pending)),
    )
    .set(orders::status.eq(to))
    .returning(Order::as_returning())
    .get_result(conn)
    .await
    .optional()
}

/// An order with what was bought, for the buyer's purchase history.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Purchase {
    #[diesel(embed)]
    pub order: Order,
    #[diesel(embed)]
    pub pass: Pass,
    #[diesel(embed)]
    pub channel: Channel,
}

/// Every order of `user`, newest first, whatever its status.
pub async fn for_user(conn: &mut AsyncPgConnection, user: UserId) -> QueryResult<Vec<Purchase>> {
    orders::table
        .inner_join(access_passes::table.inner_join(channels::table))
        .filter(orders::user_id.eq(user))
        .order((orders::created_at.desc(), orders::id.desc()))
        .select(Purchase::as_select())
        .load(conn)
        .await
}

/// Marks the order paid and creates its grant, in one transaction, if the
/// order is still open; answers the new grant. `None`: nothing changed (the
/// order was already paid, refunded or canceled — a replay or a duplicate),
/// or, rarely, the order was paid but its pass's fixed window had ended by
/// then, so there was nothing left to grant (logged: refund the buyer).
///
/// `failed` counts as open: money that arrives for an order we gave up on
/// (say, after a timeout talking to the provider) still buys the pass.
/// Inside a caller's transaction this runs as a savepoint and keeps the lock.
pub async fn complete_order(
    conn: &mut AsyncPgConnection,
    id: OrderId,
    payment_ref: Option<&str>,
) -> QueryResult<Option<Grant>> {
    conn.transaction(async |conn| {
        let order: Order = orders::table
            .find(id)
            .for_update()
            .select(Order::as_select())
            .first(conn)
            .await?;
        if !matches!(order.status, Status::Pending | Status::Failed) {
            return Ok(None);
        }
        let pass = passes::find(conn, order.pass_id)
            .await?
            .ok_or(diesel::result::Error::NotFound)?;
        let stream = if pass.scope == crate::db::passes::Scope::Stream { pass.stream_id } else { None };

        // Two purchases of the same user and channel completing at once must
        // still stack one after the other: serialize them (next_start also
        // locks, but a fixed-window pass doesn't call it).
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind::<Text, _>(format!("stagepass:grant-stacking:{}:{}", order.user_id, pass.channel_id))
            .execute(conn)
            .await?;
        // A duration stacks onto the grant the buyer already holds for the
        // same scope; a fixed window is what it is, whatever else they hold.
        let from = if pass.duration_seconds.is_some() {
            grants::next_start(conn, order.user_id, pass.channel_id, stream).await?
        } else {
            db_now(conn).await?
        };

        let grant = match pass.grant_window(from) {
            Some((starts_at, expires_at)) => Some(
                grants::insert(
                    conn,
                    &NewGrant {
                        user_id: order.user_id,
                        channel_id: pass.channel_id,
                        stream_id: stream,
                        pass_id: Some(pass.id),
                        source: Source::Purchase,
                        includes_replays: pass.includes_replays,
                        starts_at,
                        expires_at,
                    },
                )
                .await?,
            ),
            None => {
                tracing::error!(
                    order_id = %order.id,
                    pass_id = %pass.id,
                    "order paid after its pass's fixed window ended: no grant made; refund the buyer"
                );
                None
            }
        };

        diesel::update(orders::table.find(order.id))
            .set((
                orders::status.eq(Status::Paid),
                orders::paid_at.eq(diesel::dsl::sql::<diesel::sql_types::Nullable<Timestamptz>>("now()")),
                orders::grant_id.eq(grant.as_ref().map(|g| g.id)),
                orders::provider_payment_ref
                    .eq(payment_ref.map(str::to_owned).or(order.provider_payment_ref.clone())),
            ))
            .execute(conn)
            .await?;
        super::audit::record(
            conn,
            Some(order.user_id),
            Some(pass.channel_id),
            "order.paid",
            Some(&order.id.to_string()),
            serde_json::json!({
                "pass_id": pass.id,
                "grant_id": grant.as_ref().map(|g| g.id),
                "amount_cents": order.amount_cents,
                "currency": order.currency,
                "provider": order.provider.as_str(),
            }),
        )
        .await?;
        crate::analytics::record_paid(conn, pass.channel_id, order.stream_id.or(stream), order.user_id).await?;
        Ok(grant)
    })
    .await
}

/// Locks the Stripe order of Checkout Session `session`: found by its
/// session id, or else by our own order id (`client_reference_id`) when the
/// session id was never recorded. Call inside a transaction.
pub async fn lock_by_checkout_ref(
    conn: &mut AsyncPgConnection,
    session: &str,
    client_reference: Option<OrderId>,
) -> QueryResult<Option<Order>> {
    let by_ref = orders::table
        .filter(orders::provider_ref.eq(session))
        .for_update()
        .select(Order::as_select())
        .first(conn)
        .await
        .optional()?;
    if by_ref.is_some() {
        return Ok(by_ref);
    }
    let Some(id) = client_reference else {
        return Ok(None);
    };
    let order = orders::table
        .find(id)
        .filter(orders::provider.eq(ProviderKind::Stripe))
        .for_update()
        .select(Order::as_select())
        .first(conn)
        .await
        .optional()?;
    match order {
        // Another session's order: not ours to complete with this one.
        Some(o) if o.provider_ref.as_deref().is_some_and(|r| r != session) => Ok(None),
        Some(o) => {
            set_provider_ref(conn, o.id, session).await?;
            Ok(Some(o))
        }
        None => Ok(None),
    }
}

/// The provider refunded a payment: the paid order it belongs to becomes
/// refunded and its grant is revoked (reason "refunded"), in one transaction.
/// Answers the order, or None when no paid order has this payment reference
/// (unknown, or already refunded: replays change nothing).
pub async fn refund(conn: &mut AsyncPgConnection, payment_ref: &str) -> QueryResult<Option<Order>> {
    conn.transaction(async |conn| {
        let Some(order) = orders::table
            .filter(orders::provider_payment_ref.eq(payment_ref))
            .for_update()
            .select(Order::as_select())
            .first(conn)
            .await
            .optional()?
        else {
            return Ok(None);
        };
        if order.status != Status::Paid {
            return Ok(None);
        }
        let order: Order = diesel::update(orders::table.find(order.id))
            .set(orders::status.eq(Status::Refunded))
            .returning(Order::as_returning())
            .get_result(conn)
            .await?;
        let revoked = match order.grant_id {
            Some(grant) => grants::revoke(conn, grant, "refunded").await?,
            None => None,
        };
        let channel = passes::find(conn, order.pass_id)
            .await?
            .map(|p| p.channel_id);
        super::audit::record(
            conn,
            None,
            channel,
            "order.refunded",
            Some(&order.id.to_string()),
            serde_json::json!({
                "user_id": order.user_id,
                "pass_id": order.pass_id,
                "grant_id": order.grant_id,
                "grant_revoked": revoked.is_some(),
                "provider": order.provider.as_str(),
            }),
        )
        .await?;
        Ok(Some(order))
    })
    .await
}

async fn db_now(conn: &mut AsyncPgConnection) -> QueryResult<DateTime<Utc>> {
    diesel::select(diesel::dsl::sql::<Timestamptz>("now()"))
        .get_result(conn)
        .await
}
