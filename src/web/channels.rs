//! Channels: creating one, the public channel page (/c/{handle}) and the team
//! (moderators). Who may manage a channel is `authz::owned_channel`'s; this
//! module must not decide access by itself. Creating channels is
//! limited per account (`CHANNELS_MAX_PER_ACCOUNT_PER_DAY`).

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use diesel_async::AsyncPgConnection;
use serde::Deserialize;

use super::forms::{check_channel_title, normalize_text};
use super::view::{Moment, access_label};
use super::{FieldErrors, FlashKind, Layout, render_with};
use crate::access;
use crate::auth::{self, CurrentUser, MaybeUser};
use crate::db::channels::{self, Channel, NewChannel, Role};
use crate::db::streams::{self, Stream};
use crate::db::{self, StreamId, UserId, users};
use crate::error::{AppError, AppResult};
use crate::limits::{self, Action};
use crate::state::AppState;
use crate::web::authz::{self, Area, Ids, OwnedChannel, PublicChannel, area};
use crate::web::{Reply, forms};

/// The unique index on `channels.handle` (a race between two sign-ups of the same handle).
const HANDLE_KEY: &str = "channels_handle_key";

// ---------------------------------------------------------------------------
// The public channel page.

/// One stream in a list of the channel page.
pub struct StreamItem {
    pub id: StreamId,
    pub title: String,
    pub access: &'static str,
    /// Started (live), scheduled (upcoming) or ended (past).
    pub when: Option<Moment>,
}

impl StreamItem {
    fn new(stream: &Stream, when: Option<chrono::DateTime<chrono::Utc>>) -> Self {
        StreamItem {
            id: stream.id,
            title: stream.title.clone(),
            access: access_label(stream.access),
            when: when.map(Moment::new),
        }
    }
}

#[derive(Template)]
#[template(path = "pages/channels/show.html")]
pub struct ChannelPage {
    pub layout: Layout,
    pub channel: Channel,
    pub is_owner: bool,
    pub live: Vec<StreamItem>,
    pub upcoming: Vec<StreamItem>,
    pub past: Vec<StreamItem>,
    /// Follow button with the follower count.
    pub follow: super::view::follow_button::FollowButton,
    pub avatar_url: String,
    pub links: Vec<channels::ChannelLink>,
}

pub async fn show(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    layout: Layout,
    PublicChannel(channel): PublicChannel,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let is_owner = match &user {
        Some(u) => access::channel_role(&mut conn, u.id, channel.id).await? == Some(Role::Owner),
        None => false,
    };
    let listing = streams::listing(&mut conn, channel.id).await?;
    let follow = super::view::follow_button::FollowButton::load(
        &mut conn,
        user.as_ref(),
        &channel,
        &format!("/c/{}", channel.handle),
        &layout.csrf_token,
    )
    .await?;
    let links = channels::links(&mut conn, channel.id).await?;
    let avatar_key = channels::avatar_key(&mut conn, channel.id).await?;
    let page = ChannelPage {
        follow,
        links,
        avatar_url: super::uploads::avatar_url(&channel.handle, avatar_key.as_deref()),
        layout,
        is_owner,
        live: listing
            .live
            .iter()
            .map(|s| StreamItem::new(s, s.started_at))
            .collect(),
        upcoming: listing
            .upcoming
            .iter()
            .map(|s| StreamItem::new(s, s.scheduled_at))
            .collect(),
        past: listing
            .past
            .iter()
            .map(|s| StreamItem::new(s, s.ended_at))
            .collect(),
        channel,
    };
    render_with(StatusCode::OK, &page)
}

// ---------------------------------------------------------------------------
// Creating a channel.

#[derive(Deserialize, Default)]
pub struct ChannelForm {
    #[serde(default)]
    pub handle: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Template)]
#[template(path = "pages/channels/new.html", blocks = ["form"])]
pub struct NewChannelPage {
    pub layout: Layout,
    pub handle: String,
    pub title: String,
    pub description: String,
    pub errors: FieldErrors,
}

pub async fn new(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    reply: Reply,
    layout: Layout,
) -> AppResult<Response> {
    if !super::creators::may_create_channels(&state, user.id).await? {
        return Ok(reply.redirect("/creators/apply"));
    }
    let page = NewChannelPage {
        layout,
        handle: String::new(),
        title: String::new(),
        description: String::new(),
        errors: FieldErrors::default(),
    };
    render_with(StatusCode::OK, &page)
}

/// Handles are stored lowercase: `Ann-Live` and `ann-live` are the same channel.
pub fn normalize_handle(handle: &str) -> String {
    handle.trim().to_lowercase()
}

/// The rule of the `channels_handle_check` constraint, with a reason: 3–40
/// characters of a–z, 0–9 and hyphens, starting and ending with a letter or digit.
pub fn check_handle(handle: &str) -> Option<&'static str> {
    let n = handle.chars().count();
    if handle.is_empty() {
        Some("Choose a handle: it becomes your channel's address.")
    } else if !handle
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        Some("Use only letters a–z, digits 0–9 and hyphens.")
    } else if !(3..=40).contains(&n) {
        Some("Use 3 to 40 characters.")
    } else if handle.starts_with('-') || handle.ends_with('-') {
        Some("Start and end with a letter or a digit, not a hyphen.")
    } else {
        None
    }
}

const HANDLE_TAKEN: &str = "That handle is taken. Try another one.";

pub async fn create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    reply: Reply,
    layout: Layout,
    Form(form): Form<ChannelForm>,
) -> AppResult<Response> {
    if !super::creators::may_create_channels(&state, user.id).await? {
        return Err(AppError::forbidden(super::creators::APPROVAL_NEEDED));
    }
    let handle = normalize_handle(&form.handle);
    let description = normalize_text(&form.description);
    let mut errors = FieldErrors::default();
    if let Some(e) = check_handle(&handle) {
        errors.add("handle", e);
    }
    check_channel_title(&form.title, &mut errors);
    if description.chars().count() > 5000 {
        errors.add("description", "Use at most 5000 characters.");
    }

    let mut conn = state.db.get().await?;
    if errors.get("handle").is_none()
        && channels::find_by_handle(&mut conn, &handle)
            .await?
            .is_some()
    {
        errors.add("handle", HANDLE_TAKEN);
    }
    let mut status = StatusCode::UNPROCESSABLE_ENTITY;
    if errors.is_empty() {
        let limit = state.config.limits.channels_per_account;
        if let Err(refused) = limits::take(
            &mut conn,
            Action::ChannelCreated,
            &user.id.to_string(),
            limit,
        )
        .await?
        {
            status = StatusCode::TOO_MANY_REQUESTS;
            let noun = if limit.max == 1 {
                "channel"
            } else {
                "channels"
            };
            errors.add(
                "",
                format!(
                    "You created {} {noun} in the last day, the most one account may. Wait {} before creating another.",
                    limit.max,
                    refused.wait()
                ),
            );
        }
    }
    if errors.is_empty() {
        let new = NewChannel {
            handle: &handle,
            title: form.title.trim(),
            description: &description,
            owner_id: user.id,
        };
        match channels::create(&mut conn, new).await {
            Ok(channel) => {
                db::audit::record(
                    &mut conn,
                    Some(user.id),
                    Some(channel.id),
                    "channel.created",
                    Some(&channel.handle),
                    serde_json::json!({ "title": channel.title }),
                )
                .await?;
                return reply
                    .redirect_with(
                        FlashKind::Success,
                        format!(
                            "Your channel “{}” is ready. Create its first stream.",
                            channel.title
                        ),
                        "/studio",
                    )
                    .await;
            }
            // Two people claiming the same handle at once: the unique index decides.
            Err(e) if db::is_unique_violation(&e, Some(HANDLE_KEY)) => {
                errors.add("handle", HANDLE_TAKEN);
            }
            Err(e) => return Err(e.into()),
        }
    }

    let page = NewChannelPage {
        layout,
        handle,
        title: form.title.trim().to_owned(),
        description,
        errors,
    };
    reply.render(status, &page, &page.as_form())
}

// ---------------------------------------------------------------------------
// The team.

pub struct MemberRow {
    pub user_id: UserId,
    pub display_name: String,
    pub email: String,
    pub is_owner: bool,
    pub since: String,
}

#[derive(Template)]
#[template(path = "pages/channels/team.html", blocks = ["team"])]
pub struct TeamPage {
    pub layout: Layout,
    pub channel: Channel,
    pub members: Vec<MemberRow>,
    /// What was typed in the add form (kept on errors, cleared after adding).
    pub email: String,
    pub errors: FieldErrors,
    /// Set after an htmx add: who was added, said inside the swapped part.
    pub added: Option<String>,
}

impl TeamPage {
    async fn load(
        conn: &mut AsyncPgConnection,
        layout: Layout,
        channel: Channel,
    ) -> AppResult<Self> {
        let members = channels::members(conn, channel.id)
            .await?
            .into_iter()
            .map(|m| MemberRow {
                is_owner: m.user_id == channel.owner_id || m.role == Role::Owner,
                user_id: m.user_id,
                display_name: m.display_name,
                email: m.email,
                since: m.since.format("%Y-%m-%d").to_string(),
            })
            .collect();
        Ok(TeamPage {
            layout,
            channel,
            members,
            email: String::new(),
            errors: FieldErrors::default(),
            added: None,
        })
    }
}

pub async fn team(
    State(state): State<AppState>,
    OwnedChannel { channel, .. }: OwnedChannel<area::Team>,
    layout: Layout,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let page = TeamPage::load(&mut conn, layout, channel).await?;
    render_with(StatusCode::OK, &page)
}

#[derive(Deserialize, Default)]
pub struct AddModeratorForm {
    #[serde(default)]
    pub email: String,
}

pub async fn add_moderator(
    State(state): State<AppState>,
    OwnedChannel { user, channel, .. }: OwnedChannel<area::Team>,
    reply: Reply,
    layout: Layout,
    Form(form): Form<AddModeratorForm>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let mut errors = FieldErrors::default();
    let mut added = None;

    match forms::account_by_email(&mut conn, &form.email, &mut errors).await? {
        None => {}
        Some(member) if member.id == channel.owner_id => errors.add(
            "email",
            "That's the owner's account: the owner can already do everything a moderator can.",
        ),
        Some(member) => {
            if channels::add_moderator(&mut conn, channel.id, member.id).await? {
                db::audit::record(
                    &mut conn,
                    Some(user.id),
                    Some(channel.id),
                    "team.moderator_added",
                    Some(&member.id.to_string()),
                    serde_json::json!({}),
                )
                .await?;
                added = Some(member.display_name);
            } else {
                errors.add(
                    "email",
                    format!("{} is already on this channel's team.", member.display_name),
                );
            }
        }
    }

    if let Some(name) = added.as_deref()
        && !reply.htmx.fragment
    {
        reply
            .flash(
                FlashKind::Success,
                format!("{name} is now a moderator of {}.", channel.title),
            )
            .await?;
        return Ok(auth::redirect(
            false,
            &format!("/studio/channels/{}/team", channel.handle),
        ));
    }

    let status = if errors.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    let mut page = TeamPage::load(&mut conn, layout, channel).await?;
    if !errors.is_empty() {
        page.email = form.email.trim().to_owned();
    }
    page.errors = errors;
    page.added = added;
    reply.render(status, &page, &page.as_team())
}

pub async fn remove_moderator(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    reply: Reply,
    Ids((handle, member)): Ids<(String, UserId)>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let channel = authz::owned_channel(&mut conn, user.id, &handle, Area::Team).await?;
    if member == channel.owner_id {
        return Err(AppError::forbidden(
            "The owner can't be removed from the channel's team.",
        ));
    }
    let removed = channels::remove_moderator(&mut conn, channel.id, member).await?;
    if removed {
        db::audit::record(
            &mut conn,
            Some(user.id),
            Some(channel.id),
            "team.moderator_removed",
            Some(&member.to_string()),
            serde_json::json!({}),
        )
        .await?;
    }
    if reply.htmx.fragment {
        // The row removes itself (hx-swap="outerHTML" with an empty body). Gone
        // already (a second click, another tab) ends the same way.
        return Ok(StatusCode::OK.into_response());
    }
    let name = users::find(&mut conn, member)
        .await?
        .map(|u| u.display_name)
        .unwrap_or_else(|| "That person".to_owned());
    let (kind, message) = if removed {
        (
            FlashKind::Success,
            format!("{name} is no longer a moderator of {}.", channel.title),
        )
    } else {
        (
            FlashKind::Info,
            format!("{name} was not on the team any more."),
        )
    };
    reply.flash(kind, message).await?;
    Ok(auth::redirect(
        false,
        &format!("/studio/channels/{}/team", channel.handle),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_follow_the_database_rule() {
        for ok in ["ann", "ann-live", "a1b", "0-9", &"a".repeat(40)] {
            assert_eq!(check_handle(ok), None, "{ok}");
        }
        for bad in [
            "",
            "ab",
            "-ann",
            "ann-",
            "an n",
            "ann_live",
            "änn",
            &"a".repeat(41),
        ] {
            assert!(check_handle(bad).is_some(), "{bad}");
        }
        assert_eq!(normalize_handle("  Ann-Live "), "ann-live");
    }
}
