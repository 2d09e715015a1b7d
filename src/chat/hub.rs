//! The hub: this instance's SSE subscribers, by stream. A stream gets a
//! `tokio::sync::broadcast` channel with its first subscriber and loses it
//! with its last, so the bridge can skip streams nobody here is watching.
//! Events carry SSE frames encoded once (per audience) by the bridge; the hub
//! never touches the database and never renders.
//!
//! The hub also counts each account's open event streams (`open_stream`), per
//! stream and in all (guests' by their address, `Holder::Guest`), and refuses one past the caps
//! (`CHAT_STREAMS_PER_USER_AND_STREAM`, `CHAT_STREAMS_PER_USER`): the
//! newcomer gets a 429 that says why, the open ones are left alone (closing
//! the oldest instead would make a seventh tab and the first take turns
//! forever). The count is per instance: a client spread over N instances
//! may hold N times the caps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{Notify, broadcast};

use crate::db::{ChannelId, StreamId, UserId};

/// How many events a subscriber may fall behind before it lags (and catches
/// up from the database instead).
pub const CAPACITY: usize = 256;

/// A message as both audiences see it, each as a whole SSE frame
/// (`super::frame`): encoded once here, the same bytes go to every
/// subscriber of that audience.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub viewer: Bytes,
    /// With the delete button (and, for a released held message, the removal
    /// of its entry in the held list).
    pub team: Bytes,
}

#[derive(Debug, Clone)]
pub enum ChatEvent {
    /// Event `seq`: a message became visible. `html` None: it was deleted
    /// before it could be loaded (the event still moves the cursor on).
    Message { seq: i64, html: Option<Rendered> },
    /// Event `seq`: the message shown as `message_seq` was deleted.
    Deleted { seq: i64, message_seq: i64 },
    /// The team's held list changed: its new items, as an SSE frame.
    Held { team: Bytes },
    /// Who may chat changed for `user` (None: for everyone the event reaches):
    /// those subscribers ask the access rule again.
    Recheck { user: Option<UserId> },
    /// Events may have been missed (the LISTEN connection dropped, or a
    /// message could not be loaded): re-read the database.
    CatchUp,
}

struct Topic {
    tx: broadcast::Sender<Arc<ChatEvent>>,
    channel: ChannelId,
}

/// Open event streams of one account: by stream, and their total.
#[derive(Default)]
struct OpenStreams {
    by_stream: HashMap<StreamId, usize>,
    total: usize,
}

/// Caps on one account's open event streams on this instance.
#[derive(Debug, Clone, Copy)]
pub struct StreamCaps {
    pub per_stream: usize,
    pub per_user: usize,
}

/// Why an event stream was refused: the cap it would pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapReached {
    PerStream(usize),
    PerUser(usize),
}

impl CapReached {
    /// What the refused client is told.
    pub fn reason(&self) -> String {
        match self {
            CapReached::PerStream(n) => format!(
                "You already have {n} chat windows open on this stream, the most one account (or, for guests, one network) may. \
                 Close one, then reload this page."
            ),
            CapReached::PerUser(n) => format!(
                "You already have {n} chat windows open, the most one account (or, for guests, one network) may. \
                 Close some, then reload this page."
            ),
        }
    }
}

/// Whose open event streams are counted: an account's, or the guests' of
/// one address (guests have no account to count by).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Holder {
    Account(UserId),
    Guest(String),
}

#[derive(Clone, Default)]
pub struct Hub {
    topics: Arc<Mutex<HashMap<StreamId, Topic>>>,
    open: Arc<Mutex<HashMap<Holder, OpenStreams>>>,
    /// Wakes the held-message releaser (a new held message, here or elsewhere).
    pub(crate) release: Arc<Notify>,
    /// Counts the events sent to more than one stream (re-checks, catching
    /// up): a reader that subscribes after asking the access rule compares it
    /// to learn whether a re-check went out in between (`chat::events`).
    broadcasts: Arc<std::sync::atomic::AtomicU64>,
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    fn topics(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, Topic>> {
        // A panic while holding the lock leaves the map consistent (every
        // operation is a single insert/remove/read), so poisoning is ignored.
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribes to `stream`'s events from now on.
    /// How many events went to more than one stream so far (`broadcasts`).
    pub fn broadcasts(&self) -> u64 {
        self.broadcasts.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn subscribe(&self, stream: StreamId, channel: ChannelId) -> Subscription {
        let mut topics = self.topics();
        let topic = topics.entry(stream).or_insert_with(|| Topic {
            tx: broadcast::channel(CAPACITY).0,
            channel,
        });
        let rx = topic.tx.subscribe();
        metrics::gauge!("chat_subscribers").increment(1.0);
        Subscription {
            hub: self.clone(),
            stream,
            rx: Some(rx),
        }
    }

    pub fn has_subscribers(&self, stream: StreamId) -> bool {
        self.topics().contains_key(&stream)
    }

    /// Sends `event` to `stream`'s subscribers here; false when there are none.
    pub fn publish(&self, stream: StreamId, event: ChatEvent) -> bool {
        let topics = self.topics();
        match topics.get(&stream) {
            Some(topic) => topic.tx.send(Arc::new(event)).is_ok(),
            None => false,
        }
    }

    /// Sends `event` to the subscribers of every stream of `channel` here.
    pub fn publish_to_channel(&self, channel: ChannelId, event: ChatEvent) {
        self.broadcasts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let event = Arc::new(event);
        for topic in self.topics().values().filter(|t| t.channel == channel) {
            let _ = topic.tx.send(event.clone());
        }
    }

    pub fn publish_all(&self, event: ChatEvent) {
        self.broadcasts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let event = Arc::new(event);
        for topic in self.topics().values() {
            let _ = topic.tx.send(event.clone());
        }
    }

    /// Counts one more open event stream of `user` to `stream` until the
    /// answer is dropped, unless that would pass one of `caps`.
    pub fn open_stream(
        &self,
        user: Holder,
        stream: StreamId,
        caps: StreamCaps,
    ) -> Result<OpenStream, CapReached> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let mine = open.entry(user.clone()).or_default();
        let here = mine.by_stream.get(&stream).copied().unwrap_or(0);
        if here >= caps.per_stream {
            return Err(CapReached::PerStream(caps.per_stream));
        }
        if mine.total >= caps.per_user {
            return Err(CapReached::PerUser(caps.per_user));
        }
        *mine.by_stream.entry(stream).or_default() += 1;
        mine.total += 1;
        Ok(OpenStream {
            hub: self.clone(),
            user,
            stream,
        })
    }

    /// Streams with subscribers here (for tests and metrics).
    pub fn streams(&self) -> Vec<StreamId> {
        self.topics().keys().copied().collect()
    }
}

/// One SSE client's place in a stream's broadcast; leaving drops the stream's
/// channel when it was the last.
pub struct Subscription {
    hub: Hub,
    stream: StreamId,
    rx: Option<broadcast::Receiver<Arc<ChatEvent>>>,
}

impl Subscription {
    pub async fn recv(&mut self) -> Result<Arc<ChatEvent>, broadcast::error::RecvError> {
        match self.rx.as_mut() {
            Some(rx) => rx.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut topics = self.hub.topics();
        // Dropped under the lock, so a concurrent subscribe either sees the
        // topic with its receiver or creates a new one.
        drop(self.rx.take());
        if topics
            .get(&self.stream)
            .is_some_and(|t| t.tx.receiver_count() == 0)
        {
            topics.remove(&self.stream);
        }
        metrics::gauge!("chat_subscribers").decrement(1.0);
    }
}

/// One counted open event stream; dropping it (the client went away) uncounts it.
pub struct OpenStream {
    hub: Hub,
    user: Holder,
    stream: StreamId,
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        let mut open = self.hub.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mine) = open.get_mut(&self.user) {
            if let Some(n) = mine.by_stream.get_mut(&self.stream) {
                *n -= 1;
                if *n == 0 {
                    mine.by_stream.remove(&self.stream);
                }
            }
            mine.total -= 1;
            if mine.total == 0 {
                open.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_streams_are_capped_per_stream_and_per_user_and_freed_on_drop() {
        let hub = Hub::new();
        let caps = StreamCaps {
            per_stream: 2,
            per_user: 3,
        };
        let ann = || Holder::Account(UserId(1));
        let bob = Holder::Account(UserId(2));
        let a1 = hub.open_stream(ann(), StreamId(1), caps).unwrap();
        let _a2 = hub.open_stream(ann(), StreamId(1), caps).unwrap();
        assert_eq!(
            hub.open_stream(ann(), StreamId(1), caps).err(),
            Some(CapReached::PerStream(2))
        );
        let _a3 = hub.open_stream(ann(), StreamId(2), caps).unwrap();
        assert_eq!(
            hub.open_stream(ann(), StreamId(3), caps).err(),
            Some(CapReached::PerUser(3))
        );
        // Someone else is not affected, nor are guests.
        let _b1 = hub.open_stream(bob, StreamId(1), caps).unwrap();
        let _g1 = hub
            .open_stream(Holder::Guest("10.0.0.1".into()), StreamId(1), caps)
            .unwrap();
        drop(a1);
        let _a4 = hub.open_stream(ann(), StreamId(1), caps).unwrap();
    }

    #[tokio::test]
    async fn a_stream_has_a_channel_while_it_has_subscribers() {
        let hub = Hub::new();
        let (s, c) = (StreamId(1), ChannelId(1));
        assert!(!hub.publish(s, ChatEvent::CatchUp));
        let mut a = hub.subscribe(s, c);
        let b = hub.subscribe(s, c);
        assert!(hub.publish(s, ChatEvent::CatchUp));
        assert!(matches!(*a.recv().await.unwrap(), ChatEvent::CatchUp));
        drop(b);
        assert!(hub.has_subscribers(s));
        drop(a);
        assert!(!hub.has_subscribers(s));
    }

    #[tokio::test]
    async fn a_slow_subscriber_lags_instead_of_blocking_the_others() {
        let hub = Hub::new();
        let (s, c) = (StreamId(1), ChannelId(1));
        let mut slow = hub.subscribe(s, c);
        for _ in 0..CAPACITY + 1 {
            hub.publish(s, ChatEvent::CatchUp);
        }
        assert!(matches!(
            slow.recv().await,
            Err(broadcast::error::RecvError::Lagged(1))
        ));
    }
}
