//! The one error type handlers return, and how it becomes a response.
//!
//! Which variant to use: `NotFound` when the thing does not exist (or the user
//! may not know it exists); `Forbidden` with a reason the user understands;
//! `BadRequest` for input we cannot make sense of (form errors are rendered by
//! the handler next to their fields instead); `Unavailable` when a dependency
//! (database, LiveKit, S3) is down; `Internal` for bugs — logged here, once,
//! with context, and shown as a plain 500.
//!
//! `AppError::into_response` does not render HTML itself: it answers the status
//! with an [`ErrorPage`] extension, and the `web::errors::render` middleware,
//! which knows whether the request came from htmx and who is signed in, turns
//! it into a full page or a fragment. This module must not know about templates.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("too many requests: {0}")]
    TooManyRequests(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What the error page shows; attached to error responses as an extension.
#[derive(Debug, Clone)]
pub struct ErrorPage {
    pub status: StatusCode,
    pub title: &'static str,
    pub message: String,
}

impl AppError {
    pub fn forbidden(reason: impl Into<String>) -> Self {
        Self::Forbidden(reason.into())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn page(&self) -> ErrorPage {
        let (title, message) = match self {
            Self::NotFound => (
                "Page not found",
                "There is nothing here. Check the address, or go back to the home page.".to_owned(),
            ),
            Self::Forbidden(reason) => ("Not allowed", reason.clone()),
            Self::BadRequest(reason) => ("That didn't work", reason.clone()),
            Self::TooManyRequests(reason) => ("Slow down", reason.clone()),
            Self::Unavailable(what) => (
                "Temporarily unavailable",
                format!("{what} Please try again in a minute."),
            ),
            Self::Internal(_) => (
                "Something went wrong",
                "We hit an unexpected error and logged it. Please try again; if it keeps happening, tell the operator of this site.".to_owned(),
            ),
        };
        ErrorPage {
            status: self.status(),
            title,
            message,
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        match &self {
            Self::Internal(err) => tracing::error!(error = ?err, "request failed"),
            Self::Unavailable(what) => tracing::warn!(%what, "dependency unavailable"),
            _ => {}
        }
        let page = self.page();
        let mut response = page.status.into_response();
        response.extensions_mut().insert(page);
        response
    }
}

/// What a page says when Postgres is away (the pool cannot connect, or the
/// connection dropped mid-request).
const DATABASE_DOWN: &str = "The database is not answering.";

impl From<diesel::result::Error> for AppError {
    fn from(err: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match err {
            Error::NotFound => Self::NotFound,
            // The connection went away under the query (Postgres stopped or
            // restarted): the database is unavailable, not our bug.
            Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                info,
            ) => {
                tracing::warn!(error = %info.message(), "database connection lost");
                Self::Unavailable(DATABASE_DOWN.to_owned())
            }
            other => Self::Internal(anyhow::Error::new(other).context("database query")),
        }
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for AppError {
    fn from(err: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        tracing::warn!(error = %err, "database pool");
        Self::Unavailable(DATABASE_DOWN.to_owned())
    }
}

impl From<crate::db::DbError> for AppError {
    fn from(err: crate::db::DbError) -> Self {
        match err {
            crate::db::DbError::Query(e) => e.into(),
            crate::db::DbError::Pool(e) => e.into(),
        }
    }
}

// The domain's errors, as pages answer them: what the database did, as
// above; what a service did not do, 503 with the sentence the domain wrote;
// anything the person can fix, 400 with it.

impl From<crate::lifecycle::LifecycleError> for AppError {
    fn from(err: crate::lifecycle::LifecycleError) -> Self {
        use crate::lifecycle::LifecycleError as E;
        match err {
            E::Db(e) => e.into(),
            E::NotFound => Self::NotFound,
            e @ E::LiveKit(_) => Self::Unavailable(e.to_string()),
            e @ E::AlreadyEnded => Self::BadRequest(e.to_string()),
            e @ E::Hidden(_) => Self::Forbidden(e.to_string()),
        }
    }
}

impl From<crate::recording::RecordingError> for AppError {
    fn from(err: crate::recording::RecordingError) -> Self {
        use crate::recording::RecordingError as E;
        match err {
            E::Db(e) => e.into(),
            e @ (E::Storage(_) | E::Egress | E::StorageDelete) => Self::Unavailable(e.to_string()),
            e => Self::BadRequest(e.to_string()),
        }
    }
}

impl From<crate::livekit::ingress::IngressError> for AppError {
    fn from(err: crate::livekit::ingress::IngressError) -> Self {
        use crate::livekit::ingress::IngressError as E;
        match err {
            E::Db(e) => e.into(),
            E::NotFound => Self::NotFound,
            E::Token(detail) => Self::Internal(anyhow::anyhow!(detail)),
            e @ E::LiveKit(_) => Self::Unavailable(e.to_string()),
            e => Self::BadRequest(e.to_string()),
        }
    }
}

impl From<tower_sessions::session::Error> for AppError {
    fn from(err: tower_sessions::session::Error) -> Self {
        use tower_sessions::session::Error;
        use tower_sessions::session_store::Error as Store;
        match err {
            // Sessions live in Postgres (`auth::session_store`, whose only
            // backend errors are the database's): reading one while the
            // database is away is a 503, like any page that needs it.
            Error::Store(Store::Backend(e)) => {
                tracing::warn!(error = %e, "session store");
                Self::Unavailable(DATABASE_DOWN.to_owned())
            }
            other => Self::Internal(anyhow::Error::new(other).context("session")),
        }
    }
}

impl From<askama::Error> for AppError {
    fn from(err: askama::Error) -> Self {
        Self::Internal(anyhow::Error::new(err).context("rendering a template"))
    }
}

pub type AppResult<T> = Result<T, AppError>;
