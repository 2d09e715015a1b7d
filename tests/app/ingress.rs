//! OBS ingress from the studio: create (RTMP, WHIP), reset, delete; the
//! stand-in's ingress webhooks take the stream live and offline; owner only;
//! the stream key never reaches a log line.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use stagepass::db::StreamId;
use stagepass::db::schema::audit_log;
use stagepass::db::streams::{self, Status, StreamIngress};

use crate::util::builders;
use crate::util::logs::Logs;
use crate::util::standin;
use crate::util::{Browser, TestApp};

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
        if stream.status() == want {
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
    let stream = builders::stream(&app, &channel, "public").await;
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
    assert_eq!(first.kind, "rtmp");
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
    assert_eq!(second.kind, "rtmp");
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
    let stream = builders::stream(&app, &channel, "public").await;
    let studio = format!("/studio/streams/{}", stream.id);
    let created = owner
        .submit(&studio, "#ingress-create-form", &[("kind", "whip")])
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.text);
    let page = owner.get(&studio).await;
    assert_eq!(
        page.text_of("#ingress-url"),
        format!("{}/w", app.services.livekit_url)
    );
    assert!(page.text_of("#obs-instructions").contains("WHIP"));
    let row = ingress_row(&app, stream.id).await.unwrap();
    assert_eq!(row.kind, "whip");

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
    let stream = builders::stream(&app, &channel, "public").await;
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
