//! The audit log: every moderation, grant and lifecycle action, and account
//! security events (sign-up, password change). Append-only; read back by the
//! owner's audit-log page (newest first, filtered).

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use super::schema::audit_log;
use super::{ChannelId, UserId};

pub async fn record(
    conn: &mut AsyncPgConnection,
    actor: Option<UserId>,
    channel: Option<ChannelId>,
    action: &str,
    subject: Option<&str>,
    details: serde_json::Value,
) -> QueryResult<()> {
    diesel::insert_into(audit_log::table)
        .values((
            audit_log::actor_id.eq(actor),
            audit_log::channel_id.eq(channel),
            audit_log::action.eq(action),
            audit_log::subject.eq(subject),
            audit_log::details.eq(details),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// One entry of a channel's log as the owner's audit page shows it.
#[derive(Debug, Clone, Queryable)]
pub struct Entry {
    pub id: i64,
    pub actor_id: Option<UserId>,
    pub actor_name: Option<String>,
    pub actor_email: Option<String>,
    pub action: String,
    pub subject: Option<String>,
    pub details: serde_json::Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// The owner's filters over a channel's log.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub action: Option<String>,
    /// Part of the actor's email, any case.
    pub actor: Option<String>,
    /// From the start of this UTC day.
    pub from: Option<chrono::NaiveDate>,
    /// To the end of this UTC day.
    pub to: Option<chrono::NaiveDate>,
}

/// One page of a channel's log, newest first, and how many entries match in all.
pub async fn list(
    conn: &mut AsyncPgConnection,
    channel: ChannelId,
    query: &AuditQuery,
    offset: i64,
    limit: i64,
) -> QueryResult<(Vec<Entry>, i64)> {
    use super::schema::users;

    let filtered = || {
        let mut q = audit_log::table
            .left_join(users::table)
            .filter(audit_log::channel_id.eq(channel))
            .into_boxed::<diesel::pg::Pg>();
        if let Some(action) = query.action.as_deref().filter(|a| !a.is_empty()) {
            q = q.filter(audit_log::action.eq(action.to_owned()));
        }
        if let Some(pattern) = super::typed_contains(query.actor.as_deref()) {
            q = q.filter(users::email.ilike(pattern));
        }
        if let Some(from) = query.from {
            q = q.filter(audit_log::created_at.ge(from.and_time(chrono::NaiveTime::MIN).and_utc()));
        }
        if let Some(next_day) = query.to.and_then(|d| d.succ_opt()) {
            q = q.filter(
                audit_log::created_at.lt(next_day.and_time(chrono::NaiveTime::MIN).and_utc()),
            );
        }
        q
    };
    let total: i64 = filtered().count().get_result(conn).await?;
    let rows = filtered()
        .order((audit_log::created_at.desc(), audit_log::id.desc()))
        .offset(offset)
        .limit(limit)
        .select((
            audit_log::id,
            audit_log::actor_id,
            users::display_name.nullable(),
            users::email.nullable(),
            audit_log::action,
            audit_log::subject,
            audit_log::details,
            audit_log::created_at,
        ))
        .load(conn)
        .await?;
    Ok((rows, total))
}

/// The actions present in a channel's log, for the page's filter.
pub async fn actions(conn: &mut AsyncPgConnection, channel: ChannelId) -> QueryResult<Vec<String>> {
    audit_log::table
        .filter(audit_log::channel_id.eq(channel))
        .select(audit_log::action)
        .distinct()
        .order(audit_log::action.asc())
        .load(conn)
        .await
}

/// Names of the users among `ids`, for entries whose subject is a user.
pub async fn user_names(
    conn: &mut AsyncPgConnection,
    ids: &[UserId],
) -> QueryResult<Vec<(UserId, String, String)>> {
    use super::schema::users;
    users::table
        .filter(users::id.eq_any(ids))
        .select((users::id, users::display_name, users::email))
        .load(conn)
        .await
}

/// Titles of the streams among `ids`, for entries whose subject is a stream.
pub async fn stream_titles(
    conn: &mut AsyncPgConnection,
    ids: &[super::StreamId],
) -> QueryResult<Vec<(super::StreamId, String)>> {
    use super::schema::streams;
    streams::table
        .filter(streams::id.eq_any(ids))
        .select((streams::id, streams::title))
        .load(conn)
        .await
}

/// Names of the passes among `ids`, for entries about a pass or an order.
pub async fn pass_names(
    conn: &mut AsyncPgConnection,
    ids: &[super::PassId],
) -> QueryResult<Vec<(super::PassId, String)>> {
    use super::schema::access_passes;
    access_passes::table
        .filter(access_passes::id.eq_any(ids))
        .select((access_passes::id, access_passes::name))
        .load(conn)
        .await
}
