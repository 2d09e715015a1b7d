//! The audit log: every moderation, grant and lifecycle action, and account
//! security events (sign-up, password change). Append-only.

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
