//! Applying to create channels, when the instance asks for approval
//! (`CREATORS=approval`): a signed-in user applies with a channel name and a
//! few words about it; an admin decides (`web::admin`), and the applicant
//! hears it through the bell. While a user is not approved, the new-channel
//! page sends them here, and creating a channel is refused (`may_create_channels`).

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::forms::normalize_text;
use super::view::Moment;
use super::{FieldErrors, FlashKind, Layout, Reply, render};
use crate::auth::CurrentUser;
use crate::config::Creators;
use crate::db::applications::{self, Application, Status};
use crate::db::{self, UserId};
use crate::error::AppResult;
use crate::state::AppState;

/// What creating a channel needs, said to someone who may not yet.
pub const APPROVAL_NEEDED: &str =
    "Creating channels on this instance needs an admin's approval. Apply at /creators/apply.";

/// Whether `user` may create channels: always with `CREATORS=open`;
/// otherwise once an admin approved them (admins may anyway).
pub async fn may_create_channels(state: &AppState, user: UserId) -> AppResult<bool> {
    Ok(match state.config.creators {
        Creators::Open => true,
        Creators::Approval => {
            db::users::is_approved_creator(&mut *state.db.get().await?, user).await?
        }
    })
}

#[derive(Deserialize, Default)]
pub struct ApplyForm {
    #[serde(default)]
    pub channel_name: String,
    #[serde(default)]
    pub about: String,
}

#[derive(Template)]
#[template(path = "pages/creators/apply.html", blocks = ["apply"])]
pub struct ApplyPage {
    pub layout: Layout,
    /// Anyone creates channels here, or this user was approved.
    pub may_create: bool,
    pub open: bool,
    pub latest: Option<Application>,
    pub latest_at: Option<Moment>,
    pub form: ApplyForm,
    pub errors: FieldErrors,
}

impl ApplyPage {
    /// Whether the form is offered: no application waiting, not approved.
    pub fn may_apply(&self) -> bool {
        !self.open
            && !self.may_create
            && !matches!(&self.latest, Some(a) if a.status == Status::Pending)
    }
}

async fn page(
    state: &AppState,
    layout: Layout,
    user: UserId,
    form: ApplyForm,
    errors: FieldErrors,
) -> AppResult<ApplyPage> {
    let may_create = may_create_channels(state, user).await?;
    let latest = applications::latest_of(&mut *state.db.get().await?, user).await?;
    Ok(ApplyPage {
        layout,
        may_create,
        open: state.config.creators == Creators::Open,
        latest_at: latest.as_ref().map(|a| Moment::new(a.created_at)),
        latest,
        form,
        errors,
    })
}

pub async fn apply_page(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    layout: Layout,
) -> AppResult<Response> {
    render(
        &page(
            &state,
            layout,
            user.id,
            ApplyForm::default(),
            FieldErrors::default(),
        )
        .await?,
    )
}

pub async fn apply(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    reply: Reply,
    layout: Layout,
    Form(form): Form<ApplyForm>,
) -> AppResult<Response> {
    let name = normalize_text(&form.channel_name);
    let about = normalize_text(&form.about);
    let mut errors = FieldErrors::default();
    if name.is_empty() {
        errors.add("channel_name", "Name the channel you want to create.");
    } else if name.chars().count() > 80 || name.contains('\n') {
        errors.add("channel_name", "Use one line of at most 80 characters.");
    }
    if about.is_empty() {
        errors.add("about", "Say in a few words what you will stream.");
    } else if about.chars().count() > 1000 {
        errors.add("about", "Use at most 1000 characters.");
    }
    if errors.is_empty() && may_create_channels(&state, user.id).await? {
        errors.add("", "You may create channels already: no need to apply.");
    }
    if errors.is_empty() {
        let mut conn = state.db.get().await?;
        match applications::insert(&mut conn, user.id, &name, &about).await {
            Ok(application) => {
                db::audit::record(
                    &mut conn,
                    Some(user.id),
                    None,
                    "creator.applied",
                    Some(&application.id.to_string()),
                    serde_json::json!({ "channel_name": name }),
                )
                .await?;
                return reply
                    .redirect_with(
                        FlashKind::Success,
                        "Thanks! Your application is with the instance's admins. You will hear their decision in your notifications.",
                        "/creators/apply",
                    )
                    .await;
            }
            Err(e) if db::is_unique_violation(&e, None) => {
                errors.add("", "Your application is waiting for an admin already.");
            }
            Err(e) => return Err(e.into()),
        }
    }
    let page = page(&state, layout, user.id, form, errors).await?;
    reply.render(StatusCode::UNPROCESSABLE_ENTITY, &page, &page.as_apply())
}
