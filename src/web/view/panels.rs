//! The studio's panels that more than one page shows: the stream's
//! thumbnail, its OBS ingress, its recording controls and its chat settings. Each is a
//! self-contained fragment with a stable root id: the studio and broadcast
//! pages include it, and its own endpoints (`images`, `ingress`,
//! `recordings`, `chat`) return it alone after a change.

use askama::Template;

use crate::db::chat::{self as chat_db, Settings};
use crate::db::recordings::{self as rec_db, Recording};
use crate::db::streams::{self, Stream, StreamIngress};
use crate::db::{DbResult, StreamId};
use crate::error::AppResult;
use crate::livekit::ingress::{IngressError, Kind};
use crate::state::AppState;
use crate::web::FieldErrors;
use crate::web::uploads::versioned;

// ---------------------------------------------------------------------------
// The thumbnail.

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

// ---------------------------------------------------------------------------
// OBS ingress.

/// What the panel shows (partials/ingress/panel.html).
pub struct IngressView {
    pub stream_id: StreamId,
    /// The current ingress; None offers the create buttons.
    pub current: Option<IngressEndpoint>,
    /// False once the stream has ended (no new ingress).
    pub open: bool,
    /// LiveKit's Ingress service runs (`LIVEKIT_INGRESS`): RTMP is offered.
    pub rtmp_available: bool,
    pub csrf_token: String,
}

pub struct IngressEndpoint {
    pub kind: Kind,
    pub url: String,
    pub stream_key: String,
}

impl IngressEndpoint {
    pub fn label(&self) -> &'static str {
        match self.kind {
            Kind::Whip => "WHIP",
            Kind::Rtmp => "RTMP",
        }
    }

    /// The key with all but its last four characters hidden (a WHIP key is
    /// a token of several hundred characters: the dots stop at 24).
    pub fn masked_key(&self) -> String {
        let n = self.stream_key.chars().count();
        let tail: String = self.stream_key.chars().skip(n.saturating_sub(4)).collect();
        format!("{}{tail}", "•".repeat(n.saturating_sub(4).clamp(8, 24)))
    }

    pub fn is_whip(&self) -> bool {
        self.kind == Kind::Whip
    }
}

impl IngressView {
    /// Why RTMP is not offered (the same sentence as choosing it anyway).
    pub fn rtmp_unavailable(&self) -> String {
        IngressError::RtmpNeedsIngress.to_string()
    }

    pub async fn load(state: &AppState, stream: &Stream, csrf_token: &str) -> AppResult<Self> {
        let mut conn = state.db.get().await?;
        let current = streams::ingress_of(&mut conn, stream.id)
            .await?
            .map(endpoint);
        Ok(IngressView {
            stream_id: stream.id,
            current,
            open: stream.status != streams::Status::Ended,
            rtmp_available: state.config.livekit.ingress,
            csrf_token: csrf_token.to_owned(),
        })
    }
}

fn endpoint(i: StreamIngress) -> IngressEndpoint {
    IngressEndpoint {
        kind: i.kind,
        url: i.url,
        stream_key: i.stream_key,
    }
}

// ---------------------------------------------------------------------------
// Recording.

/// The recording controls and status on the broadcast page (its own endpoint
/// re-renders it; htmx polls it while something is going on).
pub struct RecordingPanel {
    pub stream_id: StreamId,
    pub csrf_token: String,
    pub live: bool,
    /// The latest recording's status (None: never recorded).
    pub status: Option<rec_db::Status>,
    /// RFC 3339, for the running duration the page ticks.
    pub since: String,
    pub duration: Option<String>,
    pub size: Option<String>,
    pub error: Option<String>,
    /// The answer to the owner's last click (e.g. "already recording").
    pub message: Option<String>,
}

impl RecordingPanel {
    pub async fn load(state: &AppState, stream: &Stream, csrf_token: &str) -> AppResult<Self> {
        let mut conn = state.db.get().await?;
        let latest = rec_db::latest(&mut conn, stream.id).await?;
        Ok(Self::of(stream, latest.as_ref(), csrf_token))
    }

    pub fn of(stream: &Stream, latest: Option<&Recording>, csrf_token: &str) -> Self {
        RecordingPanel {
            stream_id: stream.id,
            csrf_token: csrf_token.to_owned(),
            live: stream.is_live(),
            status: latest.map(|r| r.status),
            since: latest
                .map(|r| r.started_at.unwrap_or(r.created_at).to_rfc3339())
                .unwrap_or_default(),
            duration: latest.and_then(|r| r.duration_ms).map(duration_label),
            size: latest.and_then(|r| r.size_bytes).map(size_label),
            error: latest.and_then(|r| r.error.clone()),
            message: None,
        }
    }

    pub fn recording(&self) -> bool {
        matches!(
            self.status,
            Some(rec_db::Status::Starting | rec_db::Status::Active)
        )
    }

    /// Poll while the status can still change on its own.
    pub fn polling(&self) -> bool {
        matches!(
            self.status,
            Some(rec_db::Status::Starting | rec_db::Status::Active | rec_db::Status::Ending)
        )
    }
}

pub fn duration_label(ms: i64) -> String {
    let s = ms / 1000;
    format!("{:02}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

pub fn size_label(bytes: i64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KB", b as f64 / 1024.0),
        b => format!("{b} bytes"),
    }
}

// ---------------------------------------------------------------------------
// Chat settings.

/// The owner's chat settings form. Include `partials/chat/settings.html`
/// with this in scope as `chat_settings`.
#[derive(Debug)]
pub struct ChatSettingsForm {
    pub stream_id: StreamId,
    pub enabled: bool,
    pub slow_mode_seconds: String,
    pub delay_seconds: String,
    pub max_length: String,
    /// Who may post: "off" (everyone who may watch) or a follow age in seconds.
    pub followers: String,
    pub errors: FieldErrors,
    /// After an htmx save: "Saved." inside the swapped part.
    pub saved: bool,
    pub csrf_token: String,
}

impl ChatSettingsForm {
    /// The choices of who may post: (value, label).
    pub fn followers_choices(&self) -> Vec<(String, String)> {
        let mut choices = vec![("off".to_owned(), "Everyone who may watch".to_owned())];
        for age in crate::db::chat::FOLLOW_AGES {
            let label = if age == 0 {
                "Followers of the channel".to_owned()
            } else {
                format!(
                    "Followers of at least {}",
                    crate::chat::limits::follow_age(age)
                )
            };
            choices.push((age.to_string(), label));
        }
        choices
    }

    pub fn new(stream_id: StreamId, s: &Settings, csrf_token: &str) -> Self {
        ChatSettingsForm {
            stream_id,
            enabled: s.enabled,
            slow_mode_seconds: s.slow_mode_seconds.to_string(),
            delay_seconds: s.delay_seconds.to_string(),
            max_length: s.max_length.to_string(),
            followers: s
                .followers_min_seconds
                .map_or_else(|| "off".to_owned(), |m| m.to_string()),
            errors: FieldErrors::default(),
            saved: false,
            csrf_token: csrf_token.to_owned(),
        }
    }

    /// The form with the stream's current settings.
    pub async fn load(state: &AppState, stream: &Stream, csrf_token: &str) -> DbResult<Self> {
        let mut conn = state.db.get().await?;
        let s = chat_db::settings(&mut conn, stream.id).await?;
        Ok(Self::new(stream.id, &s, csrf_token))
    }
}

/// The settings form alone: the answer to an htmx POST of it.
#[derive(Template)]
#[template(path = "partials/chat/settings.html")]
pub struct SettingsFragment {
    pub chat_settings: ChatSettingsForm,
}
