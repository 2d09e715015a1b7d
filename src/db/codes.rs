//! Redeem codes and their redemptions: generating a pass's codes, reading them
//! back for the owner, and redeeming one — atomically, so that a single-use
//! code used twice at the same moment gives exactly one grant.
//!
//! Redeeming is one transaction: a conditional `UPDATE … SET uses = uses + 1`
//! (its row lock serializes concurrent redemptions of the same code; the
//! `uses <= max_uses` CHECK is the backstop), the grant, and the redemption
//! row (`UNIQUE (code_id, user_id)`). Any refusal rolls the whole of it back,
//! so a refused redemption never consumes a use. Nothing here knows about HTTP.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Integer, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use rand::seq::IndexedRandom;

use super::bans;
use super::grants::{self, Grant, NewGrant, Source};
use super::passes::{self, Pass};
use super::schema::{audit_log, redeem_codes, redemptions};
use super::{CodeId, PassId, UserId};

/// No 0/O, 1/I/L: nothing that reads as something else when copied by hand.
pub const ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
/// Characters of a code, without its hyphens: 31^12 ≈ 2^59 possibilities.
pub const CODE_LEN: usize = 12;
const GROUP: usize = 4;

/// The audit action of a failed redemption; the rate limit counts these.
pub const FAILED_ACTION: &str = "code.redeem_failed";

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = redeem_codes, check_for_backend(diesel::pg::Pg))]
pub struct RedeemCode {
    pub id: CodeId,
    pub pass_id: PassId,
    pub code: String,
    pub max_uses: i32,
    pub uses: i32,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = redeem_codes)]
struct NewCode<'a> {
    pass_id: PassId,
    code: &'a str,
    max_uses: i32,
    expires_at: Option<DateTime<Utc>>,
}

/// A fresh code from the thread's CSPRNG, grouped like `ABCD-EFGH-JKMN`.
pub fn fresh_code() -> String {
    let mut rng = rand::rng();
    let chars: Vec<u8> = (0..CODE_LEN)
        .map(|_| {
            *ALPHABET
                .choose(&mut rng)
                .expect("the alphabet is not empty")
        })
        .collect();
    group(&chars)
}

fn group(chars: &[u8]) -> String {
    chars
        .chunks(GROUP)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

/// What people type, in the stored form: upper case, without spaces, with or
/// without hyphens. Anything that cannot be one of our codes comes back
/// upper-cased and unspaced (it will simply not be found).
pub fn normalize(typed: &str) -> String {
    let bare: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_uppercase)
        .collect();
    if bare.len() == CODE_LEN && bare.bytes().all(|b| ALPHABET.contains(&b)) {
        group(bare.as_bytes())
    } else {
        bare
    }
}

/// Generates `count` new codes for a pass, each good for `max_uses`
/// redemptions until `expires_at`. One INSERT per attempt; a code that
/// collides with an existing one is skipped by the unique index and replaced
/// by a fresh one in the next attempt.
#[tracing::instrument(skip_all, fields(pass = %pass, count = count))]
pub async fn generate(
    conn: &mut AsyncPgConnection,
    pass: PassId,
    count: usize,
    max_uses: i32,
    expires_at: Option<DateTime<Utc>>,
) -> QueryResult<Vec<RedeemCode>> {
    let mut made = Vec::with_capacity(count);
    // With ~2^59 codes a collision is a once-in-a-lifetime event; five rounds
    // make an endless loop impossible without hiding a real failure.
    for _ in 0..5 {
        let missing = count - made.len();
        if missing == 0 {
            break;
        }
        let mut fresh = HashSet::with_capacity(missing);
        while fresh.len() < missing {
            fresh.insert(fresh_code());
        }
        let rows: Vec<NewCode> = fresh
            .iter()
            .map(|code| NewCode {
                pass_id: pass,
                code,
                max_uses,
                expires_at,
            })
            .collect();
        let inserted: Vec<RedeemCode> = diesel::insert_into(redeem_codes::table)
            .values(&rows)
            .on_conflict(redeem_codes::code)
            .do_nothing()
            .returning(RedeemCode::as_returning())
            .get_results(conn)
            .await?;
        made.extend(inserted);
    }
    if made.len() < count {
        return Err(diesel::result::Error::QueryBuilderError(
            "could not find unused redeem codes".into(),
        ));
    }
    Ok(made)
}

/// A pass's codes, newest first.
pub async fn for_pass(conn: &mut AsyncPgConnection, pass: PassId) -> QueryResult<Vec<RedeemCode>> {
    redeem_codes::table
        .filter(redeem_codes::pass_id.eq(pass))
        .order((redeem_codes::created_at.desc(), redeem_codes::code.asc()))
        .select(RedeemCode::as_select())
        .load(conn)
        .await
}

/// One redemption, for the owner's codes page.
#[derive(Debug, Clone, QueryableByName)]
pub struct RedemptionRow {
    #[diesel(sql_type = BigInt)]
    pub code_id: i64,
    #[diesel(sql_type = BigInt)]
    pub user_id: i64,
    #[diesel(sql_type = Text)]
    pub display_name: String,
    #[diesel(sql_type = Text)]
    pub email: String,
    #[diesel(sql_type = Timestamptz)]
    pub created_at: DateTime<Utc>,
}

/// The latest `per_code` redemptions of each of a pass's codes, newest first
/// (a code good for 10,000 uses must not turn the page into a phone book).
pub async fn redemptions_of_pass(
    conn: &mut AsyncPgConnection,
    pass: PassId,
    per_code: i32,
) -> QueryResult<Vec<RedemptionRow>> {
    diesel::sql_query(
        "SELECT code_id, user_id, display_name, email, created_at FROM ( \
           SELECT r.code_id, u.id AS user_id, u.display_name, u.email, r.created_at, \
                  row_number() OVER (PARTITION BY r.code_id ORDER BY r.created_at DESC, r.id DESC) AS n \
           FROM redemptions r \
           JOIN redeem_codes c ON c.id = r.code_id \
           JOIN users u ON u.id = r.user_id \
           WHERE c.pass_id = $1) latest \
         WHERE n <= $2 ORDER BY created_at DESC",
    )
    .bind::<BigInt, _>(pass.0)
    .bind::<Integer, _>(per_code)
    .load(conn)
    .await
}

/// Why a code was not redeemed; each has its own words for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Unknown,
    UsedUp,
    Expired,
    AlreadyRedeemed,
    /// The pass is a fixed window (an event) that is over.
    WindowOver,
    /// The user is banned from the pass's channel (the use is given back).
    Banned,
    /// The pass's channel is hidden by the instance's admins (the use is given back).
    ChannelHidden,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Unknown => {
                "We don't know that code. Check it for typos: codes look like ABCD-EFGH-JKMN."
            }
            Refusal::UsedUp => "That code has been used up.",
            Refusal::Expired => "That code has expired.",
            Refusal::AlreadyRedeemed => "You have already redeemed this code.",
            Refusal::WindowOver => {
                "The event this code was for is over, so it can't be redeemed any more."
            }
            Refusal::Banned => {
                "You have been banned from this channel, so its codes don't work for you. \
                 The code was not used up."
            }
            Refusal::ChannelHidden => {
                "This channel is not available right now, so its codes don't work. \
                 The code was not used up."
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Unknown => "unknown",
            Refusal::UsedUp => "used_up",
            Refusal::Expired => "expired",
            Refusal::AlreadyRedeemed => "already_redeemed",
            Refusal::WindowOver => "window_over",
            Refusal::Banned => "banned",
            Refusal::ChannelHidden => "channel_hidden",
        }
    }
}

/// A successful redemption: the new grant and the pass it is for.
#[derive(Debug, Clone)]
pub struct Redeemed {
    pub grant: Grant,
    pub pass: Pass,
    pub code_id: CodeId,
}

/// A refusal, with the code's pass when the code exists (for the audit log).
#[derive(Debug, Clone, Copy)]
pub struct Refused {
    pub reason: Refusal,
    pub pass: Option<PassId>,
}

/// Inside the transaction: a refusal rolls back like an error does.
enum Abort {
    Refused(Refused),
    Db(diesel::result::Error),
}

impl From<diesel::result::Error> for Abort {
    fn from(e: diesel::result::Error) -> Self {
        Abort::Db(e)
    }
}

/// Redeems `code` (already normalized) for `user`: a grant for the code's pass,
/// or why not. Codes of archived passes still work: archiving a pass stops
/// handing it out, but a code already handed out is a promise like a grant
/// already bought (which also stays valid) — and the person holding it cannot
/// know the pass was archived. The owner stops new codes by archiving; codes
/// they want dead they can let expire or not hand out.
#[tracing::instrument(skip_all, fields(user = %user))]
pub async fn redeem(
    conn: &mut AsyncPgConnection,
    user: UserId,
    code: &str,
) -> QueryResult<Result<Redeemed, Refused>> {
    let outcome = conn
        .transaction(async |conn| {
            use diesel::dsl::now;
            // The row lock taken here makes concurrent redemptions of the same
            // code wait for each other; a waiter re-checks the WHERE against
            // the committed row, so the last use goes to exactly one of them.
            let claimed: Option<RedeemCode> = diesel::update(
                redeem_codes::table
                    .filter(redeem_codes::code.eq(code))
                    .filter(redeem_codes::uses.lt(redeem_codes::max_uses))
                    .filter(
                        redeem_codes::expires_at
                            .is_null()
                            .or(redeem_codes::expires_at.gt(now)),
                    ),
            )
            .set(redeem_codes::uses.eq(redeem_codes::uses + 1))
            .returning(RedeemCode::as_returning())
            .get_result(conn)
            .await
            .optional()?;
            let Some(claimed) = claimed else {
                return Err(Abort::Refused(why_not(conn, user, code).await?));
            };
            let refuse = |reason| {
                Abort::Refused(Refused {
                    reason,
                    pass: Some(claimed.pass_id),
                })
            };

            let pass = passes::find(conn, claimed.pass_id)
                .await?
                .ok_or(diesel::result::Error::NotFound)?;
            // As at checkout: a banned viewer gets no grant, and the
            // rollback gives the use back (the ban is the access rule's).
            if bans::active(conn, pass.channel_id, user, bans::Kind::Ban)
                .await?
                .is_some()
            {
                return Err(refuse(Refusal::Banned));
            }
            if super::channels::is_hidden(conn, pass.channel_id).await? {
                return Err(refuse(Refusal::ChannelHidden));
            }
            let from = grants::next_start(conn, user, pass.channel_id, pass.stream_id).await?;
            let Some((starts_at, expires_at)) = pass.grant_window(from) else {
                return Err(refuse(Refusal::WindowOver));
            };
            let grant = grants::insert(
                conn,
                &NewGrant {
                    user_id: user,
                    channel_id: pass.channel_id,
                    // A channel pass has no stream; a stream pass its own.
                    stream_id: pass.stream_id,
                    pass_id: Some(pass.id),
                    source: Source::Code,
                    includes_replays: pass.includes_replays,
                    starts_at,
                    expires_at,
                },
            )
            .await?;
            // The same person and the same (multi-use) code: refused, and the
            // rollback gives the use back.
            let recorded = diesel::insert_into(redemptions::table)
                .values((
                    redemptions::code_id.eq(claimed.id),
                    redemptions::user_id.eq(user),
                    redemptions::grant_id.eq(grant.id),
                ))
                .on_conflict((redemptions::code_id, redemptions::user_id))
                .do_nothing()
                .execute(conn)
                .await?;
            if recorded == 0 {
                return Err(refuse(Refusal::AlreadyRedeemed));
            }
            super::audit::record(
                conn,
                Some(user),
                Some(pass.channel_id),
                "code.redeemed",
                Some(&grant.id.to_string()),
                serde_json::json!({
                    "code_id": claimed.id,
                    "pass_id": pass.id,
                    "expires_at": grant.expires_at,
                }),
            )
            .await?;
            Ok(Redeemed {
                grant,
                pass,
                code_id: claimed.id,
            })
        })
        .await;
    match outcome {
        Ok(redeemed) => Ok(Ok(redeemed)),
        Err(Abort::Refused(refused)) => Ok(Err(refused)),
        Err(Abort::Db(e)) => Err(e),
    }
}

/// Why the claiming UPDATE matched nothing, asked of the database's clock.
async fn why_not(conn: &mut AsyncPgConnection, user: UserId, code: &str) -> QueryResult<Refused> {
    #[derive(QueryableByName)]
    struct Facts {
        #[diesel(sql_type = BigInt)]
        pass_id: i64,
        #[diesel(sql_type = Bool)]
        mine: bool,
        #[diesel(sql_type = Bool)]
        expired: bool,
    }
    let facts: Option<Facts> = diesel::sql_query(
        "SELECT c.pass_id, \
           EXISTS (SELECT 1 FROM redemptions r WHERE r.code_id = c.id AND r.user_id = $2) AS mine, \
           (c.expires_at IS NOT NULL AND c.expires_at <= now()) AS expired \
         FROM redeem_codes c WHERE c.code = $1",
    )
    .bind::<Text, _>(code)
    .bind::<BigInt, _>(user.0)
    .get_result(conn)
    .await
    .optional()?;
    Ok(match facts {
        None => Refused {
            reason: Refusal::Unknown,
            pass: None,
        },
        Some(f) => Refused {
            // Your own earlier redemption explains a used-up code best.
            reason: if f.mine {
                Refusal::AlreadyRedeemed
            } else if f.expired {
                Refusal::Expired
            } else {
                Refusal::UsedUp
            },
            pass: Some(PassId(f.pass_id)),
        },
    })
}

/// Failed redemptions of `user` within `window` (from the audit log); the
/// limit (`REDEEM_MAX_FAILURES_PER_ACCOUNT`) slows down guessing codes.
pub async fn recent_failures(
    conn: &mut AsyncPgConnection,
    user: UserId,
    window: std::time::Duration,
) -> QueryResult<i64> {
    // The window is ours (a setting), never user input.
    let since = diesel::dsl::sql::<diesel::sql_types::Timestamptz>(&format!(
        "now() - interval '{} seconds'",
        window.as_secs()
    ));
    audit_log::table
        .filter(audit_log::actor_id.eq(user))
        .filter(audit_log::action.eq(FAILED_ACTION))
        .filter(audit_log::created_at.gt(since))
        .count()
        .get_result(conn)
        .await
}

/// How long until `user` has fewer than `max` failures within `window`.
pub async fn failures_retry_after(
    conn: &mut AsyncPgConnection,
    user: UserId,
    max: u32,
    window: std::time::Duration,
) -> QueryResult<std::time::Duration> {
    use diesel::sql_types::{BigInt, Double, Text};
    let wait: Option<super::RetryWait> = diesel::sql_query(
        "SELECT GREATEST(EXTRACT(EPOCH FROM created_at + make_interval(secs => $3) - now()), 1)::float8 AS secs \
         FROM audit_log \
         WHERE actor_id = $1 AND action = $2 AND created_at > now() - make_interval(secs => $3) \
         ORDER BY created_at DESC OFFSET $4 LIMIT 1",
    )
    .bind::<BigInt, _>(user.0)
    .bind::<Text, _>(FAILED_ACTION)
    .bind::<Double, _>(window.as_secs_f64())
    .bind::<BigInt, _>(i64::from(max.max(1)) - 1)
    .get_result(conn)
    .await
    .optional()?;
    Ok(super::RetryWait::or_window(wait, window))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_grouped_from_the_unambiguous_alphabet() {
        for _ in 0..200 {
            let code = fresh_code();
            assert_eq!(code.len(), 14, "{code}");
            let groups: Vec<&str> = code.split('-').collect();
            assert_eq!(groups.len(), 3);
            assert!(groups.iter().all(|g| g.len() == 4));
            for b in code.bytes().filter(|b| *b != b'-') {
                assert!(ALPHABET.contains(&b), "{code}");
                assert!(!b"0O1IL".contains(&b), "{code}");
            }
        }
        assert_ne!(fresh_code(), fresh_code());
    }

    #[test]
    fn typed_codes_are_normalized() {
        for typed in [
            "ABCD-EFGH-JKMN",
            "abcd-efgh-jkmn",
            "abcdefghjkmn",
            " ab cd ef gh jk mn ",
            "ABCD EFGH JKMN",
            "ABCDEFGH-JKMN",
        ] {
            assert_eq!(normalize(typed), "ABCD-EFGH-JKMN", "{typed}");
        }
        // Not one of ours: left as typed, upper case, to be reported unknown.
        assert_eq!(normalize("hello"), "HELLO");
        assert_eq!(normalize("ABCD-EFGH-JKM0"), "ABCDEFGHJKM0");
        assert_eq!(normalize(""), "");
    }
}
