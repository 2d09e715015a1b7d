//! Free previews of pass-only streams (issue 15): the owner sets a length;
//! a visitor without a pass watches that much of the live stream once (per
//! account; for guests per cookie and per address), with a token that ends
//! no later than the preview, removed from the room when it ends; then the
//! paywall stands in place of the player, and buying (the dev checkout, in
//! another tab) brings the player back without a reload.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use livekit_api::access_token::TokenVerifier;
use reqwest::StatusCode;
use stagepass::db::StreamId;
use stagepass::db::schema::{funnel_events, previews};
use stagepass::db::streams::AccessKind;

use crate::util::browser::{Browser as Chromium, TIMEOUT, go_live_at};
use crate::util::builders::{self, LiveKitClient, Studio};
use crate::util::services;
use crate::util::{Browser, PASSWORD, TestApp};

/// The owner sets the free preview on the stream's studio page, as a form.
async fn set_preview(studio: &Studio, value: &str) -> crate::util::Page {
    studio
        .owner
        .submit(
            &format!("/studio/streams/{}", studio.stream.id),
            "#stream-form",
            &[
                ("title", "Friday session"),
                ("access", "pass"),
                ("preview", value),
            ],
        )
        .await
}

async fn token(who: &Browser, stream: StreamId) -> (StatusCode, serde_json::Value) {
    let page = who.post_htmx(&format!("/s/{stream}/token"), &[]).await;
    (
        page.status,
        serde_json::from_str(&page.text).unwrap_or_default(),
    )
}

async fn preview_ends(app: &TestApp, stream: StreamId, identity: &str) -> DateTime<Utc> {
    previews::table
        .filter(previews::stream_id.eq(stream))
        .filter(previews::identity.eq(identity))
        .select(previews::ends_at)
        .first(&mut *app.conn().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_preview_ends_with_its_token_removes_the_viewer_and_is_given_once_per_account() {
    let studio = Studio::spawn("teaser", AccessKind::Pass).await;
    let app = &studio.app;
    // Outside the list: refused next to the field.
    let page = set_preview(&studio, "5").await;
    assert_eq!(page.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        page.text_of("#preview-error")
            .contains("30 seconds to 10 minutes")
    );
    let page = set_preview(&studio, "30").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.text);
    builders::go_live(&studio.owner, studio.stream.id).await;
    builders::pass(app, &studio.channel, "Day pass", None, 24).await;

    let (viewer, viewer_id) = builders::user(app, "viewer@example.com", "Vera").await;
    let watch = viewer.get(&format!("/s/{}", studio.stream.id)).await;
    assert!(watch.has("#player"), "{}", watch.text);
    assert!(watch.text_of("#preview-note").contains("30 seconds"));

    let (status, body) = token(&viewer, studio.stream.id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let identity = viewer_id.to_string();
    assert_eq!(body["identity"], identity);
    let ends = preview_ends(app, studio.stream.id, &identity).await;
    let claims = TokenVerifier::with_api_key(services::LIVEKIT_KEY, services::LIVEKIT_SECRET)
        .verify(body["token"].as_str().unwrap())
        .unwrap();
    assert!(
        claims.exp as i64 <= ends.timestamp(),
        "the token expires at {} after the preview's end {}",
        claims.exp,
        ends.timestamp()
    );
    assert_eq!(claims.video.can_publish, Some(false));
    // The funnel's "previewed" step (written in the background).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let steps: Vec<String> = funnel_events::table
            .filter(funnel_events::stream_id.eq(studio.stream.id))
            .select(funnel_events::step)
            .load(&mut *app.conn().await)
            .await
            .unwrap();
        if steps.contains(&"previewed".to_owned()) {
            break;
        }
        assert!(Instant::now() < deadline, "no previewed step: {steps:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let mut client = LiveKitClient::start(
        body["url"].as_str().unwrap(),
        body["token"].as_str().unwrap(),
        "stay",
        45,
    )
    .await;
    assert_eq!(client.next().await["connected"], true);
    // Watching: the watch page says it is their preview.
    let watch = viewer.get(&format!("/s/{}", studio.stream.id)).await;
    assert!(watch.has("#preview-note[data-until]"));
    let gone = client.next().await;
    assert_eq!(gone["reason"], "PARTICIPANT_REMOVED", "{gone}");
    let late = Utc::now() - ends;
    eprintln!(
        "removed {} ms after the preview's end",
        late.num_milliseconds()
    );
    assert!(
        late < chrono::Duration::seconds(2),
        "removed {late} after the end"
    );

    // Over: no second token, the paywall in place of the player.
    let (status, body) = token(&viewer, studio.stream.id).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("free preview of this stream has ended")
    );
    let watch = viewer.get(&format!("/s/{}", studio.stream.id)).await;
    assert!(!watch.has("#player"));
    assert!(
        watch
            .text_of("#no-access h2")
            .contains("free preview of this stream has ended")
    );
    assert!(watch.text_of("#paywall .pass-card").contains("Day pass"));
    assert_eq!(
        watch.attr("#paywall .buy-form", "target").as_deref(),
        Some("_blank")
    );
    assert!(watch.has("#paywall #redeem"));
    // Another visit of the same account (another browser) gets no second one.
    viewer.post_htmx("/signout", &[]).await;
    let again = crate::util::Browser::new(&app.url);
    let page = again
        .submit(
            "/signin",
            "#signin-form",
            &[("email", "viewer@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    let (status, _) = token(&again, studio.stream.id).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The owner's analytics: the preview in the funnel, and its conversion.
    let analytics = studio
        .owner
        .get(&format!("/studio/streams/{}/analytics", studio.stream.id))
        .await;
    assert_eq!(
        analytics.text_of("#funnel tr[data-step=previewed] .visitors"),
        "1",
        "{}",
        analytics.text
    );
    assert_eq!(
        analytics.text_of("#funnel tr[data-step=preview_paid] .visitors"),
        "0"
    );
    client.stop().await;
}

#[tokio::test]
async fn a_guest_gets_one_preview_per_address_even_after_clearing_cookies() {
    let studio = Studio::spawn("teaser", AccessKind::Pass).await;
    let app = &studio.app;
    set_preview(&studio, "60").await;
    builders::go_live(&studio.owner, studio.stream.id).await;
    let here = Some(std::net::IpAddr::from([127, 0, 0, 5]));

    let guest = Browser::from_address(&app.url, here);
    let (status, body) = token(&guest, studio.stream.id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let first = body["identity"].as_str().unwrap().to_owned();
    assert!(first.starts_with("guest-"));
    // Cookies cleared while it runs: the same preview, ending at the same moment.
    let cleared = Browser::from_address(&app.url, here);
    let (status, body) = token(&cleared, studio.stream.id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let second = body["identity"].as_str().unwrap().to_owned();
    assert_ne!(first, second);
    assert_eq!(
        preview_ends(app, studio.stream.id, &first).await,
        preview_ends(app, studio.stream.id, &second).await
    );

    // Once it is over (moved to the past here, rather than waiting a minute),
    // neither the cookie nor a fresh start from that address gets another.
    diesel::update(previews::table.filter(previews::stream_id.eq(studio.stream.id)))
        .set((
            previews::started_at.eq(Utc::now() - chrono::Duration::minutes(5)),
            previews::ends_at.eq(Utc::now() - chrono::Duration::minutes(4)),
        ))
        .execute(&mut *app.conn().await)
        .await
        .unwrap();
    for who in [&guest, &cleared, &Browser::from_address(&app.url, here)] {
        let (status, body) = token(who, studio.stream.id).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let page = who.get(&format!("/s/{}", studio.stream.id)).await;
        assert!(page.has("#paywall"), "{}", page.text);
    }
    // Someone at another address has theirs.
    let elsewhere = Browser::from_address(&app.url, Some(std::net::IpAddr::from([127, 0, 0, 6])));
    let (status, _) = token(&elsewhere, studio.stream.id).await;
    assert_eq!(status, StatusCode::OK);
}

/// In Chromium: a 30 s preview plays; at its end the paywall replaces the
/// player in place; the dev checkout, opened in a new tab, brings the
/// player back in the first tab without a reload.
#[tokio::test]
async fn in_chromium_the_preview_plays_the_paywall_follows_and_buying_resumes_without_a_reload() {
    let studio = Studio::spawn("teaser", AccessKind::Pass).await;
    let app = &studio.app;
    set_preview(&studio, "30").await;
    builders::pass(app, &studio.channel, "Day pass", None, 24).await;
    builders::user(app, "viewer@example.com", "Vera").await;
    let owner = go_live_at(&app.url, "owner@example.com", studio.stream.id).await;

    let viewer = Chromium::start().await;
    viewer
        .sign_in(&app.url, "viewer@example.com", PASSWORD)
        .await;
    viewer
        .goto(&format!("{}/s/{}", app.url, studio.stream.id))
        .await;
    viewer.wait_for("#preview-note").await;
    viewer
        .wait_until(
            "the preview to play",
            "const v = document.getElementById('stream-video'); \
             return v && v.videoWidth > 0 && v.currentTime > 0",
            TIMEOUT,
        )
        .await;
    viewer.js("window.sameDocument = true; return true").await;
    // The preview ends: the paywall stands where the player was.
    viewer
        .wait_until(
            "the paywall in place of the player",
            "return !!document.querySelector('#paywall .buy-form') && !document.getElementById('player')",
            Duration::from_secs(50),
        )
        .await;
    assert!(viewer.text("#no-access h2").await.contains("free preview"));
    // On a phone, the paywall fits the screen.
    viewer.resize(390, 844).await;
    let seen = viewer.js(crate::pages::TOO_WIDE).await;
    assert_eq!(seen["overflow"], 0, "the paywall scrolls sideways: {seen}");
    assert_eq!(seen["wide"], serde_json::json!([]), "{seen}");
    viewer
        .screenshot(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/pages/phone-paywall.png"),
        )
        .await;
    viewer.resize(1280, 800).await;

    // Buy in the new tab, with the dev checkout; the first tab plays again.
    viewer.click("#paywall .buy-form [type=submit]").await;
    let first = viewer.follow_new_window().await;
    viewer.wait_for("#dev-confirm-form").await;
    viewer.click("#dev-confirm-form [type=submit]").await;
    viewer.switch_to(first).await;
    let started = Instant::now();
    viewer
        .wait_until(
            "the player back, playing, after the purchase",
            "const v = document.getElementById('stream-video'); \
             return !!v && v.videoWidth > 0 && v.currentTime > 0",
            Duration::from_secs(40),
        )
        .await;
    eprintln!("playing again {:?} after the purchase", started.elapsed());
    assert_eq!(
        viewer.js("return window.sameDocument === true").await,
        true,
        "the page was reloaded"
    );
    viewer.close().await;
    owner.close().await;
}
