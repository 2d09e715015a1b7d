//! The operator's console, `/admin`, for instance admins only (`InstanceAdmin`:
//! 403 for everyone else on every route): the instance's figures and what is
//! live now, creator applications, users (search, suspend, restore),
//! channels (hide, restore) and the admins' audit log. The actions are the
//! domain's (`crate::operators`); every one is a CSRF-checked POST and is
//! audited there.
//!
//! A row's action answers htmx with the row again (with the reason's error
//! next to its field, or its new state); without JavaScript a 303 back to
//! the list with a flash, or the list again with the error.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::authz::{Ids, InstanceAdmin};
use super::forms::{MAX_REASON, normalize_text};
use super::view::Moment;
use super::view::panels::size_label;
use super::{FieldErrors, FlashKind, Layout, Reply, render};
use crate::db::applications::Pending;
use crate::db::channels::ChannelRow;
use crate::db::instance::{self, AdminEntry, Figures, LiveNow, SignUps};
use crate::db::users::AccountRow;
use crate::db::{self, ChannelId, UserId};
use crate::error::AppResult;
use crate::operators::{self, Refusal};
use crate::state::AppState;

/// How many rows a list shows (search to narrow it).
const LIST_LIMIT: i64 = 50;
/// Days of sign-ups on the dashboard.
const SIGN_UP_DAYS: i32 = 14;

// ---------------------------------------------------------------------------
// The dashboard: figures, live now, sign-ups per day.

#[derive(Template)]
#[template(path = "pages/admin/dashboard.html")]
pub struct DashboardPage {
    pub layout: Layout,
    pub figures: Figures,
    pub recording_size: String,
    pub live: Vec<LiveNow>,
    pub sign_ups: Vec<SignUps>,
}

pub async fn dashboard(
    State(state): State<AppState>,
    _admin: InstanceAdmin,
    layout: Layout,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let figures = instance::figures(&mut conn).await?;
    let page = DashboardPage {
        layout,
        recording_size: size_label(figures.recording_bytes),
        figures,
        live: instance::live_now(&mut conn).await?,
        sign_ups: instance::sign_ups_per_day(&mut conn, SIGN_UP_DAYS).await?,
    };
    render(&page)
}

// ---------------------------------------------------------------------------
// Creator applications.

#[derive(Template)]
#[template(path = "pages/admin/applications.html")]
pub struct ApplicationsPage {
    pub layout: Layout,
    pub pending: Vec<ApplicationRow>,
    pub creators_open: bool,
    pub csrf: String,
    /// Nothing is decided on the page itself (the row partial asks).
    pub decided: Option<String>,
}

/// One pending application with its forms' state.
pub struct ApplicationRow {
    pub p: Pending,
    pub at: Moment,
    pub reason: String,
    pub errors: FieldErrors,
}

impl ApplicationRow {
    fn new(p: Pending) -> Self {
        ApplicationRow {
            at: Moment::new(p.application.created_at),
            p,
            reason: String::new(),
            errors: FieldErrors::default(),
        }
    }
}

#[derive(Template)]
#[template(path = "partials/admin/application.html")]
pub struct ApplicationFragment {
    pub row: ApplicationRow,
    pub csrf: String,
    /// After a decision: what became of it.
    pub decided: Option<String>,
}

pub async fn applications(
    State(state): State<AppState>,
    _admin: InstanceAdmin,
    layout: Layout,
) -> AppResult<Response> {
    let pending = db::applications::pending(&mut *state.db.get().await?, LIST_LIMIT).await?;
    render(&ApplicationsPage {
        csrf: layout.csrf_token.clone(),
        decided: None,
        layout,
        pending: pending.into_iter().map(ApplicationRow::new).collect(),
        creators_open: state.config.creators == crate::config::Creators::Open,
    })
}

#[derive(Deserialize, Default)]
pub struct ReasonForm {
    #[serde(default)]
    pub reason: String,
}

/// The reason an admin gives (required: the person affected is told it, and
/// the audit log keeps it), or the error next to its field.
fn required_reason(raw: &str, errors: &mut FieldErrors) -> Option<String> {
    let reason = normalize_text(raw);
    if reason.is_empty() {
        errors.add(
            "reason",
            "Give a reason: the person is told it, and the audit log keeps it.",
        );
        None
    } else if reason.chars().count() > MAX_REASON {
        errors.add("reason", format!("Use at most {MAX_REASON} characters."));
        None
    } else {
        Some(reason)
    }
}

pub async fn approve(
    State(state): State<AppState>,
    InstanceAdmin(admin): InstanceAdmin,
    reply: Reply,
    Ids(id): Ids<i64>,
) -> AppResult<Response> {
    decide(&state, admin.id, reply, id, Ok(None), String::new()).await
}

pub async fn reject(
    State(state): State<AppState>,
    InstanceAdmin(admin): InstanceAdmin,
    reply: Reply,
    Ids(id): Ids<i64>,
    Form(form): Form<ReasonForm>,
) -> AppResult<Response> {
    let mut errors = FieldErrors::default();
    let verdict = match required_reason(&form.reason, &mut errors) {
        Some(reason) => Ok(Some(reason)),
        None => Err(errors),
    };
    decide(&state, admin.id, reply, id, verdict, form.reason).await
}

/// Approves (`Ok(None)`) or rejects (`Ok(Some(reason))`) application `id`;
/// `Err`: the rejection's reason was refused, nothing changed.
async fn decide(
    state: &AppState,
    admin: UserId,
    reply: Reply,
    id: i64,
    verdict: Result<Option<String>, FieldErrors>,
    typed: String,
) -> AppResult<Response> {
    let (errors, decided) = match verdict {
        Err(errors) => (errors, None),
        Ok(reject) => {
            match operators::decide_application(state, admin, id, reject.as_deref()).await? {
                Ok(application) => {
                    let what = match reject {
                        None => format!(
                            "Approved: {} may create channels now, and was told so.",
                            application.channel_name
                        ),
                        Some(_) => format!(
                            "Rejected: the applicant for {} was told why.",
                            application.channel_name
                        ),
                    };
                    (FieldErrors::default(), Some(what))
                }
                Err(refusal) => {
                    let mut errors = FieldErrors::default();
                    errors.add("", refusal.to_string());
                    (errors, None)
                }
            }
        }
    };
    if !reply.htmx.fragment {
        return back_to_list(&reply, decided, &errors, "/admin/applications").await;
    }
    let mut conn = state.db.get().await?;
    let pending = db::applications::pending(&mut conn, LIST_LIMIT).await?;
    // The row as it is now: still pending (with the error), or decided.
    let row = match pending.into_iter().find(|p| p.application.id == id) {
        Some(p) => p,
        None => {
            let Some(p) = db::applications::with_applicant(&mut conn, id).await? else {
                return Err(crate::error::AppError::NotFound);
            };
            p
        }
    };
    let mut row = ApplicationRow::new(row);
    row.reason = typed;
    row.errors = errors;
    render(&ApplicationFragment {
        row,
        csrf: crate::auth::csrf::token(&reply.session).await?,
        decided,
    })
}

// ---------------------------------------------------------------------------
// Users: search, suspend, restore.

#[derive(Deserialize, Default)]
pub struct SearchQuery {
    #[serde(default)]
    pub q: String,
}

#[derive(Template)]
#[template(path = "pages/admin/users.html")]
pub struct UsersPage {
    pub layout: Layout,
    pub q: String,
    pub rows: Vec<UserRow>,
}

pub struct UserRow {
    pub account: AccountRow,
    pub since: Moment,
    pub reason: String,
    pub errors: FieldErrors,
    /// What the last action did, said in the row.
    pub note: Option<String>,
}

impl UserRow {
    fn new(account: AccountRow) -> Self {
        UserRow {
            since: Moment::new(account.created_at),
            account,
            reason: String::new(),
            errors: FieldErrors::default(),
            note: None,
        }
    }
}

#[derive(Template)]
#[template(path = "partials/admin/user_row.html")]
pub struct UserRowFragment {
    pub row: UserRow,
    pub csrf: String,
}

/// The search box's text, bounded (it goes into an ILIKE pattern).
fn search_text(q: &str) -> String {
    q.trim().chars().take(100).collect()
}

pub async fn users(
    State(state): State<AppState>,
    _admin: InstanceAdmin,
    layout: Layout,
    Query(query): Query<SearchQuery>,
) -> AppResult<Response> {
    let q = search_text(&query.q);
    let accounts = db::users::search(&mut *state.db.get().await?, &q, LIST_LIMIT).await?;
    render(&UsersPage {
        layout,
        q,
        rows: accounts.into_iter().map(UserRow::new).collect(),
    })
}

pub async fn suspend(
    State(state): State<AppState>,
    InstanceAdmin(admin): InstanceAdmin,
    reply: Reply,
    Ids(id): Ids<UserId>,
    Form(form): Form<ReasonForm>,
) -> AppResult<Response> {
    let mut errors = FieldErrors::default();
    let outcome = match required_reason(&form.reason, &mut errors) {
        Some(reason) => Some(operators::suspend(&state, admin.id, id, &reason).await?),
        None => None,
    };
    let done = "Suspended: their sessions ended, they were removed from every room and chat, their live streams ended and their channels are hidden.";
    user_action(&state, reply, id, outcome, errors, form.reason, done).await
}

pub async fn restore(
    State(state): State<AppState>,
    InstanceAdmin(admin): InstanceAdmin,
    reply: Reply,
    Ids(id): Ids<UserId>,
) -> AppResult<Response> {
    let outcome = Some(operators::restore(&state, admin.id, id).await?);
    let done = "Restored: they can sign in again, and their channels show again.";
    user_action(
        &state,
        reply,
        id,
        outcome,
        FieldErrors::default(),
        String::new(),
        done,
    )
    .await
}

/// Answers a user row's action: `outcome` None when the form was refused
/// (`errors` say why).
async fn user_action(
    state: &AppState,
    reply: Reply,
    id: UserId,
    outcome: Option<Result<bool, Refusal>>,
    mut errors: FieldErrors,
    typed: String,
    done: &str,
) -> AppResult<Response> {
    let note = outcome_note(outcome, &mut errors, done);
    let mut conn = state.db.get().await?;
    let account = db::users::account(&mut conn, id)
        .await?
        .ok_or(crate::error::AppError::NotFound)?;
    drop(conn);
    if !reply.htmx.fragment {
        let to = format!("/admin/users?q={}", query_value(&account.email));
        return back_to_list(&reply, note, &errors, &to).await;
    }
    let mut row = UserRow::new(account);
    row.errors = errors;
    row.note = note;
    if !row.errors.is_empty() {
        row.reason = typed;
    }
    let status = if row.errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let html = UserRowFragment {
        row,
        csrf: crate::auth::csrf::token(&reply.session).await?,
    };
    super::render_with(status, &html)
}

// ---------------------------------------------------------------------------
// Channels: hide, restore.

#[derive(Template)]
#[template(path = "pages/admin/channels.html")]
pub struct ChannelsPage {
    pub layout: Layout,
    pub q: String,
    pub rows: Vec<ChannelAdminRow>,
}

pub struct ChannelAdminRow {
    pub channel: ChannelRow,
    pub reason: String,
    pub errors: FieldErrors,
    pub note: Option<String>,
}

impl ChannelAdminRow {
    fn new(channel: ChannelRow) -> Self {
        ChannelAdminRow {
            channel,
            reason: String::new(),
            errors: FieldErrors::default(),
            note: None,
        }
    }
}

#[derive(Template)]
#[template(path = "partials/admin/channel_row.html")]
pub struct ChannelRowFragment {
    pub row: ChannelAdminRow,
    pub csrf: String,
}

pub async fn channels(
    State(state): State<AppState>,
    _admin: InstanceAdmin,
    layout: Layout,
    Query(query): Query<SearchQuery>,
) -> AppResult<Response> {
    let q = search_text(&query.q);
    let rows = db::channels::search_all(&mut *state.db.get().await?, &q, LIST_LIMIT).await?;
    render(&ChannelsPage {
        layout,
        q,
        rows: rows.into_iter().map(ChannelAdminRow::new).collect(),
    })
}

pub async fn hide(
    State(state): State<AppState>,
    InstanceAdmin(admin): InstanceAdmin,
    reply: Reply,
    Ids(id): Ids<ChannelId>,
    Form(form): Form<ReasonForm>,
) -> AppResult<Response> {
    let mut errors = FieldErrors::default();
    let outcome = match required_reason(&form.reason, &mut errors) {
        Some(reason) => {
            Some(operators::set_channel_hidden(&state, admin.id, id, Some(&reason)).await?)
        }
        None => None,
    };
    let done = "Hidden: only its team sees it now, and its live streams ended.";
    channel_action(&state, reply, id, outcome, errors, form.reason, done).await
}

pub async fn show_channel(
    State(state): State<AppState>,
    InstanceAdmin(admin): InstanceAdmin,
    reply: Reply,
    Ids(id): Ids<ChannelId>,
) -> AppResult<Response> {
    let outcome = Some(operators::set_channel_hidden(&state, admin.id, id, None).await?);
    let done = "Restored: the channel shows again.";
    channel_action(
        &state,
        reply,
        id,
        outcome,
        FieldErrors::default(),
        String::new(),
        done,
    )
    .await
}

async fn channel_action(
    state: &AppState,
    reply: Reply,
    id: ChannelId,
    outcome: Option<Result<bool, Refusal>>,
    mut errors: FieldErrors,
    typed: String,
    done: &str,
) -> AppResult<Response> {
    let note = outcome_note(outcome, &mut errors, done);
    let channel = db::channels::admin_row(&mut *state.db.get().await?, id)
        .await?
        .ok_or(crate::error::AppError::NotFound)?;
    if !reply.htmx.fragment {
        let to = format!("/admin/channels?q={}", query_value(&channel.handle));
        return back_to_list(&reply, note, &errors, &to).await;
    }
    let mut row = ChannelAdminRow::new(channel);
    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        row.reason = typed;
        StatusCode::UNPROCESSABLE_ENTITY
    };
    row.errors = errors;
    row.note = note;
    let html = ChannelRowFragment {
        row,
        csrf: crate::auth::csrf::token(&reply.session).await?,
    };
    super::render_with(status, &html)
}

// ---------------------------------------------------------------------------
// What the row actions share.

/// What a row's action did, in words (None: it was refused, and `errors`
/// now says why; `outcome` None: the form itself was refused).
fn outcome_note(
    outcome: Option<Result<bool, Refusal>>,
    errors: &mut FieldErrors,
    done: &str,
) -> Option<String> {
    match outcome? {
        Ok(true) => Some(done.to_owned()),
        Ok(false) => Some("Nothing to change: it was like that already.".to_owned()),
        Err(refusal) => {
            errors.add("", refusal.to_string());
            None
        }
    }
}

/// Without JavaScript: back to the list at `to`, with what happened or why not.
async fn back_to_list(
    reply: &Reply,
    note: Option<String>,
    errors: &FieldErrors,
    to: &str,
) -> AppResult<Response> {
    match (note, errors.get("").or(errors.get("reason"))) {
        (Some(note), None) => reply.redirect_with(FlashKind::Success, note, to).await,
        (_, error) => {
            let error = error.unwrap_or("Nothing was changed.").to_owned();
            reply.redirect_with(FlashKind::Error, error, to).await
        }
    }
}

fn query_value(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// ---------------------------------------------------------------------------
// The admins' audit log.

#[derive(Template)]
#[template(path = "pages/admin/audit.html")]
pub struct AuditPage {
    pub layout: Layout,
    pub entries: Vec<AuditRow>,
}

pub struct AuditRow {
    pub entry: AdminEntry,
    pub at: Moment,
    pub details: String,
}

pub async fn audit(
    State(state): State<AppState>,
    _admin: InstanceAdmin,
    layout: Layout,
) -> AppResult<Response> {
    let entries = instance::admin_log(&mut *state.db.get().await?, 200).await?;
    render(&AuditPage {
        layout,
        entries: entries
            .into_iter()
            .map(|entry| AuditRow {
                at: Moment::new(entry.created_at),
                details: details_text(&entry.details),
                entry,
            })
            .collect(),
    })
}

/// An entry's details as `key: value` pairs, in words.
fn details_text(details: &serde_json::Value) -> String {
    match details.as_object() {
        Some(map) => map
            .iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{}: {s}", k.replace('_', " ")),
                other => format!("{}: {other}", k.replace('_', " ")),
            })
            .collect::<Vec<_>>()
            .join(" · "),
        None => String::new(),
    }
}
