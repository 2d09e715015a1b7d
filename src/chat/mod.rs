//! Live chat, enforced by the server: posting (the access rule, then
//! `limits`), deleting, the chat settings, and the event stream each SSE
//! client reads.
//!
//! Fan-out: a post inserts the message and NOTIFYs `stagepass_chat` with ids
//! only, in one transaction; every app instance's `bridge` loads it once,
//! renders it once per audience and publishes it on its `hub`; each SSE
//! client's stream (`events`) forwards what its reader may see. Messages are a
//! per-stream event log (`db::chat`): clients resume from Last-Event-ID out of
//! the database, and a client that lags or misses an event re-reads the
//! database from its last event instead of skipping (no gaps, no repeats).
//!
//! This module never decides access itself: it asks `access`.
//! For other modules: `events`, `post`, `delete`, `save_settings`; moderation
//! needs nothing (bans, timeouts, grants, team changes, suspensions, hidden
//! channels and streams turned to pass reach open chat streams through
//! triggers, see migrations 000007 and chat_recheck_channel; a pass running
//! out is asked about when it ends, `RECHECK_BACKSTOP`).

pub mod bridge;
pub mod hub;
pub mod limits;
pub mod recent;
pub mod view;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use diesel::OptionalExtension;
use diesel_async::AsyncConnection;
use tokio::sync::broadcast;

use crate::access::{self, Access};
use crate::db::DbResult;
use crate::db::chat::{self as chat_db, Event, NewMessage, RecentQuery, Settings};
use crate::db::streams::{Status, Stream};
use crate::db::{self, UserId};
use crate::state::AppState;
pub use hub::{ChatEvent, Hub};
pub use limits::Refusal;
use view::{ChatPanel, MessageView, PanelFragment};

/// About the longest an open chat stream goes without asking the access
/// rule again (jittered between half and all of it). Every change that can
/// take access away is pushed at once (bans, team changes, grants revoked,
/// shortened or deleted, suspensions and a suspended owner's channels, a
/// hidden channel, a stream turned from public to pass, made unannounced or
/// deleted: triggers, see `bridge`), and a pass running out is asked about
/// when it ends; this is the backstop, not the mechanism.
pub const RECHECK_BACKSTOP: Duration = Duration::from_secs(300);

/// A message that went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posted {
    pub id: i64,
    /// Viewers see it after this many seconds (a viewer's message with a
    /// hold-back delay); None: everyone sees it now.
    pub held_for: Option<i32>,
}

/// Posts `raw_body` as `user` to `stream`: the access rule, then the limits,
/// then the insert and its notification in one transaction that holds the
/// stream row's lock. `Ok(Err(refusal))`: nothing was written, and why.
#[tracing::instrument(skip_all, fields(stream = %stream.id))]
pub async fn post(
    state: &AppState,
    user: Option<UserId>,
    stream: &Stream,
    raw_body: &str,
) -> DbResult<Result<Posted, Refusal>> {
    let mut conn = state.db.get().await?;
    let access = access::may(&mut conn, user, stream).await?;
    let (Some(user), None) = (user, access.denial()) else {
        return Ok(Err(Refusal::Denied(
            access.denial().unwrap_or(access::Denial::SignInRequired),
        )));
    };
    if stream.status == Status::Ended {
        return Ok(Err(Refusal::StreamEnded));
    }
    let body = limits::normalize(raw_body);
    if body.is_empty() {
        return Ok(Err(Refusal::Empty));
    }
    let team = access.may_moderate();
    let (stream_id, channel) = (stream.id, stream.channel_id);
    let outcome = conn
        .transaction(async |conn| {
            let settings = chat_db::lock_settings(conn, stream_id).await?;
            if let Some(refusal) = limits::check_length(&body, &settings) {
                return Ok(Err(refusal));
            }
            let recent = chat_db::recent_activity(
                conn,
                &RecentQuery {
                    stream: stream_id,
                    channel,
                    user,
                    body: &body,
                    slow_mode_seconds: settings.slow_mode_seconds,
                    rate_window_seconds: limits::RATE_WINDOW_SECONDS,
                    duplicate_window_seconds: limits::DUPLICATE_WINDOW_SECONDS,
                    duplicate_of_last: limits::DUPLICATE_OF_LAST,
                },
            )
            .await?;
            if let Some(refusal) = limits::check(team, &settings, &body, &recent) {
                return Ok(Err(refusal));
            }
            let held = !team && settings.delay_seconds > 0;
            let seq = if held {
                None
            } else {
                Some(chat_db::next_seq(conn, stream_id).await?)
            };
            let new = NewMessage {
                stream_id,
                author_id: user,
                body: &body,
                seq,
            };
            let delay = if held { settings.delay_seconds } else { 0 };
            let id = chat_db::insert(conn, &new, delay).await?;
            match seq {
                Some(seq) => chat_db::notify(conn, &format!("m:{stream_id}:{seq}")).await?,
                None => chat_db::notify(conn, &format!("h:{stream_id}:{id}")).await?,
            }
            Ok::<_, diesel::result::Error>(Ok(Posted {
                id,
                held_for: held.then_some(delay),
            }))
        })
        .await?;
    match &outcome {
        Ok(_) => metrics::counter!("chat_messages_posted_total").increment(1),
        Err(r) => {
            tracing::info!(reason = ?r, "chat message refused");
            metrics::counter!("chat_messages_refused_total").increment(1);
        }
    }
    Ok(outcome)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    Deleted,
    /// Someone deleted it first (nothing changes).
    AlreadyDeleted,
    NotFound,
}

/// Deletes message `id` of `stream` for everyone, as `moderator` (the caller
/// has checked `may_moderate`): marks it, makes its deletion an event when
/// viewers had seen it, notifies, and writes the audit log — one transaction.
#[tracing::instrument(skip_all, fields(stream = %stream.id, message = id))]
pub async fn delete(
    state: &AppState,
    moderator: UserId,
    stream: &Stream,
    id: i64,
) -> DbResult<Deletion> {
    let mut conn = state.db.get().await?;
    let (stream_id, channel) = (stream.id, stream.channel_id);
    let outcome = conn
        .transaction(async |conn| {
            let Some(removed) = chat_db::mark_deleted(conn, stream_id, id, moderator).await? else {
                return Ok(match chat_db::state_of(conn, stream_id, id).await? {
                    Some(_) => Deletion::AlreadyDeleted,
                    None => Deletion::NotFound,
                });
            };
            let deleted_seq = match removed.seq {
                Some(message_seq) => {
                    let seq = chat_db::next_seq(conn, stream_id).await?;
                    chat_db::set_deleted_seq(conn, id, seq).await?;
                    chat_db::notify(conn, &format!("d:{stream_id}:{seq}:{message_seq}")).await?;
                    Some(seq)
                }
                None => {
                    chat_db::notify(conn, &format!("x:{stream_id}:{id}")).await?;
                    None
                }
            };
            db::audit::record(
                conn,
                Some(moderator),
                Some(channel),
                "chat.message_deleted",
                Some(&id.to_string()),
                serde_json::json!({
                    "stream_id": stream_id,
                    "author_id": removed.author_id,
                    "body": removed.body,
                    "seq": removed.seq,
                    "deleted_seq": deleted_seq,
                    "was_visible": removed.seq.is_some(),
                }),
            )
            .await?;
            Ok::<_, diesel::result::Error>(Deletion::Deleted)
        })
        .await?;
    Ok(outcome)
}

/// Saves `new` as the chat settings of `stream` (the caller has checked
/// `may_publish` and the ranges), with an audit entry of what changed.
pub async fn save_settings(
    state: &AppState,
    owner: UserId,
    stream: &Stream,
    new: Settings,
) -> DbResult<()> {
    let mut conn = state.db.get().await?;
    let (stream_id, channel) = (stream.id, stream.channel_id);
    conn.transaction(async |conn| {
        let old = chat_db::lock_settings(conn, stream_id).await?;
        if old == new {
            return Ok(());
        }
        chat_db::update_settings(conn, stream_id, &new).await?;
        db::audit::record(
            conn,
            Some(owner),
            Some(channel),
            "chat.settings_changed",
            Some(&stream_id.to_string()),
            serde_json::json!({
                "stream_id": stream_id,
                "before": settings_json(&old),
                "after": settings_json(&new),
            }),
        )
        .await?;
        Ok::<_, diesel::result::Error>(())
    })
    .await?;
    Ok(())
}

fn settings_json(s: &Settings) -> serde_json::Value {
    serde_json::json!({
        "enabled": s.enabled,
        "slow_mode_seconds": s.slow_mode_seconds,
        "delay_seconds": s.delay_seconds,
        "max_length": s.max_length,
        "followers_min_seconds": s.followers_min_seconds,
    })
}

/// One SSE event for a client, as the bytes of its frame (`frame`). Live
/// messages are encoded once by the bridge and shared: cloning `Bytes` is a
/// reference count, so 10,000 subscribers cost one encoding, not 10,000.
#[derive(Debug, Clone)]
pub struct Outgoing(pub Bytes);

/// An SSE frame: the event's name, its id (a chat event number; None for
/// events outside the log) and the HTML as `data:` lines (a line break in the
/// HTML starts a new `data:` line, which the client joins back with `\n`).
pub fn frame(event: &str, id: Option<i64>, html: &str) -> Bytes {
    let mut out = BytesMut::with_capacity(html.len() + 64);
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\n");
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.to_string().as_bytes());
        out.extend_from_slice(b"\n");
    }
    // CRLF, LF and a lone CR all end an SSE line: each starts a new `data:`.
    for line in html.lines().flat_map(|l| l.split('\r')) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"\n");
    out.freeze()
}

/// The events `user` (whom the access rule lets watch, as `access`) reads on
/// `stream`'s chat: first every event after `after` from the database (none
/// when `after` is None: a client with nothing to resume starts from now),
/// then live ones from the hub, in order, without gaps or repeats. Ends when
/// the client goes away or loses access (after a `denied` event that replaces
/// the panel).
///
/// `asked_at` is the hub's `broadcasts()` read before the caller asked the
/// access rule: a re-check that went out before the reader subscribed never
/// reaches it, so then the reader asks again first.
pub async fn events(
    state: AppState,
    stream: Stream,
    user: Option<UserId>,
    access: Access,
    asked_at: u64,
    after: Option<i64>,
) -> DbResult<impl futures_util::Stream<Item = Result<Outgoing, Infallible>> + Send + 'static> {
    // "Now" is read before subscribing, and the backlog after: whatever
    // commits in between comes from the backlog, whatever commits later from
    // the hub, and what both deliver is recognized by its seq. A resume point
    // past the end (not one of ours) counts as the end.
    let cursor = chat_db::cursor(&mut *state.db.get().await?, stream.id).await?;
    let after = after.map_or(cursor, |after| after.clamp(0, cursor));
    let subscription = state.chat.subscribe(stream.id, stream.channel_id);
    let ask_again = state.chat.broadcasts() != asked_at;
    // The first backstop comes at a random moment of its period, so that a
    // crowd that joined together does not re-check together.
    let first = RECHECK_BACKSTOP.mul_f64(rand::random::<f64>());
    let reader = Reader {
        state,
        stream,
        user,
        team: access.may_moderate(),
        last: after,
        sub: subscription,
        recheck: Box::pin(tokio::time::sleep(recheck_in(access.until(), first))),
        ask_again,
        started: false,
        out: VecDeque::new(),
        stopped: false,
    };
    // The response stream drives its reader itself: no task and no channel
    // per client, so a message reaches each subscriber with one wake-up less,
    // and a client that stops reading is not polled (its subscription lags
    // and catches up from the database, as before).
    Ok(futures_util::stream::unfold(
        reader,
        |mut reader| async move { reader.next().await.map(|item| (Ok(item), reader)) },
    ))
}

/// When to ask the access rule again: a second after the reader's pass ends
/// (`until`, by the database's clock; a second at least, so that a clock a
/// little ahead of the database's cannot spin), or after `backstop`.
fn recheck_in(until: Option<chrono::DateTime<chrono::Utc>>, backstop: Duration) -> Duration {
    match until {
        Some(until) => {
            let left = (until - chrono::Utc::now()).to_std().unwrap_or_default();
            (left + Duration::from_secs(1)).min(backstop)
        }
        None => backstop,
    }
}

/// Why a reader stopped (none of these is an error the user sees).
#[derive(Debug, thiserror::Error)]
enum Stop {
    #[error("the reader may no longer read this chat")]
    Denied,
    #[error("the stream's chat channel closed")]
    Ended,
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl From<diesel::result::Error> for Stop {
    fn from(e: diesel::result::Error) -> Self {
        Stop::Failed(e.into())
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for Stop {
    fn from(e: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Stop::Failed(e.into())
    }
}

/// One client's chat stream: `last` is the last chat event it was given (or
/// never needs); everything after it is delivered exactly once, in order.
struct Reader {
    state: AppState,
    stream: Stream,
    /// None: a guest.
    user: Option<UserId>,
    team: bool,
    last: i64,
    sub: hub::Subscription,
    /// The next access re-check (`recheck_in`).
    recheck: std::pin::Pin<Box<tokio::time::Sleep>>,
    /// A re-check went out between the caller's question and the subscription.
    ask_again: bool,
    /// Whether the backlog has been read.
    started: bool,
    /// Events ready for the client, oldest first.
    out: VecDeque<Outgoing>,
    /// Nothing more after `out`: the client lost access, or the reader failed.
    stopped: bool,
}

// The rare paths (catching up, asking the access rule again, the held list)
// are awaited boxed: their database futures take a few KiB, and awaited
// inline they would make every idle subscriber's stream that large too.
impl Reader {
    /// The client's next event; None when the stream ends.
    async fn next(&mut self) -> Option<Outgoing> {
        loop {
            if let Some(out) = self.out.pop_front() {
                return Some(out);
            }
            if self.stopped {
                return None;
            }
            if let Err(e) = self.step().await {
                tracing::debug!(error = %e, "chat stream ended");
                self.stopped = true;
            }
        }
    }

    /// Reads the backlog first, then waits for one live event or re-check.
    async fn step(&mut self) -> Result<(), Stop> {
        if !self.started {
            self.started = true;
            if self.ask_again {
                Box::pin(self.check_access()).await?;
            }
            Box::pin(self.catch_up()).await?;
            if self.team {
                Box::pin(self.send_held()).await?;
            }
            return Ok(());
        }
        let event = tokio::select! {
            // After a stall (a client that stopped reading), access first.
            biased;
            _ = &mut self.recheck => {
                return Box::pin(self.check_access()).await;
            }
            event = self.sub.recv() => event,
        };
        match event {
            Ok(event) => self.forward(&event).await,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::info!(missed = n, stream = %self.stream.id, "chat reader lagged; catching up");
                metrics::counter!("chat_reader_lagged_total").increment(1);
                // What it missed may have included a re-check.
                Box::pin(self.check_access()).await?;
                Box::pin(self.catch_up()).await?;
                if self.team {
                    Box::pin(self.send_held()).await?;
                }
                Ok(())
            }
            Err(broadcast::error::RecvError::Closed) => Err(Stop::Ended),
        }
    }

    async fn forward(&mut self, event: &ChatEvent) -> Result<(), Stop> {
        match event {
            ChatEvent::Message { seq, html } => {
                if !self.in_order(*seq).await? {
                    return Ok(());
                }
                if let Some(html) = html {
                    let frame = if self.team { &html.team } else { &html.viewer };
                    self.out.push_back(Outgoing(frame.clone()));
                }
                self.last = *seq;
            }
            ChatEvent::Deleted { seq, message_seq } => {
                if !self.in_order(*seq).await? {
                    return Ok(());
                }
                self.send("delete", Some(*seq), &view::delete_fragment(*message_seq));
                self.last = *seq;
            }
            ChatEvent::Held { team } => {
                if self.team {
                    self.out.push_back(Outgoing(team.clone()));
                }
            }
            ChatEvent::Recheck { user } => {
                if user.is_none_or(|u| Some(u) == self.user) {
                    Box::pin(self.check_access()).await?;
                }
            }
            ChatEvent::CatchUp => {
                Box::pin(self.catch_up()).await?;
                if self.team {
                    Box::pin(self.send_held()).await?;
                }
            }
        }
        Ok(())
    }

    /// Whether live event `seq` is the next one to deliver. One already
    /// delivered is dropped; one after a gap (this reader missed something)
    /// makes it catch up from the database first, which includes `seq` itself.
    async fn in_order(&mut self, seq: i64) -> Result<bool, Stop> {
        if seq <= self.last {
            return Ok(false);
        }
        if seq > self.last + 1 {
            Box::pin(self.catch_up()).await?;
            return Ok(seq > self.last);
        }
        Ok(true)
    }

    /// Delivers every event after `last` from the database.
    async fn catch_up(&mut self) -> Result<(), Stop> {
        let mut conn = self.state.db.get().await?;
        let events = chat_db::events_after(&mut conn, self.stream.id, self.last).await?;
        drop(conn);
        for event in events {
            match &event {
                Event::Message(m) => {
                    let html = view::render_message(&MessageView::new(m), self.team)
                        .map_err(anyhow::Error::from)?;
                    self.send("chat", Some(event.seq()), &html);
                }
                Event::Deleted { seq, message_seq } => {
                    self.send("delete", Some(*seq), &view::delete_fragment(*message_seq));
                }
                Event::Skip { .. } => {}
            }
            self.last = self.last.max(event.seq());
        }
        Ok(())
    }

    async fn send_held(&mut self) -> Result<(), Stop> {
        let html = bridge::render_held(&self.state, self.stream.id).await?;
        self.send("held", None, &html);
        Ok(())
    }

    /// Asks the access rule again. A reader who may no longer watch gets the
    /// closed panel (which also stops the browser reconnecting) and the stream
    /// ends; one whose team role changed is disconnected to reload as what they are now.
    async fn check_access(&mut self) -> Result<(), Stop> {
        let mut conn = self.state.db.get().await?;
        // The stream is read again with the rule's facts (one statement): its
        // access kind may have changed since the reader subscribed.
        let access = match access::find_stream(&mut conn, self.user, self.stream.id).await? {
            Some((stream, access)) => {
                self.stream = stream;
                access
            }
            None => Access::Denied(access::Denial::Unavailable),
        };
        if access.denial().is_some() {
            // A stream deleted meanwhile: nothing to show, the stream ends.
            let Some(settings) = chat_db::settings(&mut conn, self.stream.id)
                .await
                .optional()?
            else {
                return Err(Stop::Denied);
            };
            drop(conn);
            let mut panel = ChatPanel::closed(&self.stream, &settings, access);
            panel.oob = true;
            let html = askama::Template::render(&PanelFragment { chat: panel })
                .map_err(anyhow::Error::from)?;
            self.send("denied", None, &html);
            return Err(Stop::Denied);
        }
        if access.may_moderate() != self.team {
            return Err(Stop::Denied);
        }
        // Jittered, so that readers re-checked together (a channel hidden, a
        // reconnect) do not come back together.
        let backstop = RECHECK_BACKSTOP.mul_f64(0.5 + rand::random::<f64>() / 2.0);
        let next = tokio::time::Instant::now() + recheck_in(access.until(), backstop);
        self.recheck.as_mut().reset(next);
        Ok(())
    }

    /// Queues an event of this reader's own (live messages come encoded).
    fn send(&mut self, event: &str, id: Option<i64>, html: &str) {
        self.out.push_back(Outgoing(frame(event, id, html)));
    }
}

#[cfg(test)]
mod tests {
    use super::frame;

    #[test]
    fn a_frame_is_one_sse_event_whatever_the_line_endings() {
        let f = frame("chat", Some(42), "<li>\r\n  a\rb\n</li>");
        assert_eq!(
            &f[..],
            b"event: chat\nid: 42\ndata: <li>\ndata:   a\ndata: b\ndata: </li>\n\n"
        );
        assert_eq!(&frame("held", None, "x")[..], b"event: held\ndata: x\n\n");
    }
}
