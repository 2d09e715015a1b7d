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
use crate::db::{PassId, StreamId, UserId};
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
    /// Where the subject is in the studio, when it still exists.
    pub subject_href: Option<String>,
    pub details: String,
}

#[derive(Template)]
#[template(path = "pages/moderation/audit.html", blocks = ["audit"])]
pub struct AuditPage {
    pub layout: Layout,
    pub channel: Channel,
    /// The actions in this channel's log, and their words, for the filter.
    pub actions: Vec<(String, String)>,
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

/// What an entry says: a sentence with its details where they matter (until
/// when, how long, which track), else the action's words (`action_label`).
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
        "moderation.timed_out" => match details["minutes"].as_i64() {
            Some(m) => format!("Timed out of chat for {m} min"),
            None => action_label(action),
        },
        "moderation.track_muted" => match details["source"].as_str() {
            Some(s) => format!("Muted their {}", s.to_lowercase()),
            None => action_label(action),
        },
        other => action_label(other),
    }
}

/// An action in words, as the filter lists it and as entries without a
/// sentence of their own say it; an unknown one as its words ("chat: something new").
fn action_label(action: &str) -> String {
    let known = match action {
        "moderation.banned" => "Banned from the channel",
        "moderation.ban_lifted" => "Lifted a ban",
        "moderation.timed_out" => "Timed out of chat",
        "moderation.timeout_lifted" => "Lifted a chat timeout",
        "moderation.participant_removed" => "Removed from the live room",
        "moderation.track_muted" => "Muted a track",
        "participant.removed_by_moderator" => {
            "Removed from the live room by the server, at a moderator's request"
        }
        "participant.removed_access_ended" => {
            "Removed from the live room by the server: no longer allowed to watch"
        }
        "participant.removed_on_join" => "Removed on joining the room: not allowed to watch",
        "participant.encoder_key_reset" => "Reset the OBS stream key",
        "participant.encoder_refused" => "Refused an encoder with an old stream key",
        "stream.created" => "Created a stream",
        "stream.deleted" => "Deleted a draft stream",
        "stream.live" => "Went live",
        "stream.started" => "Went live",
        "stream.live_by_encoder" => "Went live from OBS",
        "stream.live_by_ingress" => "Went live through LiveKit Ingress",
        "stream.offline_by_ingress" => "The encoder went offline",
        "stream.ended" => "Ended the stream",
        "stream.ended_by_livekit" => "The stream ended: its room closed",
        "stream.ended_by_reconciler" => "The stream ended: its room was gone",
        "stream.thumbnail_set" => "Set the stream's thumbnail",
        "stream.thumbnail_removed" => "Removed the stream's thumbnail",
        "chat.message_deleted" => "Deleted a chat message",
        "chat.settings_changed" => "Changed the chat settings",
        "grant.comped" => "Comped a grant",
        "grant.extended" => "Extended a grant",
        "grant.revoked" => "Revoked a grant",
        "code.redeemed" => "Redeemed a code",
        "codes.generated" => "Made redeem codes",
        "code.redeem_failed" => "Tried a code that didn't work",
        "order.paid" => "Bought a pass",
        "order.refunded" => "An order was refunded",
        "pass.created" => "Created a pass",
        "pass.updated" => "Changed a pass",
        "pass.archived" => "Took a pass off sale",
        "pass.unarchived" => "Put a pass back on sale",
        "team.moderator_added" => "Added a moderator",
        "team.moderator_removed" => "Removed a moderator",
        "channel.created" => "Created the channel",
        "channel.settings_saved" => "Saved the channel's settings",
        "channel.avatar_set" => "Set the channel's avatar",
        "channel.avatar_removed" => "Removed the channel's avatar",
        "webhook.added" => "Added a webhook",
        "webhook.deleted" => "Deleted a webhook",
        "webhook.tested" => "Sent a test webhook",
        "recording.ready" => "A recording is ready",
        _ => "",
    };
    if !known.is_empty() {
        return known.to_owned();
    }
    match action.split_once('.') {
        Some((area, what)) => format!("{area}: {}", what.replace('_', " ")),
        None => action.replace('_', " "),
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

/// The stream an entry is about: its subject for `stream.*` and the chat
/// settings, `details.stream_id` for a deleted message; None for the rest
/// (a grant or a pass for one stream is about the grant or the pass).
fn stream_of(e: &audit::Entry) -> Option<StreamId> {
    if e.action.starts_with("stream.") || e.action == "chat.settings_changed" {
        e.subject.as_deref()?.parse().ok()
    } else if e.action == "chat.message_deleted" {
        e.details["stream_id"].as_i64().map(StreamId)
    } else {
        None
    }
}

/// The pass an entry is about: its subject for `pass.*`, else `details.pass_id`.
fn pass_of(e: &audit::Entry) -> Option<PassId> {
    if e.action.starts_with("pass.") {
        e.subject.as_deref()?.parse().ok()
    } else {
        e.details["pass_id"].as_i64().map(PassId)
    }
}

async fn audit_rows(
    conn: &mut AsyncPgConnection,
    channel: &Channel,
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
    let stream_ids: Vec<StreamId> = entries.iter().filter_map(stream_of).collect();
    let pass_ids: Vec<PassId> = entries.iter().filter_map(pass_of).collect();
    let people: HashMap<UserId, (String, String)> = audit::user_names(conn, &user_ids)
        .await?
        .into_iter()
        .map(|(id, name, email)| (id, (name, email)))
        .collect();
    let titles: HashMap<StreamId, String> = audit::stream_titles(conn, &stream_ids)
        .await?
        .into_iter()
        .collect();
    let pass_names: HashMap<PassId, String> = audit::pass_names(conn, &pass_ids)
        .await?
        .into_iter()
        .collect();
    let person = |id: UserId| match people.get(&id) {
        Some((name, email)) => format!("{name} ({email})"),
        None => "a deleted account".to_owned(),
    };
    let stream = |id: StreamId| match titles.get(&id) {
        Some(title) => (format!("“{title}”"), Some(format!("/studio/streams/{id}"))),
        None => ("a deleted stream".to_owned(), None),
    };
    let pass = |id: PassId| match pass_names.get(&id) {
        Some(name) => (
            format!("the {name} pass"),
            Some(format!("/studio/passes/{id}")),
        ),
        None => ("a deleted pass".to_owned(), None),
    };
    Ok(entries
        .into_iter()
        .map(|e| {
            let raw = e.subject.clone().unwrap_or_default();
            let about_user = || {
                e.details["user_id"]
                    .as_i64()
                    .map(|u| format!("{} — ", person(UserId(u))))
                    .unwrap_or_default()
            };
            let (subject, subject_href) = if subject_is_user(&e.action) {
                match raw.parse::<UserId>() {
                    Ok(id) => (person(id), None),
                    Err(_) => (raw, None),
                }
            } else if e.action == "chat.message_deleted" {
                match stream_of(&e).map(stream) {
                    Some((title, href)) => (format!("A message in {title}"), href),
                    None => ("A chat message".to_owned(), None),
                }
            } else if let Some(id) = stream_of(&e) {
                stream(id)
            } else if e.action.starts_with("grant.") {
                (format!("{}grant #{raw}", about_user()), None)
            } else if let Some(id) = pass_of(&e) {
                let (name, href) = pass(id);
                match e.action.as_str() {
                    "order.paid" | "order.refunded" => {
                        (format!("{}order #{raw} for {name}", about_user()), href)
                    }
                    _ => (name, href),
                }
            } else if e.action.starts_with("webhook.") {
                (
                    format!("Webhook #{raw}"),
                    Some(format!("/studio/channels/{}/webhooks", channel.handle)),
                )
            } else {
                (raw, None)
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
                subject_href,
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
    let rows = audit_rows(&mut conn, &channel, entries).await?;
    let actions = audit::actions(&mut conn, channel.id)
        .await?
        .into_iter()
        .map(|a| {
            let label = action_label(&a);
            (a, label)
        })
        .collect();
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
            "chat: something new"
        );
        assert_eq!(describe("order.paid", &details), "Bought a pass");
        assert_eq!(compact(&details), "reason: spam · stream id: 4 · until: —");
        assert_eq!(compact(&later), "until: 2026-11-22 18:00 UTC");
    }
}
