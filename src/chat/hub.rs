//! The hub: this instance's SSE subscribers, by stream. A stream gets a
//! `tokio::sync::broadcast` channel with its first subscriber and loses it
//! with its last, so the bridge can skip streams nobody here is watching.
//! Events carry HTML rendered once (per audience) by the bridge; the hub never
//! touches the database and never renders.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, broadcast};

use crate::db::{ChannelId, StreamId, UserId};

/// How many events a subscriber may fall behind before it lags (and catches
/// up from the database instead).
pub const CAPACITY: usize = 256;

/// A message as both audiences see it.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub viewer: Arc<str>,
    /// With the delete button (and, for a released held message, the removal
    /// of its entry in the held list).
    pub team: Arc<str>,
}

#[derive(Debug, Clone)]
pub enum ChatEvent {
    /// Event `seq`: a message became visible. `html` None: it was deleted
    /// before it could be loaded (the event still moves the cursor on).
    Message { seq: i64, html: Option<Rendered> },
    /// Event `seq`: the message shown as `message_seq` was deleted.
    Deleted { seq: i64, message_seq: i64 },
    /// The team's held list changed: its new items.
    Held { team: Arc<str> },
    /// Who may chat changed for `user`: their subscribers ask the access rule again.
    Recheck { user: UserId },
    /// Events may have been missed (the LISTEN connection dropped): re-read the database.
    CatchUp,
}

struct Topic {
    tx: broadcast::Sender<Arc<ChatEvent>>,
    channel: ChannelId,
}

#[derive(Clone, Default)]
pub struct Hub {
    topics: Arc<Mutex<HashMap<StreamId, Topic>>>,
    /// Wakes the held-message releaser (a new held message, here or elsewhere).
    pub(crate) release: Arc<Notify>,
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
        let event = Arc::new(event);
        for topic in self.topics().values().filter(|t| t.channel == channel) {
            let _ = topic.tx.send(event.clone());
        }
    }

    pub fn publish_all(&self, event: ChatEvent) {
        let event = Arc::new(event);
        for topic in self.topics().values() {
            let _ = topic.tx.send(event.clone());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
