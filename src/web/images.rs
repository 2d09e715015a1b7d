//! The stream thumbnail over HTTP: upload and remove on the studio stream
//! page, served at /s/{id}/thumbnail (the upload pipeline it shares with the
//! channel avatar is `uploads`; its panel is `view::panels`). Who may change a stream is `authz::OwnedStream`; who may
//! see one is `access::find_stream`: announced, live and ended streams are
//! public, an unannounced draft or a hidden channel's stream only exists for
//! its team (404 for others).

use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::uploads::{
    Audience, DEFAULT_THUMBNAIL, StoreError, delete_quietly, read_upload, serve, store,
};
use super::view::panels::ThumbnailPanel;
use super::{FlashKind, render_with};
use crate::access;
use crate::auth::{self, MaybeUser};
use crate::db::streams;
use crate::db::{self, StreamId};
use crate::error::{AppError, AppResult};
use crate::images::{ImageError, Purpose};
use crate::state::AppState;
use crate::web::Reply;
use crate::web::authz::{Ids, OwnedStream};

pub async fn thumbnail(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    headers: HeaderMap,
    Ids(id): Ids<StreamId>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let (stream, access) = access::find_stream(&mut conn, user.as_ref().map(|u| u.id), id)
        .await?
        .ok_or(AppError::NotFound)?;
    // What only the team sees (an unannounced draft, a hidden channel's
    // stream) is never cached for everyone.
    let announced = !access::unannounced(&stream) && !access.may_moderate();
    let key = streams::thumbnail_key(&mut conn, id).await?;
    drop(conn);
    let audience = if announced {
        Audience::Public
    } else {
        Audience::Private
    };
    serve(&state, key, DEFAULT_THUMBNAIL, audience, &headers).await
}

pub async fn upload_thumbnail(
    State(state): State<AppState>,
    OwnedStream {
        user,
        stream,
        channel,
        ..
    }: OwnedStream,
    reply: Reply,
    mut multipart: Multipart,
) -> AppResult<Response> {
    let stored = match read_upload(&mut multipart, "thumbnail").await {
        Ok(bytes) => {
            store(
                &state,
                &format!("thumbnails/{}", stream.id),
                bytes,
                Purpose::Thumbnail,
            )
            .await
        }
        Err(e) => Err(StoreError::Image(e)),
    };
    let mut conn = state.db.get().await?;
    let (current, outcome) = match stored {
        Ok(key) => match streams::replace_thumbnail(&mut conn, stream.id, Some(&key)).await {
            Ok(old) => {
                db::audit::record(
                    &mut conn,
                    Some(user.id),
                    Some(channel.id),
                    "stream.thumbnail_set",
                    Some(&stream.id.to_string()),
                    serde_json::json!({}),
                )
                .await?;
                delete_quietly(&state, old).await;
                (Some(key), Ok(()))
            }
            Err(e) => {
                delete_quietly(&state, Some(key)).await;
                return Err(e.into());
            }
        },
        Err(StoreError::App(e)) => return Err(e),
        // Nothing was stored: the current thumbnail stays, with the reason next to the field.
        Err(StoreError::Image(e)) => (streams::thumbnail_key(&mut conn, stream.id).await?, Err(e)),
    };
    drop(conn);
    answer(&reply, stream.id, current, outcome, "Thumbnail saved.").await
}

pub async fn remove_thumbnail(
    State(state): State<AppState>,
    OwnedStream {
        user,
        stream,
        channel,
        ..
    }: OwnedStream,
    reply: Reply,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let old = streams::replace_thumbnail(&mut conn, stream.id, None).await?;
    if old.is_some() {
        db::audit::record(
            &mut conn,
            Some(user.id),
            Some(channel.id),
            "stream.thumbnail_removed",
            Some(&stream.id.to_string()),
            serde_json::json!({}),
        )
        .await?;
    }
    drop(conn);
    delete_quietly(&state, old).await;
    answer(
        &reply,
        stream.id,
        None,
        Ok(()),
        "Thumbnail removed: the default image is shown.",
    )
    .await
}

/// The panel again (htmx), or back to the stream page with a flash.
async fn answer(
    reply: &Reply,
    stream: StreamId,
    current: Option<String>,
    outcome: Result<(), ImageError>,
    done: &'static str,
) -> AppResult<Response> {
    if reply.htmx.fragment {
        let csrf_token = crate::auth::csrf::token(&reply.session).await?;
        let mut panel = ThumbnailPanel::new(stream, current.as_deref(), &csrf_token);
        return match outcome {
            Ok(()) => {
                panel.saved = Some(done);
                render_with(StatusCode::OK, &panel)
            }
            Err(e) => {
                panel.error = Some(e.to_string());
                render_with(StatusCode::UNPROCESSABLE_ENTITY, &panel)
            }
        };
    }
    match outcome {
        Ok(()) => reply.flash(FlashKind::Success, done).await?,
        Err(e) => reply.flash(FlashKind::Error, e.to_string()).await?,
    }
    Ok(auth::redirect(false, &format!("/studio/streams/{stream}")))
}
