//! What pages share, and nothing else: how a moment, a stream's state and its
//! access read to people, the watch link, and the response shapes several
//! areas answer with (a CSV download, a page kept by no cache). Handler
//! modules import this module, never each other; this module imports none
//! of them.

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::db::StreamId;
use crate::db::streams::{AccessKind, Status, Stream};
use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// Formats a time for people: `2026-11-22 18:00 UTC`.
pub fn utc(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A moment shown to people: "2026-11-22 18:00 UTC", with its RFC 3339 form
/// for `<time datetime>`.
pub struct Moment {
    pub label: String,
    pub iso: String,
}

impl Moment {
    pub fn new(t: DateTime<Utc>) -> Self {
        Moment {
            label: utc(&t),
            iso: t.to_rfc3339_opts(SecondsFormat::Secs, true),
        }
    }
}

pub fn access_label(kind: AccessKind) -> &'static str {
    match kind {
        AccessKind::Public => "Public",
        AccessKind::Pass => "Pass holders",
    }
}

/// The stream's shareable watch link, absolute (it is pasted into chats and mails).
pub fn watch_url(state: &AppState, id: StreamId) -> String {
    let base = state.config.public_url.as_str();
    let slash = if base.ends_with('/') { "" } else { "/" };
    format!("{base}{slash}s/{id}")
}

/// Where a stream is, as its badge says: a draft with a schedule is "scheduled".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    Draft,
    Scheduled,
    Live,
    Ended,
}

impl StreamState {
    pub fn of(stream: &Stream) -> Self {
        match stream.status() {
            Status::Live => StreamState::Live,
            Status::Ended => StreamState::Ended,
            Status::Draft if stream.scheduled_at.is_some() => StreamState::Scheduled,
            Status::Draft => StreamState::Draft,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StreamState::Draft => "draft",
            StreamState::Scheduled => "scheduled",
            StreamState::Live => "live",
            StreamState::Ended => "ended",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            StreamState::Draft => "Draft",
            StreamState::Scheduled => "Scheduled",
            StreamState::Live => "Live",
            StreamState::Ended => "Ended",
        }
    }
}

/// A page not to be kept by browsers or proxies: it shows secrets or money.
pub fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A CSV download named `filename`, kept by no cache (exports carry emails
/// or money).
pub fn csv_download(body: Vec<u8>, filename: &str) -> AppResult<Response> {
    let disposition = format!("attachment; filename=\"{filename}\"");
    Ok(no_store(
        (
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/csv; charset=utf-8"),
                ),
                (
                    header::CONTENT_DISPOSITION,
                    HeaderValue::from_str(&disposition)
                        .map_err(|e| AppError::Internal(e.into()))?,
                ),
            ],
            body,
        )
            .into_response(),
    ))
}
