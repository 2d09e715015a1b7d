//! Guests (issue 15): a visitor without an account watches a public stream
//! with a subscribe-only, short-lived token under a `guest-…` identity kept
//! in a cookie, reads its chat but cannot post, is refused on pass-only
//! streams, is limited per address, and counts as a viewer (in the room's
//! count and in the stream's analytics). The browser side: browser.rs.

use std::time::{Duration, Instant};

use livekit_api::access_token::TokenVerifier;
use reqwest::StatusCode;
use stagepass::db::streams::AccessKind;

use crate::util::builders::{self, LiveKitClient, Studio};
use crate::util::services;
use crate::util::sse::Sse;
use crate::util::{Browser, TestApp};

async fn live(app: TestApp, access: AccessKind) -> Studio {
    let studio = Studio::on(app, "Owner", "open-house", access).await;
    builders::go_live(&studio.owner, studio.stream.id).await;
    studio
}

async fn token(
    who: &Browser,
    stream: stagepass::db::StreamId,
) -> (StatusCode, serde_json::Value, Option<String>) {
    let page = who.post_htmx(&format!("/s/{stream}/token"), &[]).await;
    (
        page.status,
        serde_json::from_str(&page.text).unwrap_or_default(),
        page.header("set-cookie"),
    )
}

#[tokio::test]
async fn a_guest_gets_a_subscribe_only_short_token_under_one_identity_and_no_pass_stream() {
    let studio = live(TestApp::spawn().await, AccessKind::Public).await;
    let guest = studio.app.anonymous();
    let (status, body, cookie) = token(&guest, studio.stream.id).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let cookie = cookie.expect("the guest cookie is set with the first token");
    assert!(
        cookie.starts_with("stagepass_guest=") && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let identity = body["identity"].as_str().unwrap().to_owned();
    assert!(identity.starts_with("guest-"), "{identity}");
    // Everyone in the room sees identities: the cookie is not one.
    let secret = cookie
        .trim_start_matches("stagepass_guest=")
        .split(';')
        .next()
        .unwrap();
    assert!(!identity.contains(secret), "{identity} shows the cookie");
    let claims = TokenVerifier::with_api_key(services::LIVEKIT_KEY, services::LIVEKIT_SECRET)
        .verify(body["token"].as_str().unwrap())
        .unwrap();
    assert_eq!(claims.sub, identity);
    assert_eq!(claims.video.room, studio.stream.room_name);
    assert!(claims.video.room_join);
    assert_eq!(claims.video.can_publish, Some(false));
    assert_eq!(claims.video.can_publish_data, Some(false));
    assert!(!claims.video.room_admin);
    let lifetime = claims.exp as i64 - chrono::Utc::now().timestamp();
    assert!(
        lifetime <= 600,
        "a guest token lives 10 minutes at most: {lifetime} s"
    );

    // The same browser is the same guest (one viewer however often it reconnects).
    let (_, again, cookie) = token(&guest, studio.stream.id).await;
    assert_eq!(again["identity"], identity);
    assert!(cookie.is_none(), "the cookie is set once");

    // A guest cannot post, and is told to sign in.
    let page = guest
        .post_htmx(&format!("/s/{}/chat", studio.stream.id), &[("body", "hi")])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(
        page.text_of(".chat-error")
            .contains("Sign in to join the chat")
    );
    // But reads it: the panel has the messages and a way to sign in.
    let panel = guest
        .get_htmx(&format!("/s/{}/chat", studio.stream.id))
        .await;
    assert_eq!(panel.status, StatusCode::OK);
    assert!(panel.has(".chat-guest a[href^='/signin']"));

    // A pass-only stream refuses guests their token and their chat stream.
    let pass = builders::stream(&studio.app, &studio.channel, AccessKind::Pass).await;
    builders::go_live(&studio.owner, pass.id).await;
    let (status, body, _) = token(&guest, pass.id).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["error"], "Sign in to watch this stream.");
    let (status, _) = Sse::try_open(&guest, &format!("/s/{}/chat/events", pass.id), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn guest_tokens_are_limited_per_address() {
    let app = TestApp::spawn_with(|env| {
        env.insert("GUEST_TOKENS_MAX_PER_ADDRESS".into(), "2".into());
    })
    .await;
    let studio = live(app, AccessKind::Public).await;
    for _ in 0..2 {
        let (status, body, _) = token(&studio.app.anonymous(), studio.stream.id).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body, _) = token(&studio.app.anonymous(), studio.stream.id).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Too many guests are watching from your network"),
        "{body}"
    );
    // Accounts are not held by it.
    let (viewer, _) = builders::user(&studio.app, "v@example.com", "Vee").await;
    let (status, _, _) = token(&viewer, studio.stream.id).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_guest_in_the_room_counts_as_a_viewer_and_in_the_analytics() {
    let studio = live(TestApp::spawn().await, AccessKind::Public).await;
    let guest = studio.app.anonymous();
    let (_, body, _) = token(&guest, studio.stream.id).await;
    let mut client = LiveKitClient::start(
        body["url"].as_str().unwrap(),
        body["token"].as_str().unwrap(),
        "stay",
        30,
    )
    .await;
    assert_eq!(client.next().await["connected"], true);
    // The chat stream opens for them too.
    let (status, _) = Sse::try_open(
        &guest,
        &format!("/s/{}/chat/events", studio.stream.id),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let page = studio
            .app
            .anonymous()
            .get(&format!("/s/{}", studio.stream.id))
            .await;
        if page.has("#viewer-count") && page.text_of("#viewer-count strong") == "1" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the guest is not counted: {}",
            page.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let figures =
        stagepass::analytics::stream_figures(&mut *studio.app.conn().await, studio.stream.id)
            .await
            .unwrap();
    assert_eq!(figures.unique_viewers, 1);
    assert_eq!(figures.guest_viewers, 1);
    assert_eq!(figures.peak_viewers, 1);
    // The owner's analytics page says so.
    let page = studio
        .owner
        .get(&format!("/studio/streams/{}/analytics", studio.stream.id))
        .await;
    assert_eq!(page.text_of("#unique-viewers"), "1");
    assert_eq!(page.text_of("#guest-viewers"), "1 of them a guest");
    client.stop().await;
}
