//! Background loops: the LiveKit reconciler (at start-up and every
//! `LIVEKIT_RECONCILE_SECONDS`)
//! and the cleanup of expired sessions, old sign-in attempts, forgotten
//! devices and old counted actions of the flood limits, the
//! grant-expiry enforcer, the chat bridge (LISTEN + held-message releaser), and
//! recording retention (hourly; it also checks the S3 bucket at start-up),
//! the outgoing-webhook delivery worker (`outgoing_webhooks::run`), and the
//! built-in recorder's supervisor (`recorder::supervise`: takes over
//! recordings whose instance died), and the metrics' upkeep.
//! Loops log failures and keep going; they never take the server down.

use std::time::Duration;

use tokio::task::JoinHandle;
use tower_sessions::session_store::ExpiredDeletion;

use crate::auth::session_store::PgSessionStore;
use crate::db;
use crate::state::AppState;

pub const CLEANUP_EVERY: Duration = Duration::from_secs(5 * 60);
pub const RETENTION_EVERY: Duration = Duration::from_secs(60 * 60);
/// The Prometheus recorder keeps every histogram sample until it is drained.
pub const METRICS_UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Starts every background loop; abort the handles to stop them.
pub fn spawn(state: AppState) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(cleanup(state.clone())),
        tokio::spawn(reconcile(state.clone())),
        tokio::spawn(crate::enforcement::run(state.clone())),
        tokio::spawn(crate::chat::bridge::run(state.clone())),
        tokio::spawn(crate::outgoing_webhooks::run(state.clone())),
        tokio::spawn(crate::recorder::supervise(state.clone())),
        tokio::spawn(metrics_upkeep(state.metrics.clone())),
        tokio::spawn(retention(state)),
    ]
}

/// Drains the request-latency samples into their buckets. The recorder does
/// that only when `/metrics` is scraped (it is installed without its own
/// exporter task): an instance nobody scrapes kept 8 bytes for every request
/// it ever answered.
async fn metrics_upkeep(metrics: metrics_exporter_prometheus::PrometheusHandle) {
    let mut tick = tokio::time::interval(METRICS_UPKEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        metrics.run_upkeep();
    }
}

/// Keeps the database and LiveKit in step; LiveKit drops webhooks it cannot
/// deliver within 30 s, so this is the safety net.
async fn reconcile(state: AppState) {
    let mut tick = tokio::time::interval(state.config.livekit.reconcile_every);
    loop {
        tick.tick().await;
        if let Err(e) = crate::lifecycle::reconcile(&state).await {
            metrics::counter!("reconciler_failures_total").increment(1);
            tracing::warn!(error = %e, "reconciling with LiveKit");
        }
        if let Err(e) =
            crate::recording::reconcile(&state, crate::recording::QUIET_BEFORE_RECONCILE).await
        {
            metrics::counter!("reconciler_failures_total").increment(1);
            tracing::warn!(error = %e, "reconciling recordings with LiveKit");
        }
    }
}

async fn cleanup(state: AppState) {
    let store = PgSessionStore::new(state.db.clone());
    let mut tick = tokio::time::interval(CLEANUP_EVERY);
    loop {
        tick.tick().await;
        if let Err(e) = store.delete_expired().await {
            tracing::warn!(error = %e, "deleting expired sessions");
        }
        match state.db.get().await {
            Ok(mut conn) => {
                if let Err(e) = db::users::delete_old_sign_in_attempts(&mut conn).await {
                    tracing::warn!(error = %e, "deleting old sign-in attempts");
                }
                if let Err(e) = db::users::delete_old_devices(&mut conn).await {
                    tracing::warn!(error = %e, "forgetting devices unused for a year");
                }
                if let Err(e) = crate::limits::delete_old(&mut conn).await {
                    tracing::warn!(error = %e, "deleting old counted actions of the flood limits");
                }
            }
            Err(e) => tracing::warn!(error = %e, "cleanup: database unavailable"),
        }
    }
}

/// Checks the recordings bucket once at start-up (a warning, never a crash),
/// then hourly deletes recordings older than their channel's retention period.
async fn retention(state: AppState) {
    crate::storage::warn_if_unusable(&state.storage).await;
    let mut tick = tokio::time::interval(RETENTION_EVERY);
    loop {
        tick.tick().await;
        match crate::recording::apply_retention(&state).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "retention: old recordings deleted"),
            Err(e) => tracing::warn!(error = %e, "retention: deleting old recordings"),
        }
    }
}
