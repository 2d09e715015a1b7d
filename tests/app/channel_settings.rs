//! Channel settings: the owner changes title, description, links and avatar;
//! a bad link is refused next to its field and nothing changes; moderators
//! and strangers cannot change anything; the settings pages share their tabs.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use stagepass::db::ChannelId;
use stagepass::db::schema::{channel_links, channels};

use crate::util::TestApp;
use crate::util::builders;
use crate::util::builders::create_channel;
use crate::util::uploads::{fetch, objects, png, unique_ids, upload};

const SETTINGS: &str = "/studio/channels/ann-live/settings";

async fn stored(app: &TestApp, channel: ChannelId) -> (String, String, Vec<(String, String)>) {
    let mut conn = app.conn().await;
    let (title, description) = channels::table
        .find(channel)
        .select((channels::title, channels::description))
        .first(&mut *conn)
        .await
        .unwrap();
    let links = channel_links::table
        .filter(channel_links::channel_id.eq(channel))
        .order(channel_links::position)
        .select((channel_links::label, channel_links::url))
        .load(&mut *conn)
        .await
        .unwrap();
    (title, description, links)
}

#[tokio::test]
async fn the_owner_saves_title_description_and_links_shown_on_the_channel_page() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let ch = create_channel(&app, &ann, "ann-live", "Ann Live").await;

    let page = ann.get(SETTINGS).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.texts("#settings-nav a"),
        vec!["Settings", "Team", "Webhooks", "Analytics"]
    );
    assert_eq!(
        page.attr("#settings-nav a[aria-current=page]", "data-tab")
            .as_deref(),
        Some("settings")
    );
    assert_eq!(page.attr("#title", "value").as_deref(), Some("Ann Live"));

    let saved = ann
        .submit(
            SETTINGS,
            "#channel-settings-form",
            &[
                ("title", "Ann Sings Live"),
                ("description", "Songs every Friday."),
                ("link_label_0", "Website"),
                ("link_url_0", "https://ann.example.com"),
                ("link_label_1", ""),
                ("link_url_1", ""),
                ("link_label_2", "Mastodon"),
                ("link_url_2", " http://social.example/@ann "),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.text);
    assert_eq!(saved.location().as_deref(), Some(SETTINGS));
    assert_eq!(
        ann.follow(&saved).await.text_of(".flash-success"),
        "Your channel settings were saved."
    );
    let (title, description, links) = stored(&app, ch).await;
    assert_eq!(
        (title.as_str(), description.as_str()),
        ("Ann Sings Live", "Songs every Friday.")
    );
    assert_eq!(
        links,
        vec![
            ("Website".to_owned(), "https://ann.example.com".to_owned()),
            (
                "Mastodon".to_owned(),
                "http://social.example/@ann".to_owned()
            ),
        ]
    );

    let channel = app.anonymous().get("/c/ann-live").await;
    assert_eq!(channel.text_of("#channel-title"), "Ann Sings Live");
    assert_eq!(
        channel.text_of(".channel-description"),
        "Songs every Friday."
    );
    assert_eq!(
        channel.texts("#channel-links a"),
        vec!["Website", "Mastodon"]
    );
    assert_eq!(
        channel.attr("#channel-links a", "href").as_deref(),
        Some("https://ann.example.com")
    );
    assert_eq!(
        channel.attr("#channel-links a", "rel").as_deref(),
        Some("noopener nofollow ugc")
    );

    // The form shows what is stored; clearing a row removes that link.
    let again = ann.get(SETTINGS).await;
    assert_eq!(
        again.attr("#link_url_1", "value").as_deref(),
        Some("http://social.example/@ann")
    );
    let htmx = ann
        .post_htmx(
            SETTINGS,
            &[
                ("title", "Ann Sings Live"),
                ("description", ""),
                ("link_label_0", "Website"),
                ("link_url_0", "https://ann.example.com"),
            ],
        )
        .await;
    assert_eq!(htmx.status, StatusCode::OK);
    assert_eq!(htmx.text_of("#channel-settings .form-success"), "Saved.");
    assert_eq!(stored(&app, ch).await.2.len(), 1);
}

#[tokio::test]
async fn a_bad_link_is_refused_next_to_its_field_and_nothing_changes() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let ch = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let before = stored(&app, ch).await;

    let refused = ann
        .submit(
            SETTINGS,
            "#channel-settings-form",
            &[
                ("title", "Changed title"),
                ("description", "Changed"),
                ("link_label_0", "Site"),
                ("link_url_0", "javascript:alert(1)"),
                ("link_label_1", ""),
                ("link_url_1", "https://no-label.example"),
                ("link_label_2", "Shop"),
                ("link_url_2", "shop.example.com"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        refused.text_of("#link_url_0-error"),
        "Only web addresses starting with https:// (or http://) can be linked."
    );
    assert_eq!(
        refused.attr("#link_url_0", "aria-invalid").as_deref(),
        Some("true")
    );
    assert_eq!(
        refused.text_of("#link_label_1-error"),
        "Name the link, e.g. “Website”."
    );
    assert_eq!(
        refused.text_of("#link_url_2-error"),
        "Enter a full web address starting with https:// (or http://)."
    );
    // What was typed is kept for correcting.
    assert_eq!(
        refused.attr("#title", "value").as_deref(),
        Some("Changed title")
    );
    assert_eq!(
        refused.attr("#link_url_0", "value").as_deref(),
        Some("javascript:alert(1)")
    );
    assert_eq!(stored(&app, ch).await, before, "nothing changed");

    let empty_title = ann
        .post_htmx(SETTINGS, &[("title", "  "), ("description", "")])
        .await;
    assert_eq!(empty_title.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        empty_title.text_of("#title-error"),
        "Give your channel a title."
    );
    assert_eq!(stored(&app, ch).await, before);
}

#[tokio::test]
async fn a_moderator_cannot_change_settings() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let ch = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let (mo, mo_id) = builders::user(&app, "mo@example.com", "Mo").await;
    builders::moderator(&app, ch, mo_id).await;
    let before = stored(&app, ch).await;

    let page = mo.get(SETTINGS).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        page.text
            .contains("Only the owner of this channel can change its settings."),
        "{}",
        page.text
    );
    let posted = mo
        .post_htmx(
            SETTINGS,
            &[("title", "Mo's channel now"), ("description", "")],
        )
        .await;
    assert_eq!(posted.status, StatusCode::FORBIDDEN);
    let avatar = upload(
        &mo,
        "/studio/channels/ann-live/avatar",
        "avatar",
        "a.png",
        "image/png",
        &png(10, 10),
    )
    .await;
    assert_eq!(avatar.status, StatusCode::FORBIDDEN);
    assert_eq!(stored(&app, ch).await, before);

    let (eve, _) = builders::user(&app, "eve@example.com", "Eve").await;
    assert_eq!(eve.get(SETTINGS).await.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.anonymous().get(SETTINGS).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(
        ann.get("/studio/channels/nobody/settings").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_avatar_is_a_square_served_at_the_channel_address() {
    let app = TestApp::spawn().await;
    unique_ids(&app, "channels").await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let ch = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let anon = app.anonymous();

    let (_, headers, _) = fetch(&anon, "/c/ann-live/avatar").await;
    assert_eq!(headers["content-type"], "image/svg+xml", "the default");

    let path = "/studio/channels/ann-live/avatar";
    let refused = upload(
        &ann,
        path,
        "avatar",
        "me.jpg",
        "image/jpeg",
        b"GIF89a not what it says",
    )
    .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused
            .text_of("#avatar-error")
            .contains("not a PNG, JPEG or WebP image")
    );

    let saved = upload(&ann, path, "avatar", "me.png", "image/png", &png(600, 400)).await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.text);
    assert_eq!(
        saved.text_of("#avatar-panel .form-success"),
        "Avatar saved."
    );
    let (status, headers, body) = fetch(&anon, "/c/ann-live/avatar").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "image/jpeg");
    let decoded = image::load_from_memory(&body).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (256, 256));
    let src = anon
        .get("/c/ann-live")
        .await
        .attr("#channel-avatar", "src")
        .unwrap();
    assert!(src.starts_with("/c/ann-live/avatar?v="), "{src}");

    let first = objects(&app, &format!("avatars/{ch}/")).await;
    assert_eq!(first.len(), 1);
    upload(&ann, path, "avatar", "me2.png", "image/png", &png(300, 300)).await;
    let second = objects(&app, &format!("avatars/{ch}/")).await;
    assert_eq!(second.len(), 1);
    assert_ne!(first, second, "the old avatar was deleted");

    let removed = ann
        .post_htmx("/studio/channels/ann-live/avatar/delete", &[])
        .await;
    assert_eq!(removed.status, StatusCode::OK);
    assert!(objects(&app, &format!("avatars/{ch}/")).await.is_empty());
    let (_, headers, _) = fetch(&anon, "/c/ann-live/avatar").await;
    assert_eq!(headers["content-type"], "image/svg+xml");
}

#[tokio::test]
async fn the_team_page_has_the_settings_tabs() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let team = ann.get("/studio/channels/ann-live/team").await;
    assert_eq!(
        team.attr("#settings-nav a[aria-current=page]", "data-tab")
            .as_deref(),
        Some("team")
    );
    assert_eq!(
        team.attr("#settings-nav a[data-tab=webhooks]", "href")
            .as_deref(),
        Some("/studio/channels/ann-live/webhooks")
    );
    assert_eq!(
        team.attr("#settings-nav a[data-tab=analytics]", "href")
            .as_deref(),
        Some("/studio/channels/ann-live/analytics")
    );
    let channel = ann.get("/c/ann-live").await;
    assert_eq!(
        channel.attr("#channel-settings-link", "href").as_deref(),
        Some(SETTINGS)
    );
}
