//! Accounts: users and the sign-in attempt log used for throttling.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Timestamptz;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::UserId;
use super::schema::{sign_in_attempts, users};

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

#[derive(Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

// Never print the hash.
impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

#[derive(Insertable)]
#[diesel(table_name = users)]
pub struct NewUser<'a> {
    pub email: &'a str,
    pub display_name: &'a str,
    pub password_hash: &'a str,
}

#[derive(AsChangeset, Default)]
#[diesel(table_name = users)]
pub struct UserChanges<'a> {
    pub display_name: Option<&'a str>,
    pub password_hash: Option<&'a str>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// Emails are compared case-insensitively (unique index on `lower(email)`).
pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

pub async fn find(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn find_by_email(conn: &mut AsyncPgConnection, email: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(lower(users::email).eq(normalize_email(email)))
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

pub async fn insert(conn: &mut AsyncPgConnection, new: &NewUser<'_>) -> QueryResult<User> {
    diesel::insert_into(users::table)
        .values(new)
        .returning(User::as_returning())
        .get_result(conn)
        .await
}

pub async fn update(
    conn: &mut AsyncPgConnection,
    id: UserId,
    changes: UserChanges<'_>,
) -> QueryResult<User> {
    let changes = UserChanges {
        updated_at: Some(Utc::now()),
        ..changes
    };
    diesel::update(users::table.find(id))
        .set(changes)
        .returning(User::as_returning())
        .get_result(conn)
        .await
}

/// Failed sign-ins within `window`: for an account from an address, for the
/// address, and for the account from anywhere.
#[derive(Debug, Clone, Copy)]
pub struct RecentFailures {
    pub for_email_from_ip: i64,
    pub for_ip: i64,
    pub for_email: i64,
}

pub async fn recent_sign_in_failures(
    conn: &mut AsyncPgConnection,
    email: &str,
    ip: &str,
    window: std::time::Duration,
) -> QueryResult<RecentFailures> {
    // The window is ours (a Duration), never user input.
    let since = || {
        diesel::dsl::sql::<Timestamptz>(&format!("now() - interval '{} seconds'", window.as_secs()))
    };
    let email = normalize_email(email);
    let for_email = sign_in_attempts::table
        .filter(lower(sign_in_attempts::email).eq(&email))
        .filter(sign_in_attempts::succeeded.eq(false))
        .filter(sign_in_attempts::created_at.gt(since()))
        .count()
        .get_result(conn)
        .await?;
    let for_email_from_ip = sign_in_attempts::table
        .filter(lower(sign_in_attempts::email).eq(&email))
        .filter(sign_in_attempts::ip.eq(ip))
        .filter(sign_in_attempts::succeeded.eq(false))
        .filter(sign_in_attempts::created_at.gt(since()))
        .count()
        .get_result(conn)
        .await?;
    let for_ip = sign_in_attempts::table
        .filter(sign_in_attempts::ip.eq(ip))
        .filter(sign_in_attempts::succeeded.eq(false))
        .filter(sign_in_attempts::created_at.gt(since()))
        .count()
        .get_result(conn)
        .await?;
    Ok(RecentFailures {
        for_email_from_ip,
        for_ip,
        for_email,
    })
}

pub async fn record_sign_in_attempt(
    conn: &mut AsyncPgConnection,
    email: &str,
    ip: &str,
    succeeded: bool,
) -> QueryResult<()> {
    diesel::insert_into(sign_in_attempts::table)
        .values((
            sign_in_attempts::email.eq(normalize_email(email)),
            sign_in_attempts::ip.eq(ip),
            sign_in_attempts::succeeded.eq(succeeded),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Drops attempts older than a day: they no longer count for throttling.
pub async fn delete_old_sign_in_attempts(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    let day_ago = diesel::dsl::sql::<Timestamptz>("now() - interval '1 day'");
    diesel::delete(sign_in_attempts::table.filter(sign_in_attempts::created_at.lt(day_ago)))
        .execute(conn)
        .await
}
