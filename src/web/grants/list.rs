//! The channel's grants page: the list with its filters and pages, and the
//! rows the comp, extend and revoke answers are drawn from.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use diesel_async::AsyncPgConnection;
use serde::Deserialize;

use crate::auth::CurrentUser;
use crate::db::channels::Channel;
use crate::db::grants::{self, ChannelGrant, GrantQuery, GrantState, Source};
use crate::db::{GrantId, PassId, streams};
use crate::error::AppResult;
use crate::state::AppState;
use crate::web::authz::{self, Area};
use crate::web::view::Moment;
use crate::web::{FieldErrors, Htmx, Layout, render_with};

const PER_PAGE: i64 = 50;

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
    pub(super) fn read(p: &ListParams) -> Self {
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
    pub(super) fn query_string(&self, page: i64) -> String {
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
    pub source: Source,
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
    pub(super) fn new(g: ChannelGrant) -> Self {
        GrantRow {
            id: g.grant.id,
            user_name: g.user_name,
            user_email: g.user_email,
            pass: g.pass_name.unwrap_or_else(|| match g.grant.source {
                Source::Comp => "comp".to_owned(),
                Source::Purchase | Source::Code => "(deleted pass)".to_owned(),
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
    pub(super) async fn load(
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
    pub(super) fn with_row(mut self, row: GrantRow) -> Self {
        match self.rows.iter().position(|r| r.id == row.id) {
            Some(i) => self.rows[i] = row,
            None => self.rows.insert(0, row),
        }
        self
    }
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
