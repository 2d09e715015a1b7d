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
    pub source: Source,
    pub includes_replays: bool,
    pub starts_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
    pub created_at: DateTime<Utc>,
}

super::text_enum! {
    /// Where a grant came from.
    pub enum Source {
        Purchase = "purchase",
        Code = "code",
        Comp = "comp",
    }
}

#[derive(Debug, Insertable)]
#[diesel(table_name = access_grants)]
pub struct NewGrant {
    pub user_id: UserId,
    pub channel_id: ChannelId,
    pub stream_id: Option<StreamId>,
    pub pass_id: Option<PassId>,
    pub source: Source,
    pub includes_replays: bool,
    pub starts_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub async fn insert(conn: &mut AsyncPgConnection, new: &NewGrant) -> QueryResult<Grant> {
    diesel::insert_into(access_grants::table)
        .values(new)
        .returning(Grant::as_returning())
        .get_result(conn)
        .await
}

pub async fn find(conn: &mut AsyncPgConnection, id: GrantId) -> QueryResult<Option<Grant>> {
    access_grants::table
        .find(id)
        .select(Grant::as_select())
        .first(conn)
        .await
        .optional()
}

/// The grant, unless it is revoked: revocation is final, nothing changes a
/// revoked grant.
fn unrevoked(
    id: GrantId,
) -> diesel::dsl::Filter<
    diesel::dsl::Find<access_grants::table, GrantId>,
    diesel::dsl::IsNull<access_grants::revoked_at>,
> {
    access_grants::table
        .find(id)
        .filter(access_grants::revoked_at.is_null())
}

/// Revokes a grant now; answers it, or None when it was already revoked.
pub async fn revoke(
    conn: &mut AsyncPgConnection,
    id: GrantId,
    reason: &str,
) -> QueryResult<Option<Grant>> {
    diesel::update(unrevoked(id))
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
pub async fn set_expiry(
    conn: &mut AsyncPgConnection,
    id: GrantId,
    expires_at: DateTime<Utc>,
) -> QueryResult<Option<Grant>> {
    diesel::update(unrevoked(id))
        .set((
            access_grants::expires_at.eq(expires_at),
            access_grants::updated_at.eq(diesel::dsl::now),
        ))
        .returning(Grant::as_returning())
        .get_result(conn)
        .await
        .optional()
}

/// When a new grant for the same scope should start: at the end of the user's
/// latest active one (buying again extends), else now. Evaluated in SQL.
/// Call it inside the transaction that inserts the grant: it takes a per
/// (user, channel) lock until commit, so purchases, redemptions and comps
/// that happen at once still stack one after the other.
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
    diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind::<diesel::sql_types::Text, _>(format!("stagepass:grant-stacking:{user}:{channel}"))
        .execute(conn)
        .await?;
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

/// Where a grant stands right now; the list's filter and its badge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantState {
    Active,
    Upcoming,
    Expired,
    Revoked,
}

impl GrantState {
    pub const ALL: [GrantState; 4] = [
        GrantState::Active,
        GrantState::Upcoming,
        GrantState::Expired,
        GrantState::Revoked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            GrantState::Active => "active",
            GrantState::Upcoming => "upcoming",
            GrantState::Expired => "expired",
            GrantState::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|g| g.as_str() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            GrantState::Active => "Active",
            GrantState::Upcoming => "Upcoming",
            GrantState::Expired => "Expired",
            GrantState::Revoked => "Revoked",
        }
    }
}

/// The state of `access_grants` rows, by the database's clock (the same rule
/// as `access.rs`: active iff not revoked and `starts_at <= now() < expires_at`).
const STATE_SQL: &str = "CASE WHEN access_grants.revoked_at IS NOT NULL THEN 'revoked' \
    WHEN now() < access_grants.starts_at THEN 'upcoming' \
    WHEN now() < access_grants.expires_at THEN 'active' ELSE 'expired' END";

/// A grant as the owner's list shows it: who holds it, for which pass and scope.
#[derive(Debug, Clone)]
pub struct ChannelGrant {
    pub grant: Grant,
    pub user_name: String,
    pub user_email: String,
    pub pass_name: Option<String>,
    pub stream_title: Option<String>,
    pub state: GrantState,
}

/// What the list selects, in `ChannelGrant`'s order.
type ListRow = (
    Grant,
    String,
    String,
    Option<String>,
    Option<String>,
    String,
);

impl From<ListRow> for ChannelGrant {
    fn from((grant, user_name, user_email, pass_name, stream_title, state): ListRow) -> Self {
        ChannelGrant {
            grant,
            user_name,
            user_email,
            pass_name,
            stream_title,
            state: GrantState::parse(&state).unwrap_or(GrantState::Expired),
        }
    }
}

/// The grants of the list with their holder, pass and stream (the last two may be gone).
macro_rules! listed {
    () => {{
        use super::schema::{access_passes, streams, users};
        access_grants::table
            .inner_join(users::table)
            .left_join(access_passes::table)
            .left_join(streams::table)
    }};
}

macro_rules! list_selection {
    () => {{
        use super::schema::{access_passes, streams, users};
        (
            Grant::as_select(),
            users::display_name,
            users::email,
            access_passes::name.nullable(),
            streams::title.nullable(),
            diesel::dsl::sql::<diesel::sql_types::Text>(STATE_SQL),
        )
    }};
}

/// The owner's filters over a channel's grants.
#[derive(Debug, Clone, Default)]
pub struct GrantQuery {
    pub state: Option<GrantState>,
    /// Part of the holder's email, any case.
    pub email: Option<String>,
    pub pass: Option<PassId>,
}

/// One page of a channel's grants, newest first, and how many match in all.
/// The state filters compare with the database's `now()`.
pub async fn list(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    query: &GrantQuery,
    offset: i64,
    limit: i64,
) -> QueryResult<(Vec<ChannelGrant>, i64)> {
    use super::schema::users;
    use diesel::dsl::now;

    let filtered = || {
        let mut q = listed!()
            .filter(access_grants::channel_id.eq(channel))
            .into_boxed::<diesel::pg::Pg>();
        q = match query.state {
            None => q,
            Some(GrantState::Revoked) => q.filter(access_grants::revoked_at.is_not_null()),
            Some(GrantState::Upcoming) => q
                .filter(access_grants::revoked_at.is_null())
                .filter(access_grants::starts_at.gt(now)),
            Some(GrantState::Active) => q
                .filter(access_grants::revoked_at.is_null())
                .filter(access_grants::starts_at.le(now))
                .filter(access_grants::expires_at.gt(now)),
            Some(GrantState::Expired) => q
                .filter(access_grants::revoked_at.is_null())
                .filter(access_grants::expires_at.le(now)),
        };
        if let Some(pattern) = super::typed_contains(query.email.as_deref()) {
            q = q.filter(users::email.ilike(pattern));
        }
        if let Some(pass) = query.pass {
            q = q.filter(access_grants::pass_id.eq(pass));
        }
        q
    };

    let total: i64 = filtered().count().get_result(conn).await?;
    let rows: Vec<ListRow> = filtered()
        .order((access_grants::created_at.desc(), access_grants::id.desc()))
        .offset(offset)
        .limit(limit)
        .select(list_selection!())
        .load(conn)
        .await?;
    Ok((rows.into_iter().map(ChannelGrant::from).collect(), total))
}

/// One grant as the list shows it (to render its row again after a change).
pub async fn find_in_list(
    conn: &mut AsyncPgConnection,
    id: GrantId,
) -> QueryResult<Option<ChannelGrant>> {
    let row: Option<ListRow> = listed!()
        .filter(access_grants::id.eq(id))
        .select(list_selection!())
        .first(conn)
        .await
        .optional()?;
    Ok(row.map(ChannelGrant::from))
}

/// A channel's passes (archived ones too: their grants stay), for the list's filter.
pub async fn pass_choices(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
) -> QueryResult<Vec<(PassId, String, bool)>> {
    use super::schema::access_passes;
    access_passes::table
        .filter(access_passes::channel_id.eq(channel))
        .order((
            access_passes::archived_at.is_not_null(),
            access_passes::name.asc(),
        ))
        .select((
            access_passes::id,
            access_passes::name,
            access_passes::archived_at.is_not_null(),
        ))
        .load(conn)
        .await
}

/// Whether `user` holds a grant from `pass` that has not ended (active or upcoming), by SQL's clock.
pub async fn holds_active_from_pass(
    conn: &mut AsyncPgConnection,
    user: UserId,
    pass: PassId,
) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        access_grants::table
            .filter(access_grants::user_id.eq(user))
            .filter(access_grants::pass_id.eq(pass))
            .filter(access_grants::revoked_at.is_null())
            .filter(access_grants::expires_at.gt(diesel::dsl::now)),
    ))
    .get_result(conn)
    .await
}
