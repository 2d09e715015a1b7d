//! Who is asking: the session user extractors, signing in and out, passwords
//! and CSRF. This module answers "who is this", never "may they" (that is
//! `access.rs`).

pub mod csrf;
pub mod device;
pub mod guest;
pub mod password;
pub mod session_store;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower_sessions::Session;

use crate::db::users::{self, User};
use crate::db::{self, UserId};
use crate::error::AppError;
use crate::state::AppState;
use session_store::{USER_ID_KEY, USER_ROW_KEY};

const SIGNED_IN_AT_KEY: &str = "signed_in_at";

/// The signed-in user, or a redirect to sign-in (and back) for anonymous requests.
#[derive(Clone)]
pub struct CurrentUser(pub User);

/// The signed-in user, if any.
#[derive(Clone)]
pub struct MaybeUser(pub Option<User>);

/// Per-request cache so several extractors load the user once.
#[derive(Clone)]
struct Loaded(Option<User>);

async fn load_user(parts: &mut Parts, state: &AppState) -> Result<Option<User>, AppError> {
    load_user_keeping_conn(parts, state)
        .await
        .map(|(user, _)| user)
}

/// The session's user, and the pooled connection that loaded it when this
/// call took one (None when the user came with the session, from the
/// per-request cache, or nobody is signed in), so the caller can run its own
/// queries on it instead of taking a second connection (the layout's unread
/// count).
pub(crate) async fn load_user_keeping_conn(
    parts: &mut Parts,
    state: &AppState,
) -> Result<(Option<User>, Option<db::DbConn>), AppError> {
    if let Some(Loaded(user)) = parts.extensions.get::<Loaded>() {
        return Ok((user.clone(), None));
    }
    let mut kept = None;
    let session = session_of(parts)?;
    let user = match session.get::<i64>(USER_ID_KEY).await? {
        None => None,
        Some(id) => {
            let signed_in_at = session.get::<i64>(SIGNED_IN_AT_KEY).await?.unwrap_or(0);
            let age = chrono::Utc::now().timestamp() - signed_in_at;
            let user = if age > state.config.session_absolute_timeout.as_secs() as i64 {
                None
            } else {
                // Loaded with the session (session_store.rs); queried only when
                // this request signed someone in after the session was loaded.
                match session.get::<User>(USER_ROW_KEY).await? {
                    Some(user) if user.id == UserId(id) => Some(user),
                    _ => {
                        let mut conn = state.db.get().await?;
                        let user = users::find_signed_in(&mut conn, UserId(id)).await?;
                        kept = Some(conn);
                        user
                    }
                }
            };
            if user.is_none() {
                // Past the absolute timeout, or the account is gone or
                // suspended: end the session.
                session.flush().await?;
            }
            user
        }
    };
    parts.extensions.insert(Loaded(user.clone()));
    Ok((user, kept))
}

pub fn session_of(parts: &Parts) -> Result<Session, AppError> {
    parts
        .extensions
        .get::<Session>()
        .cloned()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("session layer missing")))
}

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = AppError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        load_user(parts, state).await.map(MaybeUser)
    }
}

/// Rejection of `CurrentUser`: sign in first.
pub enum SignInRequired {
    Redirect { next: String, htmx: bool },
    Error(AppError),
}

impl IntoResponse for SignInRequired {
    fn into_response(self) -> Response {
        match self {
            SignInRequired::Error(e) => e.into_response(),
            SignInRequired::Redirect { next, htmx } => {
                let to = format!(
                    "/signin?next={}",
                    url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                );
                redirect(htmx, &to)
            }
        }
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = SignInRequired;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match load_user(parts, state)
            .await
            .map_err(SignInRequired::Error)?
        {
            Some(user) => Ok(CurrentUser(user)),
            None => {
                let htmx = parts.headers.contains_key("hx-request");
                // For htmx calls, come back to the page the user was on, not the fragment URL.
                let next = parts
                    .headers
                    .get("hx-current-url")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| url::Url::parse(v).ok())
                    .map(|u| match u.query() {
                        Some(q) => format!("{}?{q}", u.path()),
                        None => u.path().to_owned(),
                    })
                    .unwrap_or_else(|| {
                        parts
                            .uri
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default()
                    });
                Err(SignInRequired::Redirect { next, htmx })
            }
        }
    }
}

/// A redirect after a mutation: `HX-Redirect` for htmx, 303 otherwise.
pub fn redirect(htmx: bool, to: &str) -> Response {
    if htmx {
        (StatusCode::OK, axum_htmx::HxRedirect(to.to_owned()), ()).into_response()
    } else {
        let value = HeaderValue::from_str(to).unwrap_or_else(|_| HeaderValue::from_static("/"));
        (StatusCode::SEE_OTHER, [(header::LOCATION, value)]).into_response()
    }
}

/// Only local paths are followed after sign-in, never another site.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                // Visible ASCII only: browsers drop tabs and newlines, so "/\t/evil" would be "//evil".
                && n.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// Starts a signed-in session: a new session id (no fixation), a new CSRF token.
pub async fn sign_in(session: &Session, user: UserId) -> Result<(), AppError> {
    session.cycle_id().await?;
    session.insert(USER_ID_KEY, user.0).await?;
    session
        .insert(SIGNED_IN_AT_KEY, chrono::Utc::now().timestamp())
        .await?;
    csrf::rotate(session).await?;
    Ok(())
}

/// Ends the session on the server (the row is deleted) and clears the cookie.
pub async fn sign_out(session: &Session) -> Result<(), AppError> {
    session.flush().await?;
    Ok(())
}

/// After a password change: every other session of the user ends, this one
/// gets a new id, and the account forgets every device but this browser's.
pub async fn secure_after_password_change(
    state: &AppState,
    session: &Session,
    user: UserId,
    device: Option<&device::DeviceCookie>,
) -> Result<usize, AppError> {
    let current = session.id().map(|id| id.to_string()).unwrap_or_default();
    let mut conn = state.db.get().await?;
    let ended = db::sessions::delete_for_user_except(&mut conn, user, &current).await?;
    db::users::forget_devices_except(&mut conn, user, device.map(|d| d.hash()).as_deref()).await?;
    session.cycle_id().await?;
    csrf::rotate(session).await?;
    Ok(ended)
}

/// The value of the request's cookie `name` (the first one), trimmed.
pub fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_never_leaves_the_site() {
        for evil in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil",
            "https://evil.example",
            "evil",
        ] {
            assert_eq!(safe_next(Some(evil)), "/", "{evil:?}");
        }
        assert_eq!(safe_next(Some("/s/12?x=1")), "/s/12?x=1");
        assert_eq!(safe_next(None), "/");
    }
}
