//! OBS ingress: one LiveKit Ingress (RTMP or WHIP) per stream, stored in the
//! stream's row. Creating, resetting (the old ingress is deleted first, so its
//! key stops working) and deleting. Who may do this is decided by the caller
//! (`access.rs`). The stream key is a credential: it goes to the database and
//! the owner's studio page only — never into a log line, an error or a metric.

use livekit_api::services::ingress::CreateIngressOptions;
use livekit_protocol::IngressInput;
use tracing::instrument;

use crate::db::StreamId;
use crate::db::streams::{self, Stream, StreamIngress};
use crate::error::AppError;
use crate::state::AppState;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rtmp,
    Whip,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rtmp" => Some(Kind::Rtmp),
            "whip" => Some(Kind::Whip),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Rtmp => "rtmp",
            Kind::Whip => "whip",
        }
    }
}

/// Why an ingress change did not happen, in words for the owner.
#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("This stream has ended: it cannot take an OBS ingress any more.")]
    Ended,
    #[error(
        "The media server (LiveKit Ingress) refused or could not be reached: {0}. Try again in a moment."
    )]
    LiveKit(String),
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<diesel::result::Error> for IngressError {
    fn from(e: diesel::result::Error) -> Self {
        IngressError::App(e.into())
    }
}

/// The participant identity the ingress publishes as (not a user: see `user_of`).
fn identity(stream: StreamId) -> String {
    format!("ingress-{stream}")
}

/// Creates an ingress for `stream` unless it has one (then answers that one).
#[instrument(skip_all, fields(stream = %stream.id, kind = kind.as_str()))]
pub async fn create(
    state: &AppState,
    stream: &Stream,
    kind: Kind,
) -> Result<StreamIngress, IngressError> {
    if stream.status() == streams::Status::Ended {
        return Err(IngressError::Ended);
    }
    let mut conn = state.db.get().await.map_err(AppError::from)?;
    if let Some(existing) = streams::ingress_of(&mut conn, stream.id).await? {
        return Ok(existing);
    }
    drop(conn);
    let new = create_at_livekit(state, stream, kind).await?;
    let mut conn = state.db.get().await.map_err(AppError::from)?;
    if streams::set_ingress(&mut conn, stream.id, None, &new).await? {
        tracing::info!(ingress = %new.ingress_id, "ingress created");
        metrics::counter!("ingresses_created_total", "kind" => kind.as_str()).increment(1);
        return Ok(new);
    }
    // A concurrent request stored its own first: keep that one, drop ours.
    drop(conn);
    delete_at_livekit(state, &new.ingress_id).await?;
    let mut conn = state.db.get().await.map_err(AppError::from)?;
    streams::ingress_of(&mut conn, stream.id)
        .await?
        .ok_or_else(|| IngressError::LiveKit("the ingress changed meanwhile".into()))
}

/// Deletes the current ingress (its key stops working), then creates a new
/// one of the same kind.
#[instrument(skip_all, fields(stream = %stream.id))]
pub async fn reset(state: &AppState, stream: &Stream) -> Result<StreamIngress, IngressError> {
    if stream.status() == streams::Status::Ended {
        return Err(IngressError::Ended);
    }
    let mut conn = state.db.get().await.map_err(AppError::from)?;
    let Some(old) = streams::ingress_of(&mut conn, stream.id).await? else {
        return create(state, stream, Kind::Rtmp).await;
    };
    drop(conn);
    let kind = Kind::parse(&old.kind).unwrap_or(Kind::Rtmp);
    delete_at_livekit(state, &old.ingress_id).await?;
    let new = create_at_livekit(state, stream, kind).await?;
    let mut conn = state.db.get().await.map_err(AppError::from)?;
    if !streams::set_ingress(&mut conn, stream.id, Some(&old.ingress_id), &new).await? {
        drop(conn);
        delete_at_livekit(state, &new.ingress_id).await?;
        return Err(IngressError::LiveKit(
            "the ingress changed meanwhile; reload the page".into(),
        ));
    }
    tracing::info!(old = %old.ingress_id, ingress = %new.ingress_id, "ingress reset");
    metrics::counter!("ingresses_reset_total").increment(1);
    Ok(new)
}

/// Deletes the stream's ingress, if it has one.
#[instrument(skip_all, fields(stream = %stream_id))]
pub async fn delete(state: &AppState, stream_id: StreamId) -> Result<(), IngressError> {
    let mut conn = state.db.get().await.map_err(AppError::from)?;
    let Some(old) = streams::ingress_of(&mut conn, stream_id).await? else {
        return Ok(());
    };
    drop(conn);
    delete_at_livekit(state, &old.ingress_id).await?;
    let mut conn = state.db.get().await.map_err(AppError::from)?;
    streams::clear_ingress(&mut conn, stream_id, &old.ingress_id).await?;
    tracing::info!(ingress = %old.ingress_id, "ingress deleted");
    metrics::counter!("ingresses_deleted_total").increment(1);
    Ok(())
}

async fn create_at_livekit(
    state: &AppState,
    stream: &Stream,
    kind: Kind,
) -> Result<StreamIngress, IngressError> {
    let input = match kind {
        Kind::Rtmp => IngressInput::RtmpInput,
        Kind::Whip => IngressInput::WhipInput,
    };
    let options = CreateIngressOptions {
        name: format!("stream-{}", stream.id),
        room_name: stream.room_name.clone(),
        participant_identity: identity(stream.id),
        participant_name: "OBS".to_owned(),
        ..Default::default()
    };
    let info = state
        .livekit
        .ingress
        .create_ingress(input, options)
        .await
        .map_err(|e| IngressError::LiveKit(short(&e.to_string())))?;
    if info.ingress_id.is_empty() || info.url.is_empty() || info.stream_key.is_empty() {
        return Err(IngressError::LiveKit(
            "an incomplete ingress came back".into(),
        ));
    }
    Ok(StreamIngress {
        ingress_id: info.ingress_id,
        kind: kind.as_str().to_owned(),
        url: info.url,
        stream_key: info.stream_key,
    })
}

/// Deletes an ingress at LiveKit; one already gone is fine.
async fn delete_at_livekit(state: &AppState, ingress_id: &str) -> Result<(), IngressError> {
    match state.livekit.ingress.delete_ingress(ingress_id).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e.to_string()) => Ok(()),
        Err(e) => Err(IngressError::LiveKit(short(&e.to_string()))),
    }
}

fn is_not_found(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("not_found") || m.contains("not found") || m.contains("does not exist")
}

fn short(message: &str) -> String {
    message.chars().take(200).collect()
}
