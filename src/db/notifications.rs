//! Followers' notifications: reading them (the bell's unread count, the
//! /notifications list) and marking them read. Who gets one, and when, is
//! `notify.rs`'s business; every query here is scoped to one user, so a user
//! can never read or mark someone else's.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::{channels, notifications, streams};
use super::{StreamId, UserId};

super::text_enum! {
    /// What a notification says happened.
    pub enum Kind {
        /// The channel went live with this stream.
        Live = "live",
        /// The channel scheduled (or rescheduled) this stream.
        Scheduled = "scheduled",
    }
}

/// One notification as the list shows it, with its channel and stream
/// (selected from `notifications` joined to both).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = notifications, check_for_backend(diesel::pg::Pg))]
pub struct Item {
    pub id: i64,
    pub kind: Kind,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
    #[diesel(select_expression = channels::handle)]
    pub channel_handle: String,
    #[diesel(select_expression = channels::title)]
    pub channel_title: String,
    #[diesel(select_expression = streams::id)]
    pub stream_id: StreamId,
    #[diesel(select_expression = streams::title)]
    pub stream_title: String,
    #[diesel(select_expression = streams::status)]
    pub stream_status: super::streams::Status,
    #[diesel(select_expression = streams::scheduled_at)]
    pub scheduled_at: Option<DateTime<Utc>>,
}

/// The bell shows "99+" beyond this: counting stops there, so the count costs
/// the same however many unread notifications someone piled up.
pub const COUNT_CAP: i64 = 100;

/// How many unread notifications `user` has, at most `COUNT_CAP`. One scan of
/// the partial index `notifications_unread_idx` (user_id WHERE read_at IS NULL).
pub async fn unread_count(conn: &mut AsyncPgConnection, user: UserId) -> QueryResult<i64> {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let row: Count = super::Prepared(
        diesel::sql_query(
            "SELECT count(*) AS n FROM (SELECT 1 FROM notifications \
             WHERE user_id = $1 AND read_at IS NULL LIMIT $2) unread",
        )
        .bind::<diesel::sql_types::BigInt, _>(user.0)
        .bind::<diesel::sql_types::BigInt, _>(COUNT_CAP),
    )
    .get_result(conn)
    .await?;
    Ok(row.n)
}

/// A page of `user`'s notifications, newest first, older than `before` (an
/// id; keyset pagination on `notifications_user_id_id_idx`). Loads `limit`.
pub async fn page(
    conn: &mut AsyncPgConnection,
    user: UserId,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<Item>> {
    let mut query = notifications::table
        .inner_join(channels::table)
        .inner_join(streams::table)
        .filter(notifications::user_id.eq(user))
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(notifications::id.lt(before));
    }
    query
        .order(notifications::id.desc())
        .limit(limit)
        .select(Item::as_select())
        .load(conn)
        .await
}

/// One of `user`'s notifications (None: no such notification of theirs).
pub async fn find(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: i64,
) -> QueryResult<Option<Item>> {
    notifications::table
        .inner_join(channels::table)
        .inner_join(streams::table)
        .filter(notifications::user_id.eq(user))
        .filter(notifications::id.eq(id))
        .select(Item::as_select())
        .first(conn)
        .await
        .optional()
}

/// Marks one of `user`'s notifications read (reading twice keeps the first
/// time). Answers its stream, or None when it is not theirs.
pub async fn mark_read(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: i64,
) -> QueryResult<Option<StreamId>> {
    diesel::update(
        notifications::table
            .filter(notifications::id.eq(id))
            .filter(notifications::user_id.eq(user)),
    )
    .set(notifications::read_at.eq(diesel::dsl::sql::<
        diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
    >("coalesce(read_at, now())")))
    .returning(notifications::stream_id)
    .get_result(conn)
    .await
    .optional()
}

/// The id of `user`'s newest notification, if any ("Mark all read" marks
/// up to it: what arrives after the page was shown stays unread).
pub async fn newest_id(conn: &mut AsyncPgConnection, user: UserId) -> QueryResult<Option<i64>> {
    notifications::table
        .filter(notifications::user_id.eq(user))
        .select(diesel::dsl::max(notifications::id))
        .first(conn)
        .await
}

/// Marks every unread notification of `user` read, up to id `up_to` (None:
/// all); answers how many.
pub async fn mark_all_read(
    conn: &mut AsyncPgConnection,
    user: UserId,
    up_to: Option<i64>,
) -> QueryResult<usize> {
    diesel::update(
        notifications::table
            .filter(notifications::user_id.eq(user))
            .filter(notifications::read_at.is_null())
            .filter(notifications::id.le(up_to.unwrap_or(i64::MAX))),
    )
    .set(notifications::read_at.eq(diesel::dsl::now))
    .execute(conn)
    .await
}
