//! The stream lifecycle: go live, end, and the reconciler — keeping the
//! database and LiveKit's rooms in step. Order matters: LiveKit first, then
//! the database, so a LiveKit failure changes nothing and the page can say why;
//! ending stops the recording, then deletes the room, which disconnects everyone.
//! The change of status and what it announces (followers' notifications, the
//! channel's outgoing webhooks) commit together (`mark_live`, `mark_ended`).
//!
//! A stream goes live from the studio (`go_live`) or when its encoder starts
//! publishing (`live_by_encoder`): OBS over WHIP straight into livekit-server
//! (`participant_joined` / `track_published` of the current key's identity),
//! or LiveKit's Ingress service (`ingress_started`). An encoder leaving does
//! not end the stream: viewers see it interrupted until it comes back, and it
//! ends when the owner ends it or LiveKit closes the room (`room_finished`).
//! LiveKit's own error texts go to the log, never to a page.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use livekit_api::services::room::CreateRoomOptions;
use livekit_api::services::{ServerError, ServerErrorCode, ServiceError};
use tracing::instrument;

use crate::db::DbError;
use crate::db::streams::{self, Stream};
use crate::db::{self, StreamId, UserId};
use crate::livekit::Participant;
use crate::state::AppState;
use diesel_async::pooled_connection::deadpool::PoolError;

/// An unguessable room name with this deployment's prefix.
pub fn new_room_name(state: &AppState) -> String {
    format!(
        "{}{}",
        state.config.livekit.room_prefix,
        uuid::Uuid::new_v4().simple()
    )
}

/// Why going live or ending did not work, in words for the owner.
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    #[error("This stream has ended. Create a new stream to go live again.")]
    AlreadyEnded,
    /// LiveKit's error (for the log; the page gets the sentence).
    #[error(
        "The media server (LiveKit) could not be reached or refused the request. Nothing was changed; try again in a moment."
    )]
    LiveKit(String),
    #[error("There is no such stream.")]
    NotFound,
    /// The channel is hidden by the instance's admins (or its owner suspended).
    #[error("This channel is hidden by the instance's admins, so it cannot go live.{}", .0.as_deref().map(|r| format!(" Their reason: {r}")).unwrap_or_default())]
    Hidden(Option<String>),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for LifecycleError {
    fn from(e: diesel::result::Error) -> Self {
        LifecycleError::Db(e.into())
    }
}

impl From<PoolError> for LifecycleError {
    fn from(e: PoolError) -> Self {
        LifecycleError::Db(e.into())
    }
}

/// The stream's room as this deployment creates it: its timeouts, limit and
/// the stream id in its metadata. Going live creates it with these; an
/// encoder's stream key carries them too, because livekit-server creates the
/// room itself when OBS connects over WHIP first.
pub fn room_configuration(
    lk: &crate::config::LiveKitConfig,
    stream: &Stream,
) -> livekit_protocol::RoomConfiguration {
    livekit_protocol::RoomConfiguration {
        name: stream.room_name.clone(),
        empty_timeout: lk.empty_timeout.as_secs() as u32,
        departure_timeout: lk.departure_timeout.as_secs() as u32,
        max_participants: lk.max_participants,
        metadata: serde_json::json!({ "stream_id": stream.id.0 }).to_string(),
        ..Default::default()
    }
}

/// Creates the stream's LiveKit room (LiveKit answers an existing room as
/// it is). The error is LiveKit's, shortened and logged here: it is for the
/// log, not for a page.
async fn open_room(state: &AppState, stream: &Stream) -> Result<(), String> {
    let room = room_configuration(&state.config.livekit, stream);
    let options = CreateRoomOptions {
        empty_timeout: room.empty_timeout,
        departure_timeout: room.departure_timeout,
        max_participants: room.max_participants,
        metadata: room.metadata,
        ..Default::default()
    };
    state
        .livekit
        .rooms
        .create_room(&stream.room_name, options)
        .await
        .map(|_| ())
        .map_err(|e| {
            tracing::warn!(error = %e, stream = %stream.id, "LiveKit: creating the room failed");
            short(&e.to_string())
        })
}

/// Creates the LiveKit room, then marks the stream live, in the audit log as
/// `actor`'s doing (the owner who clicked Go live). Idempotent: going live
/// twice keeps the first `started_at` (LiveKit answers the existing room).
#[instrument(skip_all, fields(stream = %stream.id))]
pub async fn go_live(
    state: &AppState,
    stream: &Stream,
    actor: UserId,
) -> Result<Stream, LifecycleError> {
    if stream.status == streams::Status::Ended {
        return Err(LifecycleError::AlreadyEnded);
    }
    refuse_hidden(state, stream).await?;
    open_room(state, stream)
        .await
        .map_err(LifecycleError::LiveKit)?;

    let mut conn = state.db.get().await?;
    let (live, _) = mark_live(state, &mut conn, stream.id)
        .await?
        .ok_or(LifecycleError::AlreadyEnded)?;
    db::audit::record(
        &mut conn,
        Some(actor),
        Some(stream.channel_id),
        "stream.live",
        Some(&stream.id.to_string()),
        serde_json::json!({}),
    )
    .await?;
    metrics::counter!("streams_gone_live_total").increment(1);
    tracing::info!("stream is live");
    drop(conn);
    if live.record_on_live {
        // Going live stands even when recording cannot start: the broadcast
        // page shows the recording's status (and failure) to the owner.
        if let Err(e) = crate::recording::start(state, &live).await {
            tracing::warn!(error = %e, "record on live: recording did not start");
        }
    }
    Ok(live)
}

/// A hidden channel (by the instance's admins, or its owner suspended) does
/// not go live, from the studio or from OBS.
async fn refuse_hidden(state: &AppState, stream: &Stream) -> Result<(), LifecycleError> {
    let mut conn = state.db.get().await?;
    if db::channels::is_hidden(&mut conn, stream.channel_id).await? {
        let reason = db::channels::hidden_reason(&mut conn, stream.channel_id).await?;
        return Err(LifecycleError::Hidden(reason));
    }
    Ok(())
}

/// Deletes the room (disconnecting everyone), then marks the stream ended,
/// in the audit log as `actor`'s doing (None: stagepass itself, e.g. an
/// encoder that went away). Ending an ended stream is harmless.
#[instrument(skip_all, fields(stream = %stream_id))]
pub async fn end_stream(
    state: &AppState,
    stream_id: StreamId,
    actor: Option<UserId>,
) -> Result<Option<Stream>, LifecycleError> {
    let mut conn = state.db.get().await?;
    let Some(stream) = streams::find(&mut conn, stream_id).await? else {
        return Err(LifecycleError::NotFound);
    };
    if stream.status != streams::Status::Live {
        return Ok(None);
    }
    drop(conn);
    // The recording first: deleting the room would end it as an abort.
    if let Err(e) = crate::recording::stop(state, &stream).await {
        tracing::warn!(error = %e, "ending: stopping the recording");
    }
    close_room(state, &stream.room_name)
        .await
        .map_err(LifecycleError::LiveKit)?;
    finish(state, stream_id, "stream.ended", actor).await
}

/// Deletes a room, disconnecting everyone; a room already gone (it finished
/// on its own) counts as deleted. The error is LiveKit's, shortened and
/// logged here.
///
/// In a LiveKit cluster, a room whose node died stays on record pointing at
/// that node, and deleting it answers "unavailable" until the room is asked
/// for again: creating it again places it on a live node (once the dead one
/// has gone 5 s without reporting), where it can be deleted.
async fn close_room(state: &AppState, room: &str) -> Result<(), String> {
    let rooms = &state.livekit.rooms;
    let deleted = |result: Result<(), ServiceError>| match result {
        Err(e) if is_not_found(&e.to_string()) => Ok(()),
        other => other,
    };
    let result = match deleted(rooms.delete_room(room).await) {
        Err(e) if is_unavailable(&e) => {
            tracing::warn!(room, error = %e, "LiveKit: the room's node does not answer; moving the room to delete it");
            match rooms.create_room(room, CreateRoomOptions::default()).await {
                Ok(_) => deleted(rooms.delete_room(room).await),
                Err(e) => Err(e),
            }
        }
        other => other,
    };
    result.map_err(|e| {
        tracing::warn!(room, error = %e, "LiveKit: deleting the room failed");
        short(&e.to_string())
    })
}

/// Marks a live stream ended and closes its open presence (the room is gone);
/// `actor` is who ended it, None when stagepass did.
pub async fn finish(
    state: &AppState,
    stream_id: StreamId,
    action: &str,
    actor: Option<UserId>,
) -> Result<Option<Stream>, LifecycleError> {
    let mut conn = state.db.get().await?;
    let ended = mark_ended(state, &mut conn, stream_id).await?;
    if let Some(stream) = &ended {
        db::presence::close_all(&mut conn, stream_id).await?;
        db::audit::record(
            &mut conn,
            actor,
            Some(stream.channel_id),
            action,
            Some(&stream_id.to_string()),
            serde_json::json!({}),
        )
        .await?;
        metrics::counter!("streams_ended_total", "how" => action.to_owned()).increment(1);
        tracing::info!(action, "stream ended");
    }
    Ok(ended)
}

// ---------------------------------------------------------------------------
// The moments a stream becomes live or ended, with what they announce.

/// draft -> live (live stays live), and in the same transaction what going
/// live announces: followers' notifications (`notify.rs`) and the channel's
/// `stream.started` webhooks (`outgoing_webhooks.rs`). The row is locked
/// first, so only the call that makes the stream live announces it — the
/// owner's button and OBS racing announce once. Answers the stream and
/// whether this call made it live; None: the stream had ended.
pub async fn mark_live(
    state: &AppState,
    conn: &mut diesel_async::AsyncPgConnection,
    id: StreamId,
) -> diesel::QueryResult<Option<(Stream, bool)>> {
    use diesel::prelude::*;
    use diesel_async::{AsyncConnection, RunQueryDsl};
    let public_url = &state.config.public_url;
    conn.transaction(async |conn| {
        let before: Option<String> = db::schema::streams::table
            .find(id)
            .select(db::schema::streams::status)
            .for_update()
            .first(conn)
            .await
            .optional()?;
        let Some(live) = streams::mark_live(conn, id).await? else {
            return Ok(None);
        };
        let made_live = before.as_deref() == Some(streams::Status::Draft.as_str());
        if made_live {
            crate::notify::stream_live(conn, id).await?;
            crate::outgoing_webhooks::stream_event(
                conn,
                public_url,
                crate::outgoing_webhooks::Event::StreamStarted,
                &live,
            )
            .await?;
        }
        Ok(Some((live, made_live)))
    })
    .await
}

/// live -> ended, with the channel's `stream.ended` webhooks in the same
/// transaction. None: it was not live (only one caller ends a stream).
pub async fn mark_ended(
    state: &AppState,
    conn: &mut diesel_async::AsyncPgConnection,
    id: StreamId,
) -> diesel::QueryResult<Option<Stream>> {
    use diesel_async::AsyncConnection;
    let public_url = &state.config.public_url;
    conn.transaction(async |conn| {
        let ended = streams::mark_ended(conn, id).await?;
        if let Some(ended) = &ended {
            crate::outgoing_webhooks::stream_event(
                conn,
                public_url,
                crate::outgoing_webhooks::Event::StreamEnded,
                ended,
            )
            .await?;
        }
        Ok(ended)
    })
    .await
}

fn is_not_found(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("not_found") || m.contains("not found") || m.contains("does not exist")
}

/// LiveKit could not reach the node that holds the room (twirp
/// `unavailable`): in a cluster, the room's node died.
fn is_unavailable(e: &ServiceError) -> bool {
    matches!(e, ServiceError::Twirp(ServerError::Twirp(c)) if c.code == ServerErrorCode::UNAVAILABLE)
}

/// LiveKit's errors can be long; the page shows the gist.
fn short(message: &str) -> String {
    message.chars().take(200).collect()
}

/// What one reconciliation pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    pub streams_ended: usize,
    pub rooms_deleted: usize,
}

/// Live streams whose room's LiveKit node does not answer (it died, in a
/// cluster), with when this instance's reconciler first saw it so.
#[derive(Default)]
pub struct Stranded(Mutex<HashMap<StreamId, Instant>>);

impl Stranded {
    /// Notes which streams are stranded now (the others are not any more)
    /// and answers those stranded for `grace` or longer.
    fn note(&self, now_stranded: &[StreamId], grace: Duration) -> Vec<StreamId> {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|id, _| now_stranded.contains(id));
        let now = Instant::now();
        now_stranded
            .iter()
            .filter(|id| now.duration_since(*seen.entry(**id).or_insert(now)) >= grace)
            .copied()
            .collect()
    }
}

/// Compares live streams with LiveKit's rooms: a live stream whose room is gone
/// is ended; a room of ours (by prefix) whose stream is not live is deleted; the
/// participants of live rooms are recorded in presence (lost webhooks).
///
/// A room whose node died is still listed (LiveKit keeps its record), but
/// asking who is in it fails as "unavailable" (with livekit.yaml's
/// `api.enable_psrpc_for_get_list_participants`, the question goes to the
/// room's node). The host's or a viewer's client normally rejoins within a
/// minute, which moves the room to a live node; a room still stranded after
/// the departure timeout is moved by the reconciler, and its stream ended if
/// nobody is in it there, as if everyone had left.
#[instrument(skip_all)]
pub async fn reconcile(state: &AppState) -> anyhow::Result<Reconciled> {
    let prefix = &state.config.livekit.room_prefix;
    let listed: Vec<(String, i64)> = state
        .livekit
        .rooms
        .list_rooms(vec![])
        .await
        .map_err(|e| anyhow::anyhow!("listing LiveKit rooms: {e}"))?
        .into_iter()
        .filter(|r| r.name.starts_with(prefix.as_str()))
        .map(|r| (r.name, r.creation_time))
        .collect();
    let rooms: Vec<String> = listed.iter().map(|(name, _)| name.clone()).collect();
    let mut conn = state.db.get().await?;
    let live = streams::live(&mut conn).await?;
    let live_rooms = streams::live_rooms_among(&mut conn, &rooms).await?;
    drop(conn);

    let mut done = Reconciled::default();
    let mut stranded = Vec::new();
    // Presence comes from webhooks, which LiveKit drops after 30 s of failure
    // (say, while the app restarts): take it from the rooms themselves too, so
    // the enforcer knows everyone who is in.
    for stream in live.iter().filter(|s| rooms.contains(&s.room_name)) {
        match state
            .livekit
            .rooms
            .list_participants(&stream.room_name)
            .await
        {
            Ok(people) => {
                let mut conn = state.db.get().await?;
                for p in people {
                    let joined = db::presence::Joined {
                        stream_id: stream.id,
                        room_name: &stream.room_name,
                        user_id: crate::livekit::user_of(&p.identity),
                        identity: &p.identity,
                        participant_sid: &p.sid,
                        at: joined_time(&p, timestamp(p.joined_at)),
                    };
                    db::presence::joined(&mut conn, &joined).await?;
                }
            }
            Err(e) if is_unavailable(&e) => {
                tracing::warn!(error = %e, stream = %stream.id, "reconciler: the room's LiveKit node does not answer");
                stranded.push(stream.id);
            }
            Err(e) => {
                tracing::warn!(error = %e, stream = %stream.id, "reconciler: listing participants")
            }
        }
    }
    // Stranded for the departure timeout: move the room to a live node (on a
    // node that answers after all, creating it changes nothing), and end the
    // stream if nobody is in it there. Someone in it: it lives on.
    for id in state
        .stranded
        .note(&stranded, state.config.livekit.departure_timeout)
    {
        let Some(stream) = live.iter().find(|s| s.id == id) else {
            continue;
        };
        if open_room(state, stream).await.is_err() {
            continue; // (logged; the next pass tries again)
        }
        let empty = match state
            .livekit
            .rooms
            .list_participants(&stream.room_name)
            .await
        {
            Ok(people) => people.is_empty(),
            Err(e) => {
                tracing::warn!(error = %e, stream = %id, "reconciler: listing the participants of a moved room");
                false
            }
        };
        if empty
            && close_room(state, &stream.room_name).await.is_ok()
            && end_by_reconciler(state, id).await?
        {
            done.streams_ended += 1;
        }
    }
    for stream in live.iter().filter(|s| !rooms.contains(&s.room_name)) {
        // A room can be created a moment before its stream is marked live; a
        // stream that went live seconds ago gets the benefit of the doubt.
        if stream
            .started_at
            .is_some_and(|t| chrono::Utc::now() - t < chrono::Duration::seconds(30))
        {
            continue;
        }
        if end_by_reconciler(state, stream.id).await? {
            done.streams_ended += 1;
        }
    }
    let now = chrono::Utc::now().timestamp();
    for (room, created) in listed.iter().filter(|(r, _)| !live_rooms.contains(r)) {
        // Going live creates the room a moment before the stream is marked live.
        if now - created < 30 {
            continue;
        }
        // (close_room logs why it could not.)
        if close_room(state, room).await.is_err() {
            continue;
        }
        done.rooms_deleted += 1;
    }
    metrics::counter!("reconciler_streams_ended_total").increment(done.streams_ended as u64);
    metrics::counter!("reconciler_rooms_deleted_total").increment(done.rooms_deleted as u64);
    if done != Reconciled::default() {
        tracing::info!(
            ended = done.streams_ended,
            deleted = done.rooms_deleted,
            "reconciled with LiveKit"
        );
    }
    Ok(done)
}

/// Marks a stream the reconciler found without a room ended; false if it had
/// ended already (another instance's reconciler, or a webhook, was first).
async fn end_by_reconciler(state: &AppState, stream: StreamId) -> anyhow::Result<bool> {
    Ok(finish(state, stream, "stream.ended_by_reconciler", None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .is_some())
}

/// Applies one verified, first-seen LiveKit webhook event.
#[instrument(skip_all, fields(event = %event.event))]
pub async fn apply_event(
    state: &AppState,
    event: &livekit_protocol::WebhookEvent,
) -> Result<(), LifecycleError> {
    if let Some(info) = &event.ingress_info
        && event.event.starts_with("ingress_")
    {
        return apply_ingress_event(state, &event.event, info).await;
    }
    if let Some(egress) = &event.egress_info
        && event.event.starts_with("egress_")
    {
        return Ok(crate::recording::apply_egress(state, &event.event, egress).await?);
    }
    let Some(room) = event.room.as_ref() else {
        return Ok(());
    };
    let mut conn = state.db.get().await?;
    let Some(stream) = streams::find_by_room(&mut conn, &room.name).await? else {
        return Ok(());
    };
    drop(conn);
    match event.event.as_str() {
        "room_finished" => {
            // The room closed on its own (everyone left and the departure timeout passed).
            finish(state, stream.id, "stream.ended_by_livekit", None).await?;
        }
        "participant_joined" => {
            if let Some(p) = &event.participant {
                participant_joined(state, &stream, p, event.created_at).await?;
            }
        }
        // An encoder publishing is what "OBS started streaming" means; its
        // join usually says so first, this covers a join whose webhook was
        // lost (a reset key is refused here the same way).
        "track_published" => {
            if let Some(p) = &event.participant
                && matches!(Participant::parse(&p.identity), Participant::Encoder { .. })
            {
                admit_encoder(state, &stream, &p.identity).await?;
            }
        }
        "participant_left" => {
            if let Some(p) = &event.participant {
                let mut conn = state.db.get().await?;
                let at = event_time(event.created_at);
                let user = crate::livekit::user_of(&p.identity);
                let left = db::presence::Joined {
                    stream_id: stream.id,
                    room_name: &room.name,
                    user_id: user,
                    identity: &p.identity,
                    participant_sid: &p.sid,
                    at,
                };
                db::presence::left(&mut conn, &left).await?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn timestamp(unix_seconds: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(unix_seconds, 0)
        .filter(|_| unix_seconds > 0)
        .unwrap_or_else(chrono::Utc::now)
}

/// When a webhook's event happened. LiveKit stamps events to the second; a
/// leave and a join stamped in the same second would sort in the wrong order
/// and hide an overlap (a peak of 2 where 3 watched at once). An event that
/// arrives within its own second is stamped with its arrival instead; a late
/// one (a retry) keeps LiveKit's second.
fn event_time(created_at: i64) -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now();
    let stamped = timestamp(created_at);
    if now >= stamped && now - stamped < chrono::Duration::seconds(1) {
        now
    } else {
        stamped
    }
}

/// When a participant joined: LiveKit's millisecond time when it gives one,
/// else `otherwise`.
fn joined_time(
    p: &livekit_protocol::ParticipantInfo,
    otherwise: chrono::DateTime<chrono::Utc>,
) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(p.joined_at_ms)
        .filter(|_| p.joined_at_ms > 0)
        .unwrap_or(otherwise)
}

/// Someone joined the room: if the access rule no longer lets them be there
/// (their token outlived their right, and no free preview of theirs runs), they are removed at once, and their
/// older tokens revoked so a reconnect does not bring them back. An encoder
/// with the stream's current key makes the stream live; one with a reset
/// key (or on an ended stream) is removed the same way.
async fn participant_joined(
    state: &AppState,
    stream: &Stream,
    p: &livekit_protocol::ParticipantInfo,
    created_at: i64,
) -> Result<(), LifecycleError> {
    let user = crate::livekit::user_of(&p.identity);
    let mut conn = state.db.get().await?;
    // Presence first: if the removal below fails, the enforcer knows they are
    // there and keeps trying.
    let joined = db::presence::Joined {
        stream_id: stream.id,
        room_name: &stream.room_name,
        user_id: user,
        identity: &p.identity,
        participant_sid: &p.sid,
        at: joined_time(p, event_time(created_at)),
    };
    db::presence::joined(&mut conn, &joined).await?;
    if matches!(Participant::parse(&p.identity), Participant::Encoder { .. }) {
        drop(conn);
        return admit_encoder(state, stream, &p.identity).await;
    }
    let asked = match Participant::parse(&p.identity) {
        Participant::Guest(_) => Some(None),
        _ => user.map(Some),
    };
    if let Some(who) = asked {
        let access = crate::access::may(&mut conn, who, stream).await?;
        if !access.may_watch()
            && !db::previews::running_for(&mut conn, stream.id, &p.identity).await?
        {
            drop(conn);
            if remove_participant(state, stream, &p.identity, "participant.removed_on_join")
                .await
                .is_ok()
            {
                let mut conn = state.db.get().await?;
                db::presence::close_identity(&mut conn, stream.id, &p.identity).await?;
            }
            return Ok(());
        }
    }
    let now = db::presence::current_viewers(&mut conn, stream.id, stream.channel_id).await?;
    db::presence::bump_peak(&mut conn, stream.id, now).await?;
    Ok(())
}

/// How long one removal may take before the enforcer moves on (and retries).
const REMOVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// Removes a participant from a stream's room and revokes the tokens they hold.
/// Answers `Ok(true)` when removed, `Ok(false)` when they were already gone,
/// and `Err` (with LiveKit's reason) when it did not happen — callers retry.
pub async fn remove_participant(
    state: &AppState,
    stream: &Stream,
    identity: &str,
    action: &str,
) -> Result<bool, String> {
    let options = livekit_api::services::room::RemoveParticipantOptions {
        revoke_token_ts: chrono::Utc::now().timestamp_millis(),
    };
    let call =
        state
            .livekit
            .rooms
            .remove_participant_with_options(&stream.room_name, identity, options);
    match tokio::time::timeout(REMOVE_TIMEOUT, call).await {
        Ok(Ok(())) => {
            metrics::counter!("participants_removed_total", "why" => action.to_owned())
                .increment(1);
            tracing::info!(stream = %stream.id, action, "participant removed");
            if let Ok(mut conn) = state.db.get().await {
                let _ = db::audit::record(
                    &mut conn,
                    None,
                    Some(stream.channel_id),
                    action,
                    Some(identity),
                    serde_json::json!({ "stream_id": stream.id.0 }),
                )
                .await;
            }
            Ok(true)
        }
        Ok(Err(e)) if is_not_found(&e.to_string()) => Ok(false),
        Ok(Err(e)) => {
            metrics::counter!("participant_removals_failed_total").increment(1);
            tracing::warn!(error = %e, stream = %stream.id, "removing a participant failed");
            Err(short(&e.to_string()))
        }
        Err(_) => {
            metrics::counter!("participant_removals_failed_total").increment(1);
            tracing::warn!(stream = %stream.id, "removing a participant timed out");
            Err("LiveKit did not answer in time".to_owned())
        }
    }
}

/// The room an event is about: `room` for room and participant events, the
/// room named in `egress_info` / `ingress_info` for egress and ingress events.
pub fn room_of(event: &livekit_protocol::WebhookEvent) -> Option<&str> {
    event
        .room
        .as_ref()
        .map(|r| r.name.as_str())
        .or_else(|| event.egress_info.as_ref().map(|e| e.room_name.as_str()))
        .or_else(|| event.ingress_info.as_ref().map(|i| i.room_name.as_str()))
        .filter(|name| !name.is_empty())
}

/// OBS started or stopped publishing through the stream's ingress.
///
/// `ingress_started` makes the stream live (`live_from_obs`, as an encoder
/// over WHIP does). `ingress_ended` ends the stream as "End stream" does (the
/// room is deleted, everyone leaves). Unlike an encoder over WHIP leaving,
/// which only interrupts the stream until it comes back, an RTMP ingress
/// ending is taken as OBS's "Stop Streaming".
async fn apply_ingress_event(
    state: &AppState,
    kind: &str,
    info: &livekit_protocol::IngressInfo,
) -> Result<(), LifecycleError> {
    let mut conn = state.db.get().await?;
    // By the stream's current ingress; an ingress started for one of our rooms
    // some other way is found by its room. An old ingress (replaced by a reset)
    // ending must not end the stream its successor serves.
    let stream = match streams::find_by_ingress(&mut conn, &info.ingress_id).await? {
        Some(stream) => Some(stream),
        None if kind == "ingress_started" && !info.room_name.is_empty() => {
            streams::find_by_room(&mut conn, &info.room_name).await?
        }
        None => None,
    };
    drop(conn);
    let Some(stream) = stream else {
        return Ok(());
    };
    match kind {
        "ingress_started" => {
            live_from_obs(
                state,
                &stream,
                "stream.live_by_ingress",
                serde_json::json!({ "ingress_id": info.ingress_id }),
            )
            .await?;
        }
        "ingress_ended" if stream.is_live() => {
            end_stream(state, stream.id, None).await?;
            let mut conn = state.db.get().await?;
            db::audit::record(
                &mut conn,
                None,
                Some(stream.channel_id),
                "stream.offline_by_ingress",
                Some(&stream.id.to_string()),
                serde_json::json!({ "ingress_id": info.ingress_id }),
            )
            .await?;
        }
        _ => {}
    }
    Ok(())
}

/// Whether `identity` (an encoder's) may publish into `stream`: it is the
/// identity of the stream's current WHIP key, and the stream has not ended.
/// A reset or deleted key, another stream's key, or any key once the stream
/// has ended is refused.
/// An encoder joined or published: with the stream's current key it makes
/// the stream live; with a reset key (or on an ended stream) it is removed.
async fn admit_encoder(
    state: &AppState,
    stream: &Stream,
    identity: &str,
) -> Result<(), LifecycleError> {
    if encoder_admitted(state, stream, identity).await? {
        return live_by_encoder(state, stream, identity).await;
    }
    if remove_participant(state, stream, identity, "participant.encoder_refused")
        .await
        .is_ok()
    {
        let mut conn = state.db.get().await?;
        db::presence::close_identity(&mut conn, stream.id, identity).await?;
    }
    Ok(())
}

async fn encoder_admitted(
    state: &AppState,
    stream: &Stream,
    identity: &str,
) -> Result<bool, LifecycleError> {
    let mut conn = state.db.get().await?;
    let Some(now) = streams::find(&mut conn, stream.id).await? else {
        return Ok(false);
    };
    if now.status == streams::Status::Ended {
        tracing::info!(stream = %stream.id, "an encoder joined an ended stream: refused");
        return Ok(false);
    }
    if db::channels::is_hidden(&mut conn, stream.channel_id).await? {
        tracing::info!(stream = %stream.id, "an encoder joined a hidden channel's stream: refused");
        return Ok(false);
    }
    let current = streams::is_current_encoder(&mut conn, stream.id, identity).await?;
    if !current {
        tracing::info!(stream = %stream.id, identity, "an encoder with a reset key joined: refused");
        metrics::counter!("encoders_refused_total").increment(1);
    }
    Ok(current)
}

/// The stream's current encoder (OBS over WHIP) is publishing.
async fn live_by_encoder(
    state: &AppState,
    stream: &Stream,
    identity: &str,
) -> Result<(), LifecycleError> {
    live_from_obs(
        state,
        stream,
        "stream.live_by_encoder",
        serde_json::json!({ "identity": identity }),
    )
    .await
}

/// OBS is publishing (over WHIP, or through LiveKit's Ingress service): the
/// room is opened as going live opens it (idempotent, with our timeouts, so
/// the reconciler does not take it for an orphan), then the stream is marked
/// live by `mark_live`, which tells followers once. An encoder coming back to
/// a live stream resumes it (same stream, same `started_at`); an ended stream
/// stays ended. `action` is audited only when this made the stream live.
async fn live_from_obs(
    state: &AppState,
    stream: &Stream,
    action: &str,
    details: serde_json::Value,
) -> Result<(), LifecycleError> {
    if stream.status == streams::Status::Ended {
        tracing::info!(stream = %stream.id, action, "OBS started on an ended stream: ignored");
        return Ok(());
    }
    if let Err(e) = refuse_hidden(state, stream).await {
        tracing::info!(stream = %stream.id, action, error = %e, "OBS started in a hidden channel: ignored");
        return Ok(());
    }
    open_room(state, stream)
        .await
        .map_err(LifecycleError::LiveKit)?;
    let mut conn = state.db.get().await?;
    let Some((live, true)) = mark_live(state, &mut conn, stream.id).await? else {
        // Ended meanwhile, or live already (the encoder came back, or the
        // owner went live first): nothing to announce.
        return Ok(());
    };
    db::audit::record(
        &mut conn,
        None,
        Some(stream.channel_id),
        action,
        Some(&stream.id.to_string()),
        details,
    )
    .await?;
    drop(conn);
    metrics::counter!("streams_gone_live_total").increment(1);
    tracing::info!(stream = %stream.id, action, "stream is live (OBS)");
    if live.record_on_live
        && let Err(e) = crate::recording::start(state, &live).await
    {
        tracing::warn!(error = %e, "record on live: recording did not start");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_is_due_once_stranded_for_the_grace_and_forgotten_when_it_answers() {
        let stranded = Stranded::default();
        let (a, b) = (StreamId(1), StreamId(2));
        assert!(stranded.note(&[a, b], Duration::from_millis(50)).is_empty());
        std::thread::sleep(Duration::from_millis(60));
        // `a` answered meanwhile (its host rejoined on a live node): forgotten.
        assert_eq!(stranded.note(&[b], Duration::from_millis(50)), vec![b]);
        // Stranded again later: its time starts over.
        assert_eq!(stranded.note(&[a, b], Duration::from_millis(50)), vec![b]);
        assert_eq!(stranded.note(&[a], Duration::ZERO), vec![a]);
    }

    #[test]
    fn unavailable_and_not_found_are_told_apart() {
        let twirp = |code: &str, msg: &str| {
            ServiceError::Twirp(ServerError::Twirp(livekit_api::services::ServerErrorCode {
                code: code.into(),
                msg: msg.into(),
                meta: Default::default(),
            }))
        };
        let dead = twirp(
            "unavailable",
            "twirp error unknown: no response from servers",
        );
        assert!(is_unavailable(&dead));
        assert!(!is_not_found(&dead.to_string()));
        let gone = twirp("not_found", "requested room does not exist");
        assert!(is_not_found(&gone.to_string()));
        assert!(!is_unavailable(&gone));
    }
}
