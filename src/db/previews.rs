//! Free previews given (`previews`): who watched a pass-only stream's free
//! preview, and until when. Counted per account, and for guests per
//! identity (their cookie) and per address. Whether someone may have one is
//! the access rule's (`access::preview`); this module reads and writes rows.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Timestamptz};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};

use super::{StreamId, UserId};

/// Who asks for a preview: an account, or a guest (their LiveKit identity)
/// at an address.
#[derive(Debug, Clone)]
pub struct Previewer {
    pub user: Option<UserId>,
    /// The LiveKit identity the preview is for (`livekit::Participant`).
    pub identity: String,
    /// The client's address (counted for guests).
    pub address: String,
}

#[derive(QueryableByName)]
struct Ends {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    ends_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<diesel::sql_types::Bool>)]
    running: Option<bool>,
}

/// A preview as found: its end, and whether that is still to come (by the
/// database's clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub ends_at: DateTime<Utc>,
    pub running: bool,
}

/// The SQL that finds `who`'s preview of stream $1: an account's by $2
/// (user), a guest's by $3 (identity) or $4 (address).
const FIND: &str = "SELECT max(ends_at) AS ends_at, max(ends_at) > now() AS running \
     FROM previews WHERE stream_id = $1 \
     AND CASE WHEN $2::int8 IS NOT NULL THEN user_id = $2 \
              ELSE (identity = $3 OR (user_id IS NULL AND address = $4)) END";

/// `who`'s preview of `stream`; None: they never had one.
pub async fn find(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
    who: &Previewer,
) -> QueryResult<Option<Found>> {
    let row: Ends = diesel::sql_query(FIND)
        .bind::<BigInt, _>(stream.0)
        .bind::<Nullable<BigInt>, _>(who.user.map(|u| u.0))
        .bind::<Text, _>(&who.identity)
        .bind::<Text, _>(&who.address)
        .get_result(conn)
        .await?;
    Ok(row.ends_at.map(|ends_at| Found {
        ends_at,
        running: row.running.unwrap_or(false),
    }))
}

/// Whether LiveKit identity `identity` has a preview of `stream` running now.
pub async fn running_for(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
    identity: &str,
) -> QueryResult<bool> {
    #[derive(QueryableByName)]
    struct Running {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        running: bool,
    }
    let row: Running = diesel::sql_query(
        "SELECT EXISTS (SELECT 1 FROM previews WHERE stream_id = $1 AND identity = $2 \
         AND now() < ends_at) AS running",
    )
    .bind::<BigInt, _>(stream.0)
    .bind::<Text, _>(identity)
    .get_result(conn)
    .await?;
    Ok(row.running)
}

/// `who`'s preview of `stream`: the one they had (running or over), or a new
/// one of `seconds` from now. Checked and written under a lock on the
/// stream and the previewer, so two requests at once start one preview.
/// Answers it, and whether it started now.
pub async fn start(
    conn: &mut AsyncPgConnection,
    stream: StreamId,
    who: &Previewer,
    seconds: i32,
) -> QueryResult<(Found, bool)> {
    let key = match who.user {
        Some(user) => format!("preview\n{stream}\nu{user}"),
        None => format!("preview\n{stream}\na{}", who.address),
    };
    conn.transaction(async |conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind::<Text, _>(&key)
            .execute(conn)
            .await?;
        if let Some(found) = find(conn, stream, who).await? {
            // The same preview under another identity (a guest who cleared
            // their cookies, the address's): the enforcer keeps identities,
            // so this one gets the row too, ending when it ends.
            if found.running {
                diesel::sql_query(
                    "INSERT INTO previews (stream_id, user_id, identity, address, ends_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (stream_id, identity) DO NOTHING",
                )
                .bind::<BigInt, _>(stream.0)
                .bind::<Nullable<BigInt>, _>(who.user.map(|u| u.0))
                .bind::<Text, _>(&who.identity)
                .bind::<Text, _>(&who.address)
                .bind::<Timestamptz, _>(found.ends_at)
                .execute(conn)
                .await?;
            }
            return Ok((found, false));
        }
        let row: Ends = diesel::sql_query(
            "INSERT INTO previews (stream_id, user_id, identity, address, ends_at) \
             VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5)) \
             ON CONFLICT (stream_id, identity) DO UPDATE SET identity = EXCLUDED.identity \
             RETURNING ends_at, true AS running",
        )
        .bind::<BigInt, _>(stream.0)
        .bind::<Nullable<BigInt>, _>(who.user.map(|u| u.0))
        .bind::<Text, _>(&who.identity)
        .bind::<Text, _>(&who.address)
        .bind::<Integer, _>(seconds)
        .get_result(conn)
        .await?;
        let ends_at = row.ends_at.expect("RETURNING gives the end");
        Ok((
            Found {
                ends_at,
                running: true,
            },
            true,
        ))
    })
    .await
}
