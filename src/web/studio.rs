//! The studio: a creator's channels and streams — the dashboard, creating and
//! editing a stream, deleting a draft. Going live and ending belong to the
//! lifecycle (web/live.rs); the stream page only renders their controls.
//! Who may manage a stream is asked of `access::may` (publish = the owner);
//! this module must not decide access by itself.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use diesel_async::AsyncConnection;
use serde::Deserialize;

use super::forms::{normalize_text, parse_schedule};
use super::view::{Moment, StreamState, access_label, watch_url};
use super::{FieldErrors, FlashKind, Layout, render_with};
use crate::auth::CurrentUser;
use crate::db::channels::{self, Channel, Role};
use crate::db::streams::{self, AccessKind, NewStream, Status, Stream, StreamChanges};
use crate::web::authz::{OwnedChannel, OwnedStream, area};

use crate::db::{self, StreamId};
use crate::error::{AppError, AppResult};
use crate::lifecycle;
use crate::state::AppState;
use crate::web::Reply;

// ---------------------------------------------------------------------------
// The dashboard.

pub struct StreamRow {
    pub id: StreamId,
    pub title: String,
    pub state: StreamState,
    pub access: &'static str,
    pub scheduled: Option<Moment>,
    pub watch_url: String,
}

pub struct ChannelCard {
    pub handle: String,
    pub title: String,
    /// Owners get the management links; moderators see the streams only.
    pub is_owner: bool,
    pub streams: Vec<StreamRow>,
}

#[derive(Template)]
#[template(path = "pages/studio/dashboard.html")]
pub struct DashboardPage {
    pub layout: Layout,
    pub channels: Vec<ChannelCard>,
}

impl DashboardPage {
    pub fn owns_a_channel(&self) -> bool {
        self.channels.iter().any(|c| c.is_owner)
    }
}

/// The studio's order: live first, then what is coming (soonest first,
/// unscheduled drafts after), then the past (newest first).
fn studio_order(a: &Stream, b: &Stream) -> std::cmp::Ordering {
    let rank = |s: &Stream| match StreamState::of(s) {
        StreamState::Live => 0,
        StreamState::Scheduled => 1,
        StreamState::Draft => 2,
        StreamState::Ended => 3,
    };
    rank(a)
        .cmp(&rank(b))
        .then_with(|| match StreamState::of(a) {
            StreamState::Scheduled => a.scheduled_at.cmp(&b.scheduled_at),
            StreamState::Ended => b.ended_at.cmp(&a.ended_at),
            _ => b.created_at.cmp(&a.created_at),
        })
}

pub async fn dashboard(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    layout: Layout,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let mut cards = Vec::new();
    for (channel, role) in channels::for_member(&mut conn, user.id).await? {
        let mut list = streams::for_channel(&mut conn, channel.id).await?;
        list.sort_by(studio_order);
        cards.push(ChannelCard {
            is_owner: role == Role::Owner,
            streams: list
                .iter()
                .map(|s| StreamRow {
                    id: s.id,
                    title: s.title.clone(),
                    state: StreamState::of(s),
                    access: access_label(s.access),
                    scheduled: s.scheduled_at.map(Moment::new),
                    watch_url: watch_url(&state, s.id),
                })
                .collect(),
            handle: channel.handle,
            title: channel.title,
        });
    }
    render_with(
        StatusCode::OK,
        &DashboardPage {
            layout,
            channels: cards,
        },
    )
}

// ---------------------------------------------------------------------------
// The stream form: create and edit.

#[derive(Deserialize, Default)]
pub struct StreamForm {
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub access: String,
    /// An `<input type="datetime-local">` value, read as UTC; empty = no schedule.
    #[serde(default)]
    pub scheduled_at: String,
    /// The free preview: "off" (or absent), or its length in seconds (30–600).
    #[serde(default)]
    pub preview: String,
}

/// What the form shows: the values as typed (or as stored).
pub struct StreamFields {
    pub title: String,
    pub description: String,
    pub access: String,
    pub scheduled_at: String,
    /// "off" or seconds.
    pub preview: String,
}

/// The free preview lengths the form offers: (seconds, label).
pub const PREVIEW_CHOICES: [(i32, &str); 5] = [
    (30, "30 seconds"),
    (60, "1 minute"),
    (120, "2 minutes"),
    (300, "5 minutes"),
    (600, "10 minutes"),
];

impl StreamFields {
    /// The preview select's options: (value, label, selected).
    pub fn preview_choices(&self) -> Vec<(String, &'static str, bool)> {
        let mut all = vec![(
            "off".to_owned(),
            "No free preview",
            self.preview == "off" || self.preview.is_empty(),
        )];
        for (seconds, label) in PREVIEW_CHOICES {
            let value = seconds.to_string();
            let selected = self.preview == value;
            all.push((value, label, selected));
        }
        all
    }

    fn blank() -> Self {
        StreamFields {
            title: String::new(),
            description: String::new(),
            access: AccessKind::Pass.as_str().to_owned(),
            scheduled_at: String::new(),
            preview: "off".to_owned(),
        }
    }

    fn of(stream: &Stream) -> Self {
        StreamFields {
            title: stream.title.clone(),
            description: stream.description.clone(),
            access: stream.access.as_str().to_owned(),
            scheduled_at: stream
                .scheduled_at
                .map(|t| t.format(DATETIME_LOCAL).to_string())
                .unwrap_or_default(),
            preview: stream
                .preview_seconds
                .map_or_else(|| "off".to_owned(), |s| s.to_string()),
        }
    }

    fn typed(form: StreamForm) -> Self {
        StreamFields {
            title: form.title.trim().to_owned(),
            description: form.description,
            access: form.access,
            scheduled_at: form.scheduled_at.trim().to_owned(),
            preview: form.preview.trim().to_owned(),
        }
    }
}

/// The value format of `<input type="datetime-local">` (minutes).
const DATETIME_LOCAL: &str = "%Y-%m-%dT%H:%M";

/// Which fields may change. The schedule and who may watch are set while the
/// stream is a draft; once it is live, viewers have joined on those terms (and
/// a start time no longer means anything), so only the title and description
/// stay editable — also after it ended, for the way it is listed under "Past".
#[derive(Debug, Clone, Copy)]
pub struct Editable {
    pub schedule: bool,
    pub access: bool,
    /// The free preview changes until the stream ends (for those who come next).
    pub preview: bool,
}

impl Editable {
    pub fn for_status(status: Status) -> Self {
        let draft = status == Status::Draft;
        Editable {
            schedule: draft,
            access: draft,
            preview: status != Status::Ended,
        }
    }
}

/// A valid stream form.
struct StreamInput {
    title: String,
    description: String,
    access: AccessKind,
    scheduled_at: Option<DateTime<Utc>>,
    preview_seconds: Option<i32>,
}

/// Checks the form; `current` is the stream's stored schedule when editing —
/// keeping a schedule that has since passed is not an error, choosing one is.
fn check_stream(
    form: &StreamForm,
    editable: Editable,
    current: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    errors: &mut FieldErrors,
) -> StreamInput {
    let title = form.title.trim();
    if title.is_empty() {
        errors.add("title", "Give the stream a title.");
    } else if title.chars().count() > 200 {
        errors.add("title", "Use at most 200 characters.");
    }
    let description = normalize_text(&form.description);
    if description.chars().count() > 10_000 {
        errors.add("description", "Use at most 10,000 characters.");
    }
    let access = if editable.access {
        AccessKind::parse(form.access.trim()).unwrap_or_else(|| {
            errors.add(
                "access",
                "Choose who can watch: everyone signed in, or pass holders.",
            );
            AccessKind::Pass
        })
    } else {
        AccessKind::Pass
    };
    let mut scheduled_at = None;
    if editable.schedule && !form.scheduled_at.trim().is_empty() {
        match parse_schedule(&form.scheduled_at) {
            None => errors.add(
                "scheduled_at",
                "Enter a date and time like 2026-11-22 18:00 (UTC).",
            ),
            // The input has minute precision: "this very minute" is not the past.
            Some(t) if Some(t) != current && t + chrono::Duration::minutes(1) <= now => errors.add(
                "scheduled_at",
                "That time has passed. Pick a time in the future (UTC), or leave it empty.",
            ),
            Some(t) => scheduled_at = Some(t),
        }
    }
    let preview_seconds = match form.preview.trim() {
        "" | "off" => None,
        v => match v.parse::<i32>() {
            Ok(s) if (30..=600).contains(&s) => Some(s),
            _ => {
                errors.add(
                    "preview",
                    "Choose a free preview from the list: none, or 30 seconds to 10 minutes.",
                );
                None
            }
        },
    };
    StreamInput {
        title: title.to_owned(),
        description,
        access,
        scheduled_at,
        preview_seconds,
    }
}

// ---------------------------------------------------------------------------
// Creating a stream.

#[derive(Template)]
#[template(path = "pages/studio/new_stream.html", blocks = ["form"])]
pub struct NewStreamPage {
    pub layout: Layout,
    pub channel: Channel,
    pub form: StreamFields,
    pub errors: FieldErrors,
    pub editable: Editable,
}

pub async fn new(
    State(state): State<AppState>,
    OwnedChannel { channel, .. }: OwnedChannel<area::NewStreams>,
    layout: Layout,
) -> AppResult<Response> {
    let _conn = state.db.get().await?;
    let page = NewStreamPage {
        layout,
        channel,
        form: StreamFields::blank(),
        errors: FieldErrors::default(),
        editable: Editable::for_status(Status::Draft),
    };
    render_with(StatusCode::OK, &page)
}

pub async fn create(
    State(state): State<AppState>,
    OwnedChannel { user, channel, .. }: OwnedChannel<area::NewStreams>,
    reply: Reply,
    layout: Layout,
    Form(form): Form<StreamForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let editable = Editable::for_status(Status::Draft);
    let mut errors = FieldErrors::default();
    let input = check_stream(&form, editable, None, Utc::now(), &mut errors);

    if errors.is_empty() {
        let room_name = lifecycle::new_room_name(&state);
        let new = NewStream {
            channel_id: channel.id,
            title: &input.title,
            description: &input.description,
            access: input.access,
            scheduled_at: input.scheduled_at,
            room_name: &room_name,
        };
        // A scheduled stream is announced to the channel's followers, in the
        // same transaction (notify.rs decides who hears).
        let stream = conn
            .transaction(async |conn| {
                let mut stream = streams::create(conn, &new).await?;
                if input.preview_seconds.is_some() {
                    let preview = StreamChanges {
                        preview_seconds: Some(input.preview_seconds),
                        ..Default::default()
                    };
                    stream = streams::update(conn, stream.id, preview).await?;
                }
                crate::notify::schedule_changed(conn, &stream, None).await?;
                Ok::<_, diesel::result::Error>(stream)
            })
            .await?;
        db::audit::record(
            &mut conn,
            Some(user.id),
            Some(channel.id),
            "stream.created",
            Some(&stream.id.to_string()),
            serde_json::json!({ "title": stream.title }),
        )
        .await?;
        return reply
            .redirect_with(
                FlashKind::Success,
                "Stream created. Share its watch link, and go live when you're ready.",
                &format!("/studio/streams/{}", stream.id),
            )
            .await;
    }

    let page = NewStreamPage {
        layout,
        channel,
        form: StreamFields::typed(form),
        errors,
        editable,
    };
    reply.render(StatusCode::UNPROCESSABLE_ENTITY, &page, &page.as_form())
}

// ---------------------------------------------------------------------------
// The stream's studio page: state, watch link, edit form, lifecycle controls.

#[derive(Template)]
#[template(path = "pages/studio/stream.html", blocks = ["details"])]
pub struct StreamPage {
    pub layout: Layout,
    pub channel: Channel,
    pub id: StreamId,
    /// The stored title (the form may hold an invalid one being corrected).
    pub heading: String,
    pub state: StreamState,
    pub access: &'static str,
    pub watch_url: String,
    pub scheduled: Option<Moment>,
    pub started: Option<Moment>,
    pub ended: Option<Moment>,
    pub form: StreamFields,
    pub errors: FieldErrors,
    pub editable: Editable,
    /// After an htmx save: "Saved." inside the swapped part.
    pub saved: bool,
    /// The stream's chat settings form (full page only).
    pub chat_settings: Option<super::view::panels::ChatSettingsForm>,
    /// "Record when going live".
    pub record_on_live: bool,
    /// Whether the built-in recorder records (WebM), else LiveKit Egress (MP4).
    pub recorder_builtin: bool,
    /// The OBS ingress panel (full page only).
    pub ingress: Option<super::view::panels::IngressView>,
    /// The thumbnail upload panel (full page only).
    pub thumbnail: Option<super::view::panels::ThumbnailPanel>,
}

impl StreamPage {
    fn new(state: &AppState, layout: Layout, stream: &Stream, channel: Channel) -> Self {
        StreamPage {
            layout,
            channel,
            id: stream.id,
            heading: stream.title.clone(),
            state: StreamState::of(stream),
            access: access_label(stream.access),
            watch_url: watch_url(state, stream.id),
            scheduled: stream.scheduled_at.map(Moment::new),
            started: stream.started_at.map(Moment::new),
            ended: stream.ended_at.map(Moment::new),
            form: StreamFields::of(stream),
            errors: FieldErrors::default(),
            editable: Editable::for_status(stream.status),
            saved: false,
            chat_settings: None,
            record_on_live: stream.record_on_live,
            recorder_builtin: state.config.livekit.recorder == crate::config::Recorder::Builtin,
            ingress: None,
            thumbnail: None,
        }
    }
}

pub async fn show(
    State(state): State<AppState>,
    OwnedStream {
        stream, channel, ..
    }: OwnedStream,
    layout: Layout,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let thumbnail_key = streams::thumbnail_key(&mut conn, stream.id).await?;
    drop(conn);
    let thumbnail = super::view::panels::ThumbnailPanel::new(
        stream.id,
        thumbnail_key.as_deref(),
        &layout.csrf_token,
    );
    let chat_settings =
        super::view::panels::ChatSettingsForm::load(&state, &stream, &layout.csrf_token).await?;
    let ingress =
        super::view::panels::IngressView::load(&state, &stream, &layout.csrf_token).await?;
    let mut page = StreamPage::new(&state, layout, &stream, channel);
    page.chat_settings = Some(chat_settings);
    page.ingress = Some(ingress);
    page.thumbnail = Some(thumbnail);
    render_with(StatusCode::OK, &page)
}

pub async fn update(
    State(state): State<AppState>,
    OwnedStream {
        stream, channel, ..
    }: OwnedStream,
    reply: Reply,
    layout: Layout,
    Form(form): Form<StreamForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let editable = Editable::for_status(stream.status);
    let mut errors = FieldErrors::default();
    let input = check_stream(
        &form,
        editable,
        stream.scheduled_at,
        Utc::now(),
        &mut errors,
    );

    let mut current = stream;
    if errors.is_empty() {
        let changes = StreamChanges {
            title: Some(&input.title),
            description: Some(&input.description),
            access: editable.access.then_some(input.access),
            scheduled_at: editable.schedule.then_some(input.scheduled_at),
            preview_seconds: editable.preview.then_some(input.preview_seconds),
            ..Default::default()
        };
        // A new time is announced to followers again (unread), with the change.
        let (id, status, before) = (current.id, current.status, current.scheduled_at);
        let updated = conn
            .transaction(async |conn| {
                let updated = streams::update_while(conn, id, status, changes).await?;
                if let Some(stream) = &updated {
                    crate::notify::schedule_changed(conn, stream, before).await?;
                }
                Ok::<_, diesel::result::Error>(updated)
            })
            .await?;
        match updated {
            Some(updated) => {
                if !reply.htmx.fragment {
                    return reply
                        .redirect_with(
                            FlashKind::Success,
                            "Your changes were saved.",
                            &format!("/studio/streams/{}", updated.id),
                        )
                        .await;
                }
                let mut page = StreamPage::new(&state, layout, &updated, channel);
                page.saved = true;
                return render_with(StatusCode::OK, &page.as_details());
            }
            None => {
                // It went live (or ended) after this form was loaded.
                current = streams::find(&mut conn, current.id)
                    .await?
                    .ok_or(AppError::NotFound)?;
                errors.add(
                    "",
                    format!(
                        "This stream is now {} and some settings can no longer change. Check the form and save again.",
                        StreamState::of(&current).as_str()
                    ),
                );
            }
        }
    }

    let mut page = StreamPage::new(&state, layout, &current, channel);
    let stored_schedule = page.form.scheduled_at.clone();
    page.form = StreamFields::typed(form);
    if !page.editable.schedule {
        page.form.scheduled_at = stored_schedule;
    }
    page.errors = errors;
    reply.render(StatusCode::UNPROCESSABLE_ENTITY, &page, &page.as_details())
}

pub async fn delete(
    State(state): State<AppState>,
    OwnedStream {
        user,
        stream,
        channel,
        ..
    }: OwnedStream,
    reply: Reply,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let refused = |status: Status| match status {
        Status::Ended => AppError::forbidden(
            "Only drafts can be deleted; an ended stream stays in the channel's history.",
        ),
        _ => AppError::forbidden("Only drafts can be deleted; end the stream instead."),
    };
    if stream.status != Status::Draft {
        return Err(refused(stream.status));
    }
    // Conditional on still being a draft: it may have gone live since the page loaded.
    if !streams::delete_draft(&mut conn, stream.id).await? {
        let now = streams::find(&mut conn, stream.id)
            .await?
            .ok_or(AppError::NotFound)?;
        return Err(refused(now.status));
    }
    db::audit::record(
        &mut conn,
        Some(user.id),
        Some(channel.id),
        "stream.deleted",
        Some(&stream.id.to_string()),
        serde_json::json!({ "title": stream.title }),
    )
    .await?;
    reply
        .redirect_with(
            FlashKind::Success,
            format!("The draft “{}” was deleted.", stream.title),
            "/studio",
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn a_past_schedule_is_refused_unless_it_is_the_one_kept() {
        let now = at("2026-11-22T18:00:30Z");
        let form = |when: &str| StreamForm {
            title: "Show".into(),
            access: "pass".into(),
            scheduled_at: when.into(),
            ..Default::default()
        };
        let draft = Editable::for_status(Status::Draft);
        let mut e = FieldErrors::default();
        check_stream(&form("2026-11-22T17:00"), draft, None, now, &mut e);
        assert!(e.get("scheduled_at").unwrap().contains("has passed"));

        let mut e = FieldErrors::default();
        check_stream(&form("2026-11-22T18:00"), draft, None, now, &mut e);
        assert!(e.is_empty(), "this minute is fine");

        let mut e = FieldErrors::default();
        let kept = Some(at("2026-11-22T17:00:00Z"));
        check_stream(&form("2026-11-22T17:00"), draft, kept, now, &mut e);
        assert!(e.is_empty(), "an unchanged past schedule is kept");
    }
}
