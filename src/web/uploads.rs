//! Uploaded images over HTTP, as the thumbnail and the avatar share them:
//! reading the upload, storing it in S3, deleting the one it replaces, and
//! serving it with an ETag and a default image. Checking and re-encoding is
//! `crate::images`; who may upload is the handlers' (`images`, `settings`).

use axum::body::Body;
use axum::extract::Multipart;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

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

/// The avatar's URL, versioned by its key so a new avatar is a new URL.
pub fn avatar_url(handle: &str, key: Option<&str>) -> String {
    versioned(&format!("/c/{handle}/avatar"), key)
}
