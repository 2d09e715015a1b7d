//! The channel's audit log, for its owner alone: filtered, paged, each entry
//! said as a sentence with its subject named.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, NaiveDate};
use diesel_async::AsyncPgConnection;
use serde::Deserialize;

use crate::db::audit::{self, AuditQuery};
use crate::db::channels::Channel;
use crate::db::{StreamId, UserId};
use crate::error::AppResult;
use crate::state::AppState;
use crate::web::Layout;
use crate::web::Reply;
use crate::web::authz::{OwnedChannel, area};
use crate::web::view::{Moment, utc};

const AUDIT_PER_PAGE: i64 = 50;

#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuditParams {
    #[serde(default)]
    pub action: String,
    #[serde(default)]
    pub actor: String,
    #[serde(default)]
    pub from: String,
    #[serde(default)]
    pub to: String,
    #[serde(default)]
    pub page: String,
}

/// The filters in force, read leniently: what we can't use means "no filter".
pub struct AuditFilters {
    pub action: String,
    pub actor: String,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub page: i64,
}

impl AuditFilters {
    fn read(p: &AuditParams) -> Self {
        let date = |s: &str| NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok();
        AuditFilters {
            action: p.action.trim().chars().take(100).collect(),
            actor: p.actor.trim().chars().take(254).collect(),
            from: date(&p.from),
            to: date(&p.to),
            page: p.page.trim().parse().unwrap_or(1).max(1),
        }
    }

    fn query(&self) -> AuditQuery {
        AuditQuery {
            action: Some(self.action.clone()).filter(|a| !a.is_empty()),
            actor: Some(self.actor.clone()).filter(|a| !a.is_empty()),
            from: self.from,
            to: self.to,
        }
    }

    fn query_string(&self, page: i64) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        if !self.action.is_empty() {
            q.append_pair("action", &self.action);
        }
        if !self.actor.is_empty() {
            q.append_pair("actor", &self.actor);
        }
        if let Some(d) = self.from {
            q.append_pair("from", &d.to_string());
        }
        if let Some(d) = self.to {
            q.append_pair("to", &d.to_string());
        }
        if page > 1 {
            q.append_pair("page", &page.to_string());
        }
        let q = q.finish();
        if q.is_empty() { q } else { format!("?{q}") }
    }

    pub fn from_value(&self) -> String {
        self.from.map(|d| d.to_string()).unwrap_or_default()
    }

    pub fn to_value(&self) -> String {
        self.to.map(|d| d.to_string()).unwrap_or_default()
    }

    pub fn any(&self) -> bool {
        !self.action.is_empty()
            || !self.actor.is_empty()
            || self.from.is_some()
            || self.to.is_some()
    }
}

pub struct AuditRow {
    pub id: i64,
    pub when: Moment,
    /// The actor's name, or None for the server's own actions.
    pub who: Option<String>,
    pub who_email: Option<String>,
    pub what: String,
    pub action: String,
    pub subject: String,
    pub details: String,
}

#[derive(Template)]
#[template(path = "pages/moderation/audit.html", blocks = ["audit"])]
pub struct AuditPage {
    pub layout: Layout,
    pub channel: Channel,
    pub actions: Vec<String>,
    pub filters: AuditFilters,
    pub rows: Vec<AuditRow>,
    pub total: i64,
    pub pages: i64,
    pub prev: Option<String>,
    pub next: Option<String>,
}

/// The subject of entries about people is a user id (or a LiveKit identity,
/// which is one for our users).
fn subject_is_user(action: &str) -> bool {
    ["moderation.", "team.", "participant."]
        .iter()
        .any(|p| action.starts_with(p))
}

/// What an entry says, as a sentence where that is easy, else its action name.
fn describe(action: &str, details: &serde_json::Value) -> String {
    let until = || {
        details["until"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| utc(&t.to_utc()))
    };
    match action {
        "moderation.banned" => match until() {
            Some(t) => format!("Banned from the channel until {t}"),
            None => "Banned from the channel permanently".to_owned(),
        },
        "moderation.ban_lifted" => "Lifted a ban".to_owned(),
        "moderation.timed_out" => match details["minutes"].as_i64() {
            Some(m) => format!("Timed out of chat for {m} min"),
            None => "Timed out of chat".to_owned(),
        },
        "moderation.timeout_lifted" => "Lifted a chat timeout".to_owned(),
        "moderation.participant_removed" => "Removed from the live room".to_owned(),
        "moderation.track_muted" => match details["source"].as_str() {
            Some(s) => format!("Muted their {}", s.to_lowercase()),
            None => "Muted a track".to_owned(),
        },
        "participant.removed_by_moderator" => {
            "Removed from the live room by the server, at a moderator's request".to_owned()
        }
        "participant.removed_access_ended" => {
            "Removed from the live room by the server: no longer allowed to watch".to_owned()
        }
        "participant.removed_on_join" => {
            "Removed on joining the room: not allowed to watch".to_owned()
        }
        "stream.created" => "Created a stream".to_owned(),
        "stream.deleted" => "Deleted a draft stream".to_owned(),
        "stream.live" => "Went live".to_owned(),
        "stream.ended" => "Ended the stream".to_owned(),
        "stream.ended_by_livekit" => "The stream ended: its room closed".to_owned(),
        "stream.ended_by_reconciler" => "The stream ended: its room was gone".to_owned(),
        "grant.comped" => "Comped a grant".to_owned(),
        "grant.extended" => "Extended a grant".to_owned(),
        "grant.revoked" => "Revoked a grant".to_owned(),
        "team.moderator_added" => "Added a moderator".to_owned(),
        "team.moderator_removed" => "Removed a moderator".to_owned(),
        "channel.created" => "Created the channel".to_owned(),
        other => other.to_owned(),
    }
}

/// An entry's details on one line: `key: value · …`, long values cut.
fn compact(details: &serde_json::Value) -> String {
    let Some(map) = details.as_object() else {
        return String::new();
    };
    map.iter()
        .map(|(k, v)| {
            let value = match v {
                serde_json::Value::Null => "—".to_owned(),
                serde_json::Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
                serde_json::Value::String(s) => match DateTime::parse_from_rfc3339(s) {
                    Ok(t) => utc(&t.to_utc()),
                    Err(_) => s.clone(),
                },
                other => other.to_string(),
            };
            let value: String = if value.chars().count() > 80 {
                value.chars().take(79).chain(['…']).collect()
            } else {
                value
            };
            format!("{}: {value}", k.replace('_', " "))
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

async fn audit_rows(
    conn: &mut AsyncPgConnection,
    entries: Vec<audit::Entry>,
) -> AppResult<Vec<AuditRow>> {
    let user_ids: Vec<UserId> = entries
        .iter()
        .filter_map(|e| {
            if subject_is_user(&e.action) {
                e.subject.as_deref()?.parse().ok()
            } else {
                e.details["user_id"].as_i64().map(UserId)
            }
        })
        .collect();
    let stream_ids: Vec<StreamId> = entries
        .iter()
        .filter(|e| e.action.starts_with("stream."))
        .filter_map(|e| e.subject.as_deref()?.parse().ok())
        .collect();
    let people: HashMap<UserId, (String, String)> = audit::user_names(conn, &user_ids)
        .await?
        .into_iter()
        .map(|(id, name, email)| (id, (name, email)))
        .collect();
    let titles: HashMap<StreamId, String> = audit::stream_titles(conn, &stream_ids)
        .await?
        .into_iter()
        .collect();
    let person = |id: UserId| match people.get(&id) {
        Some((name, email)) => format!("{name} ({email})"),
        None => format!("user #{id}"),
    };
    Ok(entries
        .into_iter()
        .map(|e| {
            let raw = e.subject.clone().unwrap_or_default();
            let subject = if subject_is_user(&e.action) {
                match raw.parse::<UserId>() {
                    Ok(id) => person(id),
                    Err(_) => raw,
                }
            } else if e.action.starts_with("stream.") {
                match raw.parse::<StreamId>() {
                    Ok(id) => titles
                        .get(&id)
                        .cloned()
                        .unwrap_or_else(|| format!("stream #{id}")),
                    Err(_) => raw,
                }
            } else if e.action.starts_with("grant.") {
                match e.details["user_id"].as_i64() {
                    Some(u) => format!("{} — grant #{raw}", person(UserId(u))),
                    None => format!("grant #{raw}"),
                }
            } else {
                raw
            };
            AuditRow {
                id: e.id,
                when: Moment::new(e.created_at),
                who: e.actor_id.map(|id| {
                    e.actor_name
                        .clone()
                        .unwrap_or_else(|| format!("user #{id}"))
                }),
                who_email: e.actor_email.clone(),
                what: describe(&e.action, &e.details),
                details: compact(&e.details),
                action: e.action,
                subject,
            }
        })
        .collect())
}

/// GET /studio/channels/{handle}/audit: the channel's log for its owner,
/// newest first, 50 a page; to htmx, the filtered list alone.
pub async fn audit(
    State(state): State<AppState>,
    OwnedChannel { user, channel, .. }: OwnedChannel<area::AuditLog>,
    reply: Reply,
    Query(params): Query<AuditParams>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let mut filters = AuditFilters::read(&params);
    let query = filters.query();
    let (mut entries, total) = audit::list(
        &mut conn,
        channel.id,
        &query,
        (filters.page - 1).saturating_mul(AUDIT_PER_PAGE),
        AUDIT_PER_PAGE,
    )
    .await?;
    let pages = (total + AUDIT_PER_PAGE - 1) / AUDIT_PER_PAGE;
    if filters.page > pages && pages > 0 {
        // Past the end (an old link): the last page.
        filters.page = pages;
        entries = audit::list(
            &mut conn,
            channel.id,
            &query,
            (pages - 1) * AUDIT_PER_PAGE,
            AUDIT_PER_PAGE,
        )
        .await?
        .0;
    }
    let pages = pages.max(1);
    let rows = audit_rows(&mut conn, entries).await?;
    let actions = audit::actions(&mut conn, channel.id).await?;
    drop(conn);
    let layout = if reply.htmx.fragment {
        Layout::fragment(&reply.session).await?
    } else {
        Layout::for_user(&reply.session, &user).await?
    };
    let page_no = filters.page;
    let page = AuditPage {
        layout,
        channel,
        actions,
        rows,
        total,
        pages,
        prev: (page_no > 1).then(|| filters.query_string(page_no - 1)),
        next: (page_no < pages).then(|| filters.query_string(page_no + 1)),
        filters,
    };
    reply.render(StatusCode::OK, &page, &page.as_audit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_entries_read_as_sentences_with_compact_details() {
        let details = serde_json::json!({ "until": null, "reason": "spam", "stream_id": 4 });
        assert_eq!(
            describe("moderation.banned", &details),
            "Banned from the channel permanently"
        );
        let later = serde_json::json!({ "until": "2026-11-22T18:00:00Z" });
        assert_eq!(
            describe("moderation.banned", &later),
            "Banned from the channel until 2026-11-22 18:00 UTC"
        );
        assert_eq!(
            describe(
                "moderation.timed_out",
                &serde_json::json!({ "minutes": 10 })
            ),
            "Timed out of chat for 10 min"
        );
        assert_eq!(
            describe("chat.something_new", &details),
            "chat.something_new"
        );
        assert_eq!(compact(&details), "reason: spam · stream id: 4 · until: —");
        assert_eq!(compact(&later), "until: 2026-11-22 18:00 UTC");
    }
}
