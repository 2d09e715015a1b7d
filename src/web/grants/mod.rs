//! The owner's grants of a channel (list, comp, extend, revoke), a pass's
//! redeem codes (generate, list, CSV export), and redeeming a code.
//!
//! Who may manage a channel, a pass or a grant is `authz`'s (owners only);
//! what a grant is worth and whether it is active is decided in SQL by
//! `db::grants` and `access.rs`; redemption is `db::codes::redeem` (one
//! transaction). This module must not decide access by itself, and never
//! removes viewers from rooms: the database trigger on `access_grants` wakes
//! the enforcer, which does.
//!
//! Redeeming is flood-limited: failed redemptions per account (counted in the
//! audit log) and unknown codes per client address over all accounts
//! (`crate::limits`); the `REDEEM_*` settings.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum_htmx::{HxReswap, HxRetarget, SwapOption};
use chrono::{DateTime, Duration, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::Deserialize;
use tower_sessions::Session;

use super::authz::{self, Area, Ids};
use super::forms::parse_schedule;
use super::view::Moment;
use super::view::utc;
use super::{FieldErrors, FlashKind, Htmx, Layout, flash, render_with};
use crate::access;
use crate::auth::{self, CurrentUser, MaybeUser};
use crate::db::channels::Channel;
use crate::db::codes::{self, RedeemCode};
use crate::db::grants::{self, ChannelGrant, GrantQuery, GrantState, NewGrant, Source};
use crate::db::passes::{self, Pass};
use crate::db::users::{self, User};
use crate::db::{self, GrantId, PassId, StreamId, streams};
use crate::error::{AppError, AppResult};
use crate::limits::Action;
use crate::state::AppState;

const PER_PAGE: i64 = 50;
/// The longest comp or extension: a year, leap day included.
const MAX_DAYS: i64 = 366;
const MAX_REASON: usize = 200;

/// "N hours" / "N days" from a form: the amount, its unit, and the limits.
fn read_duration(amount: &str, unit: &str) -> Result<Duration, &'static str> {
    const RANGE: &str = "Give between 1 hour and 366 days.";
    let n: i64 = amount
        .trim()
        .parse()
        .map_err(|_| "Enter a whole number of hours or days.")?;
    let d = match unit {
        "hours" => Duration::try_hours(n),
        "days" => Duration::try_days(n),
        _ => return Err("Choose hours or days."),
    }
    .ok_or(RANGE)?;
    if d < Duration::hours(1) || d > Duration::days(MAX_DAYS) {
        return Err(RANGE);
    }
    Ok(d)
}

// ---------------------------------------------------------------------------
// The channel's grants.

/// The list's filters, as they come in the query string (read leniently: a
/// value we cannot use means "no filter", not an error page).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ListParams {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub pass: String,
    #[serde(default)]
    pub page: String,
}

/// The filters in force, as the page shows them.
pub struct Filters {
    pub status: Option<GrantState>,
    pub user: String,
    pub pass: Option<PassId>,
    pub page: i64,
}

impl Filters {
    fn read(p: &ListParams) -> Self {
        Filters {
            status: GrantState::parse(p.status.trim()),
            user: p.user.trim().chars().take(254).collect(),
            pass: p.pass.trim().parse().ok(),
            page: p.page.trim().parse().unwrap_or(1).max(1),
        }
    }

    fn query(&self) -> GrantQuery {
        GrantQuery {
            state: self.status,
            email: Some(self.user.clone()).filter(|u| !u.is_empty()),
            pass: self.pass,
        }
    }

    /// `?status=…&user=…` for links and form actions; empty when unfiltered.
    fn query_string(&self, page: i64) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if let Some(s) = self.status {
            q.append_pair("status", s.as_str());
        }
        if !self.user.is_empty() {
            q.append_pair("user", &self.user);
        }
        if let Some(p) = self.pass {
            q.append_pair("pass", &p.to_string());
        }
        if page > 1 {
            q.append_pair("page", &page.to_string());
        }
        let q = q.finish();
        if q.is_empty() { q } else { format!("?{q}") }
    }

    pub fn status_is(&self, s: &str) -> bool {
        self.status.map(GrantState::as_str) == Some(s)
    }

    /// The pass filter as the select's value ("" for all).
    pub fn pass_value(&self) -> String {
        self.pass.map(|p| p.to_string()).unwrap_or_default()
    }

    pub fn any(&self) -> bool {
        self.status.is_some() || !self.user.is_empty() || self.pass.is_some()
    }
}

/// The extend and revoke forms of one row, as typed (kept on errors).
#[derive(Default)]
pub struct RowForms {
    pub amount: String,
    pub unit: String,
    pub until: String,
    pub reason: String,
    /// Which form to show open: "extend" or "revoke" after an error in it.
    pub open: &'static str,
}

pub struct GrantRow {
    pub id: GrantId,
    pub user_name: String,
    pub user_email: String,
    pub pass: String,
    pub scope: String,
    pub source: String,
    pub starts: Moment,
    pub ends: Moment,
    pub state: GrantState,
    pub revoked: Option<Moment>,
    pub revoked_reason: Option<String>,
    /// What just happened to it ("Extended to …"), after an htmx action.
    pub note: Option<String>,
    pub forms: RowForms,
    pub errors: FieldErrors,
}

impl GrantRow {
    fn new(g: ChannelGrant) -> Self {
        GrantRow {
            id: g.grant.id,
            user_name: g.user_name,
            user_email: g.user_email,
            pass: g
                .pass_name
                .unwrap_or_else(|| match g.grant.source.as_str() {
                    "comp" => "comp".to_owned(),
                    _ => "(deleted pass)".to_owned(),
                }),
            scope: g.stream_title.unwrap_or_else(|| "whole channel".to_owned()),
            source: g.grant.source,
            starts: Moment::new(g.grant.starts_at),
            ends: Moment::new(g.grant.expires_at),
            state: g.state,
            revoked: g.grant.revoked_at.map(Moment::new),
            revoked_reason: g.grant.revoked_reason,
            note: None,
            forms: RowForms {
                amount: "1".to_owned(),
                unit: "days".to_owned(),
                ..RowForms::default()
            },
            errors: FieldErrors::default(),
        }
    }
}

pub struct Choice {
    pub value: String,
    pub label: String,
}

/// The comp form, as typed.
pub struct CompFields {
    pub email: String,
    pub amount: String,
    pub unit: String,
    pub scope: String,
    pub includes_replays: bool,
}

impl Default for CompFields {
    fn default() -> Self {
        CompFields {
            email: String::new(),
            amount: "1".to_owned(),
            unit: "days".to_owned(),
            scope: String::new(),
            includes_replays: true,
        }
    }
}

#[derive(Template)]
#[template(path = "pages/grants/list.html", blocks = ["comp", "grants"])]
pub struct GrantsPage {
    pub layout: Layout,
    pub channel: Channel,
    pub rows: Vec<GrantRow>,
    pub filters: Filters,
    pub passes: Vec<Choice>,
    pub streams: Vec<Choice>,
    pub total: i64,
    pub pages: i64,
    pub prev: Option<String>,
    pub next: Option<String>,
    /// The filters of this view, appended to the row forms' actions so that
    /// a plain (non-htmx) action comes back to the same view.
    pub back: String,
    pub comp: CompFields,
    pub comp_errors: FieldErrors,
}

impl GrantsPage {
    async fn load(
        conn: &mut AsyncPgConnection,
        layout: Layout,
        channel: Channel,
        mut filters: Filters,
    ) -> AppResult<Self> {
        let offset = (filters.page - 1).saturating_mul(PER_PAGE);
        let (mut rows, total) =
            grants::list(conn, channel.id, &filters.query(), offset, PER_PAGE).await?;
        let pages = (total + PER_PAGE - 1) / PER_PAGE;
        if filters.page > pages && pages > 0 {
            // Past the end (an old link, grants gone since): the last page.
            filters.page = pages;
            let offset = (pages - 1) * PER_PAGE;
            rows = grants::list(conn, channel.id, &filters.query(), offset, PER_PAGE)
                .await?
                .0;
        }
        let pages = pages.max(1);
        let passes = grants::pass_choices(conn, channel.id)
            .await?
            .into_iter()
            .map(|(id, name, archived)| Choice {
                value: id.to_string(),
                label: if archived {
                    format!("{name} (archived)")
                } else {
                    name
                },
            })
            .collect();
        let streams = streams::for_channel(conn, channel.id)
            .await?
            .into_iter()
            .map(|s| Choice {
                value: s.id.to_string(),
                label: s.title,
            })
            .collect();
        let page = filters.page;
        Ok(GrantsPage {
            layout,
            rows: rows.into_iter().map(GrantRow::new).collect(),
            passes,
            streams,
            total,
            pages,
            prev: (page > 1).then(|| filters.query_string(page - 1)),
            next: (page < pages).then(|| filters.query_string(page + 1)),
            back: filters.query_string(page),
            filters,
            channel,
            comp: CompFields::default(),
            comp_errors: FieldErrors::default(),
        })
    }

    /// Puts `row` (with its errors) in place of its line, or first when the
    /// filters no longer show it.
    fn with_row(mut self, row: GrantRow) -> Self {
        match self.rows.iter().position(|r| r.id == row.id) {
            Some(i) => self.rows[i] = row,
            None => self.rows.insert(0, row),
        }
        self
    }
}

/// One row, alone: the answer to an htmx extend or revoke.
#[derive(Template)]
#[template(path = "pages/grants/row.html")]
pub struct GrantRowFragment {
    pub row: GrantRow,
    pub csrf: String,
    pub back: String,
}

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    htmx: Htmx,
    layout: Layout,
    Path(handle): Path<String>,
    Query(params): Query<ListParams>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let channel = authz::owned_channel(&mut conn, user.id, &handle, Area::Grants).await?;
    let page = GrantsPage::load(&mut conn, layout, channel, Filters::read(&params)).await?;
    if htmx.fragment {
        render_with(StatusCode::OK, &page.as_grants())
    } else {
        render_with(StatusCode::OK, &page)
    }
}

#[derive(Deserialize, Default)]
pub struct CompForm {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub amount: String,
    #[serde(default)]
    pub unit: String,
    /// Empty: the whole channel; else the id of one of its streams.
    #[serde(default)]
    pub scope: String,
    /// A checkbox: present when ticked.
    #[serde(default)]
    pub includes_replays: Option<String>,
}

pub async fn comp(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    htmx: Htmx,
    Path(handle): Path<String>,
    Form(form): Form<CompForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let channel = authz::owned_channel(&mut conn, user.id, &handle, Area::Grants).await?;
    let mut errors = FieldErrors::default();

    let email = form.email.trim();
    let mut holder = None;
    if email.is_empty() {
        errors.add(
            "email",
            "Enter the email address of their stagepass account.",
        );
    } else {
        match users::find_by_email(&mut conn, email).await? {
            None => errors.add(
                "email",
                "No account uses that email. Ask them to sign up first.",
            ),
            Some(u) => match access::channel_role(&mut conn, u.id, channel.id).await? {
                Some(_) => errors.add(
                    "email",
                    format!(
                        "{} is on this channel's team and can already watch every stream.",
                        u.display_name
                    ),
                ),
                None => holder = Some(u),
            },
        }
    }
    let duration = read_duration(&form.amount, form.unit.trim())
        .map_err(|e| errors.add("duration", e))
        .ok();
    let scope = form.scope.trim();
    let stream: Option<StreamId> = if scope.is_empty() || scope == "channel" {
        None
    } else {
        match scope.parse::<StreamId>() {
            Ok(id) => match streams::find(&mut conn, id).await? {
                Some(s) if s.channel_id == channel.id => Some(s.id),
                _ => {
                    errors.add("scope", "Choose the whole channel or one of its streams.");
                    None
                }
            },
            Err(_) => {
                errors.add("scope", "Choose the whole channel or one of its streams.");
                None
            }
        }
    };

    if let (true, Some(holder), Some(duration)) = (errors.is_empty(), holder, duration) {
        let includes_replays = form.includes_replays.is_some();
        let grant = conn
            .transaction(async |conn| {
                // Like buying again: a comp for a scope they already hold starts
                // when the current grant ends, so it adds time instead of overlapping.
                let starts_at = grants::next_start(conn, holder.id, channel.id, stream).await?;
                let grant = grants::insert(
                    conn,
                    &NewGrant {
                        user_id: holder.id,
                        channel_id: channel.id,
                        stream_id: stream,
                        pass_id: None,
                        source: Source::Comp.as_str(),
                        includes_replays,
                        starts_at,
                        expires_at: starts_at + duration,
                    },
                )
                .await?;
                db::audit::record(
                    conn,
                    Some(user.id),
                    Some(channel.id),
                    "grant.comped",
                    Some(&grant.id.to_string()),
                    serde_json::json!({
                        "user_id": holder.id,
                        "stream_id": grant.stream_id,
                        "starts_at": grant.starts_at,
                        "expires_at": grant.expires_at,
                        "includes_replays": includes_replays,
                    }),
                )
                .await?;
                Ok::<_, diesel::result::Error>(grant)
            })
            .await?;
        flash(
            &session,
            FlashKind::Success,
            format!(
                "{} can watch {} until {}.",
                holder.display_name,
                if stream.is_some() {
                    "that stream"
                } else {
                    "every stream of the channel"
                },
                utc(&grant.expires_at)
            ),
        )
        .await?;
        return Ok(auth::redirect(
            htmx.request,
            &format!("/studio/channels/{}/grants", channel.handle),
        ));
    }

    let layout = Layout::for_user(&session, &user).await?;
    let mut page = GrantsPage::load(
        &mut conn,
        layout,
        channel,
        Filters::read(&ListParams::default()),
    )
    .await?;
    page.comp = CompFields {
        email: email.to_owned(),
        amount: form.amount.trim().to_owned(),
        unit: form.unit.trim().to_owned(),
        scope: scope.to_owned(),
        includes_replays: form.includes_replays.is_some(),
    };
    page.comp_errors = errors;
    if htmx.fragment {
        render_with(StatusCode::UNPROCESSABLE_ENTITY, &page.as_comp())
    } else {
        render_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
    }
}

/// After a row action: the row alone, saying what happened (htmx), or back
/// to the list with that as a flash. On errors, the row with its errors
/// (htmx), or the list with them (422).
async fn answer_row(
    conn: &mut AsyncPgConnection,
    session: &Session,
    user: &User,
    htmx: &Htmx,
    channel: Channel,
    params: &ListParams,
    mut row: GrantRow,
) -> AppResult<Response> {
    let filters = Filters::read(params);
    let back = filters.query_string(filters.page);
    let ok = row.errors.is_empty();
    if htmx.fragment {
        let csrf = auth::csrf::token(session).await?;
        let status = if ok {
            StatusCode::OK
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        return render_with(status, &GrantRowFragment { row, csrf, back });
    }
    if ok {
        if let Some(done) = row.note.take() {
            flash(session, FlashKind::Success, done).await?;
        }
        return Ok(auth::redirect(
            htmx.request,
            &format!("/studio/channels/{}/grants{back}", channel.handle),
        ));
    }
    let layout = Layout::for_user(session, user).await?;
    let page = GrantsPage::load(conn, layout, channel, filters)
        .await?
        .with_row(row);
    render_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
}

#[derive(Deserialize, Default)]
pub struct ExtendForm {
    #[serde(default)]
    pub amount: String,
    #[serde(default)]
    pub unit: String,
    /// A `datetime-local` value (UTC); when given, it wins over the amount.
    #[serde(default)]
    pub until: String,
}

/// The new end of a grant: its end plus an amount, or a chosen moment after it.
fn new_expiry(
    form: &ExtendForm,
    current: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, &'static str> {
    let until = form.until.trim();
    if until.is_empty() {
        return read_duration(&form.amount, form.unit.trim()).map(|d| current + d);
    }
    let at = parse_schedule(until).ok_or("Enter a date and time like 2026-11-22 18:00 (UTC).")?;
    if at <= current || at <= now {
        return Err("Pick a moment after the grant's current end (and in the future).");
    }
    if at > current.max(now) + Duration::days(MAX_DAYS) {
        return Err("Extend by at most 366 days at a time.");
    }
    Ok(at)
}

pub async fn extend(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    htmx: Htmx,
    Ids(id): Ids<GrantId>,
    Query(params): Query<ListParams>,
    Form(form): Form<ExtendForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (grant, channel) = authz::owned_grant(&mut conn, user.id, id).await?;
    let old = grant.grant.expires_at;
    let mut row = GrantRow::new(grant.clone());

    match new_expiry(&form, old, Utc::now()) {
        Err(e) => row.errors.add("extend", e),
        Ok(new) => {
            let changed = conn
                .transaction(async |conn| {
                    let changed = grants::set_expiry(conn, grant.grant.id, new).await?;
                    if let Some(g) = &changed {
                        db::audit::record(
                            conn,
                            Some(user.id),
                            Some(channel.id),
                            "grant.extended",
                            Some(&g.id.to_string()),
                            serde_json::json!({
                                "user_id": g.user_id,
                                "old_expires_at": old,
                                "new_expires_at": g.expires_at,
                            }),
                        )
                        .await?;
                    }
                    Ok::<_, diesel::result::Error>(changed)
                })
                .await?;
            match changed {
                Some(g) => {
                    let fresh = grants::find_in_list(&mut conn, g.id)
                        .await?
                        .ok_or(AppError::NotFound)?;
                    row = GrantRow::new(fresh);
                    row.note = Some(format!(
                        "{}'s grant now ends {}.",
                        grant.user_name,
                        utc(&g.expires_at)
                    ));
                }
                None => row
                    .errors
                    .add("extend", "This grant was revoked; revocation is final."),
            }
        }
    }
    if !row.errors.is_empty() {
        row.forms.amount = form.amount.trim().to_owned();
        row.forms.unit = form.unit.trim().to_owned();
        row.forms.until = form.until.trim().to_owned();
        row.forms.open = "extend";
    }
    answer_row(&mut conn, &session, &user, &htmx, channel, &params, row).await
}

#[derive(Deserialize, Default)]
pub struct RevokeForm {
    #[serde(default)]
    pub reason: String,
}

pub async fn revoke(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    htmx: Htmx,
    Ids(id): Ids<GrantId>,
    Query(params): Query<ListParams>,
    Form(form): Form<RevokeForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (grant, channel) = authz::owned_grant(&mut conn, user.id, id).await?;
    let reason = super::forms::normalize_text(form.reason.trim());
    let mut row = GrantRow::new(grant.clone());

    if reason.is_empty() {
        row.errors
            .add("reason", "Say why: the reason is kept with the grant.");
    } else if reason.chars().count() > MAX_REASON {
        row.errors.add("reason", "Use at most 200 characters.");
    } else {
        let revoked = conn
            .transaction(async |conn| {
                let revoked = grants::revoke(conn, grant.grant.id, &reason).await?;
                if let Some(g) = &revoked {
                    db::audit::record(
                        conn,
                        Some(user.id),
                        Some(channel.id),
                        "grant.revoked",
                        Some(&g.id.to_string()),
                        serde_json::json!({
                            "user_id": g.user_id,
                            "reason": reason,
                            "expires_at": g.expires_at,
                        }),
                    )
                    .await?;
                }
                Ok::<_, diesel::result::Error>(revoked)
            })
            .await?;
        match revoked {
            Some(g) => {
                let fresh = grants::find_in_list(&mut conn, g.id)
                    .await?
                    .ok_or(AppError::NotFound)?;
                row = GrantRow::new(fresh);
                row.note = Some(format!(
                    "{}'s grant was revoked. If they are watching, they are removed from the stream now.",
                    grant.user_name
                ));
            }
            None => row.errors.add("reason", "This grant was already revoked."),
        }
    }
    if !row.errors.is_empty() {
        row.forms.reason = form.reason.trim().to_owned();
        row.forms.open = "revoke";
    }
    answer_row(&mut conn, &session, &user, &htmx, channel, &params, row).await
}

// ---------------------------------------------------------------------------
// Redeem codes.

pub struct CodeRow {
    pub id: db::CodeId,
    pub code: String,
    pub uses: i32,
    pub max_uses: i32,
    pub expires: Option<Moment>,
    pub expired: bool,
    pub redemptions: Vec<RedemptionItem>,
    /// Redemptions not listed (only the latest are).
    pub more: i64,
}

pub struct RedemptionItem {
    pub name: String,
    pub email: String,
    pub at: Moment,
}

/// The generate form, as typed.
pub struct GenerateFields {
    pub count: String,
    pub uses: String,
    pub expires_at: String,
}

impl Default for GenerateFields {
    fn default() -> Self {
        GenerateFields {
            count: "10".to_owned(),
            uses: "1".to_owned(),
            expires_at: String::new(),
        }
    }
}

#[derive(Template)]
#[template(path = "pages/grants/codes.html", blocks = ["generate"])]
pub struct CodesPage {
    pub layout: Layout,
    pub channel: Channel,
    pub pass: Pass,
    /// What the pass gives, in words: "Whole channel · 30 days".
    pub terms: String,
    /// Why no codes can be generated, if so (archived, window over).
    pub closed: Option<&'static str>,
    pub codes: Vec<CodeRow>,
    pub form: GenerateFields,
    pub errors: FieldErrors,
}

/// Redemptions listed per code on the codes page.
const REDEMPTIONS_SHOWN: i32 = 20;

/// Why codes for `pass` would be pointless: nobody could redeem them to any
/// effect, or the owner took the pass off sale.
fn closed_for_codes(pass: &Pass, now: DateTime<Utc>) -> Option<&'static str> {
    if pass.is_archived() {
        Some(
            "This pass is archived, so no new codes are made for it. Codes already handed out still work.",
        )
    } else if pass.grant_window(now).is_none() {
        Some("This pass's window is over: a code for it could not be redeemed.")
    } else {
        None
    }
}

/// A pass's terms for the owner: scope and how long.
async fn pass_terms(conn: &mut AsyncPgConnection, pass: &Pass) -> AppResult<String> {
    let scope = match pass.stream_id {
        None => "Whole channel".to_owned(),
        Some(id) => match streams::find(conn, id).await? {
            Some(s) => format!("Stream “{}”", s.title),
            None => "One stream".to_owned(),
        },
    };
    let length = match (
        pass.duration_seconds,
        pass.window_starts_at,
        pass.window_ends_at,
    ) {
        (Some(secs), _, _) if secs % 86_400 == 0 => plural(i64::from(secs / 86_400), "day"),
        (Some(secs), _, _) if secs % 3_600 == 0 => plural(i64::from(secs / 3_600), "hour"),
        (Some(secs), _, _) => plural(i64::from(secs / 60).max(1), "minute"),
        (None, Some(from), Some(to)) => format!("{} to {}", utc(&from), utc(&to)),
        _ => String::new(),
    };
    let replays = if pass.includes_replays {
        " · includes replays"
    } else {
        ""
    };
    Ok(format!("{scope} · {length}{replays}"))
}

fn plural(n: i64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

impl CodesPage {
    async fn load(
        conn: &mut AsyncPgConnection,
        layout: Layout,
        pass: Pass,
        channel: Channel,
    ) -> AppResult<Self> {
        let now = Utc::now();
        let mut by_code: HashMap<i64, Vec<RedemptionItem>> = HashMap::new();
        for r in codes::redemptions_of_pass(conn, pass.id, REDEMPTIONS_SHOWN).await? {
            by_code.entry(r.code_id).or_default().push(RedemptionItem {
                name: r.display_name,
                email: r.email,
                at: Moment::new(r.created_at),
            });
        }
        let codes = codes::for_pass(conn, pass.id)
            .await?
            .into_iter()
            .map(|c: RedeemCode| {
                let redemptions = by_code.remove(&c.id.0).unwrap_or_default();
                CodeRow {
                    id: c.id,
                    code: c.code,
                    uses: c.uses,
                    max_uses: c.max_uses,
                    expired: c.expires_at.is_some_and(|t| t <= now),
                    expires: c.expires_at.map(Moment::new),
                    more: (i64::from(c.uses) - redemptions.len() as i64).max(0),
                    redemptions,
                }
            })
            .collect();
        Ok(CodesPage {
            layout,
            terms: pass_terms(conn, &pass).await?,
            closed: closed_for_codes(&pass, now),
            channel,
            pass,
            codes,
            form: GenerateFields::default(),
            errors: FieldErrors::default(),
        })
    }
}

pub async fn codes_page(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    layout: Layout,
    Ids(id): Ids<PassId>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (pass, channel) = authz::owned_pass(&mut conn, user.id, id, Area::Codes).await?;
    let page = CodesPage::load(&mut conn, layout, pass, channel).await?;
    render_with(StatusCode::OK, &page)
}

#[derive(Deserialize, Default)]
pub struct GenerateForm {
    #[serde(default)]
    pub count: String,
    #[serde(default)]
    pub uses: String,
    /// A `datetime-local` value read as UTC; empty: the codes never expire.
    #[serde(default)]
    pub expires_at: String,
}

pub async fn generate_codes(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    htmx: Htmx,
    Ids(id): Ids<PassId>,
    Form(form): Form<GenerateForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (pass, channel) = authz::owned_pass(&mut conn, user.id, id, Area::Codes).await?;
    let now = Utc::now();
    let mut errors = FieldErrors::default();
    if let Some(why) = closed_for_codes(&pass, now) {
        errors.add("", why);
    }
    let count = match form.count.trim().parse::<usize>() {
        Ok(n) if (1..=1000).contains(&n) => n,
        _ => {
            errors.add("count", "Generate between 1 and 1,000 codes at a time.");
            0
        }
    };
    let uses = match form.uses.trim().parse::<i32>() {
        Ok(n) if (1..=10_000).contains(&n) => n,
        _ => {
            errors.add("uses", "Each code can be good for 1 to 10,000 uses.");
            0
        }
    };
    let mut expires_at = None;
    if !form.expires_at.trim().is_empty() {
        match parse_schedule(&form.expires_at) {
            None => errors.add(
                "expires_at",
                "Enter a date and time like 2026-11-22 18:00 (UTC).",
            ),
            Some(t) if t <= now => errors.add(
                "expires_at",
                "That time has passed. Pick one in the future (UTC), or leave it empty.",
            ),
            Some(t) => expires_at = Some(t),
        }
    }

    if errors.is_empty() {
        conn.transaction(async |conn| {
            codes::generate(conn, pass.id, count, uses, expires_at).await?;
            db::audit::record(
                conn,
                Some(user.id),
                Some(channel.id),
                "codes.generated",
                Some(&pass.id.to_string()),
                serde_json::json!({
                    "pass_id": pass.id,
                    "count": count,
                    "max_uses": uses,
                    "expires_at": expires_at,
                }),
            )
            .await
        })
        .await?;
        flash(
            &session,
            FlashKind::Success,
            format!(
                "{} generated for {}.",
                if count == 1 {
                    "1 code".to_owned()
                } else {
                    format!("{count} codes")
                },
                pass.name
            ),
        )
        .await?;
        return Ok(auth::redirect(
            htmx.request,
            &format!("/studio/passes/{}/codes", pass.id),
        ));
    }

    let layout = Layout::for_user(&session, &user).await?;
    let mut page = CodesPage::load(&mut conn, layout, pass, channel).await?;
    page.form = GenerateFields {
        count: form.count.trim().to_owned(),
        uses: form.uses.trim().to_owned(),
        expires_at: form.expires_at.trim().to_owned(),
    };
    page.errors = errors;
    if htmx.fragment {
        render_with(StatusCode::UNPROCESSABLE_ENTITY, &page.as_generate())
    } else {
        render_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
    }
}

/// A cell a spreadsheet will not run as a formula: one starting with
/// `= + - @` (or a tab or carriage return) gets a leading apostrophe.
fn csv_cell(value: &str) -> Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        Cow::Owned(format!("'{value}"))
    } else {
        Cow::Borrowed(value)
    }
}

pub async fn export_codes(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    Ids(id): Ids<PassId>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (pass, _) = authz::owned_pass(&mut conn, user.id, id, Area::Codes).await?;
    let list = codes::for_pass(&mut conn, pass.id).await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let csv_failed =
        |e: csv::Error| AppError::Internal(anyhow::Error::new(e).context("writing codes CSV"));
    out.write_record(["code", "max_uses", "uses", "expires_at"])
        .map_err(csv_failed)?;
    for c in &list {
        let expires = c
            .expires_at
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        let (max_uses, uses) = (c.max_uses.to_string(), c.uses.to_string());
        let cells = [
            csv_cell(&c.code),
            csv_cell(&max_uses),
            csv_cell(&uses),
            csv_cell(&expires),
        ];
        out.write_record(cells.iter().map(|c| c.as_bytes()))
            .map_err(csv_failed)?;
    }
    let body = out
        .into_inner()
        .map_err(|e| AppError::Internal(anyhow::anyhow!("writing codes CSV: {e}")))?;
    super::view::csv_download(body, &format!("pass-{}-codes.csv", pass.id))
}

// ---------------------------------------------------------------------------
// Redeeming a code.

/// The redeem form: what pass pages show (they may `{% include
/// "pages/grants/redeem_form.html" %}` with a `redeem: RedeemForm` in scope),
/// and what an htmx redemption that failed answers, with the error next to
/// the field.
pub struct RedeemForm {
    pub csrf_token: String,
    pub return_to: String,
    pub code: String,
    pub error: Option<String>,
}

impl RedeemForm {
    pub fn new(csrf_token: &str, return_to: &str) -> Self {
        RedeemForm {
            csrf_token: csrf_token.to_owned(),
            return_to: return_to.to_owned(),
            code: String::new(),
            error: None,
        }
    }
}

#[derive(Template)]
#[template(path = "pages/grants/redeem_form.html")]
struct RedeemFormFragment {
    redeem: RedeemForm,
}

#[derive(Deserialize, Default)]
pub struct RedeemInput {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub return_to: String,
}

/// Where to go after redeeming: a local path of ours, else "My passes".
fn return_path(raw: &str) -> String {
    let raw = raw.trim();
    let local = raw.starts_with('/')
        && !raw.starts_with("//")
        && !raw.starts_with("/\\")
        && raw.chars().all(|c| c.is_ascii_graphic());
    if local {
        raw.to_owned()
    } else {
        "/passes".to_owned()
    }
}

/// A refused redemption: for htmx, the form again with the error next to the
/// code field, swapped in place of the page's `#redeem-form` whatever its own
/// hx-target says; for a plain form, a flash on the page it came from.
async fn refuse_redemption(
    session: &Session,
    htmx: &Htmx,
    status: StatusCode,
    return_to: &str,
    code: &str,
    message: &str,
) -> AppResult<Response> {
    if htmx.fragment {
        let form = RedeemFormFragment {
            redeem: RedeemForm {
                csrf_token: auth::csrf::token(session).await?,
                return_to: return_to.to_owned(),
                code: code.chars().take(64).collect(),
                error: Some(message.to_owned()),
            },
        };
        let page = render_with(status, &form)?;
        return Ok((
            HxRetarget("#redeem-form".to_owned()),
            HxReswap(SwapOption::OuterHtml),
            page,
        )
            .into_response());
    }
    flash(session, FlashKind::Error, message).await?;
    Ok(auth::redirect(htmx.request, return_to))
}

pub async fn redeem(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    MaybeUser(user): MaybeUser,
    session: Session,
    htmx: Htmx,
    Form(input): Form<RedeemInput>,
) -> AppResult<Response> {
    let return_to = return_path(&input.return_to);
    let Some(user) = user else {
        // Back to the page with the form after signing in, not to this POST-only URL.
        flash(&session, FlashKind::Info, "Sign in to redeem your code.").await?;
        let next: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
        return Ok(auth::redirect(
            htmx.request,
            &format!("/signin?next={next}"),
        ));
    };
    let ip = super::client::client_ip(&state, &headers, peer);
    match try_redeem(&state, &user, &ip, &input.code).await? {
        Ok(done) => {
            flash(
                &session,
                FlashKind::Success,
                format!(
                    "Code redeemed: {} until {}.",
                    done.pass.name,
                    utc(&done.grant.expires_at)
                ),
            )
            .await?;
            Ok(auth::redirect(htmx.request, &return_to))
        }
        Err((status, message)) => {
            refuse_redemption(
                &session,
                &htmx,
                status,
                &return_to,
                input.code.trim(),
                &message,
            )
            .await
        }
    }
}

/// Redeems what `user` typed at `ip`, within the rate limits (failures per
/// account, in the audit log, and per address over all accounts, in
/// `crate::limits`); a refusal comes with its status and its words.
async fn try_redeem(
    state: &AppState,
    user: &User,
    ip: &str,
    typed: &str,
) -> AppResult<Result<codes::Redeemed, (StatusCode, Cow<'static, str>)>> {
    let code = codes::normalize(typed);
    if code.is_empty() {
        return Ok(Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            "Enter the code you were given.".into(),
        )));
    }
    let cfg = &state.config.limits;
    let mut conn = state.db.get().await?;
    let per_account = cfg.redeem_failures_per_account;
    if codes::recent_failures(&mut conn, user.id, per_account.window).await?
        >= i64::from(per_account.max)
    {
        let wait =
            codes::failures_retry_after(&mut conn, user.id, per_account.max, per_account.window)
                .await?;
        return Ok(Err((
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many attempts with codes that didn't work. Wait {}, then try again.",
                crate::limits::wait_in_words(wait)
            )
            .into(),
        )));
    }
    let per_address = cfg.redeem_failures_per_address;
    // Counted as a guess before the code is tried (and forgiven when it was
    // none): guesses sent at once count against each other.
    let counted = match crate::limits::take(&mut conn, Action::RedeemFailed, ip, per_address)
        .await?
    {
        Ok(counted) => counted,
        Err(refused) => {
            return Ok(Err((
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "Too many attempts from your network with codes that didn't work. Wait {}, then try again.",
                        refused.wait()
                    )
                    .into(),
                )));
        }
    };
    let refused = match codes::redeem(&mut conn, user.id, &code).await? {
        Ok(done) => {
            crate::limits::forgive(&mut conn, counted).await?;
            return Ok(Ok(done));
        }
        Err(refused) => refused,
    };
    let channel = match refused.pass {
        Some(p) => passes::find(&mut conn, p).await?.map(|p| p.channel_id),
        None => None,
    };
    db::audit::record(
        &mut conn,
        Some(user.id),
        channel,
        codes::FAILED_ACTION,
        None,
        serde_json::json!({
            "reason": refused.reason.as_str(),
            "pass_id": refused.pass,
        }),
    )
    .await?;
    // Per address, only guesses count: a used-up or expired code is no
    // attack, and a crowd behind one address may race for the same code.
    if refused.reason != codes::Refusal::Unknown {
        crate::limits::forgive(&mut conn, counted).await?;
    }
    let status = match refused.reason {
        codes::Refusal::Banned => StatusCode::FORBIDDEN,
        _ => StatusCode::UNPROCESSABLE_ENTITY,
    };
    Ok(Err((status, refused.reason.message().into())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    fn datetime_local(t: DateTime<Utc>) -> String {
        t.format("%Y-%m-%dT%H:%M").to_string()
    }

    #[test]
    fn durations_are_between_an_hour_and_366_days() {
        assert_eq!(read_duration("1", "hours"), Ok(Duration::hours(1)));
        assert_eq!(read_duration(" 366 ", "days"), Ok(Duration::days(366)));
        assert_eq!(read_duration("8784", "hours"), Ok(Duration::days(366)));
        for (n, unit) in [
            ("0", "hours"),
            ("367", "days"),
            ("8785", "hours"),
            ("-1", "days"),
        ] {
            assert!(read_duration(n, unit).is_err(), "{n} {unit}");
        }
        assert!(read_duration("1.5", "days").is_err());
        assert!(read_duration("1", "weeks").is_err());
        assert!(read_duration("99999999999999999", "days").is_err());
    }

    #[test]
    fn extensions_go_forward_from_the_current_end() {
        let now = Utc::now();
        let end = now + Duration::hours(2);
        let by = |amount: &str, unit: &str| ExtendForm {
            amount: amount.into(),
            unit: unit.into(),
            until: String::new(),
        };
        assert_eq!(
            new_expiry(&by("3", "hours"), end, now),
            Ok(end + Duration::hours(3))
        );
        let to = |until: DateTime<Utc>| ExtendForm {
            until: datetime_local(until),
            ..by("1", "days")
        };
        let later = (end + Duration::days(2))
            .with_second(0)
            .and_then(|t| t.with_nanosecond(0))
            .unwrap();
        assert_eq!(new_expiry(&to(later), end, now), Ok(later));
        assert!(new_expiry(&to(end - Duration::hours(1)), end, now).is_err());
        assert!(new_expiry(&to(end + Duration::days(400)), end, now).is_err());
    }

    #[test]
    fn return_to_is_a_local_path_only() {
        assert_eq!(return_path("/s/4/pass"), "/s/4/pass");
        assert_eq!(return_path("/c/ann/passes?x=1"), "/c/ann/passes?x=1");
        for bad in [
            "",
            "https://evil.example/",
            "//evil.example",
            "/\\evil",
            "s/4",
            "/a b",
            "/a\r\nb",
        ] {
            assert_eq!(return_path(bad), "/passes", "{bad:?}");
        }
    }

    #[test]
    fn csv_cells_never_start_a_formula() {
        for bad in ["=1+1", "+1", "-1", "@SUM(A1)", "\tx"] {
            assert!(csv_cell(bad).starts_with('\''), "{bad}");
        }
        for _ in 0..100 {
            let code = codes::fresh_code();
            assert_eq!(csv_cell(&code), code, "our codes need no escaping");
        }
        assert_eq!(csv_cell("2026-11-22T18:00:00Z"), "2026-11-22T18:00:00Z");
    }
}
