//! Going live and watching, against the run's real livekit-server: rooms,
//! tokens and what the real server lets them do, webhooks, the reconciler.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use livekit_api::access_token::TokenVerifier;
use reqwest::StatusCode;
use stagepass::db::schema::{livekit_events, streams};
use stagepass::db::streams::AccessKind;
use stagepass::db::streams::Stream;

use crate::util::builders::{self, LiveKitClient, ban, grant, revoke};
use crate::util::livekit_webhook::{post_webhook, signed};
use crate::util::{Browser, TestApp, services};

struct Live {
    app: TestApp,
    owner: Browser,
    owner_id: stagepass::db::UserId,
    channel: stagepass::db::channels::Channel,
    stream: Stream,
}

async fn setup(access: AccessKind) -> Live {
    let app = TestApp::spawn().await;
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let channel = builders::channel(&app, owner_id, "live-channel").await;
    let stream = builders::stream(&app, &channel, access).await;
    Live {
        app,
        owner,
        owner_id,
        channel,
        stream,
    }
}

impl Live {
    async fn go_live(&self) -> Browser {
        let page = builders::go_live(&self.owner, self.stream.id).await;
        assert_eq!(
            page.header("hx-redirect"),
            Some(format!("/studio/streams/{}/broadcast", self.stream.id))
        );
        self.owner.clone()
    }

    async fn status(&self) -> String {
        streams::table
            .find(self.stream.id)
            .select(streams::status)
            .first(&mut self.app.conn().await)
            .await
            .unwrap()
    }

    async fn rooms(&self) -> Vec<livekit_protocol::Room> {
        self.app
            .state
            .livekit
            .rooms
            .list_rooms(vec![self.stream.room_name.clone()])
            .await
            .unwrap()
    }
}

/// POST /s/{id}/token as `browser` would (CSRF header), answering status and JSON.
async fn viewer_token(browser: &Browser, stream: &Stream) -> (StatusCode, serde_json::Value) {
    let page = browser
        .post_htmx(&format!("/s/{}/token", stream.id), &[])
        .await;
    (
        page.status,
        serde_json::from_str(&page.text).unwrap_or(serde_json::Value::Null),
    )
}

fn claims(token: &str) -> livekit_api::access_token::Claims {
    TokenVerifier::with_api_key(services::LIVEKIT_KEY, services::LIVEKIT_SECRET)
        .verify(token)
        .unwrap()
}

#[tokio::test]
async fn going_live_creates_the_room_and_ending_deletes_it_and_disconnects_everyone() {
    let live = setup(AccessKind::Pass).await;
    live.go_live().await;
    let rooms = live.rooms().await;
    assert_eq!(rooms.len(), 1, "LiveKit's ListRooms shows the room");
    let room = &rooms[0];
    assert!(
        room.metadata
            .contains(&format!("\"stream_id\":{}", live.stream.id))
    );
    assert_eq!(room.departure_timeout, 120);
    assert_eq!(room.max_participants, 500);
    assert_eq!(live.status().await, "live");

    // Going live twice is harmless: same room, same start.
    let started: Option<chrono::DateTime<chrono::Utc>> = streams::table
        .find(live.stream.id)
        .select(streams::started_at)
        .first(&mut live.app.conn().await)
        .await
        .unwrap();
    live.go_live().await;
    let again: Option<chrono::DateTime<chrono::Utc>> = streams::table
        .find(live.stream.id)
        .select(streams::started_at)
        .first(&mut live.app.conn().await)
        .await
        .unwrap();
    assert_eq!(started, again);
    assert_eq!(live.rooms().await.len(), 1);

    // A viewer connected with a real client is disconnected when the stream ends.
    let (viewer, viewer_id) = builders::user(&live.app, "viewer@example.com", "Viewer").await;
    grant(
        &live.app,
        viewer_id,
        live.channel.id,
        None,
        "-1 minute",
        "1 hour",
    )
    .await;
    let (status, body) = viewer_token(&viewer, &live.stream).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut client = LiveKitClient::start(
        body["url"].as_str().unwrap(),
        body["token"].as_str().unwrap(),
        "stay",
        30,
    )
    .await;
    assert_eq!(client.next().await["connected"], true);

    let end = live
        .owner
        .post_htmx(&format!("/studio/streams/{}/end", live.stream.id), &[])
        .await;
    assert_eq!(end.status, StatusCode::OK);
    assert!(live.rooms().await.is_empty(), "the room is gone");
    assert_eq!(live.status().await, "ended");
    let gone = client.next().await;
    assert_eq!(gone["disconnected"], true, "{gone}");
    assert_eq!(gone["reason"], "ROOM_DELETED", "{gone}");

    // The watch page now says so.
    let page = viewer.get(&format!("/s/{}", live.stream.id)).await;
    assert!(
        page.text_of("#ended-notice")
            .contains("This stream has ended.")
    );
    assert!(!page.has("#player"));
}

#[tokio::test]
async fn when_livekit_is_unreachable_going_live_changes_nothing_and_says_why() {
    let closed = services::free_port();
    let app = TestApp::spawn_with(|env| {
        env.insert("LIVEKIT_URL".into(), format!("http://127.0.0.1:{closed}"));
    })
    .await;
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let channel = builders::channel(&app, owner_id, "offline").await;
    let stream = builders::stream(&app, &channel, AccessKind::Pass).await;
    let page = owner
        .post_htmx(&format!("/studio/streams/{}/live", stream.id), &[])
        .await;
    assert_eq!(
        page.header("hx-redirect"),
        Some(format!("/studio/streams/{}", stream.id))
    );
    let status: String = streams::table
        .find(stream.id)
        .select(streams::status)
        .first(&mut app.conn().await)
        .await
        .unwrap();
    assert_eq!(status, "draft");
    // The flash on the next page says what happened.
    let next = owner.get("/").await;
    assert!(
        next.text_of("#alerts")
            .contains("could not be reached or refused"),
        "{}",
        next.text
    );
}

#[tokio::test]
async fn viewer_tokens_are_subscribe_only_short_lived_and_the_real_server_refuses_their_publish() {
    let live = setup(AccessKind::Pass).await;
    live.go_live().await;
    let (viewer, viewer_id) = builders::user(&live.app, "viewer@example.com", "Vera Viewer").await;
    // A grant ending in 3 minutes: the token must not outlive it.
    grant(
        &live.app,
        viewer_id,
        live.channel.id,
        Some(live.stream.id),
        "-1 minute",
        "3 minutes",
    )
    .await;
    let (status, body) = viewer_token(&viewer, &live.stream).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["token"].as_str().unwrap();
    let c = claims(token);
    assert_eq!(c.sub, viewer_id.to_string(), "identity = user id");
    assert_eq!(c.name, "Vera Viewer");
    let v = &c.video;
    assert!(v.room_join && v.room == live.stream.room_name);
    assert_eq!(
        (v.can_subscribe, v.can_publish, v.can_publish_data),
        (Some(true), Some(false), Some(false))
    );
    assert!(!v.room_admin && !v.room_create && !v.room_list && !v.room_record && !v.ingress_admin);
    let now = chrono::Utc::now().timestamp() as usize;
    assert!(
        c.exp <= now + 3 * 60 + 1,
        "never past the grant's end: exp {} now {now}",
        c.exp
    );

    // The real server: the viewer's publish is refused, the host's goes through.
    let mut refused =
        LiveKitClient::start(body["url"].as_str().unwrap(), token, "publish", 10).await;
    assert_eq!(refused.next().await["connected"], true);
    assert_eq!(refused.next().await["published"], false);

    let host = live
        .owner
        .post_htmx(&format!("/studio/streams/{}/token", live.stream.id), &[])
        .await;
    assert_eq!(host.status, StatusCode::OK);
    let host: serde_json::Value = serde_json::from_str(&host.text).unwrap();
    let h = claims(host["token"].as_str().unwrap());
    assert_eq!(
        h.sub,
        stagepass::livekit::host_identity(live.owner_id),
        "the host has an identity of its own"
    );
    assert!(
        h.video.room_admin
            && h.video.can_publish == Some(true)
            && h.video.can_publish_data == Some(true)
    );
    let mut allowed = LiveKitClient::start(
        host["url"].as_str().unwrap(),
        host["token"].as_str().unwrap(),
        "publish",
        10,
    )
    .await;
    assert_eq!(allowed.next().await["connected"], true);
    assert_eq!(allowed.next().await["published"], true);
}

#[tokio::test]
async fn every_denial_gets_403_from_token_and_no_token() {
    let live = setup(AccessKind::Pass).await;
    live.go_live().await;
    let app = &live.app;
    let ch = live.channel.id;
    let other = builders::stream(app, &live.channel, AccessKind::Pass).await;

    let anonymous = app.anonymous();
    let (stranger, _) = builders::user(app, "stranger@example.com", "Stranger").await;
    let (expired, id) = builders::user(app, "expired@example.com", "Expired").await;
    grant(app, id, ch, None, "-2 hours", "-1 minute").await;
    let (early, id) = builders::user(app, "early@example.com", "Early").await;
    grant(app, id, ch, None, "10 minutes", "2 hours").await;
    let (revoked, id) = builders::user(app, "revoked@example.com", "Revoked").await;
    let g = grant(app, id, ch, None, "-1 minute", "1 hour").await;
    revoke(app, g).await;
    let (elsewhere, id) = builders::user(app, "elsewhere@example.com", "Elsewhere").await;
    grant(app, id, ch, Some(other.id), "-1 minute", "1 hour").await;
    let (banned, id) = builders::user(app, "banned@example.com", "Banned").await;
    grant(app, id, ch, None, "-1 minute", "1 hour").await;
    ban(app, ch, id).await;
    let foreign_mod = {
        let (_, their_owner) = builders::user(app, "theirowner@example.com", "Their Owner").await;
        let theirs = builders::channel(app, their_owner, "theirs").await;
        let (b, id) = builders::user(app, "foreignmod@example.com", "Foreign Mod").await;
        builders::moderator(app, theirs.id, id).await;
        b
    };

    for (who, browser, reason) in [
        ("anonymous", &anonymous, "Sign in to watch"),
        ("stranger", &stranger, "access pass"),
        ("expired grant", &expired, "Your pass has ended"),
        ("grant not started", &early, "access pass"),
        ("revoked grant", &revoked, "Your pass has ended"),
        ("grant for another stream", &elsewhere, "access pass"),
        ("banned", &banned, "banned"),
        ("moderator of another channel", &foreign_mod, "access pass"),
    ] {
        let page = browser
            .post_htmx(&format!("/s/{}/token", live.stream.id), &[])
            .await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{who}: {}", page.text);
        assert!(
            !page.text.contains("token\""),
            "{who} got a token: {}",
            page.text
        );
        assert!(!page.text.contains("eyJ"), "{who} got a JWT: {}", page.text);
        assert!(page.text.contains(reason), "{who}: {}", page.text);
        // And their watch page shows no player, only what to do.
        let watch = browser.get(&format!("/s/{}", live.stream.id)).await;
        assert!(!watch.has("#player"), "{who} sees a player");
        assert!(
            watch.text_of("#no-access").contains(reason),
            "{who}: {}",
            watch.text
        );
    }

    // Unknown streams are 404s, not 403s.
    assert_eq!(
        stranger.post_htmx("/s/999999/token", &[]).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        stranger.get("/s/not-a-number").await.status,
        StatusCode::NOT_FOUND
    );
}

fn room_finished(room: &str) -> livekit_protocol::WebhookEvent {
    livekit_protocol::WebhookEvent {
        event: "room_finished".into(),
        id: format!("EV_{}", uuid::Uuid::new_v4().simple()),
        room: Some(livekit_protocol::Room {
            name: room.to_owned(),
            ..Default::default()
        }),
        created_at: chrono::Utc::now().timestamp(),
        ..Default::default()
    }
}

#[tokio::test]
async fn webhooks_are_verified_applied_once_and_room_finished_ends_the_stream() {
    let live = setup(AccessKind::Pass).await;
    live.go_live().await;
    let event = room_finished(&live.stream.room_name);

    let (body, _) = signed(&event, services::LIVEKIT_SECRET);
    let (_, forged) = signed(&event, "not-the-secret-not-the-secret-not-the-secret");
    assert_eq!(
        post_webhook(&live.app, &body, &forged).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post_webhook(&live.app, &body, "").await,
        StatusCode::UNAUTHORIZED
    );
    // A valid signature over a different body is refused too.
    let (_, token) = signed(&event, services::LIVEKIT_SECRET);
    let tampered = body.replace("room_finished", "room_started");
    assert_eq!(
        post_webhook(&live.app, &tampered, &token).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        live.status().await,
        "live",
        "refused webhooks change nothing"
    );

    assert_eq!(post_webhook(&live.app, &body, &token).await, StatusCode::OK);
    assert_eq!(live.status().await, "ended");
    assert_eq!(
        post_webhook(&live.app, &body, &token).await,
        StatusCode::OK,
        "a replay is acknowledged"
    );
    let recorded: i64 = livekit_events::table
        .filter(livekit_events::event_id.eq(&event.id))
        .count()
        .get_result(&mut live.app.conn().await)
        .await
        .unwrap();
    assert_eq!(recorded, 1);
    let ended_audits: i64 =
        diesel::sql_query("SELECT 1 FROM audit_log WHERE action = 'stream.ended_by_livekit'")
            .execute(&mut live.app.conn().await)
            .await
            .unwrap() as i64;
    assert_eq!(ended_audits, 1, "applied once");
}

#[tokio::test]
async fn a_participant_whose_right_ended_is_removed_on_join() {
    let live = setup(AccessKind::Pass).await;
    live.go_live().await;
    let (viewer, viewer_id) = builders::user(&live.app, "viewer@example.com", "Viewer").await;
    let g = grant(
        &live.app,
        viewer_id,
        live.channel.id,
        None,
        "-1 minute",
        "1 hour",
    )
    .await;
    let (status, body) = viewer_token(&viewer, &live.stream).await;
    assert_eq!(status, StatusCode::OK);
    // The pass is revoked; the viewer still holds a token the app would no longer issue.
    revoke(&live.app, g).await;
    let mut client = LiveKitClient::start(
        body["url"].as_str().unwrap(),
        body["token"].as_str().unwrap(),
        "stay",
        20,
    )
    .await;
    assert_eq!(client.next().await["connected"], true);
    let joined = Instant::now();
    let gone = client.next().await;
    assert_eq!(gone["disconnected"], true, "{gone}");
    assert_eq!(gone["reason"], "PARTICIPANT_REMOVED", "{gone}");
    eprintln!("removed {:?} after joining", joined.elapsed());
    assert!(
        live.app
            .state
            .livekit
            .rooms
            .list_participants(&live.stream.room_name)
            .await
            .unwrap()
            .is_empty(),
        "nobody is left in the room"
    );
}

#[tokio::test]
async fn presence_counts_viewers_for_the_broadcast_page() {
    let live = setup(AccessKind::Pass).await;
    live.go_live().await;
    let (viewer, viewer_id) = builders::user(&live.app, "viewer@example.com", "Viewer").await;
    grant(
        &live.app,
        viewer_id,
        live.channel.id,
        None,
        "-1 minute",
        "1 hour",
    )
    .await;
    let (_, body) = viewer_token(&viewer, &live.stream).await;
    let mut client = LiveKitClient::start(
        body["url"].as_str().unwrap(),
        body["token"].as_str().unwrap(),
        "stay",
        30,
    )
    .await;
    assert_eq!(client.next().await["connected"], true);

    let stats_path = format!("/studio/streams/{}/stats", live.stream.id);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = live.owner.get_htmx(&stats_path).await;
        if stats.text_of("#viewer-count") == "1" {
            assert_eq!(stats.text_of("#peak-viewers"), "1");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the viewer never showed up: {}",
            stats.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    client.stop().await;
    // A stranger can't read the owner's numbers.
    assert_eq!(viewer.get(&stats_path).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn restarting_the_app_while_live_leaves_the_stream_live_and_the_viewer_watching() {
    let live = setup(AccessKind::Pass).await;
    live.go_live().await;
    let (viewer, viewer_id) = builders::user(&live.app, "viewer@example.com", "Viewer").await;
    grant(
        &live.app,
        viewer_id,
        live.channel.id,
        None,
        "-1 minute",
        "1 hour",
    )
    .await;
    let (_, body) = viewer_token(&viewer, &live.stream).await;
    let mut client = LiveKitClient::start(
        body["url"].as_str().unwrap(),
        body["token"].as_str().unwrap(),
        "stay",
        8,
    )
    .await;
    assert_eq!(client.next().await["connected"], true);

    let database = live.app.state.config.database_url.clone();
    let prefix = live.app.state.config.livekit.room_prefix.clone();
    let Live { app, stream, .. } = live;
    app.stop().await;
    let restarted = TestApp::spawn_with(|env| {
        use secrecy::ExposeSecret;
        env.insert("DATABASE_URL".into(), database.expose_secret().to_owned());
        env.insert("LIVEKIT_ROOM_PREFIX".into(), prefix);
    })
    .await;
    // The reconciler runs at start-up; run a pass explicitly too.
    stagepass::lifecycle::reconcile(&restarted.state)
        .await
        .unwrap();
    let status: String = streams::table
        .find(stream.id)
        .select(streams::status)
        .first(&mut restarted.conn().await)
        .await
        .unwrap();
    assert_eq!(status, "live");
    assert_eq!(
        restarted
            .state
            .livekit
            .rooms
            .list_rooms(vec![stream.room_name.clone()])
            .await
            .unwrap()
            .len(),
        1
    );
    let still = client.next().await;
    assert_eq!(
        still["disconnected"], false,
        "the viewer kept watching: {still}"
    );
}

#[tokio::test]
async fn the_reconciler_ends_orphans_on_both_sides() {
    let live = setup(AccessKind::Pass).await;
    live.go_live().await;
    // A live stream whose room vanished while its room_finished webhook was lost ...
    live.app
        .services
        .webhook_targets
        .lock()
        .unwrap()
        .retain(|u| u != &live.app.url);
    live.app
        .state
        .livekit
        .rooms
        .delete_room(&live.stream.room_name)
        .await
        .unwrap();
    diesel::update(streams::table.find(live.stream.id))
        .set(streams::started_at.eq(chrono::Utc::now() - chrono::Duration::minutes(5)))
        .execute(&mut live.app.conn().await)
        .await
        .unwrap();
    // ... and a room of ours whose stream is unknown.
    let orphan = stagepass::lifecycle::new_room_name(&live.app.state);
    live.app
        .state
        .livekit
        .rooms
        .create_room(&orphan, Default::default())
        .await
        .unwrap();
    // A room of another deployment (another prefix) is left alone.
    let foreign = format!("other-{}", uuid::Uuid::new_v4().simple());
    live.app
        .state
        .livekit
        .rooms
        .create_room(&foreign, Default::default())
        .await
        .unwrap();

    let done = stagepass::lifecycle::reconcile(&live.app.state)
        .await
        .unwrap();
    assert_eq!(done.streams_ended, 1);
    assert_eq!(live.status().await, "ended");
    // The orphan is younger than 30 s (it could be a go-live in progress): kept for now.
    assert_eq!(done.rooms_deleted, 0);
    let rooms: Vec<String> = live
        .app
        .state
        .livekit
        .rooms
        .list_rooms(vec![])
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert!(rooms.contains(&orphan) && rooms.contains(&foreign));
    live.app
        .state
        .livekit
        .rooms
        .delete_room(&foreign)
        .await
        .unwrap();
    live.app
        .state
        .livekit
        .rooms
        .delete_room(&orphan)
        .await
        .unwrap();
}

fn participant_event(
    kind: &str,
    room: &str,
    identity: &str,
    sid: &str,
) -> livekit_protocol::WebhookEvent {
    livekit_protocol::WebhookEvent {
        event: kind.into(),
        id: format!("EV_{}", uuid::Uuid::new_v4().simple()),
        room: Some(livekit_protocol::Room {
            name: room.to_owned(),
            ..Default::default()
        }),
        participant: Some(livekit_protocol::ParticipantInfo {
            sid: sid.to_owned(),
            identity: identity.to_owned(),
            ..Default::default()
        }),
        created_at: chrono::Utc::now().timestamp(),
        ..Default::default()
    }
}

#[tokio::test]
async fn participant_events_are_order_tolerant() {
    let live = setup(AccessKind::Public).await;
    live.go_live().await;
    // Keep the real server's own webhooks out of this test's counts.
    live.app
        .services
        .webhook_targets
        .lock()
        .unwrap()
        .retain(|u| u != &live.app.url);
    let (_, viewer) = builders::user(&live.app, "viewer@example.com", "Viewer").await;
    let room = &live.stream.room_name;
    let left = participant_event("participant_left", room, &viewer.to_string(), "PA_late");
    let joined = participant_event("participant_joined", room, &viewer.to_string(), "PA_late");

    // The leave arrives before the join.
    let (body, token) = signed(&left, services::LIVEKIT_SECRET);
    assert_eq!(post_webhook(&live.app, &body, &token).await, StatusCode::OK);
    let (body, token) = signed(&joined, services::LIVEKIT_SECRET);
    assert_eq!(post_webhook(&live.app, &body, &token).await, StatusCode::OK);

    #[derive(QueryableByName)]
    struct Open {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        open: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        rows: i64,
    }
    let counts: Open = diesel::sql_query(
        "SELECT count(*) FILTER (WHERE left_at IS NULL) AS open, count(*) AS rows FROM presence WHERE participant_sid = 'PA_late'",
    )
    .get_result(&mut live.app.conn().await)
    .await
    .unwrap();
    assert_eq!(
        (counts.rows, counts.open),
        (1, 0),
        "one row, and the late join does not reopen it"
    );
}

#[tokio::test]
async fn the_watch_page_shows_scheduled_live_and_ended_states() {
    let live = setup(AccessKind::Public).await;
    let (viewer, _) = builders::user(&live.app, "viewer@example.com", "Viewer").await;
    let path = format!("/s/{}", live.stream.id);

    // An unannounced draft is nobody else's business yet.
    assert_eq!(viewer.get(&path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(live.owner.get(&path).await.status, StatusCode::OK);

    diesel::update(streams::table.find(live.stream.id))
        .set(streams::scheduled_at.eq(Some(chrono::Utc::now() + chrono::Duration::hours(2))))
        .execute(&mut live.app.conn().await)
        .await
        .unwrap();
    let page = viewer.get(&path).await;
    assert!(page.text_of("#scheduled-notice").contains("Starts in"));
    assert!(page.attr("#countdown", "datetime").is_some());
    assert!(!page.has("#player"));
    // While nothing changes, the status poll swaps nothing.
    assert_eq!(
        viewer
            .get_htmx(&format!("{path}/status?since=draft-in"))
            .await
            .status,
        StatusCode::NO_CONTENT
    );

    live.go_live().await;
    let stage = viewer.get_htmx(&format!("{path}/status?since=draft")).await;
    assert_eq!(stage.status, StatusCode::OK);
    assert!(
        stage.has("section#stage #player video#stream-video"),
        "{}",
        stage.text
    );
    assert!(!stage.text.contains("<html"));

    live.owner
        .post_htmx(&format!("/studio/streams/{}/end", live.stream.id), &[])
        .await;
    let stage = viewer.get_htmx(&format!("{path}/status?since=live")).await;
    assert!(
        stage
            .text_of("#ended-notice")
            .contains("This stream has ended.")
    );
    assert!(!stage.has("#player"));
}

#[tokio::test]
async fn a_grant_for_another_channel_gives_no_token_and_a_channel_grant_covers_every_stream() {
    let live = setup(AccessKind::Pass).await;
    live.go_live().await;
    let second = builders::stream(&live.app, &live.channel, AccessKind::Pass).await;
    builders::go_live(&live.owner, second.id).await;

    // A pass for someone else's channel opens nothing here.
    let (_, other_owner) = builders::user(&live.app, "other@example.com", "Other").await;
    let other = builders::channel(&live.app, other_owner, "other-channel").await;
    let (viewer, viewer_id) = builders::user(&live.app, "viewer@example.com", "Viewer").await;
    grant(&live.app, viewer_id, other.id, None, "-1 minute", "1 hour").await;
    for stream in [&live.stream, &second] {
        let (status, body) = viewer_token(&viewer, stream).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }

    // A channel-wide grant here: a token for every stream of the channel.
    grant(
        &live.app,
        viewer_id,
        live.channel.id,
        None,
        "-1 minute",
        "1 hour",
    )
    .await;
    for stream in [&live.stream, &second] {
        let (status, body) = viewer_token(&viewer, stream).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            claims(body["token"].as_str().unwrap()).video.room,
            stream.room_name
        );
    }
}

#[tokio::test]
async fn the_reconciler_recovers_presence_lost_with_webhooks_so_enforcement_still_holds() {
    let live = setup(AccessKind::Pass).await;
    live.go_live().await;
    // LiveKit's webhooks don't reach this app (it was restarting, say).
    live.app
        .services
        .webhook_targets
        .lock()
        .unwrap()
        .retain(|u| u != &live.app.url);
    let (viewer, viewer_id) = builders::user(&live.app, "viewer@example.com", "Viewer").await;
    let g = grant(
        &live.app,
        viewer_id,
        live.channel.id,
        None,
        "-1 minute",
        "1 hour",
    )
    .await;
    let (_, body) = viewer_token(&viewer, &live.stream).await;
    let mut client = LiveKitClient::start(
        body["url"].as_str().unwrap(),
        body["token"].as_str().unwrap(),
        "stay",
        20,
    )
    .await;
    assert_eq!(client.next().await["connected"], true);
    revoke(&live.app, g).await;

    // The reconciler finds them in the room; the enforcer then removes them.
    stagepass::lifecycle::reconcile(&live.app.state)
        .await
        .unwrap();
    let gone = client.next().await;
    assert_eq!(gone["reason"], "PARTICIPANT_REMOVED", "{gone}");
}
