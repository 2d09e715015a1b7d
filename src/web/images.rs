//! Uploaded images over HTTP: the stream thumbnail (upload and remove on the
//! studio stream page, served at /s/{id}/thumbnail) and what the channel
//! avatar shares with it (reading the upload, storing it in S3, serving it
//! with an ETag and a default image). Checking and re-encoding is
//! `crate::images`; who may change a stream is `studio::owned_stream`; who may
//! see one is `access::knows_of`: announced, live and ended streams are
//! public, an unannounced draft only exists for its team (404 for others).

use askama::Template;
use axum::body::Body;
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

use super::{FlashKind, Htmx, flash, path_id, render_with};
use crate::access;
use crate::auth::{self, CurrentUser, MaybeUser};
use crate::db::streams;
use crate::db::{self, StreamId};
use crate::error::{AppError, AppResult};
use crate::images::{self, ImageError, MAX_UPLOAD_BYTES, Purpose};
use crate::state::AppState;

/// The request body limit of upload routes: the image plus the form around it.
pub const UPLOAD_BODY_LIMIT: usize = MAX_UPLOAD_BYTES + 64 * 1024;

/// Images decoded at once, whatever the number of cores: decoding a
/// 40-megapixel upload holds about 200 MB for a moment (the pixels, then the
/// scaled copies), so four at once held 0.9 GB. Others wait their turn.
static DECODING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// How long browsers keep an image before asking again (with its ETag).
const MAX_AGE_SECONDS: u32 = 300;

pub const DEFAULT_THUMBNAIL: &str = include_str!("../../static/img/thumbnail-default.svg");
pub const DEFAULT_AVATAR: &str = include_str!("../../static/img/avatar-default.svg");

/// The random part of a stored image's key (`thumbnails/12/{this}.jpg`): a
/// new upload has a new one, so it versions URLs and is the ETag.
pub fn version_of(key: &str) -> Option<&str> {
    let name = key.rsplit('/').next()?;
    let stem = name.split('.').next()?;
    (!stem.is_empty() && stem.bytes().all(|b| b.is_ascii_alphanumeric())).then_some(stem)
}

/// `path?v={version}`: a page that knows the key links a URL that changes with it.
pub fn versioned(path: &str, key: Option<&str>) -> String {
    match key.and_then(version_of) {
        Some(v) => format!("{path}?v={v}"),
        None => path.to_owned(),
    }
}

/// Reads the file of the form field `name`, at most `MAX_UPLOAD_BYTES`.
/// Other fields (the CSRF token) are skipped. The error is for the person.
pub async fn read_upload(multipart: &mut Multipart, name: &str) -> Result<Vec<u8>, ImageError> {
    let too_large_or_damaged = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ImageError::TooLarge
        } else {
            ImageError::Damaged
        }
    };
    while let Some(mut field) = multipart.next_field().await.map_err(too_large_or_damaged)? {
        if field.name() != Some(name) {
            continue;
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(too_large_or_damaged)? {
            if bytes.len() + chunk.len() > MAX_UPLOAD_BYTES {
                return Err(ImageError::TooLarge);
            }
            bytes.extend_from_slice(&chunk);
        }
        return Ok(bytes);
    }
    Err(ImageError::Empty)
}

/// Why storing an image did not happen: the person's file, or our S3.
pub enum StoreError {
    Image(ImageError),
    App(AppError),
}

impl From<ImageError> for StoreError {
    fn from(e: ImageError) -> Self {
        StoreError::Image(e)
    }
}

/// Checks and re-encodes `bytes` for `purpose` and stores the result under
/// `{prefix}/{random}.{ext}`; answers the new key.
pub async fn store(
    state: &AppState,
    prefix: &str,
    bytes: Vec<u8>,
    purpose: Purpose,
) -> Result<String, StoreError> {
    let internal =
        |e: String| StoreError::App(AppError::Internal(anyhow::anyhow!("image task: {e}")));
    let prepared = {
        let _turn = DECODING
            .acquire()
            .await
            .map_err(|e| internal(e.to_string()))?;
        tokio::task::spawn_blocking(move || images::prepare(&bytes, purpose))
            .await
            .map_err(|e| internal(e.to_string()))??
    };
    let random = uuid::Uuid::new_v4().simple().to_string();
    let key = format!("{prefix}/{random}.{}", prepared.extension);
    state
        .storage
        .put(&key, prepared.bytes, prepared.content_type)
        .await
        .map_err(|e| {
            tracing::warn!(error = %e, "storing an image");
            StoreError::App(AppError::Unavailable(
                "The image store (S3) is not answering, so the image was not saved.".to_owned(),
            ))
        })?;
    Ok(key)
}

/// Deletes a replaced image; a failure leaves an orphan object, not an error for the user.
pub async fn delete_quietly(state: &AppState, key: Option<String>) {
    if let Some(key) = key
        && let Err(e) = state.storage.delete(&key).await
    {
        tracing::warn!(error = %e, %key, "deleting a replaced image");
    }
}

/// Who may keep a copy of the image: anyone (public pages), or only this browser.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    Public,
    Private,
}

/// Answers the image at `key` (or `default` when there is none), with an
/// ETag and Cache-Control; 304 when the browser has this version already.
pub async fn serve(
    state: &AppState,
    key: Option<String>,
    default: &'static str,
    audience: Audience,
    request: &HeaderMap,
) -> AppResult<Response> {
    let etag = format!(
        "\"{}\"",
        key.as_deref().and_then(version_of).unwrap_or("default-1")
    );
    let cache = format!(
        "{}, max-age={MAX_AGE_SECONDS}",
        match audience {
            Audience::Public => "public",
            Audience::Private => "private",
        }
    );
    let headers = |content_type: &str| {
        let mut h = HeaderMap::new();
        h.insert(
            header::ETAG,
            HeaderValue::from_str(&etag).expect("hex etag"),
        );
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(&cache).expect("ascii"),
        );
        if let Ok(v) = HeaderValue::from_str(content_type) {
            h.insert(header::CONTENT_TYPE, v);
        }
        h
    };
    let matches = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        let mut h = headers("");
        h.remove(header::CONTENT_TYPE);
        return Ok((StatusCode::NOT_MODIFIED, h).into_response());
    }
    let stored = match &key {
        None => None,
        Some(key) => state.storage.get(key).await.map_err(|e| {
            tracing::warn!(error = %e, "reading an image");
            AppError::Unavailable("The image store (S3) is not answering.".to_owned())
        })?,
    };
    Ok(match stored {
        Some((bytes, content_type)) => {
            // We only ever store what we encoded; anything else is not served as such.
            let content_type = match content_type.as_str() {
                "image/jpeg" | "image/png" | "image/webp" => content_type,
                _ => "image/jpeg".to_owned(),
            };
            (StatusCode::OK, headers(&content_type), Body::from(bytes)).into_response()
        }
        // No image, or its object is gone: the default (with the default's ETag).
        None => {
            let mut h = headers("image/svg+xml");
            h.insert(header::ETAG, HeaderValue::from_static("\"default-1\""));
            (StatusCode::OK, h, default).into_response()
        }
    })
}

// ---------------------------------------------------------------------------
// Stream thumbnails.

/// The thumbnail part of the studio stream page; returned alone after an upload.
#[derive(Template)]
#[template(path = "partials/thumbnails/panel.html")]
pub struct ThumbnailPanel {
    pub stream_id: StreamId,
    pub url: String,
    pub has_thumbnail: bool,
    pub error: Option<String>,
    pub saved: Option<&'static str>,
    pub csrf_token: String,
}

impl ThumbnailPanel {
    pub fn new(stream: StreamId, key: Option<&str>, csrf_token: &str) -> Self {
        ThumbnailPanel {
            stream_id: stream,
            url: versioned(&format!("/s/{stream}/thumbnail"), key),
            has_thumbnail: key.is_some(),
            error: None,
            saved: None,
            csrf_token: csrf_token.to_owned(),
        }
    }
}

pub async fn thumbnail(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let id: StreamId = path_id(&id)?;
    let mut conn = state.db.get().await?;
    let stream = streams::find(&mut conn, id)
        .await?
        .ok_or(AppError::NotFound)?;
    if !access::knows_of(&mut conn, user.as_ref().map(|u| u.id), &stream).await? {
        return Err(AppError::NotFound);
    }
    let announced = !access::unannounced(&stream);
    let key = streams::thumbnail_key(&mut conn, id).await?;
    drop(conn);
    let audience = if announced {
        Audience::Public
    } else {
        Audience::Private
    };
    serve(&state, key, DEFAULT_THUMBNAIL, audience, &headers).await
}

pub async fn upload_thumbnail(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    htmx: Htmx,
    Path(id): Path<String>,
    mut multipart: Multipart,
) -> AppResult<Response> {
    let id: StreamId = path_id(&id)?;
    let mut conn = state.db.get().await?;
    let (stream, channel) = super::studio::owned_stream(&mut conn, user.id, id).await?;
    drop(conn);

    let stored = match read_upload(&mut multipart, "thumbnail").await {
        Ok(bytes) => {
            store(
                &state,
                &format!("thumbnails/{}", stream.id),
                bytes,
                Purpose::Thumbnail,
            )
            .await
        }
        Err(e) => Err(StoreError::Image(e)),
    };
    let mut conn = state.db.get().await?;
    let (current, outcome) = match stored {
        Ok(key) => match streams::replace_thumbnail(&mut conn, stream.id, Some(&key)).await {
            Ok(old) => {
                db::audit::record(
                    &mut conn,
                    Some(user.id),
                    Some(channel.id),
                    "stream.thumbnail_set",
                    Some(&stream.id.to_string()),
                    serde_json::json!({}),
                )
                .await?;
                delete_quietly(&state, old).await;
                (Some(key), Ok(()))
            }
            Err(e) => {
                delete_quietly(&state, Some(key)).await;
                return Err(e.into());
            }
        },
        Err(StoreError::App(e)) => return Err(e),
        // Nothing was stored: the current thumbnail stays, with the reason next to the field.
        Err(StoreError::Image(e)) => (streams::thumbnail_key(&mut conn, stream.id).await?, Err(e)),
    };
    drop(conn);
    answer(
        &session,
        htmx,
        stream.id,
        current,
        outcome,
        "Thumbnail saved.",
    )
    .await
}

pub async fn remove_thumbnail(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    htmx: Htmx,
    Path(id): Path<String>,
) -> AppResult<Response> {
    let id: StreamId = path_id(&id)?;
    let mut conn = state.db.get().await?;
    let (stream, channel) = super::studio::owned_stream(&mut conn, user.id, id).await?;
    let old = streams::replace_thumbnail(&mut conn, stream.id, None).await?;
    if old.is_some() {
        db::audit::record(
            &mut conn,
            Some(user.id),
            Some(channel.id),
            "stream.thumbnail_removed",
            Some(&stream.id.to_string()),
            serde_json::json!({}),
        )
        .await?;
    }
    drop(conn);
    delete_quietly(&state, old).await;
    answer(
        &session,
        htmx,
        stream.id,
        None,
        Ok(()),
        "Thumbnail removed: the default image is shown.",
    )
    .await
}

/// The panel again (htmx), or back to the stream page with a flash.
async fn answer(
    session: &Session,
    htmx: Htmx,
    stream: StreamId,
    current: Option<String>,
    outcome: Result<(), ImageError>,
    done: &'static str,
) -> AppResult<Response> {
    if htmx.fragment {
        let csrf_token = crate::auth::csrf::token(session).await?;
        let mut panel = ThumbnailPanel::new(stream, current.as_deref(), &csrf_token);
        return match outcome {
            Ok(()) => {
                panel.saved = Some(done);
                render_with(StatusCode::OK, &panel)
            }
            Err(e) => {
                panel.error = Some(e.to_string());
                render_with(StatusCode::UNPROCESSABLE_ENTITY, &panel)
            }
        };
    }
    match outcome {
        Ok(()) => flash(session, FlashKind::Success, done).await?,
        Err(e) => flash(session, FlashKind::Error, e.to_string()).await?,
    }
    Ok(auth::redirect(false, &format!("/studio/streams/{stream}")))
}
