//! Notifications: followers' (a stream went live or was scheduled) and an
//! applicant's (their creator application was decided). Reading them (the bell's unread count, the
//! /notifications list) and marking them read. Who gets one, and when, is
//! `notify.rs`'s business; every query here is scoped to one user, so a user
//! can never read or mark someone else's.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::{channels, creator_applications, notifications, streams};
use super::{StreamId, UserId};

super::text_enum! {
    /// What a notification says happened.
    pub enum Kind {
        /// The channel went live with this stream.
        Live = "live",
        /// The channel scheduled (or rescheduled) this stream.
        Scheduled = "scheduled",
        /// The user's creator application was approved or rejected.
        Application = "application",
    }
}

/// One notification as the list shows it, with its channel and stream (the
/// followers' kinds) or the application it is about (selected from
/// `notifications` left-joined to all three).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = notifications, check_for_backend(diesel::pg::Pg))]
pub struct Item {
    pub id: i64,
    pub kind: Kind,
    pub created_at: DateTime<Utc>,
    pub read_at: Option<DateTime<Utc>>,
    #[diesel(select_expression = channels::title.nullable())]
    pub channel_title: Option<String>,
    #[diesel(select_expression = streams::id.nullable())]
    pub stream_id: Option<StreamId>,
    #[diesel(select_expression = streams::title.nullable())]
    pub stream_title: Option<String>,
    #[diesel(select_expression = streams::scheduled_at.nullable())]
    pub scheduled_at: Option<DateTime<Utc>>,
    #[diesel(select_expression = creator_applications::channel_name.nullable())]
    pub application_channel: Option<String>,
    #[diesel(select_expression = creator_applications::status.nullable())]
    pub application_status: Option<String>,
    #[diesel(select_expression = creator_applications::reason.nullable())]
    pub application_reason: Option<String>,
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
        .left_join(channels::table)
        .left_join(streams::table)
        .left_join(creator_applications::table)
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
        .left_join(channels::table)
        .left_join(streams::table)
        .left_join(creator_applications::table)
        .filter(notifications::user_id.eq(user))
        .filter(notifications::id.eq(id))
        .select(Item::as_select())
        .first(conn)
        .await
        .optional()
}

/// Marks one of `user`'s notifications read (reading twice keeps the first
/// time). Answers its kind and stream (None for an application's), or None
/// when it is not theirs.
pub async fn mark_read(
    conn: &mut AsyncPgConnection,
    user: UserId,
    id: i64,
) -> QueryResult<Option<(Kind, Option<StreamId>)>> {
    diesel::update(
        notifications::table
            .filter(notifications::id.eq(id))
            .filter(notifications::user_id.eq(user)),
    )
    .set(notifications::read_at.eq(diesel::dsl::sql::<
        diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>,
    >("coalesce(read_at, now())")))
    .returning((notifications::kind, notifications::stream_id))
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

/// Tells `user` that their creator application `application` was decided.
pub async fn application_decided(
    conn: &mut AsyncPgConnection,
    user: UserId,
    application: i64,
) -> QueryResult<()> {
    diesel::insert_into(notifications::table)
        .values((
            notifications::user_id.eq(user),
            notifications::kind.eq(Kind::Application),
            notifications::application_id.eq(application),
        ))
        .execute(conn)
        .await
        .map(drop)
}
