//! Channel settings (/studio/channels/{handle}/settings): title, description,
//! links and the avatar (served at /c/{handle}/avatar). Only the owner may
//! change them — moderators get a 403 that says so; the check is
//! `authz::owned_channel`, as for the team page. The settings pages share a
//! nav (templates/partials/channels/settings_nav.html): Settings, Team,
//! Webhooks, Analytics. Images are checked and re-encoded by `crate::images`.

use askama::Template;
use axum::Form;
use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::forms::{check_channel_title, normalize_text};
use super::uploads::{
    self, Audience, DEFAULT_AVATAR, StoreError, avatar_url, delete_quietly, read_upload, store,
};
use super::{FieldErrors, FlashKind, Layout, render_with};
use crate::auth::{self};
use crate::db;
use crate::db::channels::{self, Channel};
use crate::error::AppResult;
use crate::images::{ImageError, Purpose};
use crate::state::AppState;
use crate::web::Reply;
use crate::web::authz::{OwnedChannel, PublicChannel, area};

/// How many links a channel page shows.
pub const MAX_LINKS: usize = 5;
const LINK_LABEL: [&str; MAX_LINKS] = [
    "link_label_0",
    "link_label_1",
    "link_label_2",
    "link_label_3",
    "link_label_4",
];
const LINK_URL: [&str; MAX_LINKS] = [
    "link_url_0",
    "link_url_1",
    "link_url_2",
    "link_url_3",
    "link_url_4",
];

/// One row of the links form.
pub struct LinkRow {
    pub index: usize,
    pub label: String,
    pub url: String,
    pub label_error: Option<String>,
    pub url_error: Option<String>,
}

#[derive(Template)]
#[template(path = "pages/settings/channel.html", blocks = ["details", "avatar"])]
pub struct SettingsPage {
    pub layout: Layout,
    pub channel: Channel,
    pub title: String,
    pub description: String,
    pub links: Vec<LinkRow>,
    pub errors: FieldErrors,
    pub saved: bool,
    pub avatar_url: String,
    pub has_avatar: bool,
    pub avatar_error: Option<String>,
    pub avatar_saved: Option<&'static str>,
}

impl SettingsPage {
    fn new(
        layout: Layout,
        channel: Channel,
        links: Vec<channels::ChannelLink>,
        avatar: Option<&str>,
    ) -> Self {
        let mut rows: Vec<LinkRow> = links
            .into_iter()
            .map(|l| (l.label, l.url))
            .chain(std::iter::repeat((String::new(), String::new())))
            .take(MAX_LINKS)
            .enumerate()
            .map(|(index, (label, url))| LinkRow {
                index,
                label,
                url,
                label_error: None,
                url_error: None,
            })
            .collect();
        rows.truncate(MAX_LINKS);
        SettingsPage {
            layout,
            title: channel.title.clone(),
            description: channel.description.clone(),
            avatar_url: avatar_url(&channel.handle, avatar),
            has_avatar: avatar.is_some(),
            channel,
            links: rows,
            errors: FieldErrors::default(),
            saved: false,
            avatar_error: None,
            avatar_saved: None,
        }
    }

    async fn load(state: &AppState, layout: Layout, channel: Channel) -> AppResult<Self> {
        let mut conn = state.db.get().await?;
        let links = channels::links(&mut conn, channel.id).await?;
        let avatar = channels::avatar_key(&mut conn, channel.id).await?;
        Ok(Self::new(layout, channel, links, avatar.as_deref()))
    }
}

pub async fn show(
    State(state): State<AppState>,
    OwnedChannel { channel, .. }: OwnedChannel<area::Settings>,
    layout: Layout,
) -> AppResult<Response> {
    render_with(
        StatusCode::OK,
        &SettingsPage::load(&state, layout, channel).await?,
    )
}

/// Checks a link's URL: absolute http(s) with a host, no spaces, at most
/// 2000 characters (the `channel_links_url_check` constraint, with reasons).
pub fn check_link_url(raw: &str) -> Result<String, &'static str> {
    let raw = raw.trim();
    if raw.chars().count() > 2000 {
        return Err("Use a shorter address (at most 2000 characters).");
    }
    if raw.chars().any(char::is_whitespace) {
        return Err("An address has no spaces. Paste the full link, like https://example.com/me.");
    }
    let url = url::Url::parse(raw)
        .map_err(|_| "Enter a full web address starting with https:// (or http://).")?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err("Only web addresses starting with https:// (or http://) can be linked.");
    }
    // Store what was typed (trimmed), as long as it is valid: the URL parser
    // would add a trailing slash people did not write.
    Ok(raw.to_owned())
}

pub async fn update(
    State(state): State<AppState>,
    OwnedChannel { user, channel, .. }: OwnedChannel<area::Settings>,
    reply: Reply,
    layout: Layout,
    Form(fields): Form<Vec<(String, String)>>,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let title = field("title").trim().to_owned();
    let description = normalize_text(field("description"));
    let mut errors = FieldErrors::default();
    check_channel_title(&title, &mut errors);
    if description.chars().count() > 5000 {
        errors.add("description", "Use at most 5000 characters.");
    }
    let mut rows = Vec::new();
    let mut links = Vec::new();
    for i in 0..MAX_LINKS {
        let label = field(LINK_LABEL[i]).trim().to_owned();
        let url = field(LINK_URL[i]).trim().to_owned();
        let mut row = LinkRow {
            index: i,
            label_error: None,
            url_error: None,
            label: label.clone(),
            url: url.clone(),
        };
        if !(label.is_empty() && url.is_empty()) {
            if label.is_empty() {
                row.label_error = Some("Name the link, e.g. “Website”.".to_owned());
            } else if label.chars().count() > 60 {
                row.label_error = Some("Use at most 60 characters.".to_owned());
            }
            match check_link_url(&url) {
                _ if url.is_empty() => row.url_error = Some("Enter the link's address.".to_owned()),
                Err(e) => row.url_error = Some(e.to_owned()),
                Ok(u) if row.label_error.is_none() => links.push((label, u)),
                Ok(_) => {}
            }
            if let Some(e) = &row.label_error {
                errors.add(LINK_LABEL[i], e.clone());
            }
            if let Some(e) = &row.url_error {
                errors.add(LINK_URL[i], e.clone());
            }
        }
        rows.push(row);
    }

    if errors.is_empty() {
        let saved =
            channels::save_settings(&mut conn, channel.id, &title, &description, &links).await?;
        db::audit::record(
            &mut conn,
            Some(user.id),
            Some(channel.id),
            "channel.settings_saved",
            Some(&channel.handle),
            serde_json::json!({ "title": saved.title, "links": links.len() }),
        )
        .await?;
        drop(conn);
        if !reply.htmx.fragment {
            return reply
                .redirect_with(
                    FlashKind::Success,
                    "Your channel settings were saved.",
                    &settings_path(&saved),
                )
                .await;
        }
        let mut page = SettingsPage::load(&state, layout, saved).await?;
        page.saved = true;
        return render_with(StatusCode::OK, &page.as_details());
    }

    drop(conn);
    let mut page = SettingsPage::load(&state, layout, channel).await?;
    page.title = title;
    page.description = description;
    page.links = rows;
    page.errors = errors;
    reply.render(StatusCode::UNPROCESSABLE_ENTITY, &page, &page.as_details())
}

fn settings_path(channel: &Channel) -> String {
    format!("/studio/channels/{}/settings", channel.handle)
}

// ---------------------------------------------------------------------------
// The avatar.

pub async fn avatar(
    State(state): State<AppState>,
    headers: HeaderMap,
    PublicChannel(channel): PublicChannel,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let key = channels::avatar_key(&mut conn, channel.id).await?;
    // A hidden channel's avatar is its team's to see: never cached for everyone.
    let audience = if channels::is_hidden(&mut conn, channel.id).await? {
        Audience::Private
    } else {
        Audience::Public
    };
    drop(conn);
    uploads::serve(&state, key, DEFAULT_AVATAR, audience, &headers).await
}

pub async fn upload_avatar(
    State(state): State<AppState>,
    OwnedChannel { user, channel, .. }: OwnedChannel<area::Settings>,
    reply: Reply,
    layout: Layout,
    mut multipart: Multipart,
) -> AppResult<Response> {
    let stored = match read_upload(&mut multipart, "avatar").await {
        Ok(bytes) => {
            store(
                &state,
                &format!("avatars/{}", channel.id),
                bytes,
                Purpose::Avatar,
            )
            .await
        }
        Err(e) => Err(StoreError::Image(e)),
    };
    let outcome = match stored {
        Ok(key) => {
            let mut conn = state.db.get().await?;
            match channels::replace_avatar(&mut conn, channel.id, Some(&key)).await {
                Ok(old) => {
                    db::audit::record(
                        &mut conn,
                        Some(user.id),
                        Some(channel.id),
                        "channel.avatar_set",
                        Some(&channel.handle),
                        serde_json::json!({}),
                    )
                    .await?;
                    drop(conn);
                    delete_quietly(&state, old).await;
                    Ok(())
                }
                Err(e) => {
                    delete_quietly(&state, Some(key)).await;
                    return Err(e.into());
                }
            }
        }
        Err(StoreError::App(e)) => return Err(e),
        Err(StoreError::Image(e)) => Err(e),
    };
    avatar_answer(&state, &reply, layout, channel, outcome, "Avatar saved.").await
}

pub async fn remove_avatar(
    State(state): State<AppState>,
    OwnedChannel { user, channel, .. }: OwnedChannel<area::Settings>,
    reply: Reply,
    layout: Layout,
) -> AppResult<Response> {
    let mut conn = state.db.get().await?;
    let old = channels::replace_avatar(&mut conn, channel.id, None).await?;
    if old.is_some() {
        db::audit::record(
            &mut conn,
            Some(user.id),
            Some(channel.id),
            "channel.avatar_removed",
            Some(&channel.handle),
            serde_json::json!({}),
        )
        .await?;
    }
    drop(conn);
    delete_quietly(&state, old).await;
    avatar_answer(
        &state,
        &reply,
        layout,
        channel,
        Ok(()),
        "Avatar removed: the default image is shown.",
    )
    .await
}

async fn avatar_answer(
    state: &AppState,
    reply: &Reply,
    layout: Layout,
    channel: Channel,
    outcome: Result<(), ImageError>,
    done: &'static str,
) -> AppResult<Response> {
    if reply.htmx.fragment {
        let mut page = SettingsPage::load(state, layout, channel).await?;
        let status = match outcome {
            Ok(()) => {
                page.avatar_saved = Some(done);
                StatusCode::OK
            }
            Err(e) => {
                page.avatar_error = Some(e.to_string());
                StatusCode::UNPROCESSABLE_ENTITY
            }
        };
        return render_with(status, &page.as_avatar());
    }
    match outcome {
        Ok(()) => reply.flash(FlashKind::Success, done).await?,
        Err(e) => reply.flash(FlashKind::Error, e.to_string()).await?,
    }
    Ok(auth::redirect(false, &settings_path(&channel)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_web_links_are_accepted() {
        assert_eq!(
            check_link_url(" https://example.com/me "),
            Ok("https://example.com/me".to_owned())
        );
        assert!(check_link_url("http://example.com").is_ok());
        for bad in [
            "javascript:alert(1)",
            "example.com",
            "ftp://example.com",
            "https://exa mple.com",
            "https://",
            "data:text/html,hi",
        ] {
            assert!(check_link_url(bad).is_err(), "{bad}");
        }
    }
}
