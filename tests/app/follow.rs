//! Following channels: the one-click button on the channel page, the watch
//! page and discover; the follower count that changes with it; following
//! twice; unfollowing; anonymous visitors; owners; the "Following" page.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use stagepass::db::ChannelId;
use stagepass::db::schema::follows;
use stagepass::db::streams::Status;

use crate::util::builders;
use crate::util::builders::create_channel;
use crate::util::builders::stream_at;
use crate::util::{Page, TestApp};

async fn follow_rows(app: &TestApp, channel: ChannelId) -> i64 {
    follows::table
        .filter(follows::channel_id.eq(channel))
        .count()
        .get_result(&mut *app.conn().await)
        .await
        .unwrap()
}

fn fragment(page: &Page) -> scraper::Html {
    scraper::Html::parse_fragment(&page.text)
}

fn text(html: &scraper::Html, selector: &str) -> String {
    let sel = scraper::Selector::parse(selector).unwrap();
    html.select(&sel)
        .next()
        .unwrap_or_else(|| panic!("no {selector} in {}", html.html()))
        .text()
        .collect::<String>()
        .trim()
        .to_owned()
}

#[tokio::test]
async fn following_twice_is_one_follow_and_unfollowing_removes_it() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let ch = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let (vic, _) = builders::user(&app, "vic@example.com", "Vic").await;

    let page = vic.get("/c/ann-live").await;
    assert_eq!(
        page.text_of("#follow-ann-live [data-testid=follow-button]"),
        "Follow"
    );
    assert_eq!(
        page.text_of("#follow-ann-live [data-testid=follower-count]"),
        "0 followers"
    );
    assert_eq!(
        page.attr("#follow-ann-live form", "hx-post").as_deref(),
        Some("/c/ann-live/follow")
    );
    assert_eq!(
        page.attr("#follow-ann-live form", "hx-target").as_deref(),
        Some("#follow-ann-live")
    );

    // One click: the button comes back as "Following", with the new count.
    for _ in 0..2 {
        let clicked = vic
            .post_htmx("/c/ann-live/follow", &[("next", "/c/ann-live")])
            .await;
        assert_eq!(clicked.status, StatusCode::OK, "{}", clicked.text);
        let html = fragment(&clicked);
        assert_eq!(
            text(&html, "#follow-ann-live [data-testid=follow-button]"),
            "Following"
        );
        assert_eq!(
            text(&html, "#follow-ann-live [data-testid=follower-count]"),
            "1 follower"
        );
    }
    assert_eq!(
        follow_rows(&app, ch).await,
        1,
        "following twice is one follow"
    );
    let page = vic.get("/c/ann-live").await;
    assert_eq!(page.text_of("[data-testid=follower-count]"), "1 follower");
    assert_eq!(
        page.attr("[data-testid=follow-button]", "aria-pressed")
            .as_deref(),
        Some("true")
    );
    assert_eq!(
        page.attr("#follow-ann-live form", "hx-post").as_deref(),
        Some("/c/ann-live/unfollow")
    );

    // A second follower counts.
    let (wes, _) = builders::user(&app, "wes@example.com", "Wes").await;
    wes.post_htmx("/c/ann-live/follow", &[]).await;
    assert_eq!(
        vic.get("/c/ann-live")
            .await
            .text_of("[data-testid=follower-count]"),
        "2 followers"
    );

    let unfollowed = vic.post_htmx("/c/ann-live/unfollow", &[]).await;
    assert_eq!(unfollowed.status, StatusCode::OK);
    let html = fragment(&unfollowed);
    assert_eq!(text(&html, "[data-testid=follow-button]"), "Follow");
    assert_eq!(text(&html, "[data-testid=follower-count]"), "1 follower");
    assert_eq!(follow_rows(&app, ch).await, 1);
    // Unfollowing again changes nothing.
    vic.post_htmx("/c/ann-live/unfollow", &[]).await;
    assert_eq!(follow_rows(&app, ch).await, 1);
}

#[tokio::test]
async fn a_plain_form_follow_comes_back_to_the_page_with_a_message() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let ch = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let (vic, _) = builders::user(&app, "vic@example.com", "Vic").await;
    let done = vic
        .submit("/c/ann-live", "#follow-ann-live form", &[])
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.location().as_deref(), Some("/c/ann-live"));
    let page = vic.follow(&done).await;
    assert_eq!(page.text_of(".flash-success"), "You now follow Ann Live.");
    assert_eq!(follow_rows(&app, ch).await, 1);
    // `next` never leaves the site.
    let evil = vic
        .submit(
            "/c/ann-live",
            "#follow-ann-live form",
            &[("next", "//evil.example")],
        )
        .await;
    assert_eq!(evil.location().as_deref(), Some("/"));
}

#[tokio::test]
async fn anonymous_visitors_get_a_sign_in_link_that_comes_back() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let ch = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let stream = stream_at(&app, ch, "On air", Status::Live, Some(2), None).await;
    let anon = app.anonymous();

    let page = anon.get("/c/ann-live").await;
    assert_eq!(
        page.attr("a[data-testid=follow-button]", "href").as_deref(),
        Some("/signin?next=/c/ann-live")
    );
    let watch = anon.get(&format!("/s/{stream}")).await;
    assert_eq!(
        watch.attr("a[data-testid=follow-button]", "href"),
        Some(format!("/signin?next=/s/{stream}"))
    );
    let home = anon.get("/").await;
    assert_eq!(
        home.attr(
            &format!("#follow-ann-live-s{stream} a[data-testid=follow-button]"),
            "href"
        )
        .as_deref(),
        Some("/signin?next=/")
    );
    // Posting without a session goes to sign-in too.
    let posted = anon.post_raw("/c/ann-live/follow", &[]).await;
    assert_ne!(posted.status, StatusCode::OK);
    assert_eq!(follow_rows(&app, ch).await, 0);
}

#[tokio::test]
async fn the_owner_sees_the_count_but_does_not_follow_their_own_channel() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let ch = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let page = ann.get("/c/ann-live").await;
    assert!(!page.has("[data-testid=follow-button]"));
    assert_eq!(page.text_of("[data-testid=follower-count]"), "0 followers");
    let refused = ann.post_htmx("/c/ann-live/follow", &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(
        refused.text.contains("This is your channel"),
        "{}",
        refused.text
    );
    assert_eq!(follow_rows(&app, ch).await, 0);
    // A moderator may follow.
    let (mo, mo_id) = builders::user(&app, "mo@example.com", "Mo").await;
    builders::moderator(&app, ch, mo_id).await;
    assert_eq!(
        mo.post_htmx("/c/ann-live/follow", &[]).await.status,
        StatusCode::OK
    );
    assert_eq!(follow_rows(&app, ch).await, 1);
    assert_eq!(
        ann.post_htmx("/c/no-such-channel/follow", &[]).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_watch_page_shows_the_follow_button() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let ch = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let stream = stream_at(&app, ch, "On air", Status::Live, Some(2), None).await;
    let (vic, _) = builders::user(&app, "vic@example.com", "Vic").await;
    let path = format!("/s/{stream}");
    let page = vic.get(&path).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.text_of("#follow-ann-live [data-testid=follow-button]"),
        "Follow"
    );
    assert_eq!(
        page.attr("#follow-ann-live input[name=next]", "value"),
        Some(path.clone())
    );
    vic.post_htmx("/c/ann-live/follow", &[("next", &path)])
        .await;
    let page = vic.get(&path).await;
    assert_eq!(
        page.text_of("#follow-ann-live [data-testid=follow-button]"),
        "Following"
    );
}

#[tokio::test]
async fn the_following_page_lists_followed_channels_with_live_and_next_streams() {
    let app = TestApp::spawn().await;
    let (ann, _) = builders::user(&app, "ann@example.com", "Ann").await;
    let (cat, _) = builders::user(&app, "cat@example.com", "Cat").await;
    let (dan, _) = builders::user(&app, "dan@example.com", "Dan").await;
    let anns = create_channel(&app, &ann, "ann-live", "Ann Live").await;
    let cats = create_channel(&app, &cat, "cat-cooks", "Cat Cooks").await;
    create_channel(&app, &dan, "dan-draws", "Dan Draws").await;
    let live = stream_at(&app, cats, "Cooking now", Status::Live, Some(3), None).await;
    let next = stream_at(
        &app,
        anns,
        "Singing tomorrow",
        Status::Draft,
        None,
        Some(60 * 24 + 5),
    )
    .await;
    stream_at(
        &app,
        anns,
        "Singing next week",
        Status::Draft,
        None,
        Some(60 * 24 * 7),
    )
    .await;

    let (vic, _) = builders::user(&app, "vic@example.com", "Vic").await;
    let empty = vic.get("/following").await;
    assert!(empty.has("#following-empty"));
    for h in ["ann-live", "cat-cooks", "dan-draws"] {
        vic.post_htmx(&format!("/c/{h}/follow"), &[]).await;
    }
    let page = vic.get("/following").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(
        page.texts("#following-list .channel-title"),
        vec!["Cat Cooks", "Ann Live", "Dan Draws"],
        "live channels first, then by title"
    );
    let cat_row = "#following-list [data-channel=cat-cooks]";
    assert_eq!(
        page.text_of(&format!("{cat_row} .following-live")),
        "Live Cooking now"
    );
    assert_eq!(
        page.attr(&format!("{cat_row} .following-live a"), "href"),
        Some(format!("/s/{live}"))
    );
    let ann_row = "#following-list [data-channel=ann-live]";
    assert_eq!(
        page.attr(&format!("{ann_row} .following-next a"), "href"),
        Some(format!("/s/{next}"))
    );
    assert_eq!(
        page.text_of(&format!("{ann_row} .following-next time")),
        "in 1 day"
    );
    assert_eq!(
        page.text_of("#following-list [data-channel=dan-draws] .following-next"),
        "Nothing scheduled."
    );
    assert_eq!(
        page.text_of(&format!("{ann_row} [data-testid=follow-button]")),
        "Following"
    );

    // Anonymous visitors are asked to sign in.
    let anon = app.anonymous().get("/following").await;
    assert_eq!(anon.status, StatusCode::SEE_OTHER);
    assert_eq!(
        anon.location().as_deref(),
        Some("/signin?next=%2Ffollowing")
    );
}
