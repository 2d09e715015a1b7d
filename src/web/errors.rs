//! Turns `AppError` responses into what the user sees: the full error page
//! (with the navigation of whoever is signed in) or, for htmx requests, a
//! fragment swapped into the page's `#alerts` region, so the user sees it
//! where they are looking instead of a broken half-page.

use askama::Template;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum_htmx::{HxReswap, HxRetarget, SwapOption};
use tower_sessions::Session;

use super::{Layout, LayoutUser, wants_fragment};
use crate::auth::session_store::USER_ID_KEY;
use crate::db::{UserId, users};
use crate::error::{AppError, ErrorPage};
use crate::state::AppState;

#[derive(Template)]
#[template(path = "pages/error.html", blocks = ["alert"])]
struct ErrorTemplate {
    layout: Layout,
    error: ErrorPage,
}

pub async fn not_found() -> AppError {
    AppError::NotFound
}

pub async fn render(
    State(state): State<AppState>,
    session: Session,
    req: Request,
    next: Next,
) -> Response {
    let fragment = wants_fragment(req.headers());
    let response = next.run(req).await;
    let Some(error) = response.extensions().get::<ErrorPage>().cloned() else {
        return response;
    };

    // The user's name for the navigation; errors here must not hide the original error.
    let user = match session.get::<i64>(USER_ID_KEY).await {
        Ok(Some(id)) => match state.db.get().await {
            Ok(mut conn) => users::find(&mut conn, UserId(id)).await.ok().flatten(),
            Err(_) => None,
        },
        _ => None,
    };
    let layout = match Layout::for_session(
        &session,
        user.map(|u| LayoutUser {
            display_name: u.display_name,
            is_admin: u.is_admin,
            unread_notifications: None,
        }),
    )
    .await
    {
        Ok(layout) => layout,
        Err(_) => Layout {
            user: None,
            csrf_token: String::new(),
            flashes: Vec::new(),
        },
    };
    respond(error, layout, fragment)
}

/// Outermost net for failures of the layers themselves (the session store
/// failing to save answers a bare 500): when the database is what failed, say
/// so with a 503 and what to do, like any other error page.
pub async fn last_resort(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let fragment = wants_fragment(req.headers());
    let response = next.run(req).await;
    let bare = response.status().is_server_error()
        && response.extensions().get::<ErrorPage>().is_none()
        && !response.headers().contains_key(header::CONTENT_TYPE);
    if !bare {
        return response;
    }
    let error = match state.db.get().await {
        Err(e) => AppError::from(e),
        Ok(_) => AppError::Internal(anyhow::anyhow!(
            "a middleware failed with {}",
            response.status()
        )),
    };
    let page = error
        .into_response()
        .extensions()
        .get::<ErrorPage>()
        .cloned()
        .expect("errors carry their page");
    let layout = Layout {
        user: None,
        csrf_token: String::new(),
        flashes: Vec::new(),
    };
    respond(page, layout, fragment)
}

fn respond(error: ErrorPage, layout: Layout, fragment: bool) -> Response {
    let page = ErrorTemplate {
        layout,
        error: error.clone(),
    };
    let html = if fragment {
        page.as_alert().render()
    } else {
        page.render()
    };
    let mut out = match html {
        Ok(html) => (error.status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering the error page");
            (error.status, format!("{}: {}", error.title, error.message)).into_response()
        }
    };
    out.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("HX-Request"));
    if fragment {
        // Shown where the user is looking: the page's alert region.
        return (
            HxRetarget("#alerts".to_owned()),
            HxReswap(SwapOption::InnerHtml),
            out,
        )
            .into_response();
    }
    out
}
