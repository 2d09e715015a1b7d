//! The moderation page of a stream (its room's panel, the channel's bans and
//! the forms), and the answer a ban, timeout or lift gets where it was asked.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_htmx::HxResponseTrigger;
use diesel_async::AsyncPgConnection;
use tower_sessions::Session;

use super::participants::{Panel, PanelFragment, RoomView, load_panel};
use super::{Ask, Note, TIMEOUT_MINUTES, moderate_path};
use crate::access;
use crate::auth;
use crate::db::bans::{self, BanId, Kind};
use crate::db::channels::{Channel, Role};
use crate::db::streams::{self, Stream};
use crate::db::{StreamId, UserId};
use crate::error::AppResult;
use crate::state::AppState;
use crate::web::authz::TeamStream;
use crate::web::view::{Moment, StreamState, access_label};
use crate::web::{FieldErrors, FlashKind, Htmx, Layout, flash, render_with};

/// The ban form, as typed.
pub struct BanFields {
    pub user_id: String,
    pub email: String,
    pub reason: String,
    /// `permanent`, `hours` or `days`.
    pub length: String,
    pub amount: String,
}

impl Default for BanFields {
    fn default() -> Self {
        BanFields {
            user_id: String::new(),
            email: String::new(),
            reason: String::new(),
            length: "permanent".to_owned(),
            amount: "24".to_owned(),
        }
    }
}

/// The timeout form, as typed.
pub struct TimeoutFields {
    pub user_id: String,
    pub email: String,
    pub minutes: String,
}

impl Default for TimeoutFields {
    fn default() -> Self {
        TimeoutFields {
            user_id: String::new(),
            email: String::new(),
            minutes: "10".to_owned(),
        }
    }
}

/// The bans section's forms and what the last action there said.
#[derive(Default)]
pub struct Forms {
    pub ban: BanFields,
    pub ban_errors: FieldErrors,
    pub timeout: TimeoutFields,
    pub timeout_errors: FieldErrors,
    pub note: Option<Note>,
}

/// Someone in the room who can be banned or timed out, for the forms' pickers.
pub struct Candidate {
    pub id: UserId,
    pub name: String,
}

pub struct BanRow {
    pub id: BanId,
    pub is_ban: bool,
    pub user_id: UserId,
    pub user_name: String,
    /// The owner's view only: a moderator sees display names, never emails.
    pub user_email: Option<String>,
    /// None: permanent (bans only).
    pub until: Option<Moment>,
    pub reason: Option<String>,
    pub by: Option<String>,
    pub since: Moment,
}

#[derive(Template)]
#[template(path = "pages/moderation/stream.html", blocks = ["bans"])]
pub struct ModerationPage {
    pub layout: Layout,
    pub channel: Channel,
    pub stream_id: StreamId,
    pub title: String,
    pub state: StreamState,
    pub access: &'static str,
    pub started: Option<Moment>,
    pub ended: Option<Moment>,
    pub is_owner: bool,
    pub panel: Panel,
    pub candidates: Vec<Candidate>,
    pub bans: Vec<BanRow>,
    pub forms: Forms,
    pub timeout_choices: [i32; 3],
}

impl ModerationPage {
    async fn load(
        ask: &Ask<'_>,
        layout: Layout,
        stream: &Stream,
        channel: Channel,
        forms: Forms,
        panel_note: Option<Note>,
    ) -> AppResult<Self> {
        let Ask {
            state,
            session,
            user,
            ..
        } = ask;
        let panel = load_panel(state, session, user.id, stream, &channel, panel_note).await?;
        let candidates = match &panel.view {
            RoomView::Listed(rows) => rows
                .iter()
                .filter(|r| r.may_sanction)
                .filter_map(|r| {
                    Some(Candidate {
                        id: r.user_id?,
                        name: r.name.clone(),
                    })
                })
                .collect(),
            _ => Vec::new(),
        };
        let mut conn = state.db.get().await?;
        let is_owner =
            access::channel_role(&mut conn, user.id, channel.id).await? == Some(Role::Owner);
        let emails = if is_owner {
            bans::Emails::Shown
        } else {
            bans::Emails::Hidden
        };
        let bans = bans::active_in_channel(&mut conn, channel.id, emails)
            .await?
            .into_iter()
            .map(|b| BanRow {
                id: BanId(b.id),
                is_ban: b.kind == Kind::Ban,
                user_id: UserId(b.user_id),
                user_name: b.user_name,
                user_email: b.user_email,
                until: b.until.map(Moment::new),
                reason: b.reason,
                by: b.banned_by_name,
                since: Moment::new(b.created_at),
            })
            .collect();
        Ok(ModerationPage {
            layout,
            stream_id: stream.id,
            title: stream.title.clone(),
            state: StreamState::of(stream),
            access: access_label(stream.access),
            started: stream.started_at.map(Moment::new),
            ended: stream.ended_at.map(Moment::new),
            is_owner,
            panel,
            candidates,
            bans,
            forms,
            channel,
            timeout_choices: TIMEOUT_MINUTES,
        })
    }
}

/// GET /studio/streams/{id}/moderate: the page; to htmx, the bans section
/// alone (it reloads itself when the panel bans or times someone out).
pub async fn page(
    State(state): State<AppState>,
    TeamStream {
        user,
        stream,
        channel,
        ..
    }: TeamStream,
    session: Session,
    htmx: Htmx,
) -> AppResult<Response> {
    let layout = if htmx.fragment {
        Layout::fragment(&session).await?
    } else {
        Layout::for_user(&session, &user).await?
    };
    let ask = Ask {
        state: &state,
        session: &session,
        htmx: &htmx,
        user: &user,
    };
    let page = ModerationPage::load(&ask, layout, &stream, channel, Forms::default(), None).await?;
    if htmx.fragment {
        render_with(StatusCode::OK, &page.as_bans())
    } else {
        render_with(StatusCode::OK, &page)
    }
}

// ---------------------------------------------------------------------------
// The answer to a ban, timeout or lift (see `sanctions`), where it was asked.

/// Where a channel action was asked from, which decides the answer's shape.
pub(super) enum Origin {
    /// A button of the participants panel (htmx).
    Panel(Stream),
    /// The bans section of a moderation page (htmx).
    Section(Stream),
    /// A plain form post, from a moderation page when `Some`.
    Plain(Option<Stream>),
}

/// Reads the hidden `stream` field: one of this channel's streams, else none.
pub(super) async fn origin(
    conn: &mut AsyncPgConnection,
    htmx: &Htmx,
    target: Option<&str>,
    channel: &Channel,
    raw_stream: &str,
) -> AppResult<Origin> {
    let stream = match raw_stream.trim().parse::<StreamId>() {
        Ok(id) => streams::find(conn, id)
            .await?
            .filter(|s| s.channel_id == channel.id),
        Err(_) => None,
    };
    Ok(match (htmx.fragment, stream) {
        (true, Some(s)) if target == Some("participants") => Origin::Panel(s),
        (true, Some(s)) => Origin::Section(s),
        (_, s) => Origin::Plain(s),
    })
}

/// Answers a ban, timeout or lift: the panel or the bans section with what
/// happened (htmx, the other one told to refresh), or back to where the form
/// was with a flash — or, for a plain form with errors, its page with them.
pub(super) async fn answer_channel_action(
    ask: &Ask<'_>,
    channel: Channel,
    origin: Origin,
    status: StatusCode,
    forms: Forms,
) -> AppResult<Response> {
    let Ask {
        state,
        session,
        htmx,
        user,
    } = ask;
    let ok = status.is_success();
    match origin {
        Origin::Panel(stream) => {
            let note = forms.note.unwrap_or_else(|| {
                // A field error of a form the panel has no room for: say it.
                let text = [&forms.ban_errors, &forms.timeout_errors]
                    .iter()
                    .find_map(|e| {
                        ["user", "length", "minutes", "reason", ""]
                            .iter()
                            .find_map(|f| e.get(f))
                    })
                    .unwrap_or("That didn't work.")
                    .to_owned();
                Note::refused(text)
            });
            let panel = load_panel(state, session, user.id, &stream, &channel, Some(note)).await?;
            let page = render_with(status, &PanelFragment { panel })?;
            Ok(if ok {
                (HxResponseTrigger::normal(["bans-changed"]), page).into_response()
            } else {
                page
            })
        }
        Origin::Section(stream) => {
            let layout = Layout::fragment(session).await?;
            let page = ModerationPage::load(ask, layout, &stream, channel, forms, None).await?;
            let html = render_with(status, &page.as_bans())?;
            Ok(if ok {
                (HxResponseTrigger::normal(["participants-changed"]), html).into_response()
            } else {
                html
            })
        }
        Origin::Plain(stream) => {
            if ok || stream.is_none() {
                let text = forms
                    .note
                    .as_ref()
                    .map(|n| n.text.clone())
                    .or_else(|| {
                        [&forms.ban_errors, &forms.timeout_errors]
                            .iter()
                            .find_map(|e| {
                                ["user", "length", "minutes", "reason", ""]
                                    .iter()
                                    .find_map(|f| e.get(f))
                            })
                            .map(str::to_owned)
                    })
                    .unwrap_or_default();
                let kind = if ok && forms.note.as_ref().is_none_or(|n| n.ok) {
                    FlashKind::Success
                } else {
                    FlashKind::Error
                };
                if !text.is_empty() {
                    flash(session, kind, text).await?;
                }
                let to = stream
                    .map(|s| moderate_path(s.id))
                    .unwrap_or_else(|| "/moderation".to_owned());
                return Ok(auth::redirect(htmx.request, &to));
            }
            let stream = stream.expect("checked above");
            let layout = Layout::for_user(session, user).await?;
            let page = ModerationPage::load(ask, layout, &stream, channel, forms, None).await?;
            render_with(status, &page)
        }
    }
}
