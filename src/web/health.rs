//! Operator endpoints: `/healthz` (the process answers), `/readyz` (the
//! database answers; 503 otherwise) and `/metrics` (Prometheus text; behind a
//! bearer token when `METRICS_TOKEN` is set). Plain text on purpose: probes
//! and scrapers read these, not people.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use diesel_async::RunQueryDsl;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;

use crate::state::AppState;

pub async fn healthz() -> &'static str {
    "ok\n"
}

pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let check = async {
        let mut conn = state.db.get().await.map_err(|e| e.to_string())?;
        diesel::sql_query("SELECT 1")
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())
    };
    match tokio::time::timeout(Duration::from_secs(3), check).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready\n".to_owned()),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: database unreachable\n".to_owned(),
            )
        }
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: database did not answer within 3 s\n".to_owned(),
        ),
    }
}

pub async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(token) = &state.config.metrics_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(token.expose_secret().as_bytes())) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "metrics need the bearer token set in METRICS_TOKEN\n",
            )
                .into_response();
        }
    }
    let pool = state.db.status();
    metrics::gauge!("db_pool_connections").set(pool.size as f64);
    metrics::gauge!("db_pool_connections_idle").set(pool.available as f64);
    metrics::gauge!("db_pool_connections_max").set(pool.max_size as f64);
    metrics::gauge!("db_pool_waiting").set(pool.waiting as f64);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}
