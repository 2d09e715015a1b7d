//! The studio's passes page: the owner's list of a channel's passes, the
//! new-pass form, and archiving a pass (off sale and back on).

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use diesel_async::AsyncPgConnection;
use serde::Deserialize;

use super::edit::FixedTerms;
use super::form::{FormContext, Length, PassFields, PassForm, check_pass};
use super::{CURRENCIES, StreamChoice, length_label, stream_choices, studio_path};
use crate::auth::{self};
use crate::db::channels::Channel;
use crate::db::passes::{self, NewPass, StudioPass};
use crate::db::streams::Status as StreamStatus;
use crate::db::{self, PassId};
use crate::error::AppResult;
use crate::state::AppState;
use crate::web::Reply;
use crate::web::authz::{OwnedChannel, OwnedPass, area};
use crate::web::view::Moment;
use crate::web::{FieldErrors, FlashKind, Layout, render_with};

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
        let covers = match (&row.stream_title, row.stream_status) {
            (Some(title), Some(StreamStatus::Ended)) => format!("One stream: {title} (ended)"),
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

pub async fn list(
    State(state): State<AppState>,
    OwnedChannel { channel, .. }: OwnedChannel<area::Passes>,
    layout: Layout,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let page = StudioPage::load(&mut conn, layout, channel).await?;
    render_with(StatusCode::OK, &page)
}

pub async fn create(
    State(state): State<AppState>,
    OwnedChannel { user, channel, .. }: OwnedChannel<area::Passes>,
    reply: Reply,
    layout: Layout,
    Form(form): Form<PassForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
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
            scope: terms.scope,
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
                "scope": pass.scope.as_str(),
                "stream_id": pass.stream_id,
            }),
        )
        .await?;
        if reply.htmx.fragment {
            let mut page = StudioPage::load(&mut conn, layout, channel).await?;
            page.created = Some(pass.name);
            return render_with(StatusCode::OK, &page.as_manage());
        }
        reply
            .flash(FlashKind::Success, format!("“{}” is on sale.", pass.name))
            .await?;
        return Ok(auth::redirect(false, &studio_path(&channel)));
    }

    let mut page = StudioPage::load(&mut conn, layout, channel).await?;
    page.form = PassFields::typed(form);
    page.errors = errors;
    reply.render(StatusCode::UNPROCESSABLE_ENTITY, &page, &page.as_manage())
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
    OwnedPass {
        user,
        pass,
        channel,
        ..
    }: OwnedPass<area::Passes>,
    reply: Reply,
    layout: Layout,
    Form(form): Form<ArchiveForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
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
    if reply.htmx.fragment {
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
    reply.flash(FlashKind::Success, message).await?;
    Ok(auth::redirect(false, &studio_path(&channel)))
}
