//! stagepass: a self-hostable live-streaming server for creators who sell access.
//!
//! `app(state)` builds the whole HTTP application; `main.rs` serves it and the
//! integration tests serve it on random ports. See README.md for the module map.

pub mod access;
pub mod analytics;
pub mod auth;
pub mod chat;
pub mod config;
pub mod db;
pub mod demo;
pub mod enforcement;
pub mod error;
pub mod images;
pub mod jobs;
pub mod lifecycle;
pub mod limits;
pub mod livekit;
pub mod notify;
pub mod outgoing_webhooks;
pub mod payments;
pub mod recorder;
pub mod recording;
pub mod router;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod web;

pub use router::app;
pub use state::AppState;

use std::net::SocketAddr;

/// In-flight requests get this long after SIGTERM; open SSE streams (chat)
/// never finish on their own, so they are cut at the deadline.
pub const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves `state` on `listener` until `shutdown` resolves, then drains in-flight
/// requests for at most `DRAIN_TIMEOUT`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let jobs = jobs::spawn(state.clone());
    let (stopping_tx, mut stopping) = tokio::sync::watch::channel(false);
    let mut handing_over = stopping_tx.subscribe();
    let signal = async move {
        shutdown.await;
        let _ = stopping_tx.send(true);
    };
    // Recordings are finished and handed over as soon as shutdown begins,
    // beside the drain (open chat streams keep it going to its deadline).
    let recorders = state.clone();
    let hand_over = tokio::spawn(async move {
        if handing_over.wait_for(|stop| *stop).await.is_ok() {
            recorders.recorders.hand_over(DRAIN_TIMEOUT).await;
        }
    });
    let server = axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(signal);
    let deadline = async move {
        let _ = stopping.wait_for(|stop| *stop).await;
        tokio::time::sleep(DRAIN_TIMEOUT).await;
    };
    let result = tokio::select! {
        result = server => result,
        () = deadline => {
            tracing::warn!("shutdown: connections still open after the drain timeout; closing them");
            Ok(())
        }
    };
    for job in jobs {
        job.abort();
    }
    let _ = hand_over.await;
    result
}
