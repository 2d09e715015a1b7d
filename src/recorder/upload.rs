//! Streams one recording file to the bucket while it is written: a multipart
//! upload whose parts go up as they fill, so a three-hour stream never sits
//! in memory (or on disk) beyond a part or two.
//!
//! The file's first bytes (its header) are only final when the recording ends
//! (duration, seek index), so part 1 goes up as soon as it is full (the file
//! as written so far plays, like a live stream's) and stays in memory, to go
//! up again, patched, at the end: S3 assembles parts by number, and a number
//! uploaded again replaces the first. A recording too short to need parts is
//! stored with one PUT.
//!
//! The upload's id and how much of the recording is safely in the bucket go
//! to the part's row as they change, so that if this instance dies, the one
//! that takes over completes what was uploaded (`recorder::salvage`).
//!
//! It runs as a task of its own, fed through a channel, so that a slow bucket
//! never stalls the media loop that feeds it.

use tokio::sync::{mpsc, oneshot};

use crate::state::AppState;
use crate::storage::StorageError;

/// S3's smallest part (every part but the last must reach it).
const PART_SIZE: usize = 5 * 1024 * 1024;
/// A part is cut after the chunk that takes it past `PART_SIZE`: room for
/// that chunk up front, so the buffer is allocated once, not doubled.
const PART_CAPACITY: usize = PART_SIZE + 1024 * 1024;
/// Chunks waiting for the uploader; past this the media loop waits (a
/// stalled bucket holds back at most this many clusters of a few MiB).
const QUEUE: usize = 16;

/// The kind of file a session writes, known at its first frame: WebM for
/// VP8/VP9 (and sound alone), MP4 for H.264.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Webm,
    Mp4,
}

impl FileType {
    pub fn extension(self) -> &'static str {
        match self {
            FileType::Webm => "webm",
            FileType::Mp4 => "mp4",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            FileType::Webm => "video/webm",
            FileType::Mp4 => "video/mp4",
        }
    }

    /// `key` with this type's extension in place of the one it has.
    fn rename(self, key: &str) -> String {
        let stem = [FileType::Webm, FileType::Mp4]
            .iter()
            .find_map(|t| key.strip_suffix(&format!(".{}", t.extension())))
            .unwrap_or(key);
        format!("{stem}.{}", self.extension())
    }
}

enum Command {
    /// The file's type, before its first bytes: the object is named and
    /// typed after it.
    Begin(FileType),
    /// Bytes, and how far into the recording (ms) they reach.
    Write(Vec<u8>, u64),
    Finish {
        header: Vec<u8>,
        tail: Vec<u8>,
        done: oneshot::Sender<Result<u64, StorageError>>,
    },
}

/// The writing end of an upload. Dropping it without `finish` leaves what
/// was uploaded for `recorder::salvage`.
pub struct Upload {
    commands: mpsc::Sender<Command>,
}

impl Upload {
    /// Starts the uploader task for the part `part` (its row), at `key`.
    pub fn start(state: &AppState, part: i64, key: &str) -> Self {
        let (commands, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(state.clone(), part, key.to_owned(), rx));
        Self { commands }
    }

    /// Says what kind of file follows; before the first `write`.
    pub async fn begin(&self, file_type: FileType) -> Result<(), ()> {
        self.commands
            .send(Command::Begin(file_type))
            .await
            .map_err(drop)
    }

    /// Appends bytes that reach `upto_ms` into the recording. `Err` when the
    /// uploader has failed (its reason comes from `finish`).
    pub async fn write(&self, bytes: Vec<u8>, upto_ms: u64) -> Result<(), ()> {
        self.commands
            .send(Command::Write(bytes, upto_ms))
            .await
            .map_err(drop)
    }

    /// Appends `tail`, replaces the file's first `header.len()` bytes with
    /// `header`, and completes the object; answers its size in bytes.
    pub async fn finish(self, header: Vec<u8>, tail: Vec<u8>) -> Result<u64, StorageError> {
        let (done, answer) = oneshot::channel();
        if self
            .commands
            .send(Command::Finish { header, tail, done })
            .await
            .is_err()
        {
            return Err(StorageError::new("the upload had already failed"));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(StorageError::new("the upload had already failed")))
    }
}

struct Parts {
    /// The recording part's row.
    part: i64,
    key: String,
    file_type: FileType,
    upload_id: Option<String>,
    /// Part 1 while it fills.
    first: Vec<u8>,
    /// Part 1 once uploaded, held until the end to go up again patched
    /// (shared with the request that uploaded it, not copied).
    first_uploaded: Option<bytes::Bytes>,
    current: Vec<u8>,
    /// Uploaded parts: number -> ETag.
    done: std::collections::BTreeMap<i32, String>,
    size: u64,
}

async fn run(state: AppState, part: i64, key: String, mut commands: mpsc::Receiver<Command>) {
    let mut parts = Parts {
        part,
        key,
        file_type: FileType::Webm,
        upload_id: None,
        first: Vec::with_capacity(PART_CAPACITY),
        first_uploaded: None,
        current: Vec::new(),
        done: Default::default(),
        size: 0,
    };
    let mut failed: Option<StorageError> = None;
    while let Some(command) = commands.recv().await {
        match command {
            Command::Begin(file_type) => {
                if failed.is_none()
                    && let Err(e) = parts.begin(&state, file_type).await
                {
                    tracing::warn!(error = %e, "recorder: naming the part's object");
                    failed = Some(e);
                    commands.close();
                }
            }
            Command::Write(bytes, upto_ms) => {
                if failed.is_some() {
                    continue;
                }
                if let Err(e) = parts.write(&state, bytes, upto_ms).await {
                    tracing::warn!(error = %e, "recorder: uploading a part");
                    failed = Some(e);
                    // Refuse further writes: the recording stops with the reason.
                    commands.close();
                }
            }
            Command::Finish { header, tail, done } => {
                let result = match failed.take() {
                    Some(e) => Err(e),
                    None => parts.finish(&state, header, tail).await,
                };
                // On failure the upload stays open: what reached the bucket is
                // completed by `recorder::salvage`, never thrown away.
                let _ = done.send(result);
                return;
            }
        }
    }
    // The writer went away without finishing: its lease was lost, or it
    // failed. What was uploaded stays for `recorder::salvage`.
}

impl Parts {
    /// Names the object after its type (nothing of it is in the bucket yet).
    async fn begin(&mut self, state: &AppState, file_type: FileType) -> Result<(), StorageError> {
        self.file_type = file_type;
        let key = file_type.rename(&self.key);
        if key == self.key || self.upload_id.is_some() || self.size > 0 {
            return Ok(());
        }
        let mut conn = state
            .db
            .get()
            .await
            .map_err(|_| StorageError::new("the database is unavailable"))?;
        crate::db::recordings::set_part_key(&mut conn, self.part, &key)
            .await
            .map_err(|e| match e {
                diesel::result::Error::NotFound => {
                    StorageError::new("the part was closed before its first bytes")
                }
                _ => StorageError::new("the database is unavailable"),
            })?;
        self.key = key;
        Ok(())
    }

    async fn write(
        &mut self,
        state: &AppState,
        bytes: Vec<u8>,
        upto_ms: u64,
    ) -> Result<(), StorageError> {
        self.size += bytes.len() as u64;
        if self.first_uploaded.is_none() {
            self.first.extend_from_slice(&bytes);
            if self.first.len() >= PART_SIZE {
                let first = bytes::Bytes::from(std::mem::take(&mut self.first));
                self.first_uploaded = Some(first.clone());
                self.upload(state, 1, first).await?;
                self.stored(state, upto_ms).await;
            }
            return Ok(());
        }
        if self.current.capacity() == 0 {
            self.current.reserve_exact(PART_CAPACITY);
        }
        self.current.extend_from_slice(&bytes);
        if self.current.len() >= PART_SIZE {
            let part = std::mem::take(&mut self.current);
            self.upload(state, self.next_number(), part.into()).await?;
            self.stored(state, upto_ms).await;
        }
        Ok(())
    }

    fn next_number(&self) -> i32 {
        self.done.keys().next_back().map_or(1, |n| n + 1)
    }

    /// Notes in the part's row how much of the recording is in the bucket.
    async fn stored(&self, state: &AppState, upto_ms: u64) {
        if let Ok(mut conn) = state.db.get().await
            && let Err(e) =
                crate::db::recordings::set_part_stored(&mut conn, self.part, upto_ms as i64).await
        {
            tracing::warn!(error = %e, "recorder: noting an uploaded part");
        }
    }

    async fn upload(
        &mut self,
        state: &AppState,
        number: i32,
        part: bytes::Bytes,
    ) -> Result<(), StorageError> {
        let upload_id = match &self.upload_id {
            Some(id) => id.clone(),
            None => {
                let id = state
                    .storage
                    .start_upload(&self.key, self.file_type.content_type())
                    .await?;
                let mut conn = state
                    .db
                    .get()
                    .await
                    .map_err(|_| StorageError::new("the database is unavailable"))?;
                crate::db::recordings::set_part_upload(&mut conn, self.part, &id)
                    .await
                    .map_err(|_| StorageError::new("the database is unavailable"))?;
                self.upload_id = Some(id.clone());
                id
            }
        };
        let etag = state
            .storage
            .upload_part(&self.key, &upload_id, number, part)
            .await?;
        self.done.insert(number, etag);
        Ok(())
    }

    async fn finish(
        &mut self,
        state: &AppState,
        header: Vec<u8>,
        tail: Vec<u8>,
    ) -> Result<u64, StorageError> {
        self.size += tail.len() as u64;
        // Part 1 back in hand (the request that uploaded it is long done, so
        // this is no copy unless something still shares it).
        let mut first = match self.first_uploaded.take() {
            Some(uploaded) => uploaded
                .try_into_mut()
                .map(Vec::from)
                .unwrap_or_else(|shared| shared.to_vec()),
            None => std::mem::take(&mut self.first),
        };
        if header.len() > first.len() {
            return Err(StorageError::new(
                "the file's header is longer than its first part",
            ));
        }
        first[..header.len()].copy_from_slice(&header);
        self.current.extend_from_slice(&tail);
        let Some(upload_id) = self.upload_id.clone() else {
            // Short: one object, one request.
            let mut whole = first;
            whole.append(&mut self.current);
            state
                .storage
                .put(&self.key, whole, self.file_type.content_type())
                .await?;
            return Ok(self.size);
        };
        if !self.current.is_empty() {
            let last = std::mem::take(&mut self.current);
            self.upload(state, self.next_number(), last.into()).await?;
        }
        // Part 1 again, now with its final header.
        self.upload(state, 1, first.into()).await?;
        let all: Vec<(i32, String)> = self
            .done
            .iter()
            .map(|(n, etag)| (*n, etag.clone()))
            .collect();
        state
            .storage
            .complete_upload(&self.key, &upload_id, &all)
            .await?;
        self.upload_id = None;
        Ok(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::FileType;

    #[test]
    fn a_part_is_named_after_its_type() {
        assert_eq!(FileType::Mp4.rename("r/1/a.webm"), "r/1/a.mp4");
        assert_eq!(FileType::Mp4.rename("r/1/a-part2.webm"), "r/1/a-part2.mp4");
        assert_eq!(FileType::Webm.rename("r/1/a.webm"), "r/1/a.webm");
        assert_eq!(FileType::Webm.rename("r/1/a.mp4"), "r/1/a.webm");
        assert_eq!(FileType::Mp4.rename("r/1/a"), "r/1/a.mp4");
    }
}
