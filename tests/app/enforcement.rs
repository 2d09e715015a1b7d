//! Time-bounded during the stream too: a viewer watching through a real
//! client on the real livekit-server is removed when their grant ends or is
//! revoked, and a rejoin with the old token is undone.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::util::builders::{self, LiveKitClient, grant, revoke};
use crate::util::{Browser, TestApp};
use stagepass::db::streams::AccessKind;

struct Watching {
    app: TestApp,
    stream: stagepass::db::streams::Stream,
    viewer: Browser,
    channel: stagepass::db::channels::Channel,
    viewer_id: stagepass::db::UserId,
}

async fn live_stream() -> Watching {
    let app = TestApp::spawn().await;
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let channel = builders::channel(&app, owner_id, "timed").await;
    let stream = builders::stream(&app, &channel, AccessKind::Pass).await;
    builders::go_live(&owner, stream.id).await;
    let (viewer, viewer_id) = builders::user(&app, "viewer@example.com", "Viewer").await;
    Watching {
        app,
        stream,
        viewer,
        channel,
        viewer_id,
    }
}

async fn token(w: &Watching) -> (StatusCode, serde_json::Value) {
    let page = w
        .viewer
        .post_htmx(&format!("/s/{}/token", w.stream.id), &[])
        .await;
    (
        page.status,
        serde_json::from_str(&page.text).unwrap_or_default(),
    )
}

#[tokio::test]
async fn a_viewer_is_removed_when_their_grant_expires_mid_stream() {
    let w = live_stream().await;
    let g = grant(
        &w.app,
        w.viewer_id,
        w.channel.id,
        None,
        "-1 minute",
        "5 seconds",
    )
    .await;
    let ends = stagepass::db::grants::find(&mut *w.app.conn().await, stagepass::db::GrantId(g))
        .await
        .unwrap()
        .unwrap()
        .expires_at;
    let (status, body) = token(&w).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The client waits 12 s at most: removal must come from the timer set for
    // the grant's end (~5 s), not from the enforcer's 30 s safety sweep.
    let mut client = LiveKitClient::start(
        body["url"].as_str().unwrap(),
        body["token"].as_str().unwrap(),
        "stay",
        12,
    )
    .await;
    assert_eq!(client.next().await["connected"], true);
    let connected = Instant::now();

    let gone = client.next().await;
    assert_eq!(gone["disconnected"], true, "{gone}");
    assert_eq!(gone["reason"], "PARTICIPANT_REMOVED", "{gone}");
    eprintln!(
        "removed {:?} after connecting, {} ms after the grant's expires_at",
        connected.elapsed(),
        (chrono::Utc::now() - ends).num_milliseconds()
    );

    // The viewer's page now says what happened and how to renew.
    let page = w.viewer.get(&format!("/s/{}", w.stream.id)).await;
    assert!(
        page.text_of("#no-access").contains("Your pass has ended"),
        "{}",
        page.text
    );
    assert_eq!(page.text_of("#get-pass"), "Renew your pass");
    assert_eq!(
        page.attr("#get-pass", "href"),
        Some(format!("/s/{}/pass", w.stream.id))
    );
    assert!(!page.has("#player"));
    let (status, body) = token(&w).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
}

#[tokio::test]
async fn a_viewer_is_removed_when_their_grant_is_revoked_and_a_rejoin_is_undone() {
    let w = live_stream().await;
    let g = grant(
        &w.app,
        w.viewer_id,
        w.channel.id,
        None,
        "-1 minute",
        "1 hour",
    )
    .await;
    let (_, body) = token(&w).await;
    let (url, old_token) = (
        body["url"].as_str().unwrap().to_owned(),
        body["token"].as_str().unwrap().to_owned(),
    );
    let mut client = LiveKitClient::start(&url, &old_token, "stay", 30).await;
    assert_eq!(client.next().await["connected"], true);

    let revoked_at = Instant::now();
    revoke(&w.app, g).await;
    let gone = client.next().await;
    assert_eq!(gone["disconnected"], true, "{gone}");
    assert_eq!(gone["reason"], "PARTICIPANT_REMOVED", "{gone}");
    eprintln!("removed {:?} after revocation", revoked_at.elapsed());

    // Rejoining with the cached token: LiveKit refuses it (revoked on removal).
    let mut again = LiveKitClient::start(&url, &old_token, "stay", 10).await;
    let first = again.next().await;
    if first["connected"] == true {
        let kicked = again.next().await;
        assert_eq!(kicked["disconnected"], true, "a rejoin is undone: {kicked}");
    }
    // A token LiveKit would accept (as if refreshed by the server before the
    // revocation took hold) is undone by the app on participant_joined.
    let fresh = stagepass::livekit::tokens::viewer(
        &w.app.state.config.livekit,
        w.viewer_id,
        "Viewer",
        &w.stream.room_name,
        Duration::from_secs(600),
    )
    .unwrap();
    let mut rejoin = LiveKitClient::start(&url, &fresh, "stay", 10).await;
    assert_eq!(rejoin.next().await["connected"], true);
    let rejoined = Instant::now();
    let kicked = rejoin.next().await;
    assert_eq!(kicked["reason"], "PARTICIPANT_REMOVED", "{kicked}");
    eprintln!(
        "a rejoin was undone {:?} after connecting",
        rejoined.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let people = w
            .app
            .state
            .livekit
            .rooms
            .list_participants(&w.stream.room_name)
            .await
            .unwrap();
        if !people.iter().any(|p| p.identity == w.viewer_id.to_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "the viewer is still in the room");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn a_banned_viewer_is_removed_and_gets_no_new_token() {
    let w = live_stream().await;
    grant(
        &w.app,
        w.viewer_id,
        w.channel.id,
        None,
        "-1 minute",
        "1 hour",
    )
    .await;
    let (_, body) = token(&w).await;
    let mut client = LiveKitClient::start(
        body["url"].as_str().unwrap(),
        body["token"].as_str().unwrap(),
        "stay",
        30,
    )
    .await;
    assert_eq!(client.next().await["connected"], true);
    builders::ban(&w.app, w.channel.id, w.viewer_id).await;
    let gone = client.next().await;
    assert_eq!(gone["reason"], "PARTICIPANT_REMOVED", "{gone}");
    let (status, body) = token(&w).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body["error"].as_str().unwrap().contains("banned"));
}

#[tokio::test]
async fn a_viewer_whose_grant_is_extended_keeps_watching() {
    let w = live_stream().await;
    let g = grant(
        &w.app,
        w.viewer_id,
        w.channel.id,
        None,
        "-1 minute",
        "4 seconds",
    )
    .await;
    let (_, body) = token(&w).await;
    let mut client = LiveKitClient::start(
        body["url"].as_str().unwrap(),
        body["token"].as_str().unwrap(),
        "stay",
        8,
    )
    .await;
    assert_eq!(client.next().await["connected"], true);
    let later = chrono::Utc::now() + chrono::Duration::hours(1);
    stagepass::db::grants::set_expiry(&mut *w.app.conn().await, stagepass::db::GrantId(g), later)
        .await
        .unwrap();
    let report = client.next().await;
    assert_eq!(
        report["disconnected"], false,
        "still watching after the old end: {report}"
    );
}

#[tokio::test]
async fn the_watch_page_shows_the_time_left_and_an_extension_link() {
    let w = live_stream().await;
    let first = grant(
        &w.app,
        w.viewer_id,
        w.channel.id,
        None,
        "-1 minute",
        "4 minutes",
    )
    .await;
    let page = w.viewer.get(&format!("/s/{}", w.stream.id)).await;
    assert!(page.has("#player"));
    let expires = page
        .attr("#time-left", "data-expires-at")
        .expect("the time left is shown");
    let expires = chrono::DateTime::parse_from_rfc3339(&expires).unwrap();
    let left = expires.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        left > chrono::Duration::minutes(3) && left <= chrono::Duration::minutes(4),
        "{left}"
    );
    // The extension opens the pass page in a new tab: playback here goes on.
    assert_eq!(
        page.attr("#extend-pass", "href"),
        Some(format!("/s/{}/pass", w.stream.id))
    );
    assert_eq!(
        page.attr("#extend-pass", "target").as_deref(),
        Some("_blank")
    );

    // An extension bought elsewhere (it starts when the current grant ends)
    // shows up in the refreshed fragment.
    {
        use diesel_async::RunQueryDsl;
        diesel::sql_query(
            "INSERT INTO access_grants (user_id, channel_id, source, starts_at, expires_at) \
             SELECT user_id, channel_id, 'purchase', expires_at, expires_at + interval '2 hours' \
             FROM access_grants WHERE id = $1",
        )
        .bind::<diesel::sql_types::BigInt, _>(first)
        .execute(&mut *w.app.conn().await)
        .await
        .unwrap();
    }
    let fragment = w
        .viewer
        .get_htmx(&format!("/s/{}/time-left", w.stream.id))
        .await;
    let later = fragment
        .attr("#time-left", "data-expires-at")
        .unwrap_or_else(|| panic!("{} {}", fragment.status, fragment.text));
    let later = chrono::DateTime::parse_from_rfc3339(&later).unwrap();
    assert_eq!(
        later - expires,
        chrono::Duration::hours(2),
        "the chain of grants ends two hours later"
    );

    // Someone without a pass is sent to the pass page.
    let (stranger, _) = builders::user(&w.app, "stranger@example.com", "Stranger").await;
    let page = stranger.get(&format!("/s/{}", w.stream.id)).await;
    assert_eq!(page.text_of("#get-pass"), "Get a pass");
}
