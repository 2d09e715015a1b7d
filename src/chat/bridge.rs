//! The bridge from Postgres to this instance's hub. One dedicated connection
//! LISTENs to `stagepass_chat` (reconnecting on failure, like the enforcer);
//! for each notification about a stream someone here subscribes to, the bridge
//! loads the message ONCE, renders it ONCE per audience and publishes it.
//! Notifications are handled in arrival order, which is commit order, so every
//! stream's events reach the hub in seq order.
//!
//! It also runs the releaser: held-back messages become visible (take their
//! seq) when their `visible_at` comes, whichever instance gets there first.

use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures_util::StreamExt;
use secrecy::ExposeSecret;

use super::hub::{ChatEvent, Rendered};
use super::view::{self, MessageView};
use crate::db::chat::{self as chat_db, NOTIFY_CHANNEL};
use crate::db::{ChannelId, StreamId, UserId};
use crate::state::AppState;

/// Longest sleep of the releaser when nothing is held (a new held message
/// wakes it: its notification reaches every instance).
const RELEASE_IDLE: Duration = Duration::from_secs(30);

/// Runs forever: the LISTEN connection and the releaser.
pub async fn run(state: AppState) {
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    let _releaser = AbortOnDrop(tokio::spawn(release_loop(state.clone())));
    loop {
        match AsyncPgConnection::establish(state.config.database_url.expose_secret()).await {
            Ok(mut conn) => {
                if let Err(e) = diesel::sql_query(format!("LISTEN {NOTIFY_CHANNEL}"))
                    .execute(&mut conn)
                    .await
                {
                    tracing::warn!(error = %e, "chat: LISTEN failed");
                } else {
                    // Whatever happened while nobody listened: subscribers
                    // ask the access rule again and re-read it.
                    state.chat.publish_all(ChatEvent::Recheck { user: None });
                    state.chat.publish_all(ChatEvent::CatchUp);
                    state.chat.release.notify_one();
                    let mut stream = std::pin::pin!(conn.notifications_stream());
                    while let Some(n) = stream.next().await {
                        match n {
                            Ok(n) => apply(&state, &n.payload).await,
                            Err(e) => {
                                tracing::warn!(error = %e, "chat: notification stream failed");
                                break;
                            }
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "chat: cannot connect to LISTEN"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// A notification, parsed (see `db::chat::NOTIFY_CHANNEL`).
#[derive(Debug, PartialEq, Eq)]
enum Note {
    Visible {
        stream: StreamId,
        seq: i64,
    },
    Deleted {
        stream: StreamId,
        seq: i64,
        message_seq: i64,
    },
    HeldChanged {
        stream: StreamId,
        new: bool,
    },
    UserChanged {
        channel: ChannelId,
        user: UserId,
    },
    /// Suspended or restored: their chat streams in every channel.
    UserSuspended {
        user: UserId,
    },
    /// Everyone in a channel may have lost the right to read (see
    /// `db::chat::NOTIFY_CHANNEL`).
    ChannelChanged {
        channel: ChannelId,
    },
}

fn parse(payload: &str) -> Option<Note> {
    let mut parts = payload.split(':');
    let kind = parts.next()?;
    let mut n = || parts.next()?.parse::<i64>().ok();
    Some(match kind {
        "m" => Note::Visible {
            stream: StreamId(n()?),
            seq: n()?,
        },
        "d" => Note::Deleted {
            stream: StreamId(n()?),
            seq: n()?,
            message_seq: n()?,
        },
        "h" => Note::HeldChanged {
            stream: StreamId(n()?),
            new: true,
        },
        "x" => Note::HeldChanged {
            stream: StreamId(n()?),
            new: false,
        },
        "u" => Note::UserChanged {
            channel: ChannelId(n()?),
            user: UserId(n()?),
        },
        "s" => Note::UserSuspended { user: UserId(n()?) },
        "c" => Note::ChannelChanged {
            channel: ChannelId(n()?),
        },
        _ => return None,
    })
}

async fn apply(state: &AppState, payload: &str) {
    let Some(note) = parse(payload) else {
        tracing::warn!(payload, "chat: unknown notification");
        return;
    };
    let hub = &state.chat;
    match note {
        Note::Visible { stream, seq } => {
            if !hub.has_subscribers(stream) {
                return;
            }
            match load_visible(state, stream, seq).await {
                Ok((html, was_held)) => {
                    hub.publish(stream, ChatEvent::Message { seq, html });
                    if was_held {
                        publish_held(state, stream).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, %stream, seq, "chat: loading a message");
                    hub.publish(stream, ChatEvent::CatchUp);
                }
            }
            metrics::counter!("chat_events_published_total", "kind" => "message").increment(1);
        }
        Note::Deleted {
            stream,
            seq,
            message_seq,
        } => {
            hub.publish(stream, ChatEvent::Deleted { seq, message_seq });
        }
        Note::HeldChanged { stream, new } => {
            if new {
                hub.release.notify_one();
            }
            if hub.has_subscribers(stream) {
                publish_held(state, stream).await;
            }
        }
        Note::UserChanged { channel, user } => {
            hub.publish_to_channel(channel, ChatEvent::Recheck { user: Some(user) });
        }
        Note::UserSuspended { user } => {
            hub.publish_all(ChatEvent::Recheck { user: Some(user) });
        }
        Note::ChannelChanged { channel } => {
            hub.publish_to_channel(channel, ChatEvent::Recheck { user: None });
        }
    }
}

/// The message of event `seq`, rendered for both audiences (None: deleted
/// since), and whether it had been held back.
async fn load_visible(
    state: &AppState,
    stream: StreamId,
    seq: i64,
) -> anyhow::Result<(Option<Rendered>, bool)> {
    let mut conn = state.db.get().await?;
    let Some(m) = chat_db::by_seq(&mut conn, stream, seq).await? else {
        return Ok((None, false));
    };
    if m.deleted {
        return Ok((None, m.was_held()));
    }
    let view = MessageView::new(&m);
    let viewer = view::render_message(&view, false)?;
    let mut team = view::render_message(&view, true)?;
    if m.was_held() {
        // The team saw it in the held list; the held list is re-sent too.
        team.push_str(&format!(
            r#"<div id="chat-held-{}" hx-swap-oob="delete"></div>"#,
            m.id
        ));
    }
    Ok((
        Some(Rendered {
            viewer: super::frame("chat", Some(seq), &viewer),
            team: super::frame("chat", Some(seq), &team),
        }),
        m.was_held(),
    ))
}

/// Re-sends the team's held list of `stream`.
async fn publish_held(state: &AppState, stream: StreamId) {
    match render_held(state, stream).await {
        Ok(team) => {
            state.chat.publish(
                stream,
                ChatEvent::Held {
                    team: super::frame("held", None, &team),
                },
            );
        }
        Err(e) => tracing::warn!(error = %e, %stream, "chat: loading held messages"),
    }
}

pub(crate) async fn render_held(state: &AppState, stream: StreamId) -> anyhow::Result<String> {
    let mut conn = state.db.get().await?;
    let held: Vec<MessageView> = chat_db::held(&mut conn, stream)
        .await?
        .iter()
        .map(MessageView::new)
        .collect();
    Ok(view::render_held(&held)?)
}

async fn release_loop(state: AppState) {
    loop {
        let sleep = match release_due(&state).await {
            Ok(next) => next,
            Err(e) => {
                tracing::warn!(error = %e, "chat: releasing held messages");
                Duration::from_secs(2)
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(sleep) => {}
            _ = state.chat.release.notified() => {}
        }
    }
}

/// Releases every held message that is due; answers how long until the next.
pub async fn release_due(state: &AppState) -> anyhow::Result<Duration> {
    let mut conn = state.db.get().await?;
    while let Some((stream, seq)) = chat_db::release_one_due(&mut conn).await? {
        tracing::debug!(%stream, seq, "chat: held message released");
    }
    Ok(match chat_db::next_release_in(&mut conn).await? {
        // A hair after it is due, by the database's clock.
        Some(s) if s > 0.0 => Duration::from_secs_f64(s + 0.02).min(RELEASE_IDLE),
        // Due but locked by another instance releasing it right now.
        Some(_) => Duration::from_millis(50),
        None => RELEASE_IDLE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_parse() {
        assert_eq!(
            parse("m:3:17"),
            Some(Note::Visible {
                stream: StreamId(3),
                seq: 17
            })
        );
        assert_eq!(
            parse("d:3:18:17"),
            Some(Note::Deleted {
                stream: StreamId(3),
                seq: 18,
                message_seq: 17
            })
        );
        assert_eq!(
            parse("h:3:99"),
            Some(Note::HeldChanged {
                stream: StreamId(3),
                new: true
            })
        );
        assert_eq!(
            parse("u:5:8"),
            Some(Note::UserChanged {
                channel: ChannelId(5),
                user: UserId(8)
            })
        );
        assert_eq!(
            parse("c:5"),
            Some(Note::ChannelChanged {
                channel: ChannelId(5)
            })
        );
        assert_eq!(parse("m:3"), None);
        assert_eq!(parse("z:1:2"), None);
    }
}
