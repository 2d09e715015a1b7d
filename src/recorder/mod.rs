//! The built-in recorder (`RECORDER=builtin`, the default): the app itself
//! joins a live room as a hidden, subscribe-only participant and writes the
//! host's tracks, without re-encoding, into a file that streams to the
//! bucket while it records: WebM for VP8/VP9 (and sound alone), fragmented
//! MP4 for H.264. The part's object is named `.webm` and renamed `.mp4` by
//! the upload when the first frame says so. Nothing else has to run beside LiveKit.
//!
//! One app instance records a stream at a time: it holds a lease on the
//! recording's row and renews it every few seconds (`session::CHECK_EVERY`).
//! Stop is a status (`ending`) any instance can set; the holder sees it at
//! its next renewal, or at once when it is the instance that was asked.
//! When an instance dies its lease lapses, and the supervisor of another
//! (or of the same one, restarted) takes the recording over.
//!
//! Who may record was decided before (`web/recordings.rs` asks `access`);
//! this module never checks it, and never starts a recording by itself
//! except one it takes over.
//!
//! - `session`: one recording session (signalling, WebRTC, picking tracks).
//! - `webm`, `mp4`: the muxers (frames in, WebM clusters or MP4 fragments out).
//! - `upload`: the multipart upload their output streams into.
//!
//! A recording is one file per recorder session (`recording_parts`): one,
//! or more when an instance took over from one that died; the new holder
//! first completes what the dead one had uploaded (`salvage`), and replays
//! play the parts in order.

#[cfg(test)]
mod ffmpeg_tests;
mod frames;
pub mod mp4;
mod session;
mod upload;
pub mod webm;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tracing::instrument;

use crate::db::DbError;
use crate::db::recordings::{self, NewRecording, Recording, Status};
use crate::db::streams::{self, Stream};
use crate::recording::RecordingError;
use crate::state::AppState;

/// How long a lease holds without renewal: another instance takes a
/// recording over at most this long (plus `SUPERVISE_EVERY`) after its
/// recorder died.
pub const LEASE: Duration = Duration::from_secs(10);
/// How often each instance looks for recordings nobody holds.
pub const SUPERVISE_EVERY: Duration = Duration::from_secs(2);

/// This instance's recorders.
pub struct Recorders {
    /// Who holds a lease: one id per process.
    instance: uuid::Uuid,
    /// Recording id -> how to stop it at once.
    running: Mutex<HashMap<i64, Arc<Notify>>>,
    /// The instance is shutting down: recorders finish their file and let
    /// go of their recording instead of ending it.
    handing_over: std::sync::atomic::AtomicBool,
}

impl Default for Recorders {
    fn default() -> Self {
        Self {
            instance: uuid::Uuid::new_v4(),
            running: Mutex::new(HashMap::new()),
            handing_over: Default::default(),
        }
    }
}

impl Recorders {
    /// On shutdown: every recorder of this instance finishes its file (so
    /// nothing recorded is lost) and lets go of its recording, which another
    /// instance (or this one, restarted) continues in a new part. Waits for
    /// them at most `within`.
    pub async fn hand_over(&self, within: Duration) {
        self.handing_over
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for stop in self.running.lock().expect("recorders").values() {
            stop.notify_one();
        }
        let deadline = tokio::time::Instant::now() + within;
        while self.active() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if self.active() > 0 {
            tracing::warn!(
                recordings = self.active(),
                "shutdown: recordings still finishing; another instance salvages what was uploaded"
            );
        }
    }

    fn handing_over(&self) -> bool {
        self.handing_over.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Wakes this instance's recorder of `recording`, if it runs here, so
    /// that it sees the stop at once instead of at its next renewal.
    pub fn wake(&self, recording: i64) {
        if let Some(stop) = self.running.lock().expect("recorders").get(&recording) {
            stop.notify_one();
        }
    }

    /// How many recordings this instance is writing now.
    pub fn active(&self) -> usize {
        self.running.lock().expect("recorders").len()
    }

    fn register(&self, recording: i64) -> Option<Arc<Notify>> {
        let mut running = self.running.lock().expect("recorders");
        if running.contains_key(&recording) {
            return None;
        }
        let stop = Arc::new(Notify::new());
        running.insert(recording, stop.clone());
        Some(stop)
    }

    fn unregister(&self, recording: i64) {
        self.running.lock().expect("recorders").remove(&recording);
    }
}

/// Starts recording a live stream on this instance.
#[instrument(skip_all, fields(stream = %stream.id))]
pub async fn start(state: &AppState, stream: &Stream) -> Result<Recording, RecordingError> {
    let key = crate::recording::object_key(stream, "webm");
    let handle = format!("builtin-{}", uuid::Uuid::new_v4().simple());
    let mut conn = state.db.get().await?;
    let new = NewRecording {
        stream_id: stream.id,
        egress_id: &handle,
        object_key: Some(&key),
        backend: recordings::Backend::Builtin,
    };
    let Some(row) = recordings::insert_starting(&mut conn, &new).await? else {
        return Err(RecordingError::AlreadyRecording);
    };
    drop(conn);
    metrics::counter!("recordings_started_total").increment(1);
    take(state, row.id).await;
    Ok(row)
}

/// Asks the recorder of `recording` to finish (the caller marked it ending).
pub fn stop(state: &AppState, recording: i64) {
    state.recorders.wake(recording);
}

/// Looks for built-in recordings nobody holds (their instance died, or this
/// one restarted) and takes them over, every `SUPERVISE_EVERY`.
pub async fn supervise(state: AppState) {
    let mut tick = tokio::time::interval(SUPERVISE_EVERY);
    loop {
        tick.tick().await;
        let unheld = match state.db.get().await {
            Ok(mut conn) => recordings::unheld_builtin(&mut conn).await,
            Err(e) => {
                tracing::debug!(error = %e, "recorder supervisor: no database connection");
                continue;
            }
        };
        match unheld {
            Ok(ids) => {
                for id in ids {
                    take(&state, id).await;
                }
            }
            Err(e) => tracing::warn!(error = %e, "recorder supervisor: listing recordings"),
        }
    }
}

/// Takes the lease of `recording` and records it in a task of its own;
/// does nothing when another instance holds it.
async fn take(state: &AppState, recording: i64) {
    let Some(stop) = state.recorders.register(recording) else {
        return;
    };
    let claimed = match state.db.get().await {
        Ok(mut conn) => {
            recordings::claim_lease(&mut conn, recording, state.recorders.instance, LEASE)
                .await
                .map_err(|e| e.to_string())
        }
        Err(e) => Err(e.to_string()),
    };
    match claimed {
        Ok(Some(_)) => {
            let state = state.clone();
            tokio::spawn(async move {
                run(&state, recording, stop).await;
                state.recorders.unregister(recording);
            });
        }
        Ok(None) => state.recorders.unregister(recording),
        Err(e) => {
            state.recorders.unregister(recording);
            tracing::warn!(recording, error = %e, "recorder: taking a recording");
        }
    }
}

/// Reports the session's progress into the recording's row, and holds the
/// lease: when it cannot renew it for longer than is safe (the database is
/// away, or another instance took over), the session must stop writing.
struct RowProgress {
    state: AppState,
    recording: i64,
    renewed: std::time::Instant,
}

impl session::Progress for RowProgress {
    async fn started(&mut self) {
        match self.state.db.get().await {
            Ok(mut conn) => {
                if let Err(e) = recordings::mark_active(&mut conn, self.recording).await {
                    tracing::warn!(error = %e, "recorder: marking a recording active");
                }
            }
            Err(e) => tracing::warn!(error = %e, "recorder: marking a recording active"),
        }
        tracing::info!(recording = self.recording, "recording started");
    }

    async fn keep_going(&mut self) -> Result<bool, ()> {
        match renew(&self.state, self.recording).await {
            Renewed::Held(status) => {
                self.renewed = std::time::Instant::now();
                Ok(matches!(status, Status::Starting | Status::Active))
            }
            Renewed::Lost => Err(()),
            // The database is away for a moment: go on while the lease
            // surely holds, stop before another instance may take over.
            Renewed::Unknown if self.renewed.elapsed() + session::CHECK_EVERY < LEASE => Ok(true),
            Renewed::Unknown => Err(()),
        }
    }
}

enum Renewed {
    /// Still ours; the recording's status.
    Held(Status),
    /// Another instance holds it, or it is finished.
    Lost,
    /// The database did not answer.
    Unknown,
}

async fn renew(state: &AppState, recording: i64) -> Renewed {
    let Ok(mut conn) = state.db.get().await else {
        return Renewed::Unknown;
    };
    match recordings::renew_lease(&mut conn, recording, state.recorders.instance, LEASE).await {
        Ok(Some(status)) => Renewed::Held(status),
        Ok(None) => Renewed::Lost,
        Err(e) => {
            tracing::warn!(error = %e, "recorder: renewing the lease");
            Renewed::Unknown
        }
    }
}

/// Whether the stream is still live (a recording outlives no stream).
async fn still_live(state: &AppState, stream: crate::db::StreamId) -> bool {
    match state.db.get().await {
        Ok(mut conn) => {
            matches!(streams::find(&mut conn, stream).await, Ok(Some(s)) if s.is_live())
        }
        Err(_) => true,
    }
}

/// Sessions after a dropped connection start again this long after the last.
const RETRY_AFTER: Duration = Duration::from_secs(2);
/// Sessions that fail before recording anything are tried this often.
const ATTEMPTS: u32 = 5;

/// One recording, from its lease to its final row: one session per part,
/// a new part when the connection drops while the stream goes on.
#[instrument(skip_all, fields(recording))]
async fn run(state: &AppState, recording: i64, stop: Arc<Notify>) {
    let loaded = async {
        let mut conn = state.db.get().await?;
        let Some(row) = recordings::find(&mut conn, recording).await? else {
            return Ok(None);
        };
        let stream = streams::find(&mut conn, row.stream_id).await?;
        Ok::<_, DbError>(stream.map(|s| (row, s)))
    }
    .await;
    let (row, stream) = match loaded {
        Ok(Some(found)) => found,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, "recorder: loading a recording");
            return;
        }
    };
    // What a recorder that died had uploaded is kept (the lease is ours now).
    salvage(state, recording).await;
    if row.status == Status::Ending {
        // Its recorder died after stop was asked: what it had uploaded is the recording.
        settle_from_parts(
            state,
            recording,
            "The recorder stopped before the recording was saved.",
        )
        .await;
        return;
    }
    let base = row
        .object_key
        .clone()
        .unwrap_or_else(|| crate::recording::object_key(&stream, "webm"));
    let mut failures = 0;
    let failure: Option<String> = loop {
        if !still_live(state, stream.id).await {
            break None;
        }
        let part = match state.db.get().await {
            Ok(mut conn) => recordings::new_part(&mut conn, recording, |n| part_key(&base, n))
                .await
                .map_err(DbError::from),
            Err(e) => Err(DbError::from(e)),
        };
        let part = match part {
            Ok(part) => part,
            Err(e) => {
                // The lease lapses and the supervisor tries again.
                tracing::warn!(error = %e, "recorder: starting a part");
                return;
            }
        };
        let token = match crate::livekit::tokens::recorder(
            &state.config.livekit,
            stream.id,
            &stream.room_name,
        ) {
            Ok(token) => token,
            Err(e) => {
                tracing::warn!(error = %e, "recorder: minting its token");
                break Some("The recorder could not be admitted to the room.".into());
            }
        };
        let join = session::Join {
            url: state
                .config
                .livekit
                .url
                .as_str()
                .trim_end_matches('/')
                .to_owned(),
            token,
            upload: upload::Upload::start(state, part.id, &part.object_key),
            stop: stop.clone(),
        };
        let mut progress = RowProgress {
            state: state.clone(),
            recording,
            renewed: std::time::Instant::now(),
        };
        let outcome = session::record(join, &mut progress).await;
        // Nothing final is written unless the recording is still ours.
        let status = match renew(state, recording).await {
            Renewed::Held(status) => status,
            Renewed::Lost | Renewed::Unknown => {
                tracing::warn!("recorder: another instance holds this recording now");
                return;
            }
        };
        let stopped = match outcome {
            Ok(session::Ended::Complete {
                duration_ms,
                size_bytes,
                stopped,
            }) => {
                finish_part(
                    state,
                    part.id,
                    Some((Some(duration_ms as i64), size_bytes as i64)),
                )
                .await;
                failures = 0;
                stopped
            }
            Ok(session::Ended::LeaseLost) => return,
            Err(e) => {
                // What this session uploaded before it failed is kept: the
                // part's row as it is now (its upload id, and its key, renamed
                // once the file's type was known).
                let now = match state.db.get().await {
                    Ok(mut conn) => recordings::parts(&mut conn, recording)
                        .await
                        .ok()
                        .and_then(|parts| parts.into_iter().find(|p| p.id == part.id)),
                    Err(_) => None,
                };
                salvage_part(state, now.as_ref().unwrap_or(&part)).await;
                failures += 1;
                tracing::warn!(error = %e, attempt = failures, "recording session failed");
                let hopeless = matches!(
                    e,
                    session::SessionError::Codec(_) | session::SessionError::NothingReceived
                );
                if hopeless || failures >= ATTEMPTS {
                    break Some(e.to_string());
                }
                false
            }
        };
        if state.recorders.handing_over() {
            // Shutting down mid-stream: the recording goes on elsewhere.
            if let Ok(mut conn) = state.db.get().await
                && let Err(e) =
                    recordings::release_lease(&mut conn, recording, state.recorders.instance).await
            {
                tracing::warn!(error = %e, "recorder: letting go of a recording");
            }
            tracing::info!(recording, "recorder: handed over at shutdown");
            return;
        }
        if stopped || status == Status::Ending {
            break None;
        }
        // The connection dropped while the stream goes on: a new part.
        tokio::time::sleep(RETRY_AFTER).await;
    };
    settle_from_parts(
        state,
        recording,
        failure.as_deref().unwrap_or("Nothing was recorded."),
    )
    .await;
}

/// Saves a part's end, trying again while the database is away (a part
/// left `writing` would be salvaged as if its recorder had died).
async fn finish_part(state: &AppState, part: i64, written: Option<(Option<i64>, i64)>) {
    for attempt in 0..5 {
        if let Ok(mut conn) = state.db.get().await {
            match recordings::finish_part(&mut conn, part, written).await {
                Ok(()) => return,
                Err(e) => tracing::warn!(error = %e, attempt, "recorder: saving a part"),
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Part `n`'s object: the recording's key for the first, a sibling after.
fn part_key(base: &str, n: i32) -> String {
    if n == 1 {
        return base.to_owned();
    }
    match base.strip_suffix(".webm") {
        // Renamed `.mp4` by its upload if it turns out to be one.
        Some(stem) => format!("{stem}-part{n}.webm"),
        None => format!("{base}-part{n}"),
    }
}

/// Completes the parts a recorder left `writing` (it died, or failed) from
/// what reached the bucket: the uploaded pieces become the part's object (it
/// plays like a live stream's recording, without a seek index); a part of
/// which nothing was uploaded is lost.
async fn salvage(state: &AppState, recording: i64) {
    let parts = match state.db.get().await {
        Ok(mut conn) => recordings::parts(&mut conn, recording)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    match parts {
        Ok(parts) => {
            for part in parts
                .iter()
                .filter(|p| p.status == recordings::PartStatus::Writing)
            {
                salvage_part(state, part).await;
            }
        }
        Err(e) => tracing::warn!(error = %e, "recorder: listing parts to salvage"),
    }
}

/// Salvages one part (see `salvage`). A part whose upload is gone but
/// whose object is there (it was completed) is complete.
async fn salvage_part(state: &AppState, part: &recordings::Part) {
    let written = match &part.upload_id {
        Some(upload_id) => match state
            .storage
            .uploaded_parts(&part.object_key, upload_id)
            .await
        {
            Ok(pieces) if !pieces.is_empty() => {
                let size: i64 = pieces.iter().map(|(_, _, size)| size).sum();
                let etags: Vec<(i32, String)> =
                    pieces.into_iter().map(|(n, etag, _)| (n, etag)).collect();
                match state
                    .storage
                    .complete_upload(&part.object_key, upload_id, &etags)
                    .await
                {
                    Ok(()) => Some((part.duration_ms, size)),
                    Err(e) => {
                        tracing::warn!(error = %e, "recorder: completing a salvaged part");
                        existing(state, part).await
                    }
                }
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(error = %e, "recorder: listing a salvaged part's pieces");
                existing(state, part).await
            }
        },
        None => existing(state, part).await,
    };
    finish_part(state, part.id, written).await;
    tracing::info!(
        part = part.part_no,
        kept = written.is_some(),
        "recorder: salvaged a part"
    );
}

/// The part's object, when it is in the bucket already.
async fn existing(state: &AppState, part: &recordings::Part) -> Option<(Option<i64>, i64)> {
    match state.storage.size(&part.object_key).await {
        Ok(Some(size)) if size > 0 => Some((part.duration_ms, size)),
        _ => None,
    }
}

/// Ends the recording from its complete parts: complete with their total
/// duration and size (the first part's key is the recording's), or failed
/// with `reason` when none has anything.
async fn settle_from_parts(state: &AppState, recording: i64, reason: &str) {
    let parts = match state.db.get().await {
        Ok(mut conn) => recordings::parts(&mut conn, recording)
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let complete: Vec<_> = match parts {
        Ok(parts) => parts
            .into_iter()
            .filter(|p| p.status == recordings::PartStatus::Complete)
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "recorder: listing parts");
            return;
        }
    };
    let Some(first) = complete.first() else {
        fail(state, recording, reason).await;
        return;
    };
    let report = recordings::EgressReport {
        status: recordings::Status::Complete,
        object_key: Some(&first.object_key),
        duration_ms: Some(complete.iter().filter_map(|p| p.duration_ms).sum()),
        size_bytes: Some(complete.iter().filter_map(|p| p.size_bytes).sum()),
        error: None,
        started_at: None,
        ended_at: Some(chrono::Utc::now()),
    };
    if let Err(e) = crate::recording::settle(state, recording, &report).await {
        tracing::warn!(error = %e, "recorder: saving a finished recording");
    }
}

async fn fail(state: &AppState, recording: i64, reason: &str) {
    let report = recordings::EgressReport {
        status: recordings::Status::Failed,
        object_key: None,
        duration_ms: None,
        size_bytes: None,
        error: Some(reason),
        started_at: None,
        ended_at: Some(chrono::Utc::now()),
    };
    if let Err(e) = crate::recording::settle(state, recording, &report).await {
        tracing::warn!(error = %e, "recorder: saving a failed recording");
    }
}
