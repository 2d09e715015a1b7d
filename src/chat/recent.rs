//! The chat panel's last messages, as this instance last read them: a
//! popular stream's watch pages, thousands a second, read them from memory
//! instead of from the database on every view.
//!
//! An entry is the answer to `db::chat::recent(stream, cursor)`, kept under
//! the cursor it was read at. Every chat event (a message becoming visible,
//! a visible one deleted) takes the stream's next cursor, so an entry is
//! exact for as long as the page's cursor is the same: a page asking at a
//! newer cursor reads the database again, and this holds across instances
//! without telling each other anything. What an event does not change — an
//! author's display name or team badge — is at most `FRESH` old. Nothing
//! here decides who may read: the panel asks the access rule first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::db::chat as chat_db;
use crate::db::{DbPool, DbResult, StreamId};

use super::view::{MessageView, PANEL_MESSAGES};

/// The last `PANEL_MESSAGES` messages of each stream asked for lately.
#[derive(Default)]
pub struct RecentMessages(Mutex<HashMap<StreamId, Entry>>);

struct Entry {
    cursor: i64,
    read_at: Instant,
    messages: Arc<[MessageView]>,
}

impl RecentMessages {
    /// How long an entry serves its cursor: the staleness of a renamed
    /// author or a changed badge in a quiet chat.
    pub const FRESH: Duration = Duration::from_secs(5);
    /// At most this many streams are kept (100 messages each, at most
    /// `chat_max_length` characters a message: tens of MiB at the very worst).
    pub const STREAMS: usize = 128;

    /// The newest `PANEL_MESSAGES` visible messages of `stream` up to event
    /// `cursor`, oldest first.
    pub async fn get(
        &self,
        pool: &DbPool,
        stream: StreamId,
        cursor: i64,
    ) -> DbResult<Arc<[MessageView]>> {
        if let Some(e) = self.lock().get(&stream)
            && e.cursor == cursor
            && e.read_at.elapsed() < Self::FRESH
        {
            return Ok(e.messages.clone());
        }
        let read_at = Instant::now();
        let messages: Arc<[MessageView]> =
            chat_db::recent(&mut *pool.get().await?, stream, cursor, PANEL_MESSAGES)
                .await?
                .iter()
                .map(MessageView::new)
                .collect();
        let mut entries = self.lock();
        if entries.len() >= Self::STREAMS {
            entries.retain(|_, e| e.read_at.elapsed() < Self::FRESH);
        }
        // Keep the newest cursor a stream was read at (a page that read an
        // older one may finish last); when still full, serve without keeping.
        let newer = entries.get(&stream).is_none_or(|e| e.cursor <= cursor);
        if newer && (entries.len() < Self::STREAMS || entries.contains_key(&stream)) {
            entries.insert(
                stream,
                Entry {
                    cursor,
                    read_at,
                    messages: messages.clone(),
                },
            );
        }
        Ok(messages)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<StreamId, Entry>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
