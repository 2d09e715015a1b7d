//! The buying funnel's visitor, as the watch and pass pages note it: an
//! extractor reading the anonymous visitor cookie, and the step noted in
//! the background (`crate::analytics::note`), with the cookie set on the
//! answer when it was just minted.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use tower_sessions::cookie::{Cookie, SameSite};

use crate::analytics::{self, Step, Visitor};
use crate::db::{ChannelId, StreamId, UserId};
use crate::state::AppState;

/// The long-lived cookie that tells anonymous visitors apart in the funnel
/// (a random id; never an IP address).
pub const VISITOR_COOKIE: &str = "stagepass_visitor";

/// The anonymous visitor id the request's cookie carries, if any.
pub struct FunnelVisitor {
    cookie: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for FunnelVisitor {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let cookie = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix(VISITOR_COOKIE)?.strip_prefix('='))
            .find(|id| analytics::is_anonymous_id(id))
            .map(str::to_owned);
        Ok(FunnelVisitor { cookie })
    }
}

/// A funnel step noted for a page; `apply` adds the visitor cookie to the
/// response when it was just minted.
#[must_use]
pub struct Noted {
    set_cookie: Option<HeaderValue>,
}

impl Noted {
    pub fn nothing() -> Self {
        Noted { set_cookie: None }
    }

    pub fn apply(self, mut response: Response) -> Response {
        if let Some(c) = self.set_cookie {
            response.headers_mut().append(header::SET_COOKIE, c);
        }
        response
    }
}

impl FunnelVisitor {
    /// Records `step` for this visitor — the user when signed in, else the
    /// cookie's anonymous id — in the background (`analytics::note`: the
    /// page does not wait). An anonymous request without the cookie is not
    /// counted: it only gets a new cookie (set by `Noted::apply`), and the
    /// visitor counts from the next request that brings it back, so clients
    /// that keep no cookies (most bots) never write a row.
    pub fn note(
        &self,
        state: &AppState,
        user: Option<UserId>,
        step: Step,
        channel: ChannelId,
        stream: Option<StreamId>,
    ) -> Noted {
        let (visitor, fresh) = match (user, self.cookie.as_deref().and_then(Visitor::anonymous)) {
            (Some(u), _) => (Some(Visitor::user(u)), None),
            (None, Some(v)) => (Some(v), None),
            (None, None) => (None, Some(Visitor::new_anonymous().0)),
        };
        if let Some(visitor) = visitor {
            analytics::note(&state.db, step, channel, stream, visitor);
        }
        let set_cookie = fresh.and_then(|id| {
            let cookie = Cookie::build((VISITOR_COOKIE, id))
                .path("/")
                .http_only(true)
                .same_site(SameSite::Lax)
                .secure(state.config.secure_cookies())
                .max_age(time::Duration::days(400))
                .build();
            HeaderValue::from_str(&cookie.to_string()).ok()
        });
        Noted { set_cookie }
    }
}
