//! stagepass: a self-hostable live-streaming server for creators who sell access.
//!
//! `app(state)` builds the whole HTTP application; `main.rs` serves it and the
//! integration tests serve it on random ports. See README.md for the module map.

pub mod access;
pub mod auth;
pub mod chat;
pub mod config;
pub mod db;
pub mod demo;
pub mod enforcement;
pub mod error;
pub mod jobs;
pub mod lifecycle;
pub mod livekit;
pub mod payments;
pub mod router;
pub mod state;
pub mod telemetry;
pub mod web;

pub use router::app;
pub use state::AppState;

use std::net::SocketAddr;

/// Serves `state` on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let jobs = jobs::spawn(state.clone());
    let result = axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    for job in jobs {
        job.abort();
    }
    result
}
