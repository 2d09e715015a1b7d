//! Files browsers ask for at fixed addresses, whatever the page links:
//! `/favicon.ico` answers stagepass's icon (an SVG, which browsers take
//! there too), so no page load logs a 404. Pages link the same file
//! (`/static/favicon.svg`) in base.html.

use axum::http::header;
use axum::response::IntoResponse;

const FAVICON: &[u8] = include_bytes!("../../static/favicon.svg");

pub async fn favicon() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        FAVICON,
    )
}
