//! Giving a viewer access for free (a comp) from the grants page.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use diesel_async::AsyncConnection;
use serde::Deserialize;
use tower_sessions::Session;

use super::list::{CompFields, Filters, GrantsPage, ListParams};
use super::read_duration;
use crate::access;
use crate::auth::{self, CurrentUser};
use crate::db::grants::{self, NewGrant, Source};
use crate::db::users;
use crate::db::{self, StreamId, streams};
use crate::error::AppResult;
use crate::state::AppState;
use crate::web::authz::{self, Area};
use crate::web::view::utc;
use crate::web::{FieldErrors, FlashKind, Htmx, Layout, flash, render_with};

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
                        source: Source::Comp,
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
