//! OBS from the studio. WHIP straight into livekit-server (the default): a
//! real WHIP client (Chromium) with the stream key takes the stream live, a
//! real viewer gets its frames and followers are told; a reset key is refused
//! and never makes the stream live; the encoder leaving and coming back keeps
//! the same stream live while viewers see the interruption. RTMP through
//! LiveKit Ingress (the stand-in) where it is configured, and a sentence where
//! it is not. Owner only; the stream key never reaches a log line; long keys
//! and URLs do not widen a phone's page.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use livekit_api::access_token::TokenVerifier;
use reqwest::StatusCode;
use stagepass::db::schema::{audit_log, notifications};
use stagepass::db::streams::AccessKind;
use stagepass::db::streams::{self, IngressKind, Status, Stream, StreamIngress};
use stagepass::db::{StreamId, UserId};

use crate::util::browser::{Browser as Chromium, TIMEOUT};
use crate::util::builders::{self, LiveKitClient};
use crate::util::logs::Logs;
use crate::util::services::{LIVEKIT_KEY, LIVEKIT_SECRET};
use crate::util::standin;
use crate::util::whip::{Encoder, whip_key};
use crate::util::{Browser, PASSWORD, TestApp};

/// What the watch page says while the host's video is away.
const INTERRUPTED: &str = "The host is reconnecting…";

async fn ingress_row(app: &TestApp, id: StreamId) -> Option<StreamIngress> {
    streams::ingress_of(&mut *app.conn().await, id)
        .await
        .unwrap()
}

async fn wait_status(app: &TestApp, id: StreamId, want: Status) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stream = streams::find(&mut *app.conn().await, id)
            .await
            .unwrap()
            .unwrap();
        if stream.status == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the stream did not become {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn audited(app: &TestApp, action: &str) -> i64 {
    audit_log::table
        .filter(audit_log::action.eq(action))
        .count()
        .get_result(&mut *app.conn().await)
        .await
        .unwrap()
}

#[tokio::test]
async fn rtmp_ingress_create_reset_live_offline_delete_and_the_key_stays_out_of_logs() {
    let (logs, _guard) = Logs::capture();
    let app = TestApp::spawn().await;
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let channel = builders::channel(&app, owner_id, "obs-channel").await;
    let stream = builders::stream(&app, &channel, AccessKind::Public).await;
    let studio = format!("/studio/streams/{}", stream.id);

    let before = owner.get(&studio).await;
    assert!(before.has("#ingress-create-form"));
    let created = owner
        .submit(&studio, "#ingress-create-form", &[("kind", "rtmp")])
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.text);

    let page = owner.get(&studio).await;
    assert_eq!(page.text_of("#ingress-url"), standin::RTMP_URL);
    let first = ingress_row(&app, stream.id)
        .await
        .expect("the ingress is stored");
    assert_eq!(first.kind, IngressKind::Rtmp);
    assert_eq!(
        page.text_of("#ingress-key"),
        first.stream_key,
        "revealed on demand"
    );
    let masked = page.text_of("#ingress-key-masked");
    assert!(!masked.contains(&first.stream_key), "masked: {masked}");
    assert!(masked.ends_with(&first.stream_key[first.stream_key.len() - 4..]));
    assert!(page.text_of("#obs-instructions").contains("Custom"));
    let at_standin = standin::ingress(&first.ingress_id).expect("created at the stand-in");
    assert_eq!(at_standin.room_name, stream.room_name);

    // Reset: the old ingress is deleted at LiveKit, a new key replaces it.
    let reset = owner.submit(&studio, "#ingress-reset-form", &[]).await;
    assert_eq!(reset.status, StatusCode::SEE_OTHER, "{}", reset.text);
    let second = ingress_row(&app, stream.id).await.unwrap();
    assert_ne!(second.ingress_id, first.ingress_id);
    assert_ne!(second.stream_key, first.stream_key);
    assert_eq!(second.kind, IngressKind::Rtmp);
    assert!(
        standin::ingress(&first.ingress_id).is_none(),
        "the old ingress is gone"
    );
    assert!(standin::ingress(&second.ingress_id).is_some());

    // OBS starts: the stream goes live; OBS stops: it goes offline (ends).
    standin::ingress_goes_live(&second.ingress_id).await;
    wait_status(&app, stream.id, Status::Live).await;
    assert_eq!(audited(&app, "stream.live_by_ingress").await, 1);
    let live_page = owner.get(&studio).await;
    assert_eq!(
        live_page.attr("#stream-state", "data-state").as_deref(),
        Some("live")
    );
    standin::ingress_goes_offline(&second.ingress_id).await;
    wait_status(&app, stream.id, Status::Ended).await;

    // The key is on the owner's studio page only.
    let watch = owner.get(&format!("/s/{}", stream.id)).await;
    assert!(!watch.text.contains(&second.stream_key));

    let deleted = owner.submit(&studio, "#ingress-delete-form", &[]).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.text);
    assert!(ingress_row(&app, stream.id).await.is_none());
    assert!(standin::ingress(&second.ingress_id).is_none());
    let after = owner.get(&studio).await;
    assert!(!after.has("#ingress-url"));
    assert!(
        !after.has("#ingress-create-form"),
        "an ended stream takes no new ingress"
    );

    // Nor is it kept in the webhook event log.
    let payloads: Vec<serde_json::Value> = stagepass::db::schema::livekit_events::table
        .select(stagepass::db::schema::livekit_events::payload)
        .load(&mut *app.conn().await)
        .await
        .unwrap();
    assert!(payloads.iter().any(|p| p["event"] == "ingress_started"));
    assert!(
        !serde_json::to_string(&payloads)
            .unwrap()
            .contains(&second.stream_key)
    );

    let captured = logs.text();
    assert!(
        captured.contains("ingress created"),
        "the capture works:\n{captured}"
    );
    assert!(captured.contains(&first.ingress_id));
    for key in [&first.stream_key, &second.stream_key] {
        assert!(!captured.contains(key.as_str()), "a stream key was logged");
    }
}

#[tokio::test]
async fn whip_ingress_shows_its_url_and_instructions() {
    let app = TestApp::spawn().await;
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let channel = builders::channel(&app, owner_id, "whip-channel").await;
    let stream = builders::stream(&app, &channel, AccessKind::Public).await;
    let studio = format!("/studio/streams/{}", stream.id);
    let created = owner
        .submit(&studio, "#ingress-create-form", &[("kind", "whip")])
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.text);
    let page = owner.get(&studio).await;
    assert_eq!(
        page.text_of("#ingress-url"),
        format!("{}/whip/v1", app.services.livekit_direct_url)
    );
    assert!(page.text_of("#obs-instructions").contains("WHIP"));
    assert!(page.text_of("#obs-instructions").contains("Bearer Token"));
    let row = ingress_row(&app, stream.id).await.unwrap();
    assert_eq!(row.kind, IngressKind::Whip);

    // Asking again keeps the one there is.
    let again = owner
        .post_htmx(&format!("{studio}/ingress"), &[("kind", "rtmp")])
        .await;
    assert!(again.status.is_success() || again.status == StatusCode::SEE_OTHER);
    assert_eq!(
        ingress_row(&app, stream.id).await.unwrap().ingress_id,
        row.ingress_id
    );

    let bad = owner
        .post_htmx(&format!("{studio}/ingress"), &[("kind", "srt")])
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn only_the_owner_manages_the_ingress() {
    let app = TestApp::spawn().await;
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let (moderator, moderator_id) = builders::user(&app, "mod@example.com", "Mod").await;
    let (stranger, _) = builders::user(&app, "stranger@example.com", "Stranger").await;
    let channel = builders::channel(&app, owner_id, "owned-channel").await;
    builders::moderator(&app, channel.id, moderator_id).await;
    let stream = builders::stream(&app, &channel, AccessKind::Public).await;
    // Announced: an unannounced draft is a 404 to strangers (exposure.rs).
    builders::announce(&app, stream.id).await;
    let studio = format!("/studio/streams/{}", stream.id);
    owner
        .submit(&studio, "#ingress-create-form", &[("kind", "rtmp")])
        .await;
    let row = ingress_row(&app, stream.id).await.unwrap();

    for who in [&moderator, &stranger] {
        let who: &Browser = who;
        for (path, fields) in [
            (format!("{studio}/ingress"), vec![("kind", "rtmp")]),
            (format!("{studio}/ingress/reset"), vec![]),
            (format!("{studio}/ingress/delete"), vec![]),
        ] {
            let page = who.post_htmx(&path, &fields).await;
            assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}: {}", page.text);
        }
        let page = who.get(&studio).await;
        assert!(!page.text.contains(&row.stream_key));
    }
    let unchanged = ingress_row(&app, stream.id).await.unwrap();
    assert_eq!(unchanged.ingress_id, row.ingress_id);
    assert!(standin::ingress(&row.ingress_id).is_some());
}

// ---------------------------------------------------------------------------
// OBS over WHIP, straight into livekit-server.

async fn stream_row(app: &TestApp, id: StreamId) -> Stream {
    streams::find(&mut *app.conn().await, id)
        .await
        .unwrap()
        .unwrap()
}

/// The identities in the room, as LiveKit lists them (none without a room).
async fn in_room(app: &TestApp, room: &str) -> Vec<String> {
    app.state
        .livekit
        .rooms
        .list_participants(room)
        .await
        .map(|people| people.into_iter().map(|p| p.identity).collect())
        .unwrap_or_default()
}

async fn notified(app: &TestApp, user: UserId) -> Vec<String> {
    notifications::table
        .filter(notifications::user_id.eq(user))
        .select(notifications::kind)
        .load(&mut *app.conn().await)
        .await
        .unwrap()
}

fn state_is(css: &str, state: &str) -> String {
    format!("return document.querySelector('{css}')?.dataset.state === '{state}'")
}

#[tokio::test]
async fn obs_over_whip_takes_the_stream_live_a_viewer_gets_frames_and_followers_are_told() {
    let (logs, _guard) = Logs::capture();
    let app = TestApp::spawn().await;
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let (fan, fan_id) = builders::user(&app, "fan@example.com", "Fan").await;
    let channel = builders::channel(&app, owner_id, "whip-live").await;
    let stream = builders::stream(&app, &channel, AccessKind::Public).await;
    let followed = fan
        .post_htmx("/c/whip-live/follow", &[("next", "/c/whip-live")])
        .await;
    assert!(followed.status.is_success(), "{}", followed.text);

    // The key is a LiveKit token: publish-only, for this room, as this key's
    // encoder, and long-lived (OBS keeps it).
    let (url, key) = whip_key(&owner, stream.id).await;
    assert_eq!(url, format!("{}/whip/v1", app.services.livekit_direct_url));
    let claims = TokenVerifier::with_api_key(LIVEKIT_KEY, LIVEKIT_SECRET)
        .verify(&key)
        .expect("the stream key is a token of this LiveKit");
    let identity = format!("obs-{}-1", stream.id);
    assert_eq!(claims.sub, identity);
    assert!(claims.video.room_join);
    assert_eq!(claims.video.room, stream.room_name);
    assert_eq!(claims.video.can_publish, Some(true));
    assert_eq!(claims.video.can_subscribe, Some(false));
    assert_eq!(claims.video.can_publish_data, Some(false));
    assert!(!claims.video.room_admin);
    let days = (claims.exp as i64 - chrono::Utc::now().timestamp()) / 86_400;
    assert!(days >= 360, "the key lives {days} days");
    // Without it, LiveKit's WHIP endpoint lets nobody in.
    let anonymous = reqwest::Client::new()
        .post(&url)
        .header("Content-Type", "application/sdp")
        .body("v=0\r\n")
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(stream_row(&app, stream.id).await.status, Status::Draft);

    // OBS starts streaming: a real WHIP client with the fake camera.
    let encoder = Encoder::start().await;
    assert_eq!(encoder.publish(&url, &key).await, 201);
    encoder.wait_connected().await;
    wait_status(&app, stream.id, Status::Live).await;
    // Audited right after the stream is marked live.
    let deadline = Instant::now() + Duration::from_secs(5);
    while audited(&app, "stream.live_by_encoder").await == 0 {
        assert!(
            Instant::now() < deadline,
            "going live by OBS was not audited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(audited(&app, "stream.live_by_encoder").await, 1);

    // LiveKit's view: the encoder publishes video and audio in the room.
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let people = app
            .state
            .livekit
            .rooms
            .list_participants(&stream.room_name)
            .await
            .unwrap_or_default();
        let kinds: Vec<&str> = people
            .iter()
            .filter(|p| p.identity == identity)
            .flat_map(|p| p.tracks.iter().map(|t| t.r#type().as_str_name()))
            .collect();
        if kinds.contains(&"VIDEO") && kinds.contains(&"AUDIO") {
            break;
        }
        assert!(Instant::now() < deadline, "the encoder publishes {kinds:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The watch page shows the player.
    let watch = fan.get(&format!("/s/{}", stream.id)).await;
    assert_eq!(watch.attr("#stage", "data-status").as_deref(), Some("live"));
    assert!(watch.has("#player"), "{}", watch.text);

    // A real viewer (LiveKit's Python SDK, with the token the watch page gets) receives frames.
    let grant = fan.post_htmx(&format!("/s/{}/token", stream.id), &[]).await;
    assert_eq!(grant.status, StatusCode::OK, "{}", grant.text);
    let grant: serde_json::Value = serde_json::from_str(&grant.text).unwrap();
    let mut viewer = LiveKitClient::start(
        grant["url"].as_str().unwrap(),
        grant["token"].as_str().unwrap(),
        "watch",
        30,
    )
    .await;
    assert_eq!(viewer.next().await["connected"], true);
    let video = viewer.next().await;
    assert!(video["frames"].as_u64().unwrap_or(0) >= 30, "{video}");
    assert!(video["width"].as_u64().unwrap_or(0) > 0, "{video}");
    assert_eq!(video["from"].as_str(), Some(identity.as_str()), "{video}");
    viewer.stop().await;

    // The follower's bell tells them, once.
    assert_eq!(notified(&app, fan_id).await, vec!["live".to_owned()]);
    let home = fan.get("/").await;
    assert_eq!(home.text_of("[data-testid=notification-count]"), "1");
    assert!(
        home.attr("[data-testid=notification-count]", "hidden")
            .is_none()
    );
    encoder.close().await;

    // The key went to the owner's page only: not to a log line.
    let captured = logs.text();
    assert!(captured.contains("ingress created"), "the capture works");
    assert!(!captured.contains(&key), "the stream key was logged");
}

#[tokio::test]
async fn a_reset_key_is_refused_and_the_encoder_coming_back_resumes_the_same_stream() {
    let app = TestApp::spawn().await;
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let (fan, fan_id) = builders::user(&app, "fan@example.com", "Fan").await;
    let channel = builders::channel(&app, owner_id, "whip-reset").await;
    let stream = builders::stream(&app, &channel, AccessKind::Public).await;
    let studio = format!("/studio/streams/{}", stream.id);
    fan.post_htmx("/c/whip-reset/follow", &[("next", "/c/whip-reset")])
        .await;

    let (url, old_key) = whip_key(&owner, stream.id).await;
    let reset = owner.submit(&studio, "#ingress-reset-form", &[]).await;
    assert_eq!(reset.status, StatusCode::SEE_OTHER, "{}", reset.text);
    let (same_url, key) = whip_key(&owner, stream.id).await;
    assert_eq!(same_url, url);
    assert_ne!(key, old_key);
    let old_identity = format!("obs-{}-1", stream.id);
    let identity = format!("obs-{}-2", stream.id);

    // The old key: LiveKit still takes the token (it has not expired), and
    // the app removes its encoder at once; the stream does not go live.
    let encoder = Encoder::start().await;
    assert_eq!(
        encoder.publish(&url, &old_key).await,
        201,
        "LiveKit itself accepts a reset key's token: the app has to refuse it"
    );
    let since = Instant::now();
    let mut seen: Option<Instant> = None;
    loop {
        let here = in_room(&app, &stream.room_name)
            .await
            .contains(&old_identity);
        match (here, seen) {
            (true, None) => seen = Some(Instant::now()),
            (false, Some(at)) => {
                assert!(
                    at.elapsed() <= Duration::from_secs(2),
                    "the old key's encoder stayed {:?}",
                    at.elapsed()
                );
                break;
            }
            (false, None) if audited(&app, "participant.encoder_refused").await > 0 => break,
            _ => {}
        }
        assert!(
            since.elapsed() < Duration::from_secs(20),
            "the old key's encoder was not removed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The audit row is written once LiveKit has answered the removal.
    let deadline = Instant::now() + Duration::from_secs(5);
    while audited(&app, "participant.encoder_refused").await == 0 {
        assert!(Instant::now() < deadline, "the refusal was not audited");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !in_room(&app, &stream.room_name)
            .await
            .contains(&old_identity)
    );
    assert_eq!(stream_row(&app, stream.id).await.status, Status::Draft);
    assert!(notified(&app, fan_id).await.is_empty());
    encoder.stop().await;

    // The current key takes the stream live.
    assert_eq!(encoder.publish(&url, &key).await, 201);
    encoder.wait_connected().await;
    wait_status(&app, stream.id, Status::Live).await;
    let started_at = stream_row(&app, stream.id).await.started_at;
    assert!(started_at.is_some());

    // A viewer watches in Chromium.
    let viewer = Chromium::start().await;
    viewer.sign_in(&app.url, "fan@example.com", PASSWORD).await;
    viewer.goto(&format!("{}/s/{}", app.url, stream.id)).await;
    viewer
        .wait_until(
            "the encoder's video to play",
            &state_is("#player-state", "playing"),
            TIMEOUT,
        )
        .await;
    viewer
        .js("window.stillTheSamePage = true; return true")
        .await;

    // OBS stops streaming: viewers see the interruption; the stream stays live.
    encoder.stop().await;
    viewer
        .wait_until(
            "the interruption to show",
            &state_is("#player-state", "interrupted"),
            TIMEOUT,
        )
        .await;
    assert_eq!(viewer.text("#player-state").await, INTERRUPTED);
    let deadline = Instant::now() + TIMEOUT;
    while in_room(&app, &stream.room_name).await.contains(&identity) {
        assert!(Instant::now() < deadline, "the encoder did not leave");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(stream_row(&app, stream.id).await.status, Status::Live);

    // OBS comes back with the same key: the same stream plays on.
    assert_eq!(encoder.publish(&url, &key).await, 201);
    encoder.wait_connected().await;
    viewer
        .wait_until(
            "the video to play again",
            &state_is("#player-state", "playing"),
            TIMEOUT,
        )
        .await;
    assert_eq!(
        viewer.js("return window.stillTheSamePage === true").await,
        serde_json::Value::Bool(true),
        "the watch page was reloaded"
    );
    let row = stream_row(&app, stream.id).await;
    assert_eq!(row.status, Status::Live);
    assert_eq!(
        row.started_at, started_at,
        "a resumed stream keeps its start"
    );
    assert_eq!(audited(&app, "stream.live_by_encoder").await, 1);
    assert_eq!(notified(&app, fan_id).await, vec!["live".to_owned()]);

    // A reset while streaming disconnects the encoder at once; the stream stays live.
    let reset = owner.submit(&studio, "#ingress-reset-form", &[]).await;
    assert_eq!(reset.status, StatusCode::SEE_OTHER, "{}", reset.text);
    let asked = Instant::now();
    while in_room(&app, &stream.room_name).await.contains(&identity) {
        assert!(
            asked.elapsed() <= Duration::from_secs(2),
            "the reset key's encoder is still in the room"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(stream_row(&app, stream.id).await.status, Status::Live);
    viewer
        .wait_until(
            "the interruption to show again",
            &state_is("#player-state", "interrupted"),
            TIMEOUT,
        )
        .await;

    encoder.close().await;
    viewer.close().await;
}

#[tokio::test]
async fn without_livekit_ingress_rtmp_is_a_sentence_and_long_keys_do_not_widen_a_phone() {
    let app = TestApp::spawn_with(|env| {
        env.insert("LIVEKIT_INGRESS".into(), "false".into());
    })
    .await;
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let channel = builders::channel(&app, owner_id, "no-ingress").await;
    let stream = builders::stream(&app, &channel, AccessKind::Public).await;
    let studio = format!("/studio/streams/{}", stream.id);

    let page = owner.get(&studio).await;
    let sentence = page.text_of("#rtmp-unavailable");
    assert_eq!(
        sentence,
        "RTMP needs LiveKit's Ingress service, which this server does not run: use WHIP (OBS 30 or newer) instead."
    );
    assert!(
        page.attr("#ingress-create-form [value=rtmp]", "disabled")
            .is_some()
    );

    // Choosing RTMP anyway (a page from before, a crafted form): the sentence, nothing raw.
    let chosen = owner
        .submit(&studio, "#ingress-create-form", &[("kind", "rtmp")])
        .await;
    assert_eq!(chosen.status, StatusCode::SEE_OTHER, "{}", chosen.text);
    let next = owner.follow(&chosen).await;
    let alerts = next.text_of("#alerts");
    assert!(alerts.contains(&sentence), "{alerts}");
    for raw in [
        "twirp",
        "error sending",
        "http://",
        "ingress not connected",
        "redis",
    ] {
        assert!(
            !alerts.to_lowercase().contains(raw),
            "a raw error reached the page: {alerts}"
        );
    }
    assert!(ingress_row(&app, stream.id).await.is_none());

    // WHIP needs nothing else.
    let (url, key) = whip_key(&owner, stream.id).await;
    assert!(url.ends_with("/whip/v1"));
    assert!(key.len() > 200, "a token: {} characters", key.len());

    // On a phone, the revealed key and the URL wrap: the page is no wider than the screen.
    let phone = Chromium::start().await;
    phone.sign_in(&app.url, "owner@example.com", PASSWORD).await;
    phone.resize(390, 844).await;
    phone.goto(&format!("{}{studio}", app.url)).await;
    phone.click("#ingress-panel .reveal summary").await;
    let widths = phone
        .js(
            "return [document.documentElement.scrollWidth, window.innerWidth, \
             document.getElementById('ingress-key').getBoundingClientRect().width]",
        )
        .await;
    let (page_width, screen, key_width) = (
        widths[0].as_f64().unwrap(),
        widths[1].as_f64().unwrap(),
        widths[2].as_f64().unwrap(),
    );
    assert!(screen <= 400.0, "the window is {screen} px wide");
    assert!(
        page_width <= screen && key_width > 0.0 && key_width <= screen,
        "at {screen} px the page is {page_width} px wide (the key {key_width} px)"
    );
    phone.close().await;
}
