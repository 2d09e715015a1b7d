//! What the instance's admins do: suspend and restore accounts, hide and
//! restore channels, decide creator applications. Each action is one
//! transaction with its `admin.*` audit entry; what it means outside the
//! database (live streams ending) follows the commit.
//!
//! A suspension needs nothing more to take effect everywhere: the access
//! rule denies a suspended account (and hides its channels), and the trigger
//! on `users.suspended_at` wakes every instance's enforcer (which removes
//! them from every room) and re-checks their open chat streams (which
//! close). Here: their sessions end, and their own live streams end.
//!
//! Who is an admin is `users.is_admin`, set from the command line
//! (`stagepass admin grant EMAIL`); the web layer checks it (`web::admin`).
//! This module knows nothing of HTTP.

use diesel_async::{AsyncConnection, AsyncPgConnection};

use crate::db::applications::{self, Application, Status};
use crate::db::{self, ChannelId, DbResult, UserId};
use crate::lifecycle;
use crate::state::AppState;

/// Why an admin's action was refused, in words for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("You cannot suspend your own account.")]
    Yourself,
    #[error(
        "This account is an instance admin. Revoke that first (stagepass admin revoke EMAIL), then suspend it."
    )]
    Admin,
    #[error("There is no such account.")]
    NoAccount,
    #[error("There is no such channel.")]
    NoChannel,
    #[error("This application has been decided already.")]
    Decided,
}

/// Suspends `user` for `reason`: they cannot sign in, their sessions end,
/// their live streams end, their channels are hidden, and the access rule
/// removes them from every room and chat. Answers whether they were not
/// suspended before.
pub async fn suspend(
    state: &AppState,
    admin: UserId,
    user: UserId,
    reason: &str,
) -> DbResult<Result<bool, Refusal>> {
    if user == admin {
        return Ok(Err(Refusal::Yourself));
    }
    let mut conn = state.db.get().await?;
    let Some(account) = db::users::account(&mut conn, user).await? else {
        return Ok(Err(Refusal::NoAccount));
    };
    if account.is_admin {
        return Ok(Err(Refusal::Admin));
    }
    let changed = conn
        .transaction(async |conn| {
            if !db::users::set_suspended(conn, user, Some(reason)).await? {
                return diesel::QueryResult::Ok(false);
            }
            let sessions = db::sessions::delete_for_user(conn, user).await?;
            audit(
                conn,
                admin,
                None,
                "admin.user.suspended",
                &user.to_string(),
                serde_json::json!({ "email": account.email, "reason": reason, "sessions_ended": sessions }),
            )
            .await?;
            Ok(true)
        })
        .await?;
    if changed {
        tracing::info!(%user, "account suspended");
        let channels = db::channels::owned_by(&mut conn, user).await?;
        drop(conn);
        end_live_streams(state, admin, &channels).await?;
    }
    Ok(Ok(changed))
}

/// Restores a suspended account: they may sign in again and their channels
/// show again. Answers whether it was suspended.
pub async fn restore(
    state: &AppState,
    admin: UserId,
    user: UserId,
) -> DbResult<Result<bool, Refusal>> {
    let mut conn = state.db.get().await?;
    let Some(account) = db::users::account(&mut conn, user).await? else {
        return Ok(Err(Refusal::NoAccount));
    };
    let changed = conn
        .transaction(async |conn| {
            if !db::users::set_suspended(conn, user, None).await? {
                return diesel::QueryResult::Ok(false);
            }
            audit(
                conn,
                admin,
                None,
                "admin.user.restored",
                &user.to_string(),
                serde_json::json!({ "email": account.email }),
            )
            .await?;
            Ok(true)
        })
        .await?;
    Ok(Ok(changed))
}

/// Hides `channel` from the public for `reason` (its live streams end), or
/// shows it again (`reason` None). Answers whether anything changed.
pub async fn set_channel_hidden(
    state: &AppState,
    admin: UserId,
    channel: ChannelId,
    reason: Option<&str>,
) -> DbResult<Result<bool, Refusal>> {
    let mut conn = state.db.get().await?;
    let Some(found) = db::channels::find(&mut conn, channel).await? else {
        return Ok(Err(Refusal::NoChannel));
    };
    let changed = conn
        .transaction(async |conn| {
            if !db::channels::set_hidden(conn, channel, reason).await? {
                return diesel::QueryResult::Ok(false);
            }
            let (action, details) = match reason {
                Some(reason) => (
                    "admin.channel.hidden",
                    serde_json::json!({ "handle": found.handle, "reason": reason }),
                ),
                None => (
                    "admin.channel.restored",
                    serde_json::json!({ "handle": found.handle }),
                ),
            };
            audit(
                conn,
                admin,
                Some(channel),
                action,
                &channel.to_string(),
                details,
            )
            .await?;
            Ok(true)
        })
        .await?;
    drop(conn);
    if changed && reason.is_some() {
        tracing::info!(%channel, "channel hidden");
        end_live_streams(state, admin, &[channel]).await?;
    }
    Ok(Ok(changed))
}

/// Approves (`reject` None) or rejects (with its reason) a pending creator
/// application; the applicant hears it through the bell.
pub async fn decide_application(
    state: &AppState,
    admin: UserId,
    application: i64,
    reject: Option<&str>,
) -> DbResult<Result<Application, Refusal>> {
    let mut conn = state.db.get().await?;
    let status = if reject.is_some() {
        Status::Rejected
    } else {
        Status::Approved
    };
    let decided = conn
        .transaction(async |conn| {
            let Some(decided) =
                applications::decide(conn, application, admin, status, reject).await?
            else {
                return diesel::QueryResult::Ok(None);
            };
            if status == Status::Approved {
                db::users::approve_creator(conn, decided.user_id).await?;
            }
            db::notifications::application_decided(conn, decided.user_id, decided.id).await?;
            audit(
                conn,
                admin,
                None,
                match status {
                    Status::Approved => "admin.application.approved",
                    _ => "admin.application.rejected",
                },
                &decided.user_id.to_string(),
                serde_json::json!({ "application": decided.id, "channel_name": decided.channel_name, "reason": reject }),
            )
            .await?;
            Ok(Some(decided))
        })
        .await?;
    Ok(decided.ok_or(Refusal::Decided))
}

/// Ends the live streams of `channels` as `admin`'s doing. A stream that
/// LiveKit would not end now stays live for its team only: the access rule
/// denies everyone else, and the enforcer (woken by the trigger on the
/// change) removes them from its room; the owner can end it, or retry later.
async fn end_live_streams(state: &AppState, admin: UserId, channels: &[ChannelId]) -> DbResult<()> {
    if channels.is_empty() {
        return Ok(());
    }
    let live = db::streams::live_in(&mut *state.db.get().await?, channels).await?;
    for stream in live {
        if let Err(e) = lifecycle::end_stream(state, stream, Some(admin)).await {
            tracing::warn!(error = %e, %stream, "operators: ending a live stream failed");
        }
    }
    Ok(())
}

async fn audit(
    conn: &mut AsyncPgConnection,
    admin: UserId,
    channel: Option<ChannelId>,
    action: &str,
    subject: &str,
    details: serde_json::Value,
) -> diesel::QueryResult<()> {
    db::audit::record(conn, Some(admin), channel, action, Some(subject), details).await
}
