//! The studio's OBS panel: create a WHIP stream key (or, where LiveKit's
//! Ingress service runs, an RTMP ingress) for a stream, reset it, delete it.
//! Owner only (`access::may(..).may_publish()`); the work is in
//! `livekit::ingress`. The stream key is shown to the owner on the studio
//! page (masked until revealed) and goes nowhere else.

use axum::Form;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use super::FlashKind;
use crate::db::streams::Stream;
use crate::error::{AppError, AppResult};
use crate::livekit::ingress::{self, IngressError, Kind};
use crate::state::AppState;
use crate::web::Reply;
use crate::web::authz::{OwnedStream, area};

#[derive(Deserialize)]
pub struct CreateForm {
    pub kind: String,
}

/// Back to the studio page, with what happened as a flash.
async fn done(
    reply: &Reply,
    stream: &Stream,
    outcome: Result<&str, IngressError>,
) -> AppResult<Response> {
    match outcome {
        Ok(message) => reply.flash(FlashKind::Success, message).await?,
        Err(e @ (IngressError::Db(_) | IngressError::Token(_))) => return Err(e.into()),
        Err(e) => {
            tracing::warn!(error = %e, stream = %stream.id, "ingress change failed");
            reply.flash(FlashKind::Error, e.to_string()).await?
        }
    }
    Ok(reply.redirect(&format!("/studio/streams/{}#ingress-panel", stream.id)))
}

pub async fn create(
    State(state): State<AppState>,
    OwnedStream { stream, .. }: OwnedStream<area::Ingress>,
    reply: Reply,
    Form(form): Form<CreateForm>,
) -> AppResult<Response> {
    let kind = Kind::parse(&form.kind)
        .ok_or_else(|| AppError::BadRequest("Choose RTMP or WHIP.".into()))?;
    let outcome = ingress::create(&state, &stream, kind).await;
    done(
        &reply,
        &stream,
        outcome.map(|_| "Your stream key is ready: copy the server and the key into OBS."),
    )
    .await
}

pub async fn reset(
    State(state): State<AppState>,
    OwnedStream { stream, .. }: OwnedStream<area::Ingress>,
    reply: Reply,
) -> AppResult<Response> {
    let outcome = ingress::reset(&state, &stream).await;
    done(
        &reply,
        &stream,
        outcome.map(|_| "The stream key was reset: the old key no longer works. Update it in OBS."),
    )
    .await
}

pub async fn delete(
    State(state): State<AppState>,
    OwnedStream { stream, .. }: OwnedStream<area::Ingress>,
    reply: Reply,
) -> AppResult<Response> {
    let outcome = ingress::delete(&state, &stream).await;
    done(
        &reply,
        &stream,
        outcome.map(|_| "The stream key was deleted: OBS can no longer stream here."),
    )
    .await
}
