//! A pass's redeem codes: the codes page, generating codes, and their CSV
//! export.

use std::borrow::Cow;
use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use serde::Deserialize;

use crate::db::channels::Channel;
use crate::db::codes::{self, RedeemCode};
use crate::db::passes::Pass;
use crate::db::{self, streams};
use crate::error::{AppError, AppResult};
use crate::state::AppState;
use crate::web::Reply;
use crate::web::authz::{OwnedPass, area};
use crate::web::forms::parse_schedule;
use crate::web::view::{Moment, csv_download, utc};
use crate::web::{FieldErrors, FlashKind, Layout, render_with};

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

pub async fn list(
    State(state): State<AppState>,
    OwnedPass { pass, channel, .. }: OwnedPass<area::Codes>,
    layout: Layout,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
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

pub async fn create(
    State(state): State<AppState>,
    OwnedPass {
        user,
        pass,
        channel,
        ..
    }: OwnedPass<area::Codes>,
    reply: Reply,
    Form(form): Form<GenerateForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
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
        return reply
            .redirect_with(
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
                &format!("/studio/passes/{}/codes", pass.id),
            )
            .await;
    }

    let layout = Layout::for_user(&reply.session, &user).await?;
    let mut page = CodesPage::load(&mut conn, layout, pass, channel).await?;
    page.form = GenerateFields {
        count: form.count.trim().to_owned(),
        uses: form.uses.trim().to_owned(),
        expires_at: form.expires_at.trim().to_owned(),
    };
    page.errors = errors;
    reply.render(StatusCode::UNPROCESSABLE_ENTITY, &page, &page.as_generate())
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

pub async fn export(
    State(state): State<AppState>,
    OwnedPass { pass, .. }: OwnedPass<area::Codes>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
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
    csv_download(body, &format!("pass-{}-codes.csv", pass.id))
}

#[cfg(test)]
mod tests {
    use super::*;

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
