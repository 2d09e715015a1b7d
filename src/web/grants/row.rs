//! Extending and revoking one grant from its row of the grants page,
//! answered with that row alone (htmx) or the list.

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::Deserialize;

use super::list::{Filters, GrantRow, GrantsPage, ListParams};
use super::{MAX_DAYS, read_duration};
use crate::auth::{self};
use crate::db::channels::Channel;
use crate::db::grants;
use crate::db::users::User;
use crate::db::{self, GrantId};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::web::Reply;
use crate::web::authz::OwnedGrant;
use crate::web::forms::{normalize_text, parse_schedule};
use crate::web::view::utc;
use crate::web::{FlashKind, Layout, render_with};

/// One row, alone: the answer to an htmx extend or revoke.
#[derive(Template)]
#[template(path = "partials/grants/row.html")]
pub struct GrantRowFragment {
    pub row: GrantRow,
    pub csrf: String,
    pub back: String,
}

/// After a row action: the row alone, saying what happened (htmx), or back
/// to the list with that as a flash. On errors, the row with its errors
/// (htmx), or the list with them (422).
async fn answer_row(
    conn: &mut AsyncPgConnection,
    reply: &Reply,
    user: &User,
    channel: Channel,
    params: &ListParams,
    mut row: GrantRow,
) -> AppResult<Response> {
    let filters = Filters::read(params);
    let back = filters.query_string(filters.page);
    let ok = row.errors.is_empty();
    if reply.htmx.fragment {
        let csrf = auth::csrf::token(&reply.session).await?;
        let status = if ok {
            StatusCode::OK
        } else {
            StatusCode::UNPROCESSABLE_ENTITY
        };
        return render_with(status, &GrantRowFragment { row, csrf, back });
    }
    if ok {
        if let Some(done) = row.note.take() {
            reply.flash(FlashKind::Success, done).await?;
        }
        return Ok(reply.redirect(&format!("/studio/channels/{}/grants{back}", channel.handle)));
    }
    let layout = Layout::for_user(&reply.session, user).await?;
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

/// What the owner does to a grant from its row.
enum Change<'a> {
    Extend {
        old: DateTime<Utc>,
        new: DateTime<Utc>,
    },
    Revoke(&'a str),
}

/// Applies `change` and writes it in the audit log, in one transaction. None:
/// the grant was revoked meanwhile (revocation is final), and nothing changed.
async fn change(
    conn: &mut AsyncPgConnection,
    user: &User,
    channel: &Channel,
    id: GrantId,
    change: Change<'_>,
) -> AppResult<Option<grants::Grant>> {
    let changed = conn
        .transaction(async |conn| {
            let (changed, action) = match change {
                Change::Extend { new, .. } => {
                    (grants::set_expiry(conn, id, new).await?, "grant.extended")
                }
                Change::Revoke(reason) => {
                    (grants::revoke(conn, id, reason).await?, "grant.revoked")
                }
            };
            if let Some(g) = &changed {
                let details = match change {
                    Change::Extend { old, .. } => serde_json::json!({
                        "user_id": g.user_id,
                        "old_expires_at": old,
                        "new_expires_at": g.expires_at,
                    }),
                    Change::Revoke(reason) => serde_json::json!({
                        "user_id": g.user_id,
                        "reason": reason,
                        "expires_at": g.expires_at,
                    }),
                };
                db::audit::record(
                    conn,
                    Some(user.id),
                    Some(channel.id),
                    action,
                    Some(&g.id.to_string()),
                    details,
                )
                .await?;
            }
            Ok::<_, diesel::result::Error>(changed)
        })
        .await?;
    Ok(changed)
}

/// Grant `id`'s row as the list shows it now, saying what happened.
async fn fresh_row(conn: &mut AsyncPgConnection, id: GrantId, note: String) -> AppResult<GrantRow> {
    let fresh = grants::find_in_list(conn, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let mut row = GrantRow::new(fresh);
    row.note = Some(note);
    Ok(row)
}

pub async fn extend(
    State(state): State<AppState>,
    OwnedGrant {
        user,
        grant,
        channel,
    }: OwnedGrant,
    reply: Reply,
    Query(params): Query<ListParams>,
    Form(form): Form<ExtendForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let old = grant.grant.expires_at;
    let mut row = GrantRow::new(grant.clone());

    match new_expiry(&form, old, Utc::now()) {
        Err(e) => row.errors.add("extend", e),
        Ok(new) => {
            match change(
                &mut conn,
                &user,
                &channel,
                grant.grant.id,
                Change::Extend { old, new },
            )
            .await?
            {
                Some(g) => {
                    row = fresh_row(
                        &mut conn,
                        g.id,
                        format!(
                            "{}'s grant now ends {}.",
                            grant.user_name,
                            utc(&g.expires_at)
                        ),
                    )
                    .await?;
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
    answer_row(&mut conn, &reply, &user, channel, &params, row).await
}

#[derive(Deserialize, Default)]
pub struct RevokeForm {
    #[serde(default)]
    pub reason: String,
}

pub async fn revoke(
    State(state): State<AppState>,
    OwnedGrant {
        user,
        grant,
        channel,
    }: OwnedGrant,
    reply: Reply,
    Query(params): Query<ListParams>,
    Form(form): Form<RevokeForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let reason = normalize_text(form.reason.trim());
    let mut row = GrantRow::new(grant.clone());

    if reason.is_empty() {
        row.errors
            .add("reason", "Say why: the reason is kept with the grant.");
    } else if reason.chars().count() > crate::web::forms::MAX_REASON {
        row.errors.add("reason", "Use at most 200 characters.");
    } else {
        match change(
            &mut conn,
            &user,
            &channel,
            grant.grant.id,
            Change::Revoke(&reason),
        )
        .await?
        {
            Some(g) => {
                row = fresh_row(
                    &mut conn,
                    g.id,
                    format!(
                        "{}'s grant was revoked. If they are watching, they are removed from the stream now.",
                        grant.user_name
                    ),
                )
                .await?;
            }
            None => row.errors.add("reason", "This grant was already revoked."),
        }
    }
    if !row.errors.is_empty() {
        row.forms.reason = form.reason.trim().to_owned();
        row.forms.open = "revoke";
    }
    answer_row(&mut conn, &reply, &user, channel, &params, row).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Timelike;

    fn datetime_local(t: DateTime<Utc>) -> String {
        t.format("%Y-%m-%dT%H:%M").to_string()
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
}
