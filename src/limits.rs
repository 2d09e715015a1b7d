//! Flood limits counted in Postgres, so that every app instance behind a load
//! balancer sees the same counts: at most `max` counted actions by one subject
//! (an address or an account) within a sliding window (`config::Limit`).
//! Counted actions are rows of `rate_limit_events`; the cleanup job deletes
//! them after a day.
//!
//! Two ways to count: `take` counts every attempt (sign-ups) and checks and
//! counts in one step under an advisory lock, so concurrent requests from one
//! subject cannot slip past the limit together; `check` + `record` count only
//! failures (the handler records after it knows). A refusal says when to try
//! again ([`Refused::wait`]); what to say and which status to answer is the
//! handler's business. This module knows nothing about HTTP.
//!
//! Sign-in has its own log (`sign_in_attempts`, with known devices) in
//! `db::users`; chat streams are capped per instance in `chat::hub`.

use std::time::Duration;

use diesel::sql_types::{BigInt, Double, Text};
use diesel::{OptionalExtension, QueryableByName};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use crate::config::Limit;

/// What is counted, as stored in `rate_limit_events.action`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A sign-up that reached the database (created, or the email was taken), by address.
    SignUp,
    /// A redemption of a code we don't know (a guess), by address (failures
    /// per account are counted in the audit log).
    RedeemFailed,
    /// A wrong current password on the account page, by account.
    PasswordChangeFailed,
    /// A purchase started (an order, and a call to Stripe), by account.
    Checkout,
    /// A channel created, by account.
    ChannelCreated,
    /// A guest's viewer token, by address.
    GuestToken,
}

impl Action {
    fn as_str(self) -> &'static str {
        match self {
            Action::SignUp => "sign_up",
            Action::RedeemFailed => "redeem_failed",
            Action::PasswordChangeFailed => "password_change_failed",
            Action::Checkout => "checkout",
            Action::ChannelCreated => "channel_created",
            Action::GuestToken => "guest_token",
        }
    }
}

/// Over the limit: the next attempt is allowed after `retry_after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub retry_after: Duration,
}

impl Refused {
    /// "12 minutes", "1 minute", "40 seconds": for "wait … before trying again".
    pub fn wait(&self) -> String {
        wait_in_words(self.retry_after)
    }

    /// The `Retry-After` header's value (whole seconds, at least 1).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs_f64().ceil().max(1.0) as u64
    }
}

/// A wait in words, rounded up: seconds under a minute, then minutes, then hours.
pub fn wait_in_words(d: Duration) -> String {
    let secs = d.as_secs_f64().ceil().max(1.0) as u64;
    let (n, unit) = if secs < 60 {
        (secs, "second")
    } else if secs <= 2 * 3600 {
        (secs.div_ceil(60), "minute")
    } else {
        (secs.div_ceil(3600), "hour")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

#[derive(QueryableByName)]
struct Wait {
    #[diesel(sql_type = Double)]
    secs: f64,
}

/// Whether `subject` may do `action` once more; nothing is counted.
pub async fn check(
    conn: &mut AsyncPgConnection,
    action: Action,
    subject: &str,
    limit: Limit,
) -> diesel::QueryResult<Result<(), Refused>> {
    let window = limit.window.as_secs_f64();
    let Count { n } = diesel::sql_query(
        "SELECT count(*) AS n FROM rate_limit_events \
         WHERE action = $1 AND subject = $2 AND created_at > now() - make_interval(secs => $3)",
    )
    .bind::<Text, _>(action.as_str())
    .bind::<Text, _>(subject)
    .bind::<Double, _>(window)
    .get_result(conn)
    .await?;
    if n < i64::from(limit.max) {
        return Ok(Ok(()));
    }
    // Below the limit again when the max-th newest leaves the window.
    let wait: Option<Wait> = diesel::sql_query(
        "SELECT GREATEST(EXTRACT(EPOCH FROM created_at + make_interval(secs => $3) - now()), 1)::float8 AS secs \
         FROM rate_limit_events \
         WHERE action = $1 AND subject = $2 AND created_at > now() - make_interval(secs => $3) \
         ORDER BY created_at DESC OFFSET $4 LIMIT 1",
    )
    .bind::<Text, _>(action.as_str())
    .bind::<Text, _>(subject)
    .bind::<Double, _>(window)
    .bind::<BigInt, _>(i64::from(limit.max) - 1)
    .get_result(conn)
    .await
    .optional()?;
    Ok(Err(Refused {
        retry_after: wait.map_or(limit.window, |w| Duration::from_secs_f64(w.secs)),
    }))
}

#[derive(QueryableByName)]
struct Id {
    #[diesel(sql_type = BigInt)]
    id: i64,
}

/// Counts one `action` of `subject`; answers the count's id (for `forgive`).
pub async fn record(
    conn: &mut AsyncPgConnection,
    action: Action,
    subject: &str,
) -> diesel::QueryResult<i64> {
    let Id { id } = diesel::sql_query(
        "INSERT INTO rate_limit_events (action, subject) VALUES ($1, $2) RETURNING id",
    )
    .bind::<Text, _>(action.as_str())
    .bind::<Text, _>(subject)
    .get_result(conn)
    .await?;
    Ok(id)
}

/// Takes back one count (`take` counted a failure before the outcome was
/// known, and it was no failure).
pub async fn forgive(conn: &mut AsyncPgConnection, counted: i64) -> diesel::QueryResult<()> {
    diesel::sql_query("DELETE FROM rate_limit_events WHERE id = $1")
        .bind::<BigInt, _>(counted)
        .execute(conn)
        .await
        .map(drop)
}

/// Checks and, when allowed, counts one `action` of `subject`, atomically
/// across instances (a transaction-scoped advisory lock on the pair), and
/// answers the count's id. A failure whose outcome takes time to know (a
/// password to verify) is taken first and forgiven if it was none, so that
/// attempts sent at once count against each other.
pub async fn take(
    conn: &mut AsyncPgConnection,
    action: Action,
    subject: &str,
    limit: Limit,
) -> diesel::QueryResult<Result<i64, Refused>> {
    let key = format!("{}\n{subject}", action.as_str());
    conn.transaction(async |conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind::<Text, _>(&key)
            .execute(conn)
            .await?;
        let allowed = match check(conn, action, subject, limit).await? {
            Ok(()) => Ok(record(conn, action, subject).await?),
            Err(refused) => Err(refused),
        };
        Ok::<_, diesel::result::Error>(allowed)
    })
    .await
}

/// Forgets counted actions older than a day (no window is longer).
pub async fn delete_old(conn: &mut AsyncPgConnection) -> diesel::QueryResult<usize> {
    diesel::sql_query("DELETE FROM rate_limit_events WHERE created_at < now() - interval '1 day'")
        .execute(conn)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_said_in_words_rounded_up() {
        assert_eq!(wait_in_words(Duration::from_millis(200)), "1 second");
        assert_eq!(wait_in_words(Duration::from_secs(40)), "40 seconds");
        assert_eq!(wait_in_words(Duration::from_secs(61)), "2 minutes");
        assert_eq!(wait_in_words(Duration::from_secs(60)), "1 minute");
        assert_eq!(wait_in_words(Duration::from_secs(15 * 60)), "15 minutes");
        assert_eq!(wait_in_words(Duration::from_secs(3 * 3600)), "3 hours");
        let r = Refused {
            retry_after: Duration::from_millis(1500),
        };
        assert_eq!(r.retry_after_secs(), 2);
    }
}
