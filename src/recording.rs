//! Recording a stream, by whichever recorder `RECORDER` chose: the built-in
//! one (`src/recorder/`, WebM or MP4 written by the app itself, the default) or
//! LiveKit's Egress service (RoomComposite to the S3 bucket as MP4, the rows
//! kept in step with egress webhooks). The row is inserted before recording
//! starts, so racing or repeated starts start one recording (the partial
//! unique index answers the others); stopping twice is harmless.
//! Who may start, stop or play is decided by the callers through `access.rs`;
//! which files a replay plays is decided here (`playable`).
//! A recording that completes queues the channel's `recording.ready` webhooks
//! in the same transaction.

use livekit_api::services::egress::{EgressOutput, RoomCompositeOptions};
use livekit_protocol as proto;
use secrecy::ExposeSecret;
use tracing::instrument;

use crate::db::DbError;
use crate::db::recordings::{self, EgressReport, NewRecording, Recording, Status};
use crate::db::streams::Stream;
use crate::state::AppState;
use diesel_async::pooled_connection::deadpool::PoolError;

/// Why a recording could not start or stop, in words for the owner.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    #[error("This stream is already being recorded.")]
    AlreadyRecording,
    #[error("This stream is not live: go live first, then record.")]
    NotLive,
    /// The bucket check's words (never a transport error: see `Storage::check`).
    #[error("Recording is unavailable: {0}. Ask the operator to check the S3 settings.")]
    Storage(String),
    /// The detail went to the log: a page never shows a transport error.
    #[error(
        "LiveKit Egress could not start or stop the recording. Ask the operator to check that the Egress service runs beside LiveKit, or to use the built-in recorder (RECORDER=builtin)."
    )]
    Egress,
    #[error("The recording is still starting; try again in a moment.")]
    StillStarting,
    /// The detail went to the log.
    #[error("The recording could not be deleted from storage. Try again in a moment.")]
    StorageDelete,
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for RecordingError {
    fn from(e: diesel::result::Error) -> Self {
        RecordingError::Db(e.into())
    }
}

impl From<PoolError> for RecordingError {
    fn from(e: PoolError) -> Self {
        RecordingError::Db(e.into())
    }
}

/// A finished recording and the files its replay plays, in order.
pub struct Playable {
    pub recording: Recording,
    /// Object keys: a built-in recording's complete parts, or an egress
    /// recording's one object.
    pub keys: Vec<String>,
}

/// The stream's finished recordings that have something to play, in the
/// order the replays page lists them.
pub async fn playable(
    conn: &mut diesel_async::AsyncPgConnection,
    stream: crate::db::StreamId,
) -> diesel::QueryResult<Vec<Playable>> {
    let rows = recordings::complete_for(conn, stream).await?;
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let parts = recordings::complete_parts(conn, &ids).await?;
    Ok(rows
        .into_iter()
        .filter_map(|recording| {
            let mut keys: Vec<String> = parts
                .iter()
                .filter(|p| p.recording_id == recording.id)
                .map(|p| p.object_key.clone())
                .collect();
            if keys.is_empty() {
                keys.extend(recording.object_key.clone());
            }
            (!keys.is_empty()).then_some(Playable { recording, keys })
        })
        .collect())
}

/// Where a recording of `stream` started now goes in the bucket, as a file
/// of type `extension` (`mp4` from Egress, `webm` from the built-in recorder).
pub fn object_key(stream: &Stream, extension: &str) -> String {
    format!(
        "recordings/{}/{}.{extension}",
        stream.id,
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
    )
}

/// Starts recording a live stream.
#[instrument(skip_all, fields(stream = %stream.id))]
pub async fn start(state: &AppState, stream: &Stream) -> Result<Recording, RecordingError> {
    if !stream.is_live() {
        return Err(RecordingError::NotLive);
    }
    let mut conn = state.db.get().await?;
    if recordings::running(&mut conn, stream.id).await?.is_some() {
        return Err(RecordingError::AlreadyRecording);
    }
    drop(conn);
    state
        .storage
        .check()
        .await
        .map_err(|e| RecordingError::Storage(e.to_string()))?;
    if state.config.livekit.recorder == crate::config::Recorder::Builtin {
        return crate::recorder::start(state, stream).await;
    }

    let key = object_key(stream, "mp4");
    let placeholder = format!(
        "{}{}",
        recordings::PENDING_PREFIX,
        uuid::Uuid::new_v4().simple()
    );
    let mut conn = state.db.get().await?;
    let new = NewRecording {
        stream_id: stream.id,
        egress_id: &placeholder,
        object_key: Some(&key),
        backend: recordings::Backend::Egress,
    };
    let Some(row) = recordings::insert_starting(&mut conn, &new).await? else {
        return Err(RecordingError::AlreadyRecording);
    };
    drop(conn);

    let s3 = &state.config.s3;
    let upload = proto::S3Upload {
        access_key: s3.access_key_id.clone(),
        secret: s3.secret_access_key.expose_secret().to_owned(),
        region: s3.region.clone(),
        endpoint: s3
            .endpoint
            .as_ref()
            .map(|u| u.as_str().trim_end_matches('/').to_owned())
            .unwrap_or_default(),
        bucket: s3.bucket.clone(),
        force_path_style: s3.force_path_style,
        ..Default::default()
    };
    let output = proto::EncodedFileOutput {
        file_type: proto::EncodedFileType::Mp4 as i32,
        filepath: key.clone(),
        output: Some(proto::encoded_file_output::Output::S3(upload)),
        ..Default::default()
    };
    let options = RoomCompositeOptions {
        layout: state.config.livekit.recording_layout.clone(),
        ..Default::default()
    };
    let answer = state
        .livekit
        .egress
        .start_room_composite_egress(&stream.room_name, vec![EgressOutput::File(output)], options)
        .await;
    let mut conn = state.db.get().await?;
    match answer {
        Ok(info) => {
            recordings::set_egress_id(&mut conn, row.id, &info.egress_id).await?;
            metrics::counter!("recordings_started_total").increment(1);
            tracing::info!(recording = row.id, "recording started");
            Ok(recordings::find(&mut conn, row.id).await?.unwrap_or(row))
        }
        Err(e) => {
            tracing::warn!(error = %short(&e.to_string()), "starting a recording failed");
            recordings::fail(&mut conn, row.id, EGRESS_FAILED).await?;
            Err(RecordingError::Egress)
        }
    }
}

/// Stops the stream's running recording; `Ok(None)` when none was running.
#[instrument(skip_all, fields(stream = %stream.id))]
pub async fn stop(state: &AppState, stream: &Stream) -> Result<Option<Recording>, RecordingError> {
    let mut conn = state.db.get().await?;
    let Some(row) = recordings::running(&mut conn, stream.id).await? else {
        return Ok(None);
    };
    if row.backend == recordings::Backend::Builtin {
        recordings::mark_ending(&mut conn, row.id).await?;
        crate::recorder::stop(state, row.id);
        tracing::info!(recording = row.id, "recording stopping");
        return Ok(recordings::find(&mut conn, row.id).await?);
    }
    drop(conn);
    if row.egress_id.starts_with(recordings::PENDING_PREFIX) {
        // Its start request is still in flight: nothing to stop yet.
        return Err(RecordingError::StillStarting);
    }
    match state.livekit.egress.stop_egress(&row.egress_id).await {
        Ok(_) => {}
        // Already over on LiveKit's side: its egress_ended webhook settles the row.
        Err(e) if is_finished(&e.to_string()) => {}
        Err(e) => {
            tracing::warn!(error = %short(&e.to_string()), "stopping a recording failed");
            return Err(RecordingError::Egress);
        }
    }
    let mut conn = state.db.get().await?;
    recordings::mark_ending(&mut conn, row.id).await?;
    tracing::info!(recording = row.id, "recording stopping");
    Ok(recordings::find(&mut conn, row.id).await?)
}

/// What the owner reads on a recording LiveKit Egress would not start.
const EGRESS_FAILED: &str =
    "LiveKit Egress could not start the recording (is the Egress service running?).";

fn is_finished(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("not found")
        || m.contains("not_found")
        || m.contains("cannot be stopped")
        || m.contains("failed_precondition")
}

fn short(message: &str) -> String {
    message.chars().take(200).collect()
}

/// Applies an egress_started / egress_updated / egress_ended webhook.
#[instrument(skip_all, fields(event = %event))]
pub async fn apply_egress(
    state: &AppState,
    event: &str,
    info: &proto::EgressInfo,
) -> Result<(), DbError> {
    let mut conn = state.db.get().await?;
    let mut row = recordings::by_egress(&mut conn, &info.egress_id).await?;
    if row.is_none() {
        // The webhook overtook the answer to our start request: adopt the
        // stream's pending row.
        if let Some(stream) = crate::db::streams::find_by_room(&mut conn, &info.room_name).await?
            && let Some(running) = recordings::running(&mut conn, stream.id).await?
            && running.egress_id.starts_with(recordings::PENDING_PREFIX)
        {
            recordings::set_egress_id(&mut conn, running.id, &info.egress_id).await?;
            row = recordings::find(&mut conn, running.id).await?;
        }
    }
    let Some(row) = row else {
        return Ok(());
    };
    use proto::EgressStatus as S;
    let status = match S::try_from(info.status).unwrap_or(S::EgressStarting) {
        S::EgressStarting => Status::Starting,
        S::EgressActive => Status::Active,
        S::EgressEnding => Status::Ending,
        S::EgressComplete => Status::Complete,
        S::EgressFailed | S::EgressAborted | S::EgressLimitReached => Status::Failed,
    };
    let status = if event == "egress_ended" && status != Status::Complete {
        Status::Failed
    } else {
        status
    };
    let file = info.file_results.first();
    let ns_to_time = |ns: i64| chrono::DateTime::from_timestamp_nanos(ns);
    let error = match status {
        Status::Failed if info.error.is_empty() => Some("The recording stopped unexpectedly."),
        Status::Failed => Some(info.error.as_str()),
        _ => None,
    };
    let key = file
        .map(|f| object_key_of(&f.filename, &f.location))
        .filter(|k| !k.is_empty());
    let report = EgressReport {
        status,
        object_key: key.as_deref(),
        duration_ms: file.map(|f| f.duration / 1_000_000).filter(|d| *d > 0),
        size_bytes: file.map(|f| f.size).filter(|s| *s > 0),
        error,
        started_at: (info.started_at > 0).then(|| ns_to_time(info.started_at)),
        ended_at: (info.ended_at > 0).then(|| ns_to_time(info.ended_at)),
    };
    settle(state, row.id, &report).await
}

/// Writes what a recorder reports about a recording into its row. Completing
/// a recording queues the channel's `recording.ready` webhooks in the same
/// transaction (once: they are unique per recording).
pub async fn settle(
    state: &AppState,
    recording: i64,
    report: &EgressReport<'_>,
) -> Result<(), DbError> {
    let mut conn = state.db.get().await?;
    let public_url = &state.config.public_url;
    let status = report.status;
    let complete = status == Status::Complete;
    {
        use diesel_async::AsyncConnection;
        conn.transaction(async |conn| {
            recordings::report(conn, recording, report).await?;
            if complete {
                crate::outgoing_webhooks::recording_ready(conn, public_url, recording).await?;
            }
            Ok::<_, diesel::result::Error>(())
        })
        .await?;
    }
    if matches!(status, Status::Complete | Status::Failed) {
        metrics::counter!("recordings_finished_total", "status" => status.as_str()).increment(1);
        tracing::info!(recording, status = status.as_str(), "recording finished");
    }
    Ok(())
}

/// The object key inside our bucket from egress's file result: the filename
/// when it is a key, else the path of the location URL after the bucket.
fn object_key_of(filename: &str, location: &str) -> String {
    if filename.starts_with("recordings/") {
        return filename.to_owned();
    }
    match location.find("recordings/") {
        Some(i) => location[i..]
            .split('?')
            .next()
            .unwrap_or_default()
            .to_owned(),
        None => filename.to_owned(),
    }
}

/// Deletes a recording: the object first, then the row (a row is the only
/// handle on its object, so it goes last).
pub async fn delete(state: &AppState, recording: &Recording) -> Result<(), RecordingError> {
    let mut conn = state.db.get().await?;
    let parts = recordings::parts(&mut conn, recording.id).await?;
    drop(conn);
    for part in &parts {
        // An upload never completed (its recorder died) holds parts too.
        if let Some(upload_id) = &part.upload_id
            && let Err(e) = state
                .storage
                .abort_upload(&part.object_key, upload_id)
                .await
        {
            tracing::warn!(error = %e, "deleting a recording's open upload");
        }
    }
    let mut keys: Vec<String> = parts.into_iter().map(|p| p.object_key).collect();
    if let Some(key) = &recording.object_key
        && !keys.contains(key)
    {
        keys.push(key.clone());
    }
    for key in &keys {
        state.storage.delete(key).await.map_err(|e| {
            tracing::warn!(error = %e, "deleting a recording's object");
            RecordingError::StorageDelete
        })?;
    }
    let mut conn = state.db.get().await?;
    recordings::delete(&mut conn, recording.id).await?;
    Ok(())
}

/// Deletes recordings past their channel's retention period; answers how many.
pub async fn apply_retention(state: &AppState) -> anyhow::Result<usize> {
    let mut conn = state.db.get().await?;
    let old = recordings::past_retention(&mut conn).await?;
    drop(conn);
    let mut deleted = 0;
    for r in old {
        match delete(state, &r).await {
            Ok(()) => deleted += 1,
            Err(e) => {
                tracing::warn!(recording = r.id, error = %e, "retention: deleting a recording")
            }
        }
    }
    Ok(deleted)
}

/// How long a recording's row may stay unchanged before the reconciler asks
/// LiveKit about it (webhooks are dropped after 30 s of failed delivery).
pub const QUIET_BEFORE_RECONCILE: std::time::Duration = std::time::Duration::from_secs(120);

/// Settles recordings whose webhooks were lost: asks LiveKit for each
/// unfinished egress and applies what it says as if the webhook had come; an
/// egress LiveKit no longer knows (or a start that never got an answer) fails.
/// Answers how many rows were looked at.
pub async fn reconcile(state: &AppState, quiet: std::time::Duration) -> anyhow::Result<usize> {
    use livekit_api::services::egress::{EgressListFilter, EgressListOptions};
    let mut conn = state.db.get().await?;
    let unsettled = recordings::unsettled(&mut conn, quiet.as_secs() as i64).await?;
    drop(conn);
    let count = unsettled.len();
    for row in unsettled {
        if row.egress_id.starts_with(recordings::PENDING_PREFIX) {
            let mut conn = state.db.get().await?;
            recordings::fail(
                &mut conn,
                row.id,
                "The recording did not start (no answer from LiveKit Egress).",
            )
            .await?;
            continue;
        }
        let options = EgressListOptions {
            filter: EgressListFilter::Egress(row.egress_id.clone()),
            ..Default::default()
        };
        let listed = match state.livekit.egress.list_egress(options).await {
            Ok(listed) => listed,
            Err(e) => {
                tracing::warn!(recording = row.id, error = %e, "reconciler: asking LiveKit about a recording");
                continue;
            }
        };
        match listed.into_iter().find(|i| i.egress_id == row.egress_id) {
            Some(info) => {
                use proto::EgressStatus as S;
                let finished = !matches!(
                    S::try_from(info.status),
                    Ok(S::EgressStarting | S::EgressActive | S::EgressEnding)
                );
                let event = if finished {
                    "egress_ended"
                } else {
                    "egress_updated"
                };
                apply_egress(state, event, &info).await?;
            }
            None => {
                let mut conn = state.db.get().await?;
                recordings::fail(
                    &mut conn,
                    row.id,
                    "LiveKit Egress no longer knows this recording.",
                )
                .await?;
            }
        }
    }
    Ok(count)
}
