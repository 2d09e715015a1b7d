//! Editing a pass: its page and saving it; a sold pass's terms stay fixed.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use diesel_async::AsyncPgConnection;

use super::form::{FormContext, Length, PassFields, PassForm, check_pass};
use super::{CURRENCIES, StreamChoice, length_label, stream_choices, studio_path};
use crate::db::channels::Channel;
use crate::db::passes::{self, Pass, PassChanges};
use crate::db::{self, PassId};
use crate::error::AppResult;
use crate::state::AppState;
use crate::web::Reply;
use crate::web::authz::{OwnedPass, area};
use crate::web::{FieldErrors, FlashKind, Layout, render_with};

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

pub async fn edit(
    State(state): State<AppState>,
    OwnedPass { pass, channel, .. }: OwnedPass<area::Passes>,
    layout: Layout,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let page = EditPage::load(&mut conn, layout, &pass, channel).await?;
    render_with(StatusCode::OK, &page)
}

pub async fn update(
    State(state): State<AppState>,
    OwnedPass {
        user,
        pass,
        channel,
        ..
    }: OwnedPass<area::Passes>,
    reply: Reply,
    layout: Layout,
    Form(form): Form<PassForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
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
                changes.scope = Some(terms.scope);
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
                if !reply.htmx.fragment {
                    return reply
                        .redirect_with(
                            FlashKind::Success,
                            format!("Your changes to “{}” were saved.", updated.name),
                            &studio_path(&page.channel),
                        )
                        .await;
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
    reply.render(StatusCode::UNPROCESSABLE_ENTITY, &page, &page.as_details())
}
