//! Time-bounded means bounded during the stream too. The enforcer removes
//! from live rooms everyone the access rule no longer admits: at the moment a
//! present viewer's grant or free preview ends (it sleeps until exactly then,
//! by the database's clock, instead of polling), and at once when grants,
//! bans, the team or a suspension change, or a preview starts (a trigger
//! NOTIFYs `stagepass_access_changed`, which every app instance LISTENs to). Removal revokes the participant's older tokens, and
//! `lifecycle::participant_joined` removes anyone who reconnects anyway.
//! It must not decide access itself: it asks `access::present_but_denied`.

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use secrecy::ExposeSecret;
use tokio::sync::Notify;

use crate::access;
use crate::db::StreamId;
use crate::db::streams;
use crate::lifecycle;
use crate::state::AppState;

pub const CHANNEL: &str = "stagepass_access_changed";
/// Sleep at most this long between sweeps, whatever happens.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// After a removal that did not go through.
const RETRY_AFTER: Duration = Duration::from_secs(2);

/// Runs forever: the LISTEN task and the sweeping loop.
pub async fn run(state: AppState) {
    let changed = std::sync::Arc::new(Notify::new());
    // Stops the listener when this task is aborted (the server shuts down).
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _listener = AbortOnDrop(tokio::spawn(listen(state.clone(), changed.clone())));
    loop {
        let sleep = match sweep(&state).await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(error = %e, "enforcer sweep failed");
                Duration::from_secs(2)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = changed.notified() => {}
        }
    }
}

/// Removes whoever is present without the right to be; answers how long to
/// sleep until the next grant or free preview of a present viewer ends.
pub async fn sweep(state: &AppState) -> anyhow::Result<Duration> {
    let mut conn = state.db.get().await?;
    let intruders = access::present_but_denied(&mut conn).await?;
    let next = access::next_expiry_in(&mut conn).await?;
    drop(conn);
    // All at once, each with a short timeout: one slow call must not delay the rest.
    let results =
        futures_util::future::join_all(intruders.into_iter().map(|intruder| async move {
            let mut conn = state.db.get().await?;
            let Some(stream) = streams::find(&mut conn, StreamId(intruder.stream_id)).await? else {
                return anyhow::Ok(true);
            };
            drop(conn);
            match lifecycle::remove_participant(
                state,
                &stream,
                &intruder.identity,
                "participant.removed_access_ended",
            )
            .await
            {
                Ok(_) => {
                    // Removed (or already gone): until LiveKit's participant_left
                    // arrives, don't remove them again.
                    let mut conn = state.db.get().await?;
                    crate::db::presence::close_identity(&mut conn, stream.id, &intruder.identity)
                        .await?;
                    Ok(true)
                }
                // Still there: they stay in presence and the next sweep retries.
                Err(_) => Ok(false),
            }
        }))
        .await;
    let failed = results.iter().any(|r| !matches!(r, Ok(true)));
    if failed {
        return Ok(RETRY_AFTER);
    }
    // Wake a hair after the expiry so that `now() < expires_at` is false by then.
    Ok(match next {
        Some(s) if s > 0.0 => Duration::from_secs_f64(s + 0.05).min(MAX_SLEEP),
        Some(_) => Duration::from_millis(50),
        None => MAX_SLEEP,
    })
}

/// Holds a dedicated connection LISTENing for access changes; reconnects on failure.
async fn listen(state: AppState, changed: std::sync::Arc<Notify>) {
    loop {
        match AsyncPgConnection::establish(state.config.database_url.expose_secret()).await {
            Ok(mut conn) => {
                if let Err(e) = diesel::sql_query(format!("LISTEN {CHANNEL}"))
                    .execute(&mut conn)
                    .await
                {
                    tracing::warn!(error = %e, "enforcer: LISTEN failed");
                } else {
                    let mut stream = std::pin::pin!(conn.notifications_stream());
                    while let Some(n) = stream.next().await {
                        match n {
                            Ok(_) => changed.notify_one(),
                            Err(e) => {
                                tracing::warn!(error = %e, "enforcer: notification stream failed");
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "enforcer: cannot connect to LISTEN"),
        }
        // The connection ended; sweep anyway (something may have changed meanwhile).
        changed.notify_one();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
