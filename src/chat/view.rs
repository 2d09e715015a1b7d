//! What chat looks like: the panel, the message box, one message and the
//! team's held-back list (the studio's settings form is `web::view::panels`). The hub renders a message
//! once per audience (viewers; the team, with delete buttons) and pushes the
//! HTML; pages include `templates/partials/chat/panel.html` with a `ChatPanel`.
//! Bodies are always escaped by Askama; only the team's links become anchors,
//! and only http(s) URLs that parse.

use askama::Template;
use chrono::{DateTime, Utc};

use crate::access::{self, Access, Denial};
use crate::db::DbResult;
use crate::db::channels::Role;
use crate::db::chat::{self as chat_db, Message, Settings};
use crate::db::streams::{Status, Stream};
use crate::db::{StreamId, UserId};
use crate::state::AppState;

/// How many messages the panel loads.
pub const PANEL_MESSAGES: i64 = 100;

/// A piece of a message body: text, or (team messages only) a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub text: String,
    /// The normalized http(s) URL when this piece is a link.
    pub href: Option<String>,
}

/// One message as the templates show it.
#[derive(Debug, Clone)]
pub struct MessageView {
    pub id: i64,
    /// None while held back (then the element id is `chat-held-<id>`).
    pub seq: Option<i64>,
    pub stream_id: StreamId,
    pub author: String,
    /// The role of team authors (printed as stored: `owner` / `moderator`).
    pub badge: Option<Role>,
    pub time_iso: String,
    pub time_label: String,
    pub time_title: String,
    pub pieces: Vec<Piece>,
}

impl MessageView {
    pub fn new(m: &Message) -> Self {
        let badge = m.author_role;
        let pieces = if badge.is_some() {
            linkify(&m.body)
        } else {
            vec![Piece {
                text: m.body.clone(),
                href: None,
            }]
        };
        MessageView {
            id: m.id,
            seq: m.seq,
            stream_id: m.stream_id,
            author: m.author_name.clone(),
            badge,
            time_iso: m.created_at.to_rfc3339(),
            // "18:05 UTC"; the page's script shows it in the reader's zone.
            time_label: m.created_at.format("%H:%M UTC").to_string(),
            time_title: crate::format::utc(&m.created_at),
            pieces,
        }
    }
}

/// Splits `text` into plain pieces and http(s) links. A link starts with
/// `http://` or `https://` after a space or an opening bracket (or at the
/// start), runs to the next whitespace, loses trailing punctuation, and must
/// parse as a URL with a host; anything else stays text.
pub fn linkify(text: &str) -> Vec<Piece> {
    let mut pieces: Vec<Piece> = Vec::new();
    let mut plain = String::new();
    let mut rest = text;
    while !rest.is_empty() {
        let Some(start) = next_scheme(rest) else {
            break;
        };
        let tail = &rest[start..];
        let end = tail.find(char::is_whitespace).unwrap_or(tail.len());
        let candidate =
            tail[..end].trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']', '}', '\'', '"']);
        let url = url::Url::parse(candidate).ok().filter(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
        });
        plain.push_str(&rest[..start]);
        match url {
            Some(url) => {
                if !plain.is_empty() {
                    pieces.push(Piece {
                        text: std::mem::take(&mut plain),
                        href: None,
                    });
                }
                pieces.push(Piece {
                    text: candidate.to_owned(),
                    href: Some(url.to_string()),
                });
                rest = &tail[candidate.len()..];
            }
            None => {
                // Not a URL after all: keep the scheme as text, look further on.
                let skip = if tail.starts_with("https://") { 8 } else { 7 };
                plain.push_str(&tail[..skip]);
                rest = &tail[skip..];
            }
        }
    }
    plain.push_str(rest);
    if !plain.is_empty() {
        pieces.push(Piece {
            text: plain,
            href: None,
        });
    }
    pieces
}

/// Where the next `http://` / `https://` that starts a word begins.
fn next_scheme(s: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find("http").map(|i| i + from) {
        let tail = &s[i..];
        let starts_word = s[..i]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || matches!(c, '(' | '[' | '{' | '<' | '"' | '\''));
        if starts_word && (tail.starts_with("http://") || tail.starts_with("https://")) {
            return Some(i);
        }
        from = i + 4;
    }
    None
}

/// One message alone (a live event). `moderate`: with the delete button.
#[derive(Template)]
#[template(path = "partials/chat/message.html")]
pub struct MessageFragment<'a> {
    pub m: &'a MessageView,
    pub moderate: bool,
}

pub fn render_message(m: &MessageView, moderate: bool) -> askama::Result<String> {
    MessageFragment { m, moderate }.render()
}

/// The team's list of messages still held back (the items of `#chat-held-list-<stream>`).
#[derive(Template)]
#[template(path = "partials/chat/held.html")]
pub struct HeldFragment<'a> {
    pub held: &'a [MessageView],
    pub moderate: bool,
}

pub fn render_held(held: &[MessageView]) -> askama::Result<String> {
    HeldFragment {
        held,
        moderate: true,
    }
    .render()
}

/// The out-of-band swap that removes the message shown as `seq` wherever it is.
pub fn delete_fragment(message_seq: i64) -> String {
    format!(r#"<div id="chat-msg-{message_seq}" hx-swap-oob="delete"></div>"#)
}

/// The message box, and what it says under the box.
#[derive(Debug, Clone)]
pub struct ChatForm {
    pub stream_id: StreamId,
    /// Why there is no box (chat off, stream ended); None: the box is there.
    pub closed: Option<&'static str>,
    pub body: String,
    /// Why the last message was refused.
    pub error: Option<String>,
    /// After a message was sent, or about a timeout.
    pub notice: Option<String>,
    pub max_length: i32,
    pub slow_mode_seconds: i32,
    /// A guest: no box, a way to sign in instead.
    pub guest: bool,
}

impl ChatForm {
    pub fn new(stream: &Stream, settings: &Settings) -> Self {
        let closed = if stream.status == Status::Ended {
            Some("The stream has ended; chat is closed.")
        } else if !settings.enabled {
            Some("Chat is off for this stream.")
        } else {
            None
        };
        ChatForm {
            stream_id: stream.id,
            closed,
            body: String::new(),
            error: None,
            notice: None,
            max_length: settings.max_length,
            slow_mode_seconds: settings.slow_mode_seconds,
            guest: false,
        }
    }
}

/// The message box alone: the answer to POST /s/{id}/chat.
#[derive(Template)]
#[template(path = "partials/chat/form.html")]
pub struct FormFragment {
    pub form: ChatForm,
}

/// The chat panel of a stream as one user sees it. Include
/// `partials/chat/panel.html` with this in scope as `chat`.
#[derive(Debug, Clone)]
pub struct ChatPanel {
    pub stream_id: StreamId,
    /// Why this user cannot read the chat (the access rule's reason).
    pub denial: Option<&'static str>,
    /// Not signed in: offer sign-in.
    pub sign_in: bool,
    /// Shared with the other pages of the same moment (`chat::recent`).
    pub messages: std::sync::Arc<[MessageView]>,
    /// The team's view of messages waiting out the hold-back delay.
    pub held: Vec<MessageView>,
    /// Moderator or owner: delete buttons, the held list.
    pub moderate: bool,
    /// The last chat event the messages include: the SSE stream continues after it.
    pub cursor: i64,
    pub delay_seconds: i32,
    pub form: ChatForm,
    /// Sent over SSE to replace a panel whose reader lost access.
    pub oob: bool,
}

impl ChatPanel {
    /// The panel for `user` on `stream`: the last 100 messages if the access
    /// rule lets them watch, otherwise the reason.
    pub async fn load(state: &AppState, user: Option<UserId>, stream: &Stream) -> DbResult<Self> {
        let access = access::may(&mut *state.db.get().await?, user, stream).await?;
        Self::load_with(state, user, stream, access).await
    }

    /// `load`, for a caller that has just asked the access rule about
    /// `user` and `stream` itself.
    pub async fn load_with(
        state: &AppState,
        user: Option<UserId>,
        stream: &Stream,
        access: Access,
    ) -> DbResult<Self> {
        let panel = chat_db::panel_state(&mut *state.db.get().await?, stream.id, user).await?;
        Self::load_given(state, stream, access, panel).await
    }

    /// `load_with`, for a caller that has read the panel's state too (the
    /// watch page: in its one statement). The messages come from
    /// `chat::recent` (read up to the state's cursor, usually from memory).
    pub async fn load_given(
        state: &AppState,
        stream: &Stream,
        access: Access,
        given: chat_db::PanelState,
    ) -> DbResult<Self> {
        let mut panel = Self::closed(stream, &given.settings, access);
        if panel.denial.is_some() {
            return Ok(panel);
        }
        panel.messages = state
            .chat_recent
            .get(&state.db, stream.id, given.cursor)
            .await?;
        panel.cursor = given.cursor;
        if panel.moderate {
            panel.held = chat_db::held(&mut *state.db.get().await?, stream.id)
                .await?
                .iter()
                .map(MessageView::new)
                .collect();
        }
        if !panel.moderate
            && panel.form.closed.is_none()
            && let Some(until) = given.timed_out_until
        {
            panel.form.notice = Some(timed_out_reason(until));
        }
        Ok(panel)
    }

    /// The panel without messages: what `access` allows, nothing loaded yet.
    pub fn closed(stream: &Stream, settings: &Settings, access: Access) -> Self {
        ChatPanel {
            stream_id: stream.id,
            denial: access.denial().map(chat_denial),
            sign_in: access.denial() == Some(Denial::SignInRequired),
            messages: std::sync::Arc::new([]),
            held: Vec::new(),
            moderate: access.may_moderate(),
            cursor: 0,
            delay_seconds: settings.delay_seconds,
            form: ChatForm {
                guest: access == Access::Guest,
                ..ChatForm::new(stream, settings)
            },
            oob: false,
        }
    }
}

/// The access rule's reason, said about chat.
pub fn chat_denial(d: Denial) -> &'static str {
    match d {
        Denial::SignInRequired => "Sign in to join the chat.",
        Denial::PassRequired => "The chat is for access pass holders. Get a pass to join in.",
        Denial::PassEnded => "Your pass has ended. Renew it to rejoin the chat.",
        Denial::Banned => "You have been banned from this channel.",
        d @ (Denial::Suspended | Denial::Unavailable) => d.reason(),
    }
}

pub fn timed_out_reason(until: DateTime<Utc>) -> String {
    format!(
        "You are timed out of this chat until {}.",
        crate::format::utc(&until)
    )
}

/// The panel alone (GET /s/{id}/chat), or sent out of band over SSE.
#[derive(Template)]
#[template(path = "partials/chat/panel.html")]
pub struct PanelFragment {
    pub chat: ChatPanel,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn links(text: &str) -> Vec<(String, Option<String>)> {
        linkify(text)
            .into_iter()
            .map(|p| (p.text, p.href))
            .collect()
    }

    #[test]
    fn links_are_http_urls_that_start_a_word_without_trailing_punctuation() {
        assert_eq!(
            links("see https://example.com/a?b=1. ok"),
            vec![
                ("see ".into(), None),
                (
                    "https://example.com/a?b=1".into(),
                    Some("https://example.com/a?b=1".into())
                ),
                (". ok".into(), None),
            ]
        );
        assert_eq!(
            links("(http://x.org)"),
            vec![
                ("(".into(), None),
                ("http://x.org".into(), Some("http://x.org/".into())),
                (")".into(), None),
            ]
        );
        for text in [
            "javascript:alert(1)",
            "xhttps://a.b",
            "https://",
            "ftp://a.b",
        ] {
            assert!(linkify(text).iter().all(|p| p.href.is_none()), "{text}");
            assert_eq!(
                linkify(text)
                    .iter()
                    .map(|p| p.text.as_str())
                    .collect::<String>(),
                text
            );
        }
    }

    #[test]
    fn link_hrefs_are_escaped_by_the_template() {
        let view = MessageView {
            id: 1,
            seq: Some(1),
            stream_id: StreamId(1),
            author: "<b>Owner</b>".into(),
            badge: Some(Role::Owner),
            time_iso: String::new(),
            time_label: String::new(),
            time_title: String::new(),
            pieces: linkify(r#"https://a.example/"onmouseover="x <script>"#),
        };
        let html = render_message(&view, false).unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(!html.contains("<b>"), "{html}");
        assert!(!html.contains(r#""onmouseover"#), "{html}");
    }
}
