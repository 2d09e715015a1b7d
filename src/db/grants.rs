//! Access grants: the right to watch. Whether a grant is *active* is decided in
//! SQL at the moment of use (`access.rs`, the enforcer), never from rows loaded
//! here. Every change fires `stagepass_access_changed` (a trigger), which wakes
//! the enforcer on every app instance.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::access_grants;
use super::{ChannelId, GrantId, PassId, StreamId, UserId};

#[derive(Debug, Clone, Queryable, Selectable, Identifiable)]
#[diesel(table_name = access_grants, check_for_backend(diesel::pg::Pg))]
pub struct Grant {
    pub id: GrantId,
    pub user_id: UserId,
    pub channel_id: ChannelId,
    pub stream_id: Option<StreamId>,
    pub pass_id: Option<PassId>,
    pub source: String,
    pub includes_replays: bool,
    pub starts_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Where a grant came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Purchase,
    Code,
    Comp,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Purchase => "purchase",
            Source::Code => "code",
            Source::Comp => "comp",
        }
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = access_grants)]
pub struct NewGrant<'a> {
    pub user_id: UserId,
    pub channel_id: ChannelId,
    pub stream_id: Option<StreamId>,
    pub pass_id: Option<PassId>,
    pub source: &'a str,
    pub includes_replays: bool,
    pub starts_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert(conn: &mut AsyncPgConnection, new: &NewGrant<'_>) -> QueryResult<Grant> {
    diesel::insert_into(access_grants::table).values(new).returning(Grant::as_returning()).get_result(conn).await
}

pub async fn find(conn: &mut AsyncPgConnection, id: GrantId) -> QueryResult<Option<Grant>> {
    access_grants::table.find(id).select(Grant::as_select()).first(conn).await.optional()
}

/// Revokes a grant now; answers it, or None when it was already revoked.
pub async fn revoke(conn: &mut AsyncPgConnection, id: GrantId, reason: &str) -> QueryResult<Option<Grant>> {
    diesel::update(access_grants::table.find(id).filter(access_grants::revoked_at.is_null()))
        .set((
            access_grants::revoked_at.eq(diesel::dsl::now),
            access_grants::revoked_reason.eq(reason),
            access_grants::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Grant::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// Moves a grant's end; answers it, or None when it is revoked (revocation is final).
pub async fn set_expiry(conn: &mut AsyncPgConnection, id: GrantId, expires_at: DateTime<Utc>) -> QueryResult<Option<Grant>> {
    diesel::update(access_grants::table.find(id).filter(access_grants::revoked_at.is_null()))
        .set((access_grants::expires_at.eq(expires_at), access_grants::updated_at.eq(diesel::dsl::now)))
        .returning(Grant::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// When a new grant for the same scope should start: at the end of the user's
/// latest active one (buying again extends), else now. Evaluated in SQL.
pub async fn next_start(
    conn: &mut AsyncPgConnection,
    user: UserId,
    channel: ChannelId,
    stream: Option<StreamId>,
) -> QueryResult<DateTime<Utc>> {
    use diesel::sql_types::{BigInt, Nullable, Timestamptz};
    #[derive(QueryableByName)]
    struct Start {
        #[diesel(sql_type = Timestamptz)]
        at: DateTime<Utc>,
    }
    let row: Start = diesel::sql_query(
        "SELECT greatest(now(), coalesce(max(expires_at), now())) AS at FROM access_grants \
         WHERE user_id = $1 AND channel_id = $2 AND stream_id IS NOT DISTINCT FROM $3 \
           AND revoked_at IS NULL AND starts_at <= now() AND now() < expires_at",
    )
    .bind::<BigInt, _>(user.0)
    .bind::<BigInt, _>(channel.0)
    .bind::<Nullable<BigInt>, _>(stream.map(|s| s.0))
    .get_result(conn)
    .await?;
    Ok(row.at)
}
