//! CSRF protection for every state-changing request (POST, PUT, PATCH, DELETE).
//!
//! Three checks, all must pass: `Sec-Fetch-Site`, when the browser sends it, is
//! `same-origin` or `none`; `Origin`, when sent, is our public origin; and the
//! per-session token matches — from the `X-CSRF-Token` header (htmx sends it
//! for every request, see base.html) or the `csrf_token` field of a plain
//! urlencoded or multipart (upload) form, so forms work without JavaScript too.
//! Webhooks (`/webhooks/...`) are exempt: they authenticate
//! with their own signatures.

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use subtle::ConstantTimeEq;
use tower_sessions::Session;

use crate::error::AppError;
use crate::state::AppState;

const SESSION_KEY: &str = "csrf_token";
pub const HEADER: &str = "x-csrf-token";
pub const FIELD: &str = "csrf_token";
/// Forms larger than this are not read for a token.
const MAX_FORM_BYTES: usize = 1024 * 1024;
/// Uploads (multipart forms) must carry their token field within this many
/// bytes (our forms put it first); only this much of an upload is read here,
/// the rest streams on to the handler and its own size limit.
const MULTIPART_TOKEN_WITHIN: usize = 64 * 1024;

fn fresh() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session's token, created on first use.
pub async fn token(session: &Session) -> Result<String, AppError> {
    if let Some(t) = session.get::<String>(SESSION_KEY).await? {
        return Ok(t);
    }
    let t = fresh();
    session.insert(SESSION_KEY, &t).await?;
    Ok(t)
}

pub async fn rotate(session: &Session) -> Result<(), AppError> {
    session.insert(SESSION_KEY, fresh()).await?;
    Ok(())
}

fn refused() -> Response {
    AppError::forbidden(
        "This form has expired or was sent from another site. Reload the page and try again.",
    )
    .into_response()
}

pub async fn verify(
    State(state): State<AppState>,
    session: Session,
    req: Request,
    next: Next,
) -> Response {
    let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if !changes_state || req.uri().path().starts_with("/webhooks/") {
        return next.run(req).await;
    }

    let headers = req.headers();
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok())
        && site != "same-origin"
        && site != "none"
    {
        tracing::info!(site, "csrf: cross-site request refused");
        return refused();
    }
    if let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok())
        && origin != state.config.public_origin()
    {
        tracing::info!(origin, "csrf: foreign origin refused");
        return refused();
    }

    let expected = match session.get::<String>(SESSION_KEY).await {
        Ok(Some(t)) => t,
        Ok(None) => return refused(),
        Err(e) => return AppError::from(e).into_response(),
    };

    let (parts, body) = req.into_parts();
    let from_header = parts
        .headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let boundary = parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| multer::parse_boundary(v).ok());
    let (given, body) = match (from_header, boundary) {
        (Some(t), _) => (Some(t), body),
        (None, Some(boundary)) => {
            let mut rest = body.into_data_stream();
            let mut head = Vec::new();
            while head.len() < MULTIPART_TOKEN_WITHIN {
                match rest.next().await {
                    Some(Ok(chunk)) => head.extend_from_slice(&chunk),
                    Some(Err(_)) => {
                        return AppError::BadRequest("The upload was cut off.".into())
                            .into_response();
                    }
                    None => break,
                }
            }
            let head = Bytes::from(head);
            let token = multipart_field(head.clone(), boundary, FIELD).await;
            let body = Body::from_stream(
                futures_util::stream::once(async move { Ok::<_, axum::Error>(head) }).chain(rest),
            );
            (token, body)
        }
        (None, None) if is_urlencoded_form(&parts.headers) => {
            let Ok(bytes) = to_bytes(body, MAX_FORM_BYTES).await else {
                return AppError::BadRequest("The form is too large.".into()).into_response();
            };
            let token = url::form_urlencoded::parse(&bytes)
                .find(|(k, _)| k == FIELD)
                .map(|(_, v)| v.into_owned());
            (token, Body::from(bytes))
        }
        (None, None) => (None, body),
    };

    match given {
        Some(given) if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) => {
            next.run(Request::from_parts(parts, body)).await
        }
        _ => refused(),
    }
}

/// The text of the field named `name` in (the beginning of) a multipart body.
async fn multipart_field(body: axum::body::Bytes, boundary: String, name: &str) -> Option<String> {
    let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    while let Ok(Some(field)) = multipart.next_field().await {
        if field.name() == Some(name) {
            return field.text().await.ok();
        }
    }
    None
}

fn is_urlencoded_form(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}
