//! The `sessions` table behind our tower-sessions store. Expiry is compared
//! with `now()` in SQL, so an expired row is never loaded.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::UserId;
use super::schema::{sessions, users};
use super::users::User;

/// The session's data and end, with its signed-in user (None when nobody is
/// signed in, or the account is gone or suspended), in one round trip: every
/// request that knows who is asking needs both.
pub async fn load_with_user(
    conn: &mut AsyncPgConnection,
    id: &str,
) -> QueryResult<Option<(serde_json::Value, DateTime<Utc>, Option<User>)>> {
    sessions::table
        .left_join(
            users::table.on(users::id
                .nullable()
                .eq(sessions::user_id)
                .and(users::suspended_at.is_null())),
        )
        .filter(sessions::id.eq(id))
        .filter(sessions::expires_at.gt(diesel::dsl::now))
        .select((
            sessions::data,
            sessions::expires_at,
            // `User`'s fields, in order (a left join's side is nullable as a whole).
            (
                users::id,
                users::email,
                users::display_name,
                users::created_at,
                users::updated_at,
                users::is_admin,
            )
                .nullable(),
        ))
        .first(conn)
        .await
        .optional()
}

/// A session as stored: its id, data, end and signed-in user.
#[derive(Debug, Insertable, AsChangeset)]
#[diesel(table_name = sessions, treat_none_as_null = true)]
pub struct Row {
    pub id: String,
    pub data: serde_json::Value,
    pub expires_at: DateTime<Utc>,
    pub user_id: Option<UserId>,
}

/// Inserts a new row; answers false when the id is taken (the caller picks another).
pub async fn insert_new(conn: &mut AsyncPgConnection, row: &Row) -> QueryResult<bool> {
    let inserted = diesel::insert_into(sessions::table)
        .values(row)
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

pub async fn upsert(conn: &mut AsyncPgConnection, row: &Row) -> QueryResult<()> {
    diesel::insert_into(sessions::table)
        .values(row)
        .on_conflict(sessions::id)
        .do_update()
        .set(row)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete(conn: &mut AsyncPgConnection, id: &str) -> QueryResult<()> {
    diesel::delete(sessions::table.filter(sessions::id.eq(id)))
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn delete_expired(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    diesel::delete(sessions::table.filter(sessions::expires_at.le(diesel::dsl::now)))
        .execute(conn)
        .await
}

/// Signs a user out everywhere but `keep` (after a password change).
pub async fn delete_for_user_except(
    conn: &mut AsyncPgConnection,
    user: UserId,
    keep: &str,
) -> QueryResult<usize> {
    diesel::delete(
        sessions::table
            .filter(sessions::user_id.eq(user))
            .filter(sessions::id.ne(keep)),
    )
    .execute(conn)
    .await
}

/// Ends every session of `user` (a suspension).
pub async fn delete_for_user(conn: &mut AsyncPgConnection, user: UserId) -> QueryResult<usize> {
    diesel::delete(sessions::table.filter(sessions::user_id.eq(user)))
        .execute(conn)
        .await
}
