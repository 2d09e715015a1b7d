//! HTTP only: one module per area. Handlers are thin — extract, authorize,
//! call the domain, render. This module holds what every page shares: the
//! layout context (`Layout`), template rendering, form errors, and how a
//! form post is answered (`Reply`: a flash and a redirect, or to htmx the
//! block of the page that changed).

pub mod account;
pub mod admin;
pub mod analytics;
pub mod assets;
pub mod auth;
pub mod authz;
pub mod channel_webhooks;
pub mod channels;
pub mod chat;
pub mod checkout;
pub mod client;
pub mod creators;
pub mod errors;
pub mod follow;
pub mod forms;
pub mod funnel;
pub mod grants;
pub mod health;
pub mod home;
pub mod images;
pub mod ingress;
pub mod live;
pub mod moderation;
pub mod notifications;
pub mod passes;
pub mod recordings;
pub mod settings;
pub mod studio;
pub mod uploads;
pub mod view;
pub mod watch;
pub mod webhooks;

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tower_sessions::Session;

use crate::error::{AppError, AppResult};
use crate::state::AppState;

/// Renders a template (a page or one of its blocks) into an HTML response.
pub fn render(template: &impl Template) -> AppResult<Response> {
    render_with(StatusCode::OK, template)
}

pub fn render_with(status: StatusCode, template: &impl Template) -> AppResult<Response> {
    let html = template.render()?;
    let mut response = (status, Html(html)).into_response();
    // One URL serves a whole page or, to htmx, a fragment: caches must keep both.
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("HX-Request"));
    Ok(response)
}

/// Whether to answer with a fragment: an htmx request that is not a boosted
/// navigation or a history restore (those need the whole page).
pub fn wants_fragment(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key("hx-request")
        && !headers.contains_key("hx-boosted")
        && !headers.contains_key("hx-history-restore-request")
}

/// The request's shape, for handlers that answer pages or fragments.
pub struct Htmx {
    pub fragment: bool,
    pub request: bool,
}

impl<S: Send + Sync> FromRequestParts<S> for Htmx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Htmx {
            fragment: wants_fragment(&parts.headers),
            request: parts.headers.contains_key("hx-request"),
        })
    }
}

/// How a handler answers a form post: flashes queued for the next page (in
/// the session), then a redirect that htmx follows (`HX-Redirect`) or a 303.
pub struct Reply {
    pub session: Session,
    pub htmx: Htmx,
}

impl<S: Send + Sync> FromRequestParts<S> for Reply {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Ok(htmx) = Htmx::from_request_parts(parts, state).await;
        Ok(Reply {
            session: crate::auth::session_of(parts)?,
            htmx,
        })
    }
}

impl Reply {
    /// Redirects to `to`.
    pub fn redirect(&self, to: &str) -> Response {
        crate::auth::redirect(self.htmx.request, to)
    }

    /// Queues `message` for the next page the user sees.
    pub async fn flash(&self, kind: FlashKind, message: impl Into<String>) -> AppResult<()> {
        flash(&self.session, kind, message).await
    }

    /// The whole `page`, or to htmx only `block`, the part of it the request
    /// changes (`&page.as_form()`).
    pub fn render(
        &self,
        status: StatusCode,
        page: &impl Template,
        block: &impl Template,
    ) -> AppResult<Response> {
        if self.htmx.fragment {
            render_with(status, block)
        } else {
            render_with(status, page)
        }
    }

    /// Queues `message`, then redirects to `to`, where it is shown.
    pub async fn redirect_with(
        &self,
        kind: FlashKind,
        message: impl Into<String>,
        to: &str,
    ) -> AppResult<Response> {
        self.flash(kind, message).await?;
        Ok(self.redirect(to))
    }
}

/// What the base layout needs on every page: who is signed in, the CSRF token
/// for forms and htmx, and the flash messages to show once.
pub struct Layout {
    pub user: Option<LayoutUser>,
    pub csrf_token: String,
    pub flashes: Vec<Flash>,
}

pub struct LayoutUser {
    pub display_name: String,
    /// Shows the way to the operator's console.
    pub is_admin: bool,
    /// The bell's unread count (capped, see `db::notifications::COUNT_CAP`).
    /// None when the page did not load it: the bell then loads it itself.
    pub unread_notifications: Option<i64>,
}

impl LayoutUser {
    /// The bell in the navigation.
    pub fn bell(&self) -> notifications::Bell {
        notifications::Bell {
            unread: self.unread_notifications,
        }
    }
}

impl Layout {
    /// The layout of a full page for `user`, built only when one is
    /// rendered: the extractor would take the flashes an htmx answer does
    /// not show.
    pub async fn for_user(session: &Session, user: &crate::db::users::User) -> AppResult<Layout> {
        Layout::for_session(
            session,
            Some(LayoutUser {
                display_name: user.display_name.clone(),
                is_admin: user.is_admin,
                unread_notifications: None,
            }),
        )
        .await
    }

    /// The layout of a fragment answer: the CSRF token for its forms, and no
    /// flashes (those stay for the next full page).
    pub async fn fragment(session: &Session) -> AppResult<Layout> {
        Ok(Layout {
            user: None,
            csrf_token: crate::auth::csrf::token(session).await?,
            flashes: Vec::new(),
        })
    }
}

impl FromRequestParts<AppState> for Layout {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (user, conn) = crate::auth::load_user_keeping_conn(parts, state).await?;
        let session = crate::auth::session_of(parts)?;
        let user = match user {
            Some(u) => Some(LayoutUser {
                unread_notifications: layout_unread(state, conn, u.id).await,
                display_name: u.display_name,
                is_admin: u.is_admin,
            }),
            None => None,
        };
        Layout::for_session(&session, user).await
    }
}

/// The bell's count for the layout: one small query (a capped count over the
/// partial index of unread notifications), on the connection that loaded the
/// user when there is one. A failure costs the page nothing: the bell is
/// rendered without a count and loads it itself.
async fn layout_unread(
    state: &AppState,
    conn: Option<crate::db::DbConn>,
    user: crate::db::UserId,
) -> Option<i64> {
    let mut conn = match conn {
        Some(conn) => conn,
        None => match state.db.get().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "layout: no connection for the unread count; the bell loads it itself");
                return None;
            }
        },
    };
    match crate::db::notifications::unread_count(&mut conn, user).await {
        Ok(n) => Some(n),
        Err(e) => {
            tracing::warn!(error = %e, "layout: unread count failed; the bell loads it itself");
            None
        }
    }
}

impl Layout {
    pub async fn for_session(session: &Session, user: Option<LayoutUser>) -> AppResult<Self> {
        let csrf_token = crate::auth::csrf::token(session).await?;
        // Reading a session never writes it (a write per page view is what
        // capped the watch page's throughput): flashes are removed only when
        // there are some, and the idle timeout is pushed out (by saving the
        // session) at most once per `SESSION_TOUCH_EVERY`.
        let flashes = match session.get::<Vec<Flash>>(FLASH_KEY).await? {
            Some(_) => session
                .remove::<Vec<Flash>>(FLASH_KEY)
                .await?
                .unwrap_or_default(),
            None => Vec::new(),
        };
        let every = match session.expiry() {
            // A short idle timeout is renewed more often (a quarter of it).
            Some(tower_sessions::Expiry::OnInactivity(idle)) => {
                (idle.whole_seconds() / 4).clamp(1, SESSION_TOUCH_EVERY.as_secs() as i64)
            }
            _ => SESSION_TOUCH_EVERY.as_secs() as i64,
        };
        let now = chrono::Utc::now().timestamp();
        let touched = session.get::<i64>(TOUCHED_KEY).await?.unwrap_or(0);
        if now - touched >= every {
            session.insert(TOUCHED_KEY, now).await?;
        }
        Ok(Layout {
            user,
            csrf_token,
            flashes,
        })
    }
}

const FLASH_KEY: &str = "flash";
/// When a page view last saved the session (unix seconds).
const TOUCHED_KEY: &str = "touched";
/// Page views save the session (extending its idle timeout) at most this
/// often, or every quarter of the idle timeout if that is shorter.
pub const SESSION_TOUCH_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Flash {
    pub kind: FlashKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FlashKind {
    Success,
    Info,
    Error,
}

impl std::fmt::Display for FlashKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FlashKind::Success => "success",
            FlashKind::Info => "info",
            FlashKind::Error => "error",
        })
    }
}

/// Queues a message for the next page the user sees.
pub async fn flash(
    session: &Session,
    kind: FlashKind,
    message: impl Into<String>,
) -> AppResult<()> {
    let mut all = session
        .get::<Vec<Flash>>(FLASH_KEY)
        .await?
        .unwrap_or_default();
    all.push(Flash {
        kind,
        message: message.into(),
    });
    session.insert(FLASH_KEY, all).await?;
    Ok(())
}

/// Validation errors of a form, by field name; `""` holds errors of the whole form.
#[derive(Debug, Default)]
pub struct FieldErrors(BTreeMap<&'static str, String>);

impl FieldErrors {
    pub fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.entry(field).or_insert_with(|| message.into());
    }

    pub fn get(&self, field: &str) -> Option<&str> {
        self.0.get(field).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
