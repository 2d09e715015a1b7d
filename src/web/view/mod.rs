//! What pages share, and nothing else: how a moment, a span of time, a
//! stream's state and its access read to people, the watch link, the
//! response shapes several areas answer with (a CSV download, a page kept
//! by no cache, a token as JSON), and the fragments several pages include
//! (`follow_button`, `panels`, `redeem_form`). Handler modules import this
//! module, never each other; this module imports none of them.

pub mod follow_button;
pub mod panels;
pub mod redeem_form;

use axum::Json;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};

use crate::db::StreamId;
use crate::db::streams::{AccessKind, Status, Stream};
use crate::error::{AppError, AppResult};
use crate::state::AppState;

pub use crate::format::utc;

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
        match stream.status {
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

/// "in 2 h 5 min", "in 3 days", or "any minute now" (due or overdue). The
/// pages' script (static/js/app.js, `relative`) ticks these labels with the
/// same words, so the home card and the watch page always agree.
pub fn relative_start(seconds: i64) -> String {
    if seconds < 60 {
        "any minute now".to_owned()
    } else {
        format!("in {}", span(seconds))
    }
}

/// How long a live stream has been on: "live for 1 h 5 min".
pub fn live_for(seconds: i64) -> String {
    if seconds < 60 {
        "just started".to_owned()
    } else {
        format!("live for {}", span(seconds))
    }
}

/// A length of time in words: "5 min", "1 h 5 min", "3 days".
fn span(seconds: i64) -> String {
    let minutes = seconds / 60;
    let (days, hours, mins) = (minutes / 1440, minutes / 60 % 24, minutes % 60);
    match (days, hours, mins) {
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (1, _, _) => "1 day".to_owned(),
        (d, _, _) => format!("{d} days"),
    }
}

/// A LiveKit token for the browser, as JSON (the watch page's and the
/// broadcast page's scripts ask for one).
#[derive(serde::Serialize)]
pub struct TokenResponse {
    pub token: String,
    pub url: String,
    pub identity: String,
}

/// Why no token: the scripts show `error` to the person.
#[derive(serde::Serialize)]
pub struct TokenRefusal {
    pub error: String,
}

/// A token refused with `status` and the reason, as JSON.
pub fn refuse(status: axum::http::StatusCode, reason: impl Into<String>) -> Response {
    (
        status,
        Json(TokenRefusal {
            error: reason.into(),
        }),
    )
        .into_response()
}
