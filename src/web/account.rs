//! The account page: display name and password change. Wrong current
//! passwords are counted per account (`PASSWORD_CHANGE_MAX_FAILURES` within
//! the sign-in window): a stolen session must not become an unlimited
//! password-guessing oracle, nor unlimited argon2 work.

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::forms::check_display_name;
use super::{FieldErrors, FlashKind, Layout, render_with};
use crate::auth::{self, CurrentUser, password};
use crate::config::Limit;
use crate::db::{self, users};
use crate::error::AppResult;
use crate::limits::{self, Action};
use crate::state::AppState;
use crate::web::Reply;

#[derive(Template)]
#[template(path = "pages/account/show.html", blocks = ["profile_form", "password_form"])]
pub struct AccountPage {
    pub layout: Layout,
    pub email: String,
    pub display_name: String,
    pub member_since: String,
    pub profile_errors: FieldErrors,
    pub password_errors: FieldErrors,
    pub profile_saved: bool,
}

impl AccountPage {
    fn new(layout: Layout, user: &users::User) -> Self {
        AccountPage {
            layout,
            email: user.email.clone(),
            display_name: user.display_name.clone(),
            member_since: user.created_at.format("%B %Y").to_string(),
            profile_errors: FieldErrors::default(),
            password_errors: FieldErrors::default(),
            profile_saved: false,
        }
    }
}

pub async fn show(CurrentUser(user): CurrentUser, layout: Layout) -> AppResult<Response> {
    render_with(StatusCode::OK, &AccountPage::new(layout, &user))
}

#[derive(Deserialize)]
pub struct ProfileForm {
    #[serde(default)]
    pub display_name: String,
}

pub async fn update_profile(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    reply: Reply,
    layout: Layout,
    Form(form): Form<ProfileForm>,
) -> AppResult<Response> {
    let mut page = AccountPage::new(layout, &user);
    check_display_name(&form.display_name, &mut page.profile_errors);
    if !page.profile_errors.is_empty() {
        page.display_name = form.display_name;
        return reply.render(
            StatusCode::UNPROCESSABLE_ENTITY,
            &page,
            &page.as_profile_form(),
        );
    }
    let mut conn = state.db.get().await?;
    let changes = users::UserChanges {
        display_name: Some(form.display_name.trim()),
        ..Default::default()
    };
    let user = users::update(&mut conn, user.id, changes).await?;
    if reply.htmx.fragment {
        page.display_name = user.display_name;
        page.profile_saved = true;
        render_with(StatusCode::OK, &page.as_profile_form())
    } else {
        reply
            .flash(FlashKind::Success, "Your name was saved.")
            .await?;
        Ok(auth::redirect(false, "/account"))
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    pub current_password: String,
    #[serde(default)]
    pub new_password: String,
}

pub async fn change_password(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    headers: axum::http::HeaderMap,
    reply: Reply,
    layout: Layout,
    Form(form): Form<PasswordForm>,
) -> AppResult<Response> {
    let mut page = AccountPage::new(layout, &user);
    let errors = &mut page.password_errors;
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    let limit = Limit {
        max: state.config.limits.password_change_failures,
        window: state.config.limits.sign_in_window,
    };
    let subject = user.id.0.to_string();
    if form.current_password.is_empty() {
        errors.add("current_password", "Enter your current password.");
    } else {
        // Counted as a failure before the password is verified (and forgiven
        // if it was right): guesses sent at once count against each other.
        match limits::take(
            &mut *state.db.get().await?,
            Action::PasswordChangeFailed,
            &subject,
            limit,
        )
        .await?
        {
            Err(refused) => {
                status = StatusCode::TOO_MANY_REQUESTS;
                errors.add(
                    "current_password",
                    format!(
                        "Too many wrong current passwords. For your security, wait {} before trying again.",
                        refused.wait()
                    ),
                );
            }
            Ok(counted) => {
                let hash = users::password_hash(&mut *state.db.get().await?, user.id).await?;
                if password::verify(form.current_password.clone(), hash).await? {
                    limits::forgive(&mut *state.db.get().await?, counted).await?;
                } else {
                    errors.add("current_password", "That is not your current password.");
                }
            }
        }
    }
    if let Err(e) = password::check_strength(&form.new_password, &user.email) {
        errors.add("new_password", e);
    } else if form.new_password == form.current_password {
        errors.add(
            "new_password",
            "Choose a password different from your current one.",
        );
    }
    if !errors.is_empty() {
        return reply.render(status, &page, &page.as_password_form());
    }

    let hash = password::hash(form.new_password).await?;
    let mut conn = state.db.get().await?;
    users::update(
        &mut conn,
        user.id,
        users::UserChanges {
            password_hash: Some(&hash),
            ..Default::default()
        },
    )
    .await?;
    db::audit::record(
        &mut conn,
        Some(user.id),
        None,
        "account.password_changed",
        None,
        serde_json::json!({}),
    )
    .await?;
    drop(conn);
    let device = auth::device::DeviceCookie::from_headers(&headers);
    let ended =
        auth::secure_after_password_change(&state, &reply.session, user.id, device.as_ref())
            .await?;
    let message = if ended > 0 {
        "Your password was changed, and your other devices were signed out."
    } else {
        "Your password was changed."
    };
    reply.flash(FlashKind::Success, message).await?;
    // A full page load: the new CSRF token must reach every form and reply.htmx.
    Ok(reply.redirect("/account"))
}
