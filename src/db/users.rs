//! Accounts: users, the sign-in attempt log used for throttling, and the
//! known devices (browsers that signed in to an account before, by the hash
//! of their device cookie; see `auth::device`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::Timestamptz;
use diesel_async::AsyncConnection;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::UserId;
use super::schema::{known_devices, sign_in_attempts, users};

diesel::define_sql_function!(fn lower(x: diesel::sql_types::Text) -> diesel::sql_types::Text);

/// An account as the app passes it around: everything but the password hash,
/// which only signing in and changing the password read (`password_hash`).
/// The session store carries it with the session (`auth::session_store`),
/// so it serializes.
#[derive(Clone, Queryable, Selectable, Identifiable, serde::Serialize, serde::Deserialize)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// An instance admin (`stagepass admin grant EMAIL`): the /admin console.
    pub is_admin: bool,
}

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

/// The account as the signed-in user, unless it is suspended (then the
/// session is someone's no longer).
pub async fn find_signed_in(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<Option<User>> {
    users::table
        .find(id)
        .filter(users::suspended_at.is_null())
        .select(User::as_select())
        .first(conn)
        .await
        .optional()
}

/// The account's password hash, for checking a password.
pub async fn password_hash(
    conn: &mut AsyncPgConnection,
    id: UserId,
) -> QueryResult<Option<String>> {
    users::table
        .find(id)
        .select(users::password_hash)
        .first(conn)
        .await
        .optional()
}

/// The account of `email` with its password hash, in one query (signing in:
/// an address with an account costs no more round trips than one without).
pub async fn find_with_hash_by_email(
    conn: &mut AsyncPgConnection,
    email: &str,
) -> QueryResult<Option<(User, String)>> {
    users::table
        .filter(lower(users::email).eq(normalize_email(email)))
        .select((User::as_select(), users::password_hash))
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
/// address, for the account from anywhere, and for the account from one
/// device (0 without a device cookie).
#[derive(Debug, Clone, Copy)]
pub struct RecentFailures {
    pub for_email_from_ip: i64,
    pub for_ip: i64,
    pub for_email: i64,
    pub for_email_from_device: i64,
}

/// Which failures a count or a wait is about.
#[derive(Debug, Clone, Copy)]
pub struct FailuresOf<'a> {
    pub email: Option<&'a str>,
    pub ip: Option<&'a str>,
    pub device_hash: Option<&'a str>,
}

#[derive(QueryableByName)]
struct Counts {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    for_email_from_ip: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    for_ip: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    for_email: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    for_email_from_device: i64,
}

pub async fn recent_sign_in_failures(
    conn: &mut AsyncPgConnection,
    email: &str,
    ip: &str,
    device_hash: Option<&str>,
    window: std::time::Duration,
) -> QueryResult<RecentFailures> {
    use diesel::sql_types::{Double, Nullable, Text};
    // One pass over the window's failures of the account or the address
    // (both indexed); the device's are a subset of the account's.
    let c: Counts = diesel::sql_query(
        "SELECT count(*) FILTER (WHERE lower(email) = $1 AND ip = $2) AS for_email_from_ip, \
                count(*) FILTER (WHERE ip = $2) AS for_ip, \
                count(*) FILTER (WHERE lower(email) = $1) AS for_email, \
                count(*) FILTER (WHERE lower(email) = $1 AND device_hash = $3) AS for_email_from_device \
         FROM sign_in_attempts \
         WHERE NOT succeeded AND created_at > now() - make_interval(secs => $4) \
           AND (lower(email) = $1 OR ip = $2)",
    )
    .bind::<Text, _>(normalize_email(email))
    .bind::<Text, _>(ip)
    .bind::<Nullable<Text>, _>(device_hash)
    .bind::<Double, _>(window.as_secs_f64())
    .get_result(conn)
    .await?;
    Ok(RecentFailures {
        for_email_from_ip: c.for_email_from_ip,
        for_ip: c.for_ip,
        for_email: c.for_email,
        for_email_from_device: c.for_email_from_device,
    })
}

/// How long until fewer than `max` failures of `of` remain in the window:
/// until the `max`-th newest leaves it.
pub async fn sign_in_retry_after(
    conn: &mut AsyncPgConnection,
    of: FailuresOf<'_>,
    max: u32,
    window: std::time::Duration,
) -> QueryResult<std::time::Duration> {
    use diesel::sql_types::{BigInt, Double, Nullable, Text};
    let wait: Option<super::RetryWait> = diesel::sql_query(
        "SELECT GREATEST(EXTRACT(EPOCH FROM created_at + make_interval(secs => $4) - now()), 1)::float8 AS secs \
         FROM sign_in_attempts \
         WHERE NOT succeeded AND created_at > now() - make_interval(secs => $4) \
           AND ($1::text IS NULL OR lower(email) = $1) \
           AND ($2::text IS NULL OR ip = $2) \
           AND ($3::text IS NULL OR device_hash = $3) \
         ORDER BY created_at DESC OFFSET $5 LIMIT 1",
    )
    .bind::<Nullable<Text>, _>(of.email.map(normalize_email))
    .bind::<Nullable<Text>, _>(of.ip)
    .bind::<Nullable<Text>, _>(of.device_hash)
    .bind::<Double, _>(window.as_secs_f64())
    .bind::<BigInt, _>(i64::from(max.max(1)) - 1)
    .get_result(conn)
    .await
    .optional()?;
    Ok(super::RetryWait::or_window(wait, window))
}

pub async fn record_sign_in_attempt(
    conn: &mut AsyncPgConnection,
    email: &str,
    ip: &str,
    device_hash: Option<&str>,
    succeeded: bool,
) -> QueryResult<i64> {
    diesel::insert_into(sign_in_attempts::table)
        .values((
            sign_in_attempts::email.eq(normalize_email(email)),
            sign_in_attempts::ip.eq(ip),
            sign_in_attempts::device_hash.eq(device_hash),
            sign_in_attempts::succeeded.eq(succeeded),
        ))
        .returning(sign_in_attempts::id)
        .get_result(conn)
        .await
}

/// The attempt recorded (as failed) before its password was checked succeeded.
pub async fn sign_in_attempt_succeeded(
    conn: &mut AsyncPgConnection,
    attempt: i64,
) -> QueryResult<()> {
    diesel::update(sign_in_attempts::table.find(attempt))
        .set(sign_in_attempts::succeeded.eq(true))
        .execute(conn)
        .await
        .map(drop)
}

/// Until the transaction ends, holds the sign-in checks of this account, then
/// of this address (always in that order, so two never wait on each other):
/// parallel attempts are counted one after the other, never all against the
/// same count.
pub async fn lock_sign_in(conn: &mut AsyncPgConnection, email: &str, ip: &str) -> QueryResult<()> {
    use diesel::sql_types::Text;
    for key in [
        format!("sign-in account {}", normalize_email(email)),
        format!("sign-in address {ip}"),
    ] {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind::<Text, _>(key)
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// Drops attempts older than a day: they no longer count for throttling.
pub async fn delete_old_sign_in_attempts(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    let day_ago = diesel::dsl::sql::<Timestamptz>("now() - interval '1 day'");
    diesel::delete(sign_in_attempts::table.filter(sign_in_attempts::created_at.lt(day_ago)))
        .execute(conn)
        .await
}

/// A device stays known this long after its last sign-in to the account.
pub const DEVICE_REMEMBERED_DAYS: i64 = 365;

/// Remembers that the device signed in to `user` (now) under its new
/// cookie `token_hash`. Its `previous` cookie, if any, is retired: the
/// accounts that knew the device under it know it under the new one, and a
/// copy of the old cookie is worth nothing from now on.
pub async fn remember_device(
    conn: &mut AsyncPgConnection,
    previous: Option<&str>,
    token_hash: &str,
    user: UserId,
) -> QueryResult<()> {
    conn.transaction(async |conn| {
        if let Some(previous) = previous {
            diesel::update(known_devices::table.filter(known_devices::token_hash.eq(previous)))
                .set(known_devices::token_hash.eq(token_hash))
                .execute(conn)
                .await?;
        }
        diesel::insert_into(known_devices::table)
            .values((
                known_devices::token_hash.eq(token_hash),
                known_devices::user_id.eq(user),
            ))
            .on_conflict((known_devices::token_hash, known_devices::user_id))
            .do_update()
            .set(known_devices::last_used_at.eq(diesel::dsl::now))
            .execute(conn)
            .await?;
        Ok(())
    })
    .await
}

/// Forgets every device known to `user` except `keep` (the browser that
/// changed the password): whoever signed in with the old password is a
/// stranger to the account-wide sign-in limits again.
pub async fn forget_devices_except(
    conn: &mut AsyncPgConnection,
    user: UserId,
    keep: Option<&str>,
) -> QueryResult<usize> {
    diesel::delete(
        known_devices::table
            .filter(known_devices::user_id.eq(user))
            .filter(known_devices::token_hash.ne(keep.unwrap_or(""))),
    )
    .execute(conn)
    .await
}

/// Whether the device with this cookie hash signed in to `user` within the last year.
pub async fn is_known_device(
    conn: &mut AsyncPgConnection,
    token_hash: &str,
    user: UserId,
) -> QueryResult<bool> {
    let since = diesel::dsl::sql::<Timestamptz>(&format!(
        "now() - interval '{DEVICE_REMEMBERED_DAYS} days'"
    ));
    diesel::select(diesel::dsl::exists(
        known_devices::table
            .filter(known_devices::token_hash.eq(token_hash))
            .filter(known_devices::user_id.eq(user))
            .filter(known_devices::last_used_at.gt(since)),
    ))
    .get_result(conn)
    .await
}

/// Forgets devices that have not signed in for a year.
pub async fn delete_old_devices(conn: &mut AsyncPgConnection) -> QueryResult<usize> {
    let since = diesel::dsl::sql::<Timestamptz>(&format!(
        "now() - interval '{DEVICE_REMEMBERED_DAYS} days'"
    ));
    diesel::delete(known_devices::table.filter(known_devices::last_used_at.lt(since)))
        .execute(conn)
        .await
}

// ---------------------------------------------------------------------------
// The instance's operators: admins and suspensions (`crate::operators`).

/// Makes the account with `email` an instance admin, or not; answers it
/// (None: no such account).
pub async fn set_admin(
    conn: &mut AsyncPgConnection,
    email: &str,
    admin: bool,
) -> QueryResult<Option<User>> {
    diesel::update(users::table.filter(lower(users::email).eq(normalize_email(email))))
        .set(users::is_admin.eq(admin))
        .returning(User::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Why the account was suspended (None: it is not).
pub async fn suspension(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<Option<String>> {
    let row: Option<(Option<DateTime<Utc>>, Option<String>)> = users::table
        .find(id)
        .select((users::suspended_at, users::suspended_reason))
        .first(conn)
        .await
        .optional()?;
    Ok(match row {
        Some((Some(_), reason)) => Some(reason.unwrap_or_default()),
        _ => None,
    })
}

/// Suspends (`Some(reason)`) or restores (`None`) an account. Answers
/// whether anything changed (suspending a suspended account does not).
pub async fn set_suspended(
    conn: &mut AsyncPgConnection,
    id: UserId,
    reason: Option<&str>,
) -> QueryResult<bool> {
    let target = users::table.find(id);
    let n = match reason {
        Some(reason) => {
            diesel::update(target.filter(users::suspended_at.is_null()))
                .set((
                    users::suspended_at.eq(diesel::dsl::now),
                    users::suspended_reason.eq(reason),
                ))
                .execute(conn)
                .await?
        }
        None => {
            diesel::update(target.filter(users::suspended_at.is_not_null()))
                .set((
                    users::suspended_at.eq(None::<DateTime<Utc>>),
                    users::suspended_reason.eq(None::<String>),
                ))
                .execute(conn)
                .await?
        }
    };
    Ok(n > 0)
}

/// Marks the account approved to create channels (`CREATORS=approval`).
pub async fn approve_creator(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<()> {
    diesel::update(
        users::table
            .find(id)
            .filter(users::creator_approved_at.is_null()),
    )
    .set(users::creator_approved_at.eq(diesel::dsl::now))
    .execute(conn)
    .await
    .map(drop)
}

/// Whether the account may create channels under `CREATORS=approval`.
pub async fn is_approved_creator(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<bool> {
    users::table
        .find(id)
        .select(users::creator_approved_at.is_not_null().or(users::is_admin))
        .first(conn)
        .await
}

/// An account as the admins' user list shows it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users, check_for_backend(diesel::pg::Pg))]
pub struct AccountRow {
    pub id: UserId,
    pub email: String,
    pub display_name: String,
    pub created_at: DateTime<Utc>,
    pub is_admin: bool,
    pub suspended_at: Option<DateTime<Utc>>,
    pub suspended_reason: Option<String>,
}

/// Accounts whose email or name contains `q` (any case; everyone when
/// empty), newest first, at most `limit`.
pub async fn search(
    conn: &mut AsyncPgConnection,
    q: &str,
    limit: i64,
) -> QueryResult<Vec<AccountRow>> {
    let mut query = users::table.into_boxed();
    let q = q.trim();
    if !q.is_empty() {
        let pattern = super::contains_pattern(q);
        query = query.filter(
            users::email
                .ilike(pattern.clone())
                .or(users::display_name.ilike(pattern)),
        );
    }
    query
        .order(users::id.desc())
        .limit(limit)
        .select(AccountRow::as_select())
        .load(conn)
        .await
}

pub async fn account(conn: &mut AsyncPgConnection, id: UserId) -> QueryResult<Option<AccountRow>> {
    users::table
        .find(id)
        .select(AccountRow::as_select())
        .first(conn)
        .await
        .optional()
}
