//! The studio's OBS panel: create a WHIP stream key (or, where LiveKit's
//! Ingress service runs, an RTMP ingress) for a stream, reset it, delete it.
//! Owner only (`access::may(..).may_publish()`); the work is in
//! `livekit::ingress`. The stream key is shown to the owner on the studio
//! page (masked until revealed) and goes nowhere else.

use axum::Form;
use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;
use tower_sessions::Session;

use super::authz::{self, Area, Ids};
use super::{FlashKind, Htmx, flash};
use crate::auth::{self, CurrentUser};
use crate::db::StreamId;
use crate::db::streams::{self, Stream, StreamIngress};
use crate::error::{AppError, AppResult};
use crate::livekit::ingress::{self, IngressError, Kind};
use crate::state::AppState;

/// What the panel shows (partials/ingress/panel.html).
pub struct IngressView {
    pub stream_id: StreamId,
    /// The current ingress; None offers the create buttons.
    pub current: Option<IngressEndpoint>,
    /// False once the stream has ended (no new ingress).
    pub open: bool,
    /// LiveKit's Ingress service runs (`LIVEKIT_INGRESS`): RTMP is offered.
    pub rtmp_available: bool,
    pub csrf_token: String,
}

pub struct IngressEndpoint {
    /// "rtmp" or "whip".
    pub kind: &'static str,
    pub url: String,
    pub stream_key: String,
}

impl IngressEndpoint {
    pub fn label(&self) -> &'static str {
        if self.kind == "whip" { "WHIP" } else { "RTMP" }
    }

    /// The key with all but its last four characters hidden (a WHIP key is
    /// a token of several hundred characters: the dots stop at 24).
    pub fn masked_key(&self) -> String {
        let n = self.stream_key.chars().count();
        let tail: String = self.stream_key.chars().skip(n.saturating_sub(4)).collect();
        format!("{}{tail}", "•".repeat(n.saturating_sub(4).clamp(8, 24)))
    }

    pub fn is_whip(&self) -> bool {
        self.kind == "whip"
    }
}

impl IngressView {
    /// Why RTMP is not offered (the same sentence as choosing it anyway).
    pub fn rtmp_unavailable(&self) -> String {
        IngressError::RtmpNeedsIngress.to_string()
    }

    pub async fn load(state: &AppState, stream: &Stream, csrf_token: &str) -> AppResult<Self> {
        let mut conn = state.db.get().await?;
        let current = streams::ingress_of(&mut conn, stream.id)
            .await?
            .map(endpoint);
        Ok(IngressView {
            stream_id: stream.id,
            current,
            open: stream.status() != streams::Status::Ended,
            rtmp_available: state.config.livekit.ingress,
            csrf_token: csrf_token.to_owned(),
        })
    }
}

fn endpoint(i: StreamIngress) -> IngressEndpoint {
    IngressEndpoint {
        kind: Kind::parse(&i.kind).unwrap_or(Kind::Rtmp).as_str(),
        url: i.url,
        stream_key: i.stream_key,
    }
}

#[derive(Deserialize)]
pub struct CreateForm {
    pub kind: String,
}

/// Back to the studio page, with what happened as a flash.
async fn done(
    session: &Session,
    htmx: &Htmx,
    stream: &Stream,
    outcome: Result<&str, IngressError>,
) -> AppResult<Response> {
    match outcome {
        Ok(message) => flash(session, FlashKind::Success, message).await?,
        Err(IngressError::App(e)) => return Err(e),
        Err(e) => {
            tracing::warn!(error = %e, stream = %stream.id, "ingress change failed");
            flash(session, FlashKind::Error, e.to_string()).await?
        }
    }
    Ok(auth::redirect(
        htmx.request,
        &format!("/studio/streams/{}#ingress-panel", stream.id),
    ))
}

pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    htmx: Htmx,
    Ids(id): Ids<StreamId>,
    Form(form): Form<CreateForm>,
) -> AppResult<Response> {
    let (stream, _) =
        authz::owned_stream(&mut *state.db.get().await?, user.id, id, Area::Ingress).await?;
    let kind = Kind::parse(&form.kind)
        .ok_or_else(|| AppError::BadRequest("Choose RTMP or WHIP.".into()))?;
    let outcome = ingress::create(&state, &stream, kind).await;
    done(
        &session,
        &htmx,
        &stream,
        outcome.map(|_| "Your stream key is ready: copy the server and the key into OBS."),
    )
    .await
}

pub async fn reset(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    htmx: Htmx,
    Ids(id): Ids<StreamId>,
) -> AppResult<Response> {
    let (stream, _) =
        authz::owned_stream(&mut *state.db.get().await?, user.id, id, Area::Ingress).await?;
    let outcome = ingress::reset(&state, &stream).await;
    done(
        &session,
        &htmx,
        &stream,
        outcome.map(|_| "The stream key was reset: the old key no longer works. Update it in OBS."),
    )
    .await
}

pub async fn delete(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    session: Session,
    htmx: Htmx,
    Ids(id): Ids<StreamId>,
) -> AppResult<Response> {
    let (stream, _) =
        authz::owned_stream(&mut *state.db.get().await?, user.id, id, Area::Ingress).await?;
    let outcome = ingress::delete(&state, &stream).await;
    done(
        &session,
        &htmx,
        &stream,
        outcome.map(|_| "The stream key was deleted: OBS can no longer stream here."),
    )
    .await
}
