//! Passes: the owner's pass management in the studio (list, create, edit,
//! archive), the pages viewers buy from (/s/{id}/pass, /c/{handle}/passes),
//! and the viewer's own "My passes".
//!
//! Who may manage a channel's passes is `authz`'s (the owner only); whether a viewer may already watch, of `access::may` (through
//! `access::find_stream_with_channel`: an unannounced draft's pass page is a
//! 404 outside its team, as a missing stream's). This
//! module must not decide access by itself, and it does not sell: the buy
//! forms post to the checkout (web/checkout.rs), the redeem form to /redeem.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;
use serde::Deserialize;
use tower_sessions::Session;

use super::authz::{self, Area, Ids};
use super::forms::normalize_text;
use super::forms::parse_schedule;
use super::view::utc;
use super::view::{Moment, StreamState};
use super::{FieldErrors, FlashKind, Htmx, Layout, flash, render_with};
use crate::access::{self, Access, Denial};
use crate::auth::{self, CurrentUser, MaybeUser};
use crate::db::channels::{self, Channel};
use crate::db::orders::{self, Purchase, Status as OrderStatus};
use crate::db::passes::{
    self, HeldGrant, NewPass, OnSale, Pass, PassChanges, Scope, Standing, StudioPass, money_label,
};
use crate::db::streams::{self, Status, Stream};
use crate::db::{self, PassId, StreamId};
use crate::error::{AppError, AppResult};
use crate::state::AppState;

// ---------------------------------------------------------------------------
// How passes read to people.

/// The currencies a pass can be priced in (ISO 4217).
pub const CURRENCIES: [&str; 5] = ["USD", "EUR", "GBP", "CAD", "AUD"];

const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

/// A duration as the owner would say it: whole days from two days up
/// ("30 days"), hours below that ("24 hours", "36 hours").
fn duration_parts(seconds: i64) -> (i64, &'static str) {
    if seconds % DAY == 0 && seconds >= 2 * DAY {
        (seconds / DAY, "days")
    } else {
        ((seconds + HOUR - 1) / HOUR, "hours")
    }
}

fn plural(n: i64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// How long a pass lasts: "24 hours from purchase", "30 days from purchase",
/// "From 2026-11-22 18:00 UTC to 2026-11-23 02:00 UTC".
pub fn length_label(pass: &Pass) -> String {
    match (
        pass.duration_seconds,
        pass.window_starts_at,
        pass.window_ends_at,
    ) {
        (Some(secs), _, _) => {
            let (n, unit) = duration_parts(secs.into());
            let unit = if unit == "days" {
                ("day", "days")
            } else {
                ("hour", "hours")
            };
            format!("{} from purchase", plural(n, unit.0, unit.1))
        }
        (None, Some(from), Some(to)) => format!("From {} to {}", utc(&from), utc(&to)),
        _ => String::new(),
    }
}

/// Time to go in words: "2 days 3 hours", "5 hours 12 minutes", "40 minutes".
pub fn span_label(seconds: i64) -> String {
    let (d, h, m) = (seconds / DAY, seconds % DAY / HOUR, seconds % HOUR / 60);
    let parts = if d > 0 {
        vec![plural(d, "day", "days"), plural(h, "hour", "hours")]
    } else if h > 0 {
        vec![plural(h, "hour", "hours"), plural(m, "minute", "minutes")]
    } else if m > 0 {
        vec![plural(m, "minute", "minutes")]
    } else {
        return "less than a minute".to_owned();
    };
    parts
        .into_iter()
        .filter(|p| !p.starts_with("0 "))
        .collect::<Vec<_>>()
        .join(" ")
}

fn buy_label(pass: &Pass) -> String {
    if pass.price_cents == 0 {
        "Get it for free".to_owned()
    } else {
        format!("Buy for {}", pass.price_label())
    }
}

// ---------------------------------------------------------------------------
// The studio: loading what the owner manages.

/// A stream a pass can be scoped to, for the form's select.
pub struct StreamChoice {
    pub id: StreamId,
    pub label: String,
}

/// The channel's streams that have not ended (and `keep`, the stream of the
/// pass being edited, whatever its state): what a stream pass may cover.
async fn stream_choices(
    conn: &mut AsyncPgConnection,
    channel: &Channel,
    keep: Option<StreamId>,
) -> AppResult<Vec<StreamChoice>> {
    let list = streams::for_channel(conn, channel.id).await?;
    Ok(list
        .iter()
        .filter(|s| s.status() != Status::Ended || Some(s.id) == keep)
        .map(|s| {
            let state = StreamState::of(s);
            let when = match (state, s.scheduled_at) {
                (StreamState::Scheduled, Some(t)) => format!(", {}", utc(&t)),
                _ => String::new(),
            };
            StreamChoice {
                id: s.id,
                label: format!("{} ({}{when})", s.title, state.label().to_lowercase()),
            }
        })
        .collect())
}

// ---------------------------------------------------------------------------
// The pass form: create and edit.

#[derive(Deserialize, Default)]
pub struct PassForm {
    #[serde(default)]
    pub name: String,
    /// A decimal amount: "9", "9.5", "9.00".
    #[serde(default)]
    pub price: String,
    #[serde(default)]
    pub currency: String,
    /// `channel` or `stream`.
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub stream_id: String,
    /// A whole number of `duration_unit`s; empty when the pass has a window.
    #[serde(default)]
    pub duration: String,
    /// `hours` or `days`.
    #[serde(default)]
    pub duration_unit: String,
    /// `datetime-local` values read as UTC; empty when the pass has a duration.
    #[serde(default)]
    pub window_starts_at: String,
    #[serde(default)]
    pub window_ends_at: String,
    /// A checkbox: present when ticked.
    pub includes_replays: Option<String>,
}

/// What the form shows: the values as typed (or as stored).
pub struct PassFields {
    pub name: String,
    pub price: String,
    pub currency: String,
    pub scope: String,
    pub stream_id: String,
    pub duration: String,
    pub duration_unit: String,
    pub window_starts_at: String,
    pub window_ends_at: String,
    pub includes_replays: bool,
}

/// The value format of `<input type="datetime-local">` (minutes).
const DATETIME_LOCAL: &str = "%Y-%m-%dT%H:%M";

impl PassFields {
    fn blank() -> Self {
        PassFields {
            name: String::new(),
            price: String::new(),
            currency: CURRENCIES[0].to_owned(),
            scope: Scope::Channel.as_str().to_owned(),
            stream_id: String::new(),
            duration: String::new(),
            duration_unit: "hours".to_owned(),
            window_starts_at: String::new(),
            window_ends_at: String::new(),
            includes_replays: false,
        }
    }

    fn of(pass: &Pass) -> Self {
        let (duration, duration_unit) = match pass.duration_seconds {
            Some(secs) => {
                let (n, unit) = duration_parts(secs.into());
                (n.to_string(), unit.to_owned())
            }
            None => (String::new(), "hours".to_owned()),
        };
        let local = |t: Option<DateTime<Utc>>| {
            t.map(|t| t.format(DATETIME_LOCAL).to_string())
                .unwrap_or_default()
        };
        PassFields {
            name: pass.name.clone(),
            price: format!("{}.{:02}", pass.price_cents / 100, pass.price_cents % 100),
            currency: pass.currency.clone(),
            scope: pass.scope.clone(),
            stream_id: pass.stream_id.map(|s| s.to_string()).unwrap_or_default(),
            duration,
            duration_unit,
            window_starts_at: local(pass.window_starts_at),
            window_ends_at: local(pass.window_ends_at),
            includes_replays: pass.includes_replays,
        }
    }

    fn typed(form: PassForm) -> Self {
        PassFields {
            name: form.name.trim().to_owned(),
            price: form.price.trim().to_owned(),
            currency: form.currency,
            scope: form.scope,
            stream_id: form.stream_id,
            duration: form.duration.trim().to_owned(),
            duration_unit: form.duration_unit,
            window_starts_at: form.window_starts_at.trim().to_owned(),
            window_ends_at: form.window_ends_at.trim().to_owned(),
            includes_replays: form.includes_replays.is_some(),
        }
    }

    /// Shows the stored terms again (a sold pass's terms are not editable).
    fn keep_terms_of(&mut self, pass: &Pass) {
        let stored = PassFields::of(pass);
        self.scope = stored.scope;
        self.stream_id = stored.stream_id;
        self.duration = stored.duration;
        self.duration_unit = stored.duration_unit;
        self.window_starts_at = stored.window_starts_at;
        self.window_ends_at = stored.window_ends_at;
    }
}

/// The largest price: 100,000.00 (in cents). Anything above is a typo.
const MAX_PRICE_CENTS: i64 = 10_000_000;
/// The longest duration: 366 days.
const MAX_DURATION_SECONDS: i64 = 366 * DAY;

/// Reads a price like "9", "9.5" or "9.00" into cents.
pub fn parse_price(raw: &str) -> Result<i64, &'static str> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("Enter a price, like 9.00 (0 makes the pass free).");
    }
    if raw.starts_with('-') {
        return Err("The price can't be negative.");
    }
    let (whole, frac) = raw.split_once('.').unwrap_or((raw, ""));
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if !digits(whole) || !digits(frac) || (whole.is_empty() && frac.is_empty()) {
        return Err("Enter the price as a number, like 9.00.");
    }
    if frac.len() > 2 {
        return Err("Use at most 2 decimals, like 9.99.");
    }
    let whole = whole.trim_start_matches('0');
    if whole.len() > 7 {
        return Err("That's more than 100000.00: enter a smaller price.");
    }
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().unwrap_or(i64::MAX)
    };
    let frac: i64 = format!("{frac:0<2}").parse().unwrap_or(0);
    let cents = whole * 100 + frac;
    if cents > MAX_PRICE_CENTS {
        return Err("That's more than 100000.00: enter a smaller price.");
    }
    Ok(cents)
}

/// Reads a duration (a whole number of hours or days) into seconds.
pub fn parse_duration(amount: &str, unit: &str) -> Result<i32, &'static str> {
    let per = match unit {
        "hours" => HOUR,
        "days" => DAY,
        _ => return Err("Choose hours or days."),
    };
    let Ok(n) = amount.trim().parse::<i64>() else {
        return Err("Enter a whole number of hours or days, like 24.");
    };
    let seconds = n.saturating_mul(per);
    if seconds < HOUR {
        Err("A pass lasts at least 1 hour.")
    } else if seconds > MAX_DURATION_SECONDS {
        Err("A pass lasts at most 366 days. For longer, use a fixed window.")
    } else {
        Ok(seconds as i32)
    }
}

/// What a pass covers and for how long.
#[derive(Debug, PartialEq)]
struct Terms {
    scope: Scope,
    stream_id: Option<StreamId>,
    length: Length,
}

#[derive(Debug, PartialEq)]
enum Length {
    Duration(i32),
    Window(DateTime<Utc>, DateTime<Utc>),
}

/// A valid pass form. `terms` is None when they were not editable.
struct PassInput {
    name: String,
    price_cents: i64,
    currency: String,
    includes_replays: bool,
    terms: Option<Terms>,
}

/// What the form is checked against.
struct FormContext<'a> {
    /// The streams a stream pass may cover.
    streams: &'a [StreamChoice],
    /// The pass being edited.
    current: Option<&'a Pass>,
    /// False once the pass has been sold: its terms stay as they are.
    terms_editable: bool,
}

fn check_pass(
    form: &PassForm,
    ctx: &FormContext<'_>,
    now: DateTime<Utc>,
    errors: &mut FieldErrors,
) -> PassInput {
    let name = normalize_text(&form.name);
    if name.is_empty() {
        errors.add("name", "Give the pass a name, like “Weekend pass”.");
    } else if name.chars().count() > 100 {
        errors.add("name", "Use at most 100 characters.");
    }
    let price_cents = parse_price(&form.price).unwrap_or_else(|e| {
        errors.add("price", e);
        0
    });
    let currency = form.currency.trim().to_owned();
    let known = CURRENCIES.contains(&currency.as_str())
        || ctx.current.is_some_and(|p| p.currency == currency);
    if !known {
        errors.add("currency", "Choose one of the currencies in the list.");
    }
    let terms = ctx
        .terms_editable
        .then(|| check_terms(form, ctx, now, errors))
        .flatten();
    PassInput {
        name,
        price_cents,
        currency,
        includes_replays: form.includes_replays.is_some(),
        terms,
    }
}

fn check_terms(
    form: &PassForm,
    ctx: &FormContext<'_>,
    now: DateTime<Utc>,
    errors: &mut FieldErrors,
) -> Option<Terms> {
    let scope = Scope::parse(form.scope.trim());
    let stream_id = match scope {
        None => {
            errors.add(
                "scope",
                "Choose what the pass covers: the whole channel, or one stream.",
            );
            None
        }
        Some(Scope::Channel) => None,
        Some(Scope::Stream) => {
            let chosen = form.stream_id.trim().parse::<StreamId>().ok();
            match chosen.filter(|id| ctx.streams.iter().any(|s| s.id == *id)) {
                Some(id) => Some(id),
                None => {
                    errors.add(
                        "stream_id",
                        if ctx.streams.is_empty() {
                            "This channel has no upcoming or live stream: create one first, or sell a channel pass."
                        } else {
                            "Choose one of this channel's streams that hasn't ended."
                        },
                    );
                    None
                }
            }
        }
    };

    let has_duration = !form.duration.trim().is_empty();
    let has_window =
        !form.window_starts_at.trim().is_empty() || !form.window_ends_at.trim().is_empty();
    let length = match (has_duration, has_window) {
        (true, true) => {
            errors.add(
                "length",
                "Fill in either a duration or a fixed window, not both.",
            );
            None
        }
        (false, false) => {
            errors.add(
                "length",
                "Choose how long the pass lasts: a duration from purchase, or a fixed window.",
            );
            None
        }
        (true, false) => match parse_duration(&form.duration, form.duration_unit.trim()) {
            Ok(secs) => Some(Length::Duration(secs)),
            Err(e) => {
                errors.add("duration", e);
                None
            }
        },
        (false, true) => check_window(form, ctx.current, now, errors),
    };

    Some(Terms {
        scope: scope?,
        stream_id: match scope? {
            Scope::Stream => Some(stream_id?),
            Scope::Channel => None,
        },
        length: length?,
    })
}

fn check_window(
    form: &PassForm,
    current: Option<&Pass>,
    now: DateTime<Utc>,
    errors: &mut FieldErrors,
) -> Option<Length> {
    let read = |v: &str| {
        if v.trim().is_empty() {
            Err("Enter both the start and the end of the window.")
        } else {
            parse_schedule(v).ok_or("Enter dates and times like 2026-11-22 18:00 (UTC).")
        }
    };
    let (from, to) = match (read(&form.window_starts_at), read(&form.window_ends_at)) {
        (Ok(from), Ok(to)) => (from, to),
        (Err(e), _) | (_, Err(e)) => {
            errors.add("window", e);
            return None;
        }
    };
    // Keeping a stored window that has since ended is not an error; choosing one is.
    let unchanged =
        current.is_some_and(|p| p.window_starts_at == Some(from) && p.window_ends_at == Some(to));
    if to <= from {
        errors.add("window", "The end must be after the start.");
        None
    } else if to <= now && !unchanged {
        errors.add(
            "window",
            "That window has already ended: choose an end in the future (UTC).",
        );
        None
    } else {
        Some(Length::Window(from, to))
    }
}

// ---------------------------------------------------------------------------
// The studio's passes page: the list and the new-pass form.

/// A pass in the owner's list.
pub struct StudioPassRow {
    pub id: PassId,
    pub name: String,
    pub price: String,
    pub covers: String,
    pub length: String,
    pub replays: bool,
    pub archived: Option<Moment>,
    pub window_over: bool,
    pub sales: i64,
    pub holders: i64,
}

impl StudioPassRow {
    fn new(row: StudioPass) -> Self {
        let covers = match (&row.stream_title, row.stream_status.as_deref()) {
            (Some(title), Some("ended")) => format!("One stream: {title} (ended)"),
            (Some(title), _) => format!("One stream: {title}"),
            _ => "Every stream of the channel".to_owned(),
        };
        StudioPassRow {
            id: row.pass.id,
            name: row.pass.name.clone(),
            price: row.pass.price_label(),
            covers,
            length: length_label(&row.pass),
            replays: row.pass.includes_replays,
            archived: row.pass.archived_at.map(Moment::new),
            window_over: row.window_over,
            sales: row.sales,
            holders: row.holders,
        }
    }

    /// The badge: archived, a window that is over, or on sale.
    pub fn state(&self) -> (&'static str, &'static str) {
        if self.archived.is_some() {
            ("archived", "Archived")
        } else if self.window_over {
            ("over", "Window over")
        } else {
            ("on-sale", "On sale")
        }
    }
}

#[derive(Template)]
#[template(path = "pages/passes/studio.html", blocks = ["manage", "list"])]
pub struct StudioPage {
    pub layout: Layout,
    pub channel: Channel,
    pub passes: Vec<StudioPassRow>,
    pub streams: Vec<StreamChoice>,
    pub currencies: &'static [&'static str],
    pub form: PassFields,
    pub errors: FieldErrors,
    /// Always None: a new pass's terms are for the owner to choose.
    pub fixed: Option<FixedTerms>,
    /// After an htmx create: the new pass's name, said inside the swapped part.
    pub created: Option<String>,
}

impl StudioPage {
    async fn load(
        conn: &mut AsyncPgConnection,
        layout: Layout,
        channel: Channel,
    ) -> AppResult<Self> {
        let passes = passes::for_studio(conn, channel.id)
            .await?
            .into_iter()
            .map(StudioPassRow::new)
            .collect();
        let streams = stream_choices(conn, &channel, None).await?;
        Ok(StudioPage {
            layout,
            channel,
            passes,
            streams,
            currencies: &CURRENCIES,
            form: PassFields::blank(),
            errors: FieldErrors::default(),
            fixed: None,
            created: None,
        })
    }
}

fn studio_path(channel: &Channel) -> String {
    format!("/studio/channels/{}/passes", channel.handle)
}

pub async fn studio_list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    layout: Layout,
    Path(handle): Path<String>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let channel = authz::owned_channel(&mut conn, user.id, &handle, Area::Passes).await?;
    let page = StudioPage::load(&mut conn, layout, channel).await?;
    render_with(StatusCode::OK, &page)
}

pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    htmx: Htmx,
    layout: Layout,
    Path(handle): Path<String>,
    Form(form): Form<PassForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let channel = authz::owned_channel(&mut conn, user.id, &handle, Area::Passes).await?;
    let choices = stream_choices(&mut conn, &channel, None).await?;
    let mut errors = FieldErrors::default();
    let ctx = FormContext {
        streams: &choices,
        current: None,
        terms_editable: true,
    };
    let input = check_pass(&form, &ctx, Utc::now(), &mut errors);

    if let (true, Some(terms)) = (errors.is_empty(), &input.terms) {
        let (duration_seconds, window) = match terms.length {
            Length::Duration(secs) => (Some(secs), None),
            Length::Window(from, to) => (None, Some((from, to))),
        };
        let new = NewPass {
            channel_id: channel.id,
            stream_id: terms.stream_id,
            name: &input.name,
            price_cents: input.price_cents,
            currency: &input.currency,
            scope: terms.scope.as_str(),
            duration_seconds,
            window_starts_at: window.map(|w| w.0),
            window_ends_at: window.map(|w| w.1),
            includes_replays: input.includes_replays,
        };
        let pass = passes::create(&mut conn, &new).await?;
        db::audit::record(
            &mut conn,
            Some(user.id),
            Some(channel.id),
            "pass.created",
            Some(&pass.id.to_string()),
            serde_json::json!({
                "name": pass.name,
                "price_cents": pass.price_cents,
                "currency": pass.currency,
                "scope": pass.scope,
                "stream_id": pass.stream_id,
            }),
        )
        .await?;
        if htmx.fragment {
            let mut page = StudioPage::load(&mut conn, layout, channel).await?;
            page.created = Some(pass.name);
            return render_with(StatusCode::OK, &page.as_manage());
        }
        flash(
            &session,
            FlashKind::Success,
            format!("“{}” is on sale.", pass.name),
        )
        .await?;
        return Ok(auth::redirect(false, &studio_path(&channel)));
    }

    let mut page = StudioPage::load(&mut conn, layout, channel).await?;
    page.form = PassFields::typed(form);
    page.errors = errors;
    if htmx.fragment {
        render_with(StatusCode::UNPROCESSABLE_ENTITY, &page.as_manage())
    } else {
        render_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
    }
}

// ---------------------------------------------------------------------------
// Editing a pass.
//
// Once a pass has been sold (or redeemed, or given: any grant made from it),
// its terms — what it covers and how long it lasts — are fixed: they are what
// people paid for, what the owner's grant filters and the buyers' purchase
// history refer to. Its name, price, currency and replays stay editable, and
// only ever affect future sales: an order keeps the amount it was created
// with, and a grant keeps its own times, stream and replays flag (copied from
// the pass when it was made). For different terms, the owner creates a new
// pass and archives this one.

/// A sold pass's terms, in words: shown instead of their fields.
pub struct FixedTerms {
    pub covers: String,
    pub length: String,
}

impl FixedTerms {
    fn of(pass: &Pass, channel: &Channel, streams: &[StreamChoice]) -> Self {
        let covers = match pass.stream_id {
            Some(id) => match streams.iter().find(|s| s.id == id) {
                Some(s) => format!("One stream: {}", s.label),
                None => "One stream".to_owned(),
            },
            None => format!("Every stream of {}", channel.title),
        };
        FixedTerms {
            covers,
            length: length_label(pass),
        }
    }
}

#[derive(Template)]
#[template(path = "pages/passes/edit.html", blocks = ["details"])]
pub struct EditPage {
    pub layout: Layout,
    pub channel: Channel,
    pub id: PassId,
    /// The stored name (the form may hold an invalid one being corrected).
    pub heading: String,
    pub archived: bool,
    pub streams: Vec<StreamChoice>,
    pub currencies: &'static [&'static str],
    pub form: PassFields,
    pub errors: FieldErrors,
    /// Set once the pass has been sold: its terms, no longer editable.
    pub fixed: Option<FixedTerms>,
    /// After an htmx save: "Saved." inside the swapped part.
    pub saved: bool,
}

impl EditPage {
    async fn load(
        conn: &mut AsyncPgConnection,
        layout: Layout,
        pass: &Pass,
        channel: Channel,
    ) -> AppResult<Self> {
        let sold = passes::is_sold(conn, pass.id).await?;
        let streams = stream_choices(conn, &channel, pass.stream_id).await?;
        Ok(EditPage {
            layout,
            id: pass.id,
            heading: pass.name.clone(),
            archived: pass.is_archived(),
            fixed: sold.then(|| FixedTerms::of(pass, &channel, &streams)),
            streams,
            currencies: &CURRENCIES,
            form: PassFields::of(pass),
            errors: FieldErrors::default(),
            saved: false,
            channel,
        })
    }
}

pub async fn edit_page(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    layout: Layout,
    Ids(id): Ids<PassId>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (pass, channel) = authz::owned_pass(&mut conn, user.id, id, Area::Passes).await?;
    let page = EditPage::load(&mut conn, layout, &pass, channel).await?;
    render_with(StatusCode::OK, &page)
}

pub async fn update(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    htmx: Htmx,
    layout: Layout,
    Ids(id): Ids<PassId>,
    Form(form): Form<PassForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (pass, channel) = authz::owned_pass(&mut conn, user.id, id, Area::Passes).await?;
    let mut page = EditPage::load(&mut conn, layout, &pass, channel).await?;
    let mut errors = FieldErrors::default();
    let ctx = FormContext {
        streams: &page.streams,
        current: Some(&pass),
        terms_editable: page.fixed.is_none(),
    };
    let input = check_pass(&form, &ctx, Utc::now(), &mut errors);

    if errors.is_empty() {
        let mut changes = PassChanges {
            name: Some(&input.name),
            price_cents: Some(input.price_cents),
            currency: Some(&input.currency),
            includes_replays: Some(input.includes_replays),
            ..Default::default()
        };
        let updated = match &input.terms {
            Some(terms) => {
                let (duration, window) = match terms.length {
                    Length::Duration(secs) => (Some(secs), None),
                    Length::Window(from, to) => (None, Some((from, to))),
                };
                changes.scope = Some(terms.scope.as_str());
                changes.stream_id = Some(terms.stream_id);
                changes.duration_seconds = Some(duration);
                changes.window_starts_at = Some(window.map(|w| w.0));
                changes.window_ends_at = Some(window.map(|w| w.1));
                passes::update_terms(&mut conn, pass.id, &changes).await?
            }
            None => Some(passes::update(&mut conn, pass.id, &changes).await?),
        };
        match updated {
            Some(updated) => {
                db::audit::record(
                    &mut conn,
                    Some(user.id),
                    Some(page.channel.id),
                    "pass.updated",
                    Some(&updated.id.to_string()),
                    serde_json::json!({
                        "name": updated.name,
                        "price_cents": updated.price_cents,
                        "previous_price_cents": pass.price_cents,
                        "currency": updated.currency,
                        "includes_replays": updated.includes_replays,
                        "terms_changed": input.terms.is_some(),
                    }),
                )
                .await?;
                if !htmx.fragment {
                    flash(
                        &session,
                        FlashKind::Success,
                        format!("Your changes to “{}” were saved.", updated.name),
                    )
                    .await?;
                    return Ok(auth::redirect(htmx.request, &studio_path(&page.channel)));
                }
                let mut page =
                    EditPage::load(&mut conn, page.layout, &updated, page.channel).await?;
                page.saved = true;
                return render_with(StatusCode::OK, &page.as_details());
            }
            None => {
                page.fixed = Some(FixedTerms::of(&pass, &page.channel, &page.streams));
                errors.add(
                    "",
                    "Someone bought this pass while you were editing it, so what it covers and how long it lasts are now fixed. Nothing was saved: check the form and save again.",
                );
            }
        }
    }

    page.form = PassFields::typed(form);
    if page.fixed.is_some() {
        page.form.keep_terms_of(&pass);
    }
    page.errors = errors;
    if htmx.fragment {
        render_with(StatusCode::UNPROCESSABLE_ENTITY, &page.as_details())
    } else {
        render_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
    }
}

// ---------------------------------------------------------------------------
// Archiving: off sale (and back on), grants untouched.

#[derive(Deserialize, Default)]
pub struct ArchiveForm {
    /// `false` puts an archived pass back on sale; anything else archives.
    #[serde(default)]
    pub archived: Option<String>,
}

pub async fn archive(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    htmx: Htmx,
    layout: Layout,
    Ids(id): Ids<PassId>,
    Form(form): Form<ArchiveForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (pass, channel) = authz::owned_pass(&mut conn, user.id, id, Area::Passes).await?;
    let archive = form.archived.as_deref() != Some("false");
    // None: it already was (another tab, a second click); the page shows how it is now.
    if let Some(changed) = passes::set_archived(&mut conn, pass.id, archive).await? {
        db::audit::record(
            &mut conn,
            Some(user.id),
            Some(channel.id),
            if archive {
                "pass.archived"
            } else {
                "pass.unarchived"
            },
            Some(&changed.id.to_string()),
            serde_json::json!({ "name": changed.name }),
        )
        .await?;
    }
    if htmx.fragment {
        let page = StudioPage::load(&mut conn, layout, channel).await?;
        return render_with(StatusCode::OK, &page.as_list());
    }
    let message = if archive {
        format!(
            "“{}” is no longer on sale. Everyone who holds it keeps their access.",
            pass.name
        )
    } else {
        format!("“{}” is on sale again.", pass.name)
    };
    flash(&session, FlashKind::Success, message).await?;
    Ok(auth::redirect(false, &studio_path(&channel)))
}

// ---------------------------------------------------------------------------
// The pages viewers buy from.

/// A pass as a viewer sees it, with its buy form.
pub struct PassCard {
    pub id: PassId,
    pub name: String,
    /// "This stream", "Every stream of Ann Live", "One stream: Friday session".
    pub gives: String,
    /// The stream it covers, linked from the channel's passes page.
    pub stream_link: Option<StreamId>,
    pub replays: bool,
    pub length: String,
    pub price: String,
    pub buy_label: String,
    /// The buy form's `stream_id`: where the buyer lands after paying.
    pub stream_id: Option<StreamId>,
}

impl PassCard {
    /// On a stream's page: every pass leads back to this stream.
    fn for_stream(pass: &Pass, channel: &Channel, stream: StreamId) -> Self {
        let gives = match pass.scope() {
            Scope::Stream => "This stream".to_owned(),
            Scope::Channel => format!("Every stream of {}", channel.title),
        };
        Self::new(pass, gives, None, Some(stream))
    }

    /// On the channel's page: stream passes say which stream.
    fn for_channel(on_sale: &OnSale, channel: &Channel) -> Self {
        let pass = &on_sale.pass;
        match (pass.stream_id, &on_sale.stream_title) {
            (Some(id), Some(title)) => {
                Self::new(pass, format!("One stream: {title}"), Some(id), Some(id))
            }
            _ => Self::new(
                pass,
                format!("Every stream of {}", channel.title),
                None,
                None,
            ),
        }
    }

    fn new(
        pass: &Pass,
        gives: String,
        stream_link: Option<StreamId>,
        stream_id: Option<StreamId>,
    ) -> Self {
        PassCard {
            id: pass.id,
            name: pass.name.clone(),
            gives,
            stream_link,
            replays: pass.includes_replays,
            length: length_label(pass),
            price: pass.price_label(),
            buy_label: buy_label(pass),
            stream_id,
        }
    }
}

/// Who is looking at a pass page, for its buttons.
pub struct Buyer {
    pub signed_in: bool,
    /// False for a viewer banned from the channel: nothing to sell them.
    pub may_buy: bool,
    /// This page, for signing in and coming back.
    pub here: String,
}

/// What the viewer may already do, said above the passes of a stream.
pub enum AccessNote {
    None,
    /// On the channel's team.
    Team,
    /// A public stream: everyone signed in watches.
    Public,
    /// Their grant covers the stream until then.
    Until(Moment),
    /// They had a pass for the stream; it ended or was revoked.
    Ended,
    Banned,
}

#[derive(Template)]
#[template(path = "pages/passes/for_stream.html")]
pub struct StreamPassesPage {
    pub layout: Layout,
    pub stream: Stream,
    pub channel: Channel,
    pub state: StreamState,
    pub scheduled: Option<Moment>,
    pub note: AccessNote,
    pub cards: Vec<PassCard>,
    /// Stream passes without replays were left out (the stream has ended).
    pub ended: bool,
    pub buyer: Buyer,
    pub return_to: String,
}

pub async fn for_stream(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    visitor: super::analytics::FunnelVisitor,
    layout: Layout,
    Ids(id): Ids<StreamId>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let user = user.map(|u| u.id);
    let (stream, channel, access) = access::find_stream_with_channel(&mut conn, user, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let note = match access {
        Access::Publish | Access::Moderate => AccessNote::Team,
        Access::Watch { until: Some(t) } => AccessNote::Until(Moment::new(t)),
        Access::Watch { until: None } => AccessNote::Public,
        Access::Denied(Denial::PassEnded) => AccessNote::Ended,
        Access::Denied(Denial::Banned) => AccessNote::Banned,
        Access::Denied(_) => AccessNote::None,
    };
    let ended = stream.status() == Status::Ended;
    let cards = passes::on_sale_for_stream(&mut conn, channel.id, stream.id)
        .await?
        .iter()
        // After the stream, a pass for it alone is only worth its replay.
        .filter(|p| !ended || p.scope() == Scope::Channel || p.includes_replays)
        .map(|p| PassCard::for_stream(p, &channel, stream.id))
        .collect();
    let page = StreamPassesPage {
        layout,
        state: StreamState::of(&stream),
        scheduled: stream.scheduled_at.map(Moment::new),
        buyer: Buyer {
            signed_in: user.is_some(),
            may_buy: !matches!(note, AccessNote::Banned),
            here: format!("/s/{}/pass", stream.id),
        },
        return_to: format!("/s/{}", stream.id),
        note,
        cards,
        ended,
        stream,
        channel,
    };
    let noted = visitor.note(
        &state,
        user,
        crate::analytics::Step::PassPage,
        page.channel.id,
        Some(page.stream.id),
    );
    Ok(noted.apply(render_with(StatusCode::OK, &page)?))
}

#[derive(Template)]
#[template(path = "pages/passes/for_channel.html")]
pub struct ChannelPassesPage {
    pub layout: Layout,
    pub channel: Channel,
    pub cards: Vec<PassCard>,
    pub buyer: Buyer,
    pub return_to: String,
}

pub async fn for_channel(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    visitor: super::analytics::FunnelVisitor,
    layout: Layout,
    Path(handle): Path<String>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let channel = channels::find_by_handle(&mut conn, &handle)
        .await?
        .ok_or(AppError::NotFound)?;
    let cards = passes::on_sale_for_channel(&mut conn, channel.id)
        .await?
        .iter()
        .map(|p| PassCard::for_channel(p, &channel))
        .collect();
    let page = ChannelPassesPage {
        layout,
        cards,
        buyer: Buyer {
            signed_in: user.is_some(),
            // Bans are checked by the checkout; this page has no stream to ask about.
            may_buy: true,
            here: format!("/c/{}/passes", channel.handle),
        },
        return_to: format!("/c/{}", channel.handle),
        channel,
    };
    let noted = visitor.note(
        &state,
        user.map(|u| u.id),
        crate::analytics::Step::PassPage,
        page.channel.id,
        None,
    );
    Ok(noted.apply(render_with(StatusCode::OK, &page)?))
}

// ---------------------------------------------------------------------------
// My passes.

/// One of the viewer's grants, in words.
pub struct GrantRow {
    pub id: db::GrantId,
    pub name: String,
    pub covers: String,
    pub replays: bool,
    pub source: &'static str,
    /// Where to watch: the stream, or the channel's page.
    pub watch_href: String,
    pub watch_label: String,
    /// "2 days 3 hours left", "Starts in 3 hours", "Ended …", "Revoked …".
    pub when: String,
    pub starts: Moment,
    pub expires: Moment,
    pub revoked: Option<Moment>,
    pub revoked_reason: Option<String>,
}

impl GrantRow {
    fn new(g: HeldGrant) -> Self {
        let to_go = g.seconds_to_go.unwrap_or(0.0).max(0.0) as i64;
        let when = match g.standing() {
            Standing::Active => format!("{} left", span_label(to_go)),
            Standing::Upcoming => format!("Starts in {}", span_label(to_go)),
            Standing::Expired => format!("Ended {}", utc(&g.expires_at)),
            Standing::Revoked => format!(
                "Revoked {}",
                g.revoked_at.as_ref().map(utc).unwrap_or_default()
            ),
        };
        let (covers, watch_href, watch_label) = match (g.stream_id, &g.stream_title) {
            (Some(id), title) => {
                let title = title.clone().unwrap_or_default();
                (
                    format!("{title} on {}", g.channel_title),
                    format!("/s/{id}"),
                    "Watch".to_owned(),
                )
            }
            (None, _) => (
                format!("Every stream of {}", g.channel_title),
                format!("/c/{}", g.channel_handle),
                format!("Go to {}", g.channel_title),
            ),
        };
        let source = match g.source.as_str() {
            "purchase" => "Bought",
            "code" => "Redeemed with a code",
            _ => "Given by the channel",
        };
        GrantRow {
            id: g.id,
            name: g.pass_name.clone().unwrap_or_else(|| {
                match g.source.as_str() {
                    "comp" => "Complimentary access",
                    _ => "Access",
                }
                .to_owned()
            }),
            covers,
            replays: g.includes_replays,
            source,
            watch_href,
            watch_label,
            when,
            starts: Moment::new(g.starts_at),
            expires: Moment::new(g.expires_at),
            revoked: g.revoked_at.map(Moment::new),
            revoked_reason: g.revoked_reason,
        }
    }
}

pub struct PurchaseRow {
    pub id: db::OrderId,
    pub pass_name: String,
    pub channel_title: String,
    pub amount: String,
    pub status: &'static str,
    pub status_key: &'static str,
    pub at: Moment,
}

impl PurchaseRow {
    fn new(p: Purchase) -> Self {
        let order = p.order;
        let status = match order.status() {
            OrderStatus::Pending => "Awaiting payment",
            OrderStatus::Paid => "Paid",
            OrderStatus::Failed => "Failed",
            OrderStatus::Refunded => "Refunded",
            OrderStatus::Canceled => "Canceled",
        };
        PurchaseRow {
            id: order.id,
            amount: money_label(order.amount_cents, &order.currency),
            pass_name: p.pass.name,
            channel_title: p.channel.title,
            status,
            status_key: order.status().as_str(),
            at: Moment::new(order.created_at),
        }
    }
}

#[derive(Template)]
#[template(path = "pages/passes/mine.html")]
pub struct MinePage {
    pub layout: Layout,
    pub active: Vec<GrantRow>,
    pub upcoming: Vec<GrantRow>,
    pub ended: Vec<GrantRow>,
    pub purchases: Vec<PurchaseRow>,
}

pub async fn mine(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    layout: Layout,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (mut active, mut upcoming, mut ended) = (Vec::new(), Vec::new(), Vec::new());
    // Sorted into the lists by the standing the database gave each grant.
    for g in passes::held_by(&mut conn, user.id).await? {
        match g.standing() {
            Standing::Active => active.push(GrantRow::new(g)),
            Standing::Upcoming => upcoming.push(GrantRow::new(g)),
            Standing::Expired | Standing::Revoked => ended.push(GrantRow::new(g)),
        }
    }
    let purchases = orders::for_user(&mut conn, user.id)
        .await?
        .into_iter()
        .map(PurchaseRow::new)
        .collect();
    render_with(
        StatusCode::OK,
        &MinePage {
            layout,
            active,
            upcoming,
            ended,
            purchases,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn prices_are_read_into_cents() {
        assert_eq!(parse_price("9"), Ok(900));
        assert_eq!(parse_price(" 9.5 "), Ok(950));
        assert_eq!(parse_price("9.00"), Ok(900));
        assert_eq!(parse_price("0.99"), Ok(99));
        assert_eq!(parse_price(".5"), Ok(50));
        assert_eq!(parse_price("0"), Ok(0));
        assert_eq!(parse_price("100000.00"), Ok(10_000_000));
        assert_eq!(parse_price("000100000"), Ok(10_000_000));
        assert!(parse_price("-1").unwrap_err().contains("negative"));
        assert!(parse_price("9.999").unwrap_err().contains("2 decimals"));
        assert!(parse_price("100000.01").unwrap_err().contains("100000.00"));
        assert!(
            parse_price("99999999999999999999")
                .unwrap_err()
                .contains("100000.00")
        );
        for bad in ["", "abc", "9,00", "1e3", "$9", ".", "9.0.0", "+9"] {
            assert!(parse_price(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_run_from_an_hour_to_366_days() {
        assert_eq!(parse_duration("1", "hours"), Ok(3600));
        assert_eq!(parse_duration("30", "days"), Ok(30 * 86400));
        assert_eq!(parse_duration("366", "days"), Ok(366 * 86400));
        assert!(parse_duration("0", "hours").is_err());
        assert!(parse_duration("367", "days").is_err());
        assert!(parse_duration("8785", "hours").is_err());
        assert!(parse_duration("1.5", "days").is_err());
        assert!(parse_duration("-2", "days").is_err());
        assert!(parse_duration("2", "weeks").is_err());
        assert!(parse_duration("99999999999999", "days").is_err());
    }

    #[test]
    fn lengths_and_time_left_read_naturally() {
        assert_eq!(span_label(2 * DAY + 3 * HOUR + 59), "2 days 3 hours");
        assert_eq!(span_label(DAY), "1 day");
        assert_eq!(span_label(5 * HOUR + 12 * 60), "5 hours 12 minutes");
        assert_eq!(span_label(HOUR), "1 hour");
        assert_eq!(span_label(40 * 60 + 5), "40 minutes");
        assert_eq!(span_label(59), "less than a minute");
        assert_eq!(duration_parts(DAY), (24, "hours"));
        assert_eq!(duration_parts(36 * HOUR), (36, "hours"));
        assert_eq!(duration_parts(30 * DAY), (30, "days"));
    }

    fn form(fields: &[(&str, &str)]) -> PassForm {
        let mut f = PassForm {
            name: "Weekend".into(),
            price: "9.00".into(),
            currency: "USD".into(),
            scope: "channel".into(),
            duration_unit: "hours".into(),
            ..Default::default()
        };
        for (k, v) in fields {
            let v = v.to_string();
            match *k {
                "scope" => f.scope = v,
                "stream_id" => f.stream_id = v,
                "duration" => f.duration = v,
                "from" => f.window_starts_at = v,
                "to" => f.window_ends_at = v,
                _ => unreachable!(),
            }
        }
        f
    }

    #[test]
    fn a_pass_has_either_a_duration_or_a_window() {
        let now = at("2026-11-22T18:00:00Z");
        let streams = [StreamChoice {
            id: StreamId(7),
            label: "Friday".into(),
        }];
        let ctx = FormContext {
            streams: &streams,
            current: None,
            terms_editable: true,
        };
        let check = |fields: &[(&str, &str)]| {
            let mut e = FieldErrors::default();
            let input = check_pass(&form(fields), &ctx, now, &mut e);
            (input.terms, e)
        };

        let (terms, e) = check(&[("duration", "24")]);
        assert!(e.is_empty());
        assert_eq!(terms.unwrap().length, Length::Duration(86400));

        let (terms, e) = check(&[("from", "2026-11-23T18:00"), ("to", "2026-11-24T02:00")]);
        assert!(e.is_empty());
        assert_eq!(
            terms.unwrap().length,
            Length::Window(at("2026-11-23T18:00:00Z"), at("2026-11-24T02:00:00Z"))
        );

        let (_, e) = check(&[("duration", "24"), ("to", "2026-11-24T02:00")]);
        assert!(e.get("length").unwrap().contains("not both"));
        let (_, e) = check(&[]);
        assert!(e.get("length").unwrap().contains("how long"));
        let (_, e) = check(&[("from", "2026-11-21T18:00"), ("to", "2026-11-22T17:00")]);
        assert!(e.get("window").unwrap().contains("already ended"));
        let (_, e) = check(&[("from", "2026-11-23T18:00"), ("to", "2026-11-23T18:00")]);
        assert!(e.get("window").unwrap().contains("after the start"));
        let (_, e) = check(&[("to", "2026-11-23T18:00")]);
        assert!(e.get("window").unwrap().contains("both"));

        let (terms, e) = check(&[("duration", "2"), ("scope", "stream"), ("stream_id", "7")]);
        assert!(e.is_empty());
        assert_eq!(terms.unwrap().stream_id, Some(StreamId(7)));
        let (_, e) = check(&[("duration", "2"), ("scope", "stream"), ("stream_id", "8")]);
        assert!(e.get("stream_id").is_some());
        let (_, e) = check(&[("duration", "2"), ("scope", "everything")]);
        assert!(e.get("scope").is_some());
    }
}
