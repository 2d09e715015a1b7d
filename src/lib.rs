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
pub mod format;
pub mod images;
pub mod jobs;
pub mod lifecycle;
pub mod limits;
pub mod livekit;
pub mod notify;
pub mod operators;
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
use std::time::Duration;

/// In-flight requests get this long after SIGTERM; open SSE streams (chat)
/// never finish on their own, so they are cut at the deadline.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long data we sent may go unacknowledged before the connection is
/// dropped (TCP_USER_TIMEOUT). Without it, a client that vanished (a phone
/// off the network) keeps its chat stream, and its slot under the chat caps,
/// for the kernel's retransmission limit: about 15 minutes. The chat stream
/// writes a keep-alive every 15 s, so a dead reader is found within a minute.
const UNACKED_TIMEOUT: Duration = Duration::from_secs(45);

/// TCP keepalive for idle connections (no request in flight): probed after
/// a minute of silence, dropped after three unanswered probes.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_RETRIES: u32 = 3;

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
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| tune_connection(tcp));
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

/// Sets the socket options above on an accepted connection, and no Nagle
/// delay (small SSE events go out at once). A failure is logged and the
/// connection served as it is.
fn tune_connection(tcp: &tokio::net::TcpStream) {
    let socket = socket2::SockRef::from(tcp);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL)
        .with_retries(KEEPALIVE_RETRIES);
    let result = socket
        .set_tcp_keepalive(&keepalive)
        .and_then(|()| socket.set_tcp_user_timeout(Some(UNACKED_TIMEOUT)))
        .and_then(|()| socket.set_tcp_nodelay(true));
    if let Err(e) = result {
        tracing::warn!(error = %e, "could not set TCP options on a connection");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernel holds the options on the server's side of a real connection.
    #[tokio::test]
    async fn accepted_connections_drop_dead_peers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (server, _) = listener.accept().await.unwrap();
        tune_connection(&server);
        let socket = socket2::SockRef::from(&server);
        assert!(socket.keepalive().unwrap());
        assert_eq!(socket.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
        assert_eq!(socket.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        assert_eq!(socket.tcp_keepalive_retries().unwrap(), KEEPALIVE_RETRIES);
        assert_eq!(socket.tcp_user_timeout().unwrap(), Some(UNACKED_TIMEOUT));
        assert!(socket.tcp_nodelay().unwrap());
    }
}
