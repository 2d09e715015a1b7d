//! OBS ingress: how an encoder streams into a stream's room, stored in the
//! stream's row (`db::streams::StreamIngress`). Two kinds:
//!
//! - **WHIP** (the default; needs nothing beside livekit-server, which serves
//!   WHIP itself at `/whip/v1` and creates the room on the fly). The stream key
//!   is a publish-only LiveKit token for the stream's room whose identity names
//!   the key's generation (`obs-{stream}-{generation}`). A reset or delete
//!   moves to a new generation: the old key's encoder is removed at once, and
//!   refused whenever it joins again (`lifecycle::participant_joined`), since
//!   LiveKit itself would still accept the token until it expires.
//! - **RTMP**, through LiveKit's Ingress service, only when the operator runs it
//!   (`LIVEKIT_INGRESS`). A reset deletes the old ingress, so its key stops working.
//!
//! Who may do this is decided by the caller (`access.rs`). The stream key is a
//! credential: it goes to the database and the owner's studio page only —
//! never into a log line, an error or a metric. LiveKit's own error texts go to
//! the log; the page gets a sentence.

use livekit_api::services::ingress::CreateIngressOptions;
use livekit_protocol::IngressInput;
use tracing::instrument;

use super::Participant;
use crate::config::LiveKitConfig;
use crate::db::DbError;
use crate::db::StreamId;
use crate::db::streams::{self, IngressSlot, Stream, StreamIngress};
use crate::state::AppState;
use diesel_async::pooled_connection::deadpool::PoolError;

pub use crate::db::streams::IngressKind as Kind;

/// Why an ingress change did not happen, in words for the owner.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("This stream has ended: it cannot take an OBS ingress any more.")]
    Ended,
    #[error(
        "RTMP needs LiveKit's Ingress service, which this server does not run: use WHIP (OBS 30 or newer) instead."
    )]
    RtmpNeedsIngress,
    #[error(
        "The stream key was changed meanwhile (in another tab?): reload the page and try again."
    )]
    Changed,
    /// LiveKit's error (for the log; the page gets the sentence).
    #[error(
        "The media server (LiveKit Ingress) could not be reached or refused the request. Nothing was changed; try again in a moment."
    )]
    LiveKit(String),
    #[error("There is no such stream.")]
    NotFound,
    /// A bug (the detail is in the error, for the log).
    #[error("The stream key could not be made.")]
    Token(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<diesel::result::Error> for IngressError {
    fn from(e: diesel::result::Error) -> Self {
        IngressError::Db(e.into())
    }
}

impl From<PoolError> for IngressError {
    fn from(e: PoolError) -> Self {
        IngressError::Db(e.into())
    }
}

/// Where OBS sends WHIP: livekit-server's own endpoint, at the address
/// browsers reach it (`LIVEKIT_PUBLIC_URL`, as http(s)).
pub fn whip_url(config: &LiveKitConfig) -> String {
    let mut url = config.public_url.clone();
    let scheme = if url.scheme() == "wss" {
        "https"
    } else {
        "http"
    };
    // ws(s) -> http(s) is allowed between these special schemes.
    let _ = url.set_scheme(scheme);
    url.set_query(None);
    url.set_fragment(None);
    format!("{}/whip/v1", url.as_str().trim_end_matches('/'))
}

/// Creates an OBS key of `kind` for `stream` unless it has one (then answers that one).
#[instrument(skip_all, fields(stream = %stream.id, kind = kind.as_str()))]
pub async fn create(
    state: &AppState,
    stream: &Stream,
    kind: Kind,
) -> Result<StreamIngress, IngressError> {
    if stream.status == streams::Status::Ended {
        return Err(IngressError::Ended);
    }
    if kind == Kind::Rtmp && !state.config.livekit.ingress {
        return Err(IngressError::RtmpNeedsIngress);
    }
    let slot = slot(state, stream.id).await?;
    if let Some(existing) = slot.current {
        return Ok(existing);
    }
    let new = new_ingress(state, stream, kind, slot.generation).await?;
    let mut conn = state.db.get().await?;
    if streams::set_ingress(&mut conn, stream.id, slot.generation, &new).await? {
        tracing::info!(ingress = %new.ingress_id, "ingress created");
        metrics::counter!("ingresses_created_total", "kind" => kind.as_str()).increment(1);
        return Ok(new);
    }
    // A concurrent request stored its own first: keep that one, drop ours.
    drop(conn);
    retire(state, stream, &new).await?;
    let mut conn = state.db.get().await?;
    streams::ingress_of(&mut conn, stream.id)
        .await?
        .ok_or(IngressError::Changed)
}

/// Replaces the key with a new one of the same kind: the old one stops
/// working (its encoder, if streaming, is disconnected). Without a key, creates a WHIP one.
#[instrument(skip_all, fields(stream = %stream.id))]
pub async fn reset(state: &AppState, stream: &Stream) -> Result<StreamIngress, IngressError> {
    if stream.status == streams::Status::Ended {
        return Err(IngressError::Ended);
    }
    let slot = slot(state, stream.id).await?;
    let Some(old) = slot.current else {
        return create(state, stream, Kind::Whip).await;
    };
    let kind = old.kind;
    if kind == Kind::Rtmp && !state.config.livekit.ingress {
        return Err(IngressError::RtmpNeedsIngress);
    }
    // LiveKit Ingress first (its key stops working before a new one exists);
    // a WHIP key is retired after the new generation is stored, so that the
    // old encoder, if it reconnects at once, is already refused.
    if !is_encoder(&old) {
        retire(state, stream, &old).await?;
    }
    let new = new_ingress(state, stream, kind, slot.generation).await?;
    let mut conn = state.db.get().await?;
    if !streams::set_ingress(&mut conn, stream.id, slot.generation, &new).await? {
        drop(conn);
        retire(state, stream, &new).await?;
        return Err(IngressError::Changed);
    }
    drop(conn);
    if is_encoder(&old) {
        retire(state, stream, &old).await?;
    }
    tracing::info!(old = %old.ingress_id, ingress = %new.ingress_id, "ingress reset");
    metrics::counter!("ingresses_reset_total").increment(1);
    Ok(new)
}

/// Deletes the stream's key, if it has one (its encoder is disconnected).
#[instrument(skip_all, fields(stream = %stream.id))]
pub async fn delete(state: &AppState, stream: &Stream) -> Result<(), IngressError> {
    let slot = slot(state, stream.id).await?;
    let Some(old) = slot.current else {
        return Ok(());
    };
    // As for a reset: a LiveKit Ingress goes first, a WHIP key's encoder after.
    if !is_encoder(&old) {
        retire(state, stream, &old).await?;
    }
    let mut conn = state.db.get().await?;
    if !streams::clear_ingress(&mut conn, stream.id, slot.generation).await? {
        return Err(IngressError::Changed);
    }
    drop(conn);
    if is_encoder(&old) {
        retire(state, stream, &old).await?;
    }
    tracing::info!(ingress = %old.ingress_id, "ingress deleted");
    metrics::counter!("ingresses_deleted_total").increment(1);
    Ok(())
}

async fn slot(state: &AppState, stream: StreamId) -> Result<IngressSlot, IngressError> {
    let mut conn = state.db.get().await?;
    streams::ingress_slot(&mut conn, stream)
        .await?
        .ok_or(IngressError::NotFound)
}

/// A key of `kind` for the generation after `generation`.
async fn new_ingress(
    state: &AppState,
    stream: &Stream,
    kind: Kind,
    generation: i32,
) -> Result<StreamIngress, IngressError> {
    match kind {
        Kind::Whip => whip_key(state, stream, generation + 1),
        Kind::Rtmp => create_at_livekit(state, stream).await,
    }
}

/// A WHIP stream key: a long-lived, publish-only token for the stream's room
/// as the identity of `generation` (`obs-{stream}-{generation}`).
fn whip_key(
    state: &AppState,
    stream: &Stream,
    generation: i32,
) -> Result<StreamIngress, IngressError> {
    let lk = &state.config.livekit;
    let room = crate::lifecycle::room_configuration(lk, stream);
    let token = super::tokens::encoder(lk, stream.id, generation, room)
        .map_err(|e| IngressError::Token(format!("minting an encoder token: {e}")))?;
    Ok(StreamIngress {
        ingress_id: Participant::Encoder {
            stream: stream.id,
            generation,
        }
        .identity(),
        kind: Kind::Whip,
        url: whip_url(lk),
        stream_key: token,
    })
}

/// A WHIP key of ours (an encoder identity), rather than a LiveKit Ingress.
fn is_encoder(ingress: &StreamIngress) -> bool {
    matches!(
        Participant::parse(&ingress.ingress_id),
        Participant::Encoder { .. }
    )
}

/// Makes a key that is no longer the stream's stop working now: a WHIP
/// key's encoder is removed from the room (it would be refused on its next
/// join anyway); a LiveKit Ingress is deleted.
async fn retire(
    state: &AppState,
    stream: &Stream,
    old: &StreamIngress,
) -> Result<(), IngressError> {
    if is_encoder(old) {
        // Not in the room is the usual case; a failure leaves it to the
        // refusal on its next join, so it does not undo the reset.
        if let Err(e) = crate::lifecycle::remove_participant(
            state,
            stream,
            &old.ingress_id,
            "participant.encoder_key_reset",
        )
        .await
        {
            tracing::warn!(error = %e, "disconnecting the old key's encoder");
        }
        return Ok(());
    }
    if !state.config.livekit.ingress {
        // Made while LiveKit Ingress was configured; without it there is
        // nothing to reach (and nothing that still accepts its key).
        return Ok(());
    }
    delete_at_livekit(state, &old.ingress_id).await
}

async fn create_at_livekit(
    state: &AppState,
    stream: &Stream,
) -> Result<StreamIngress, IngressError> {
    let options = CreateIngressOptions {
        name: format!("stream-{}", stream.id),
        room_name: stream.room_name.clone(),
        participant_identity: Participant::Ingress(stream.id).identity(),
        participant_name: "OBS".to_owned(),
        ..Default::default()
    };
    let info = state
        .livekit
        .ingress
        .create_ingress(IngressInput::RtmpInput, options)
        .await
        .map_err(|e| livekit_error("creating an ingress", &e.to_string()))?;
    if info.ingress_id.is_empty() || info.url.is_empty() || info.stream_key.is_empty() {
        return Err(livekit_error(
            "creating an ingress",
            "an incomplete ingress came back",
        ));
    }
    Ok(StreamIngress {
        ingress_id: info.ingress_id,
        kind: Kind::Rtmp,
        url: info.url,
        stream_key: info.stream_key,
    })
}

/// Deletes an ingress at LiveKit; one already gone is fine.
async fn delete_at_livekit(state: &AppState, ingress_id: &str) -> Result<(), IngressError> {
    match state.livekit.ingress.delete_ingress(ingress_id).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e.to_string()) => Ok(()),
        Err(e) => Err(livekit_error("deleting an ingress", &e.to_string())),
    }
}

/// LiveKit's error goes to the log (it names no key); the page gets the sentence.
fn livekit_error(doing: &str, message: &str) -> IngressError {
    let message: String = message.chars().take(200).collect();
    tracing::warn!(error = %message, doing, "LiveKit Ingress failed");
    IngressError::LiveKit(message)
}

fn is_not_found(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("not_found") || m.contains("not found") || m.contains("does not exist")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(public_url: &str) -> LiveKitConfig {
        crate::config::Config::from_lookup(|k| match k {
            "LIVEKIT_PUBLIC_URL" => Some(public_url.to_owned()),
            _ => None,
        })
        .unwrap()
        .livekit
    }

    #[test]
    fn the_whip_url_is_the_public_livekit_url_over_http() {
        assert_eq!(
            whip_url(&config("ws://localhost:7880")),
            "http://localhost:7880/whip/v1"
        );
        assert_eq!(
            whip_url(&config("wss://live.example.com/")),
            "https://live.example.com/whip/v1"
        );
        assert_eq!(
            whip_url(&config("https://example.com/livekit/")),
            "https://example.com/livekit/whip/v1"
        );
    }
}
