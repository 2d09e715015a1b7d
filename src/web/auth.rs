//! Sign up, sign in, sign out. Form errors render next to their fields, as a
//! fragment for htmx and as the whole page without JavaScript.

use std::net::SocketAddr;
use std::time::Duration;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use tower_sessions::Session;

use super::{FieldErrors, FlashKind, Htmx, Layout, flash, render_with};
use crate::auth::{self, password};
use crate::db::{self, users};
use crate::error::AppResult;
use crate::state::AppState;

/// Failed sign-ins allowed within the window: for one account from one client
/// address (a guesser), for one address over all accounts (credential
/// stuffing), and for one account over all addresses (guessing spread over
/// many addresses). Counting per account *and* address keeps a stranger who
/// types wrong passwords from locking the owner out; the account-wide limit is
/// high for the same reason.
pub const MAX_FAILURES_PER_ACCOUNT_FROM_IP: i64 = 5;
pub const MAX_FAILURES_PER_IP: i64 = 30;
pub const MAX_FAILURES_PER_ACCOUNT: i64 = 100;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Deserialize, Default)]
pub struct NextQuery {
    pub next: Option<String>,
}

#[derive(Deserialize, Default)]
pub struct SignUpForm {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub password: String,
    pub next: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/auth/signup.html", blocks = ["form"])]
pub struct SignUpPage {
    pub layout: Layout,
    pub email: String,
    pub display_name: String,
    pub next: String,
    pub errors: FieldErrors,
}

pub async fn signup_page(layout: Layout, Query(q): Query<NextQuery>) -> AppResult<Response> {
    let page = SignUpPage {
        layout,
        email: String::new(),
        display_name: String::new(),
        next: auth::safe_next(q.next.as_deref()),
        errors: FieldErrors::default(),
    };
    render_with(StatusCode::OK, &page)
}

fn validate_email(email: &str) -> Option<&'static str> {
    let email = email.trim();
    let (local, domain) = email.split_once('@')?;
    if email.is_empty() {
        return Some("Enter your email address.");
    }
    if local.is_empty() || !domain.contains('.') || domain.starts_with('.') || domain.ends_with('.')
    {
        return Some("Enter an email address like name@example.com.");
    }
    if email.len() > 254 || email.chars().any(char::is_whitespace) {
        return Some("Enter an email address like name@example.com.");
    }
    None
}

fn check_email(email: &str, errors: &mut FieldErrors) {
    if email.trim().is_empty() {
        errors.add("email", "Enter your email address.");
    } else if !email.contains('@') {
        errors.add("email", "Enter an email address like name@example.com.");
    } else if let Some(e) = validate_email(email) {
        errors.add("email", e);
    }
}

pub fn check_display_name(name: &str, errors: &mut FieldErrors) {
    let name = name.trim();
    if name.is_empty() {
        errors.add("display_name", "Enter the name others will see.");
    } else if name.chars().count() > 80 {
        errors.add("display_name", "Use at most 80 characters.");
    } else if name.chars().any(char::is_control) {
        errors.add("display_name", "Use letters, numbers and punctuation only.");
    }
}

pub async fn signup(
    State(state): State<AppState>,
    session: Session,
    htmx: Htmx,
    layout: Layout,
    Form(form): Form<SignUpForm>,
) -> AppResult<Response> {
    let mut errors = FieldErrors::default();
    check_email(&form.email, &mut errors);
    check_display_name(&form.display_name, &mut errors);
    if let Err(e) = password::check_strength(&form.password, &form.email) {
        errors.add("password", e);
    }
    let email = users::normalize_email(&form.email);
    let mut conn = state.db.get().await?;
    if errors.get("email").is_none() && users::find_by_email(&mut conn, &email).await?.is_some() {
        errors.add(
            "email",
            "An account with this email already exists. Sign in instead.",
        );
    }

    if errors.is_empty() {
        // No connection is held while argon2 works (tens of ms of CPU).
        drop(conn);
        let hash = password::hash(form.password.clone()).await?;
        let mut conn = state.db.get().await?;
        let new = users::NewUser {
            email: &email,
            display_name: form.display_name.trim(),
            password_hash: &hash,
        };
        match users::insert(&mut conn, &new).await {
            Ok(user) => {
                db::audit::record(
                    &mut conn,
                    Some(user.id),
                    None,
                    "account.created",
                    None,
                    serde_json::json!({}),
                )
                .await?;
                auth::sign_in(&session, user.id).await?;
                flash(
                    &session,
                    FlashKind::Success,
                    format!("Welcome to stagepass, {}!", user.display_name),
                )
                .await?;
                return Ok(auth::redirect(
                    htmx.request,
                    &auth::safe_next(form.next.as_deref()),
                ));
            }
            // Two sign-ups with the same email at once: the unique index decides.
            Err(e) if db::is_unique_violation(&e, None) => {
                errors.add(
                    "email",
                    "An account with this email already exists. Sign in instead.",
                );
            }
            Err(e) => return Err(e.into()),
        }
    }

    let page = SignUpPage {
        layout,
        email: form.email.trim().to_owned(),
        display_name: form.display_name,
        next: auth::safe_next(form.next.as_deref()),
        errors,
    };
    if htmx.fragment {
        render_with(StatusCode::UNPROCESSABLE_ENTITY, &page.as_form())
    } else {
        render_with(StatusCode::UNPROCESSABLE_ENTITY, &page)
    }
}

#[derive(Deserialize, Default)]
pub struct SignInForm {
    #[serde(default)]
    pub email: String,
    #[serde(default)]
    pub password: String,
    pub next: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/auth/signin.html", blocks = ["form"])]
pub struct SignInPage {
    pub layout: Layout,
    pub email: String,
    pub next: String,
    pub errors: FieldErrors,
}

pub async fn signin_page(layout: Layout, Query(q): Query<NextQuery>) -> AppResult<Response> {
    let page = SignInPage {
        layout,
        email: String::new(),
        next: auth::safe_next(q.next.as_deref()),
        errors: FieldErrors::default(),
    };
    render_with(StatusCode::OK, &page)
}

/// The client's address; `X-Forwarded-For` only when the operator says a proxy sets it.
pub fn client_ip(state: &AppState, headers: &HeaderMap, peer: SocketAddr) -> String {
    if state.config.trust_proxy_headers
        && let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            // The rightmost entry is the one our proxy appended; the ones
            // before it are whatever the client claimed.
            .and_then(|v| v.rsplit(',').next())
            .map(str::trim)
            .filter(|v| v.parse::<std::net::IpAddr>().is_ok())
    {
        return ip.to_owned();
    }
    peer.ip().to_string()
}

pub async fn signin(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    session: Session,
    htmx: Htmx,
    layout: Layout,
    Form(form): Form<SignInForm>,
) -> AppResult<Response> {
    let ip = client_ip(&state, &headers, peer);
    let mut errors = FieldErrors::default();
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    if form.email.trim().is_empty() {
        errors.add("email", "Enter your email address.");
    }
    if form.password.is_empty() {
        errors.add("password", "Enter your password.");
    }

    if errors.is_empty() {
        let mut conn = state.db.get().await?;
        let failures =
            users::recent_sign_in_failures(&mut conn, &form.email, &ip, FAILURE_WINDOW).await?;
        if failures.for_email_from_ip >= MAX_FAILURES_PER_ACCOUNT_FROM_IP
            || failures.for_ip >= MAX_FAILURES_PER_IP
            || failures.for_email >= MAX_FAILURES_PER_ACCOUNT
        {
            tracing::info!(%ip, "sign-in throttled");
            status = StatusCode::TOO_MANY_REQUESTS;
            errors.add(
                "",
                "Too many failed sign-in attempts. For your security, wait 15 minutes before trying again.",
            );
        } else {
            let user = users::find_by_email(&mut conn, &form.email).await?;
            // No connection is held while argon2 works (tens of ms of CPU).
            drop(conn);
            let ok = password::verify(
                form.password.clone(),
                user.as_ref().map(|u| u.password_hash.clone()),
            )
            .await?;
            let mut conn = state.db.get().await?;
            users::record_sign_in_attempt(&mut conn, &form.email, &ip, ok).await?;
            match user {
                Some(user) if ok => {
                    auth::sign_in(&session, user.id).await?;
                    return Ok(auth::redirect(
                        htmx.request,
                        &auth::safe_next(form.next.as_deref()),
                    ));
                }
                // Never say which of the two was wrong.
                _ => errors.add(
                    "",
                    "That email and password don't match an account. Check them and try again.",
                ),
            }
        }
    }

    let page = SignInPage {
        layout,
        email: form.email.trim().to_owned(),
        next: auth::safe_next(form.next.as_deref()),
        errors,
    };
    if htmx.fragment {
        render_with(status, &page.as_form())
    } else {
        render_with(status, &page)
    }
}

pub async fn signout(session: Session, htmx: Htmx) -> AppResult<Response> {
    auth::sign_out(&session).await?;
    Ok(auth::redirect(htmx.request, "/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_with_a_reason() {
        let mut e = FieldErrors::default();
        check_email("not-an-email", &mut e);
        assert_eq!(
            e.get("email"),
            Some("Enter an email address like name@example.com.")
        );
        let mut e = FieldErrors::default();
        check_email("a@b", &mut e);
        assert!(e.get("email").is_some());
        let mut e = FieldErrors::default();
        check_email("Ann@Example.com", &mut e);
        assert!(e.is_empty());
    }
}
