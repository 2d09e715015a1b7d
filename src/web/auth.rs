//! Sign up, sign in, sign out. Form errors render next to their fields, as a
//! fragment for htmx and as the whole page without JavaScript.
//!
//! Both forms are flood-limited (settings in `LimitsConfig`): sign-up per client
//! address and across the instance (`crate::limits`), sign-in by failures over a window for one account
//! from one address, for one address, and for one account from anywhere. That
//! last one would let a stranger lock the owner out, so a browser that signed
//! in to the account before (its device cookie, `auth::device`) is held only
//! by its own failures. A refusal is a 429 next to the form that says why and
//! how long to wait (and `Retry-After`), and changes nothing. A suspended
//! account cannot sign in: the form says it was suspended, and why.

use std::net::SocketAddr;
use std::time::Duration;

use askama::Template;
use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use diesel_async::AsyncConnection;
use serde::Deserialize;
use tower_sessions::Session;

use super::client::client_ip;
use super::forms::check_display_name;
use super::{FieldErrors, FlashKind, Htmx, Layout, render_with};
use crate::auth::device::DeviceCookie;
use crate::auth::{self, password};
use crate::config::LimitsConfig;
use crate::db::{self, users};
use crate::error::AppResult;
use crate::limits::{self, Action};
use crate::state::AppState;
use crate::web::Reply;

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

pub async fn signup(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    reply: Reply,
    layout: Layout,
    Form(form): Form<SignUpForm>,
) -> AppResult<Response> {
    let mut errors = FieldErrors::default();
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    let mut retry_after = None;
    check_email(&form.email, &mut errors);
    check_display_name(&form.display_name, &mut errors);
    if let Err(e) = password::check_strength(&form.password, &form.email) {
        errors.add("password", e);
    }
    let email = users::normalize_email(&form.email);
    let mut conn = state.db.get().await?;
    if errors.is_empty() {
        // Only a form that could create an account counts, created or not:
        // the answer "this email has an account" is worth limiting, and it
        // is given only here, so fixing a too-short password or a name
        // costs nothing and probes nothing.
        let ip = client_ip(&state, &headers, peer);
        let limits = &state.config.limits;
        if let Err(refused) = sign_up_allowed(&mut conn, &ip, limits).await? {
            status = StatusCode::TOO_MANY_REQUESTS;
            retry_after = Some(refused.retry_after);
            errors.add("", refused.reason());
        } else if users::find_by_email(&mut conn, &email).await?.is_some() {
            errors.add(
                "email",
                "An account with this email already exists. Sign in instead.",
            );
        }
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
                // The browser that created the account is known to it.
                let previous = DeviceCookie::from_headers(&headers).map(|d| d.hash());
                let device = DeviceCookie::new();
                users::remember_device(&mut conn, previous.as_deref(), &device.hash(), user.id)
                    .await?;
                auth::sign_in(&reply.session, user.id).await?;
                reply
                    .flash(
                        FlashKind::Success,
                        format!("Welcome to stagepass, {}!", user.display_name),
                    )
                    .await?;
                let mut response = reply.redirect(&auth::safe_next(form.next.as_deref()));
                response.headers_mut().append(
                    header::SET_COOKIE,
                    device.set_cookie(state.config.secure_cookies()),
                );
                return Ok(response);
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
    let response = reply.render(status, &page, &page.as_form())?;
    Ok(with_retry_after(response, retry_after))
}

/// A sign-up refused by a flood limit, and in whose name.
struct SignUpRefused {
    retry_after: Duration,
    wait: String,
    instance: bool,
}

impl SignUpRefused {
    fn reason(&self) -> String {
        if self.instance {
            format!(
                "So many people are signing up right now that sign-ups are paused. Wait {} before trying again.",
                self.wait
            )
        } else {
            format!(
                "Too many sign-ups from your network in a short time. Wait {} before trying again.",
                self.wait
            )
        }
    }
}

/// Counts one sign-up from `ip` against the per-address limit, then against
/// the instance's (a flood spread over many addresses); a refusal by the
/// instance takes back the address's count, so that it costs them nothing.
async fn sign_up_allowed(
    conn: &mut diesel_async::AsyncPgConnection,
    ip: &str,
    limits: &crate::config::LimitsConfig,
) -> AppResult<Result<(), SignUpRefused>> {
    let counted = match limits::take(conn, Action::SignUp, ip, limits.sign_ups_per_address).await? {
        Ok(counted) => counted,
        Err(refused) => {
            tracing::info!(%ip, "sign-up throttled for its address");
            return Ok(Err(SignUpRefused {
                retry_after: refused.retry_after,
                wait: refused.wait(),
                instance: false,
            }));
        }
    };
    if let Err(refused) =
        limits::take(conn, Action::SignUp, INSTANCE, limits.sign_ups_per_instance).await?
    {
        tracing::warn!("sign-ups throttled for the whole instance");
        limits::forgive(conn, counted).await?;
        return Ok(Err(SignUpRefused {
            retry_after: refused.retry_after,
            wait: refused.wait(),
            instance: true,
        }));
    }
    Ok(Ok(()))
}

/// The subject the instance-wide sign-up limit counts under (never an address).
const INSTANCE: &str = "instance";

/// Adds `Retry-After` (whole seconds) to a refusal.
fn with_retry_after(mut response: Response, wait: Option<Duration>) -> Response {
    if let Some(wait) = wait {
        let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
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

pub async fn signin(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    reply: Reply,
    layout: Layout,
    Form(form): Form<SignInForm>,
) -> AppResult<Response> {
    let ip = client_ip(&state, &headers, peer);
    let device = DeviceCookie::from_headers(&headers);
    let device_hash = device.as_ref().map(DeviceCookie::hash);
    let limits = &state.config.limits;
    let mut errors = FieldErrors::default();
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    let mut retry_after = None;
    if form.email.trim().is_empty() {
        errors.add("email", "Enter your email address.");
    }
    if form.password.is_empty() {
        errors.add("password", "Enter your password.");
    }

    if errors.is_empty() {
        let mut conn = state.db.get().await?;
        let (user, hash) = match users::find_with_hash_by_email(&mut conn, &form.email).await? {
            Some((user, hash)) => (Some(user), Some(hash)),
            None => (None, None),
        };
        let user_id = user.as_ref().map(|u| u.id);
        // Checked and counted under a lock: parallel attempts see each other
        // (the attempt counts as failed until its password is verified).
        let decided = conn
            .transaction(async |conn| {
                users::lock_sign_in(conn, &form.email, &ip).await?;
                let failures = users::recent_sign_in_failures(
                    conn,
                    &form.email,
                    &ip,
                    device_hash.as_deref(),
                    limits.sign_in_window,
                )
                .await?;
                // A browser that signed in to this account before, and has not
                // failed too often itself, is held by nobody else's failures.
                let known_device = match (user_id, &device_hash) {
                    (Some(user), Some(hash)) => {
                        failures.for_email_from_device
                            < i64::from(limits.sign_in_failures_per_device)
                            && users::is_known_device(conn, hash, user).await?
                    }
                    _ => false,
                };
                if !known_device
                    && let Some(refusal) =
                        sign_in_refusal(conn, &form.email, &ip, &failures, limits).await?
                {
                    return Ok(Err(refusal));
                }
                let attempt = users::record_sign_in_attempt(
                    conn,
                    &form.email,
                    &ip,
                    device_hash.as_deref(),
                    false,
                )
                .await?;
                diesel::QueryResult::Ok(Ok(attempt))
            })
            .await?;
        match decided {
            Err((message, wait)) => {
                tracing::info!(%ip, "sign-in throttled");
                status = StatusCode::TOO_MANY_REQUESTS;
                retry_after = Some(wait);
                errors.add("", message);
            }
            Ok(attempt) => {
                // No connection is held while argon2 works (tens of ms of CPU).
                drop(conn);
                let ok = password::verify(form.password.clone(), hash).await?;
                let mut conn = state.db.get().await?;
                if ok {
                    users::sign_in_attempt_succeeded(&mut conn, attempt).await?;
                }
                // A suspended account is told so, but only with its password:
                // the answer is no hint to someone guessing.
                let suspended = match &user {
                    Some(user) if ok => users::suspension(&mut conn, user.id).await?,
                    _ => None,
                };
                match user {
                    Some(_) if suspended.is_some() => {
                        tracing::info!("sign-in of a suspended account refused");
                        status = StatusCode::FORBIDDEN;
                        let reason = suspended.unwrap_or_default();
                        errors.add(
                            "",
                            if reason.is_empty() {
                                "This account has been suspended by the instance's admins.".to_owned()
                            } else {
                                format!("This account has been suspended by the instance's admins. Reason: {reason}")
                            },
                        );
                    }
                    Some(user) if ok => {
                        // A new cookie at every sign-in (OWASP): a copy of
                        // the old one is no longer a known device.
                        let device = DeviceCookie::new();
                        users::remember_device(
                            &mut conn,
                            device_hash.as_deref(),
                            &device.hash(),
                            user.id,
                        )
                        .await?;
                        auth::sign_in(&reply.session, user.id).await?;
                        let mut response = reply.redirect(&auth::safe_next(form.next.as_deref()));
                        response.headers_mut().append(
                            header::SET_COOKIE,
                            device.set_cookie(state.config.secure_cookies()),
                        );
                        return Ok(response);
                    }
                    // Never say which of the two was wrong.
                    _ => errors.add(
                        "",
                        "That email and password don't match an account. Check them and try again.",
                    ),
                }
            }
        }
    }

    let page = SignInPage {
        layout,
        email: form.email.trim().to_owned(),
        next: auth::safe_next(form.next.as_deref()),
        errors,
    };
    let response = reply.render(status, &page, &page.as_form())?;
    Ok(with_retry_after(response, retry_after))
}

/// Whether an unknown device's sign-in is refused: the first limit reached
/// says why, the longest wait of those reached says when.
async fn sign_in_refusal(
    conn: &mut diesel_async::AsyncPgConnection,
    email: &str,
    ip: &str,
    failures: &users::RecentFailures,
    cfg: &LimitsConfig,
) -> diesel::QueryResult<Option<(String, Duration)>> {
    let reached = [
        (
            failures.for_email_from_ip,
            cfg.sign_in_failures_per_account_and_address,
            Some(email),
            Some(ip),
            "Too many failed sign-in attempts for this account from your network.",
        ),
        (
            failures.for_ip,
            cfg.sign_in_failures_per_address,
            None,
            Some(ip),
            "Too many failed sign-in attempts from your network.",
        ),
        (
            failures.for_email,
            cfg.sign_in_failures_per_account,
            Some(email),
            None,
            "Too many failed sign-in attempts for this account from many places. \
             A browser you have signed in with before can still sign in.",
        ),
    ];
    let mut why = None;
    let mut wait = Duration::ZERO;
    for (count, max, email, ip, reason) in reached {
        if count < i64::from(max) {
            continue;
        }
        why.get_or_insert(reason);
        let of = users::FailuresOf {
            email,
            ip,
            device_hash: None,
        };
        wait = wait.max(users::sign_in_retry_after(conn, of, max, cfg.sign_in_window).await?);
    }
    Ok(why.map(|why| {
        (
            format!(
                "{why} For your security, wait {} before trying again.",
                limits::wait_in_words(wait)
            ),
            wait,
        )
    }))
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
