//! Recordings and replays against the stand-in's Egress (tests/app/util/standin.rs),
//! the real livekit-server and s3s-fs: start/stop, webhooks, playback through
//! presigned URLs for those whose pass includes replays, failures, deletion.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_async::RunQueryDsl;
use reqwest::StatusCode;
use stagepass::db::recordings::{Recording, Status};
use stagepass::db::schema::recordings;
use stagepass::db::streams::AccessKind;
use stagepass::db::streams::{self, NewStream, Stream};

use crate::util::builders::{self, grant};
use crate::util::{Browser, TestApp, standin};

/// These tests record through the stand-in's Egress (`RECORDER=egress`);
/// the built-in recorder's tests are in `recorder.rs`.
fn egress(env: &mut std::collections::HashMap<String, String>) {
    env.insert("RECORDER".into(), "egress".into());
}

struct Rec {
    app: TestApp,
    owner: Browser,
    channel: stagepass::db::channels::Channel,
    stream: Stream,
}

async fn setup() -> Rec {
    let app = TestApp::spawn_with(egress).await;
    let (owner, owner_id) = builders::user(&app, "owner@example.com", "Owner").await;
    let channel = builders::channel(&app, owner_id, "rec-channel").await;
    let stream = builders::stream(&app, &channel, AccessKind::Pass).await;
    Rec {
        app,
        owner,
        channel,
        stream,
    }
}

impl Rec {
    async fn rows(&self) -> Vec<Recording> {
        recordings::table
            .filter(recordings::stream_id.eq(self.stream.id))
            .order(recordings::id)
            .select(Recording::as_select())
            .load(&mut self.app.conn().await)
            .await
            .unwrap()
    }

    /// Waits until the latest recording has `status` (webhooks are asynchronous).
    async fn wait_status(&self, status: Status) -> Recording {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let rows = self.rows().await;
            if let Some(r) = rows.last().filter(|r| r.status == status) {
                return r.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no recording became {status}: {rows:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn start(&self) -> crate::util::Page {
        self.owner
            .post_htmx(
                &format!("/studio/streams/{}/recording/start", self.stream.id),
                &[],
            )
            .await
    }

    async fn stop(&self) -> crate::util::Page {
        self.owner
            .post_htmx(
                &format!("/studio/streams/{}/recording/stop", self.stream.id),
                &[],
            )
            .await
    }
}

async fn include_replays(app: &TestApp, grant: i64, on: bool) {
    diesel::sql_query("UPDATE access_grants SET includes_replays = $2 WHERE id = $1")
        .bind::<BigInt, _>(grant)
        .bind::<diesel::sql_types::Bool, _>(on)
        .execute(&mut *app.conn().await)
        .await
        .unwrap();
}

#[tokio::test]
async fn start_then_stop_gives_a_complete_recording_that_only_replay_holders_can_play() {
    let t = setup().await;
    builders::go_live(&t.owner, t.stream.id).await;
    let page = t.start().await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert!(page.has("#recording-indicator"), "{}", page.text);
    let active = t.wait_status(Status::Active).await;
    assert!(!active.egress_id.starts_with("pending-"));
    let broadcast = t
        .owner
        .get(&format!("/studio/streams/{}/broadcast", t.stream.id))
        .await;
    assert!(
        broadcast.has("#recording-elapsed[data-since]"),
        "{}",
        broadcast.text
    );
    assert!(broadcast.has("#recording-stop-form"));

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let page = t.stop().await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    // Stopping again is harmless.
    let again = t.stop().await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    let done = t.wait_status(Status::Complete).await;
    assert!(done.size_bytes.unwrap() > 0, "{done:?}");
    assert!(done.duration_ms.unwrap() > 0, "{done:?}");
    let key = done.object_key.clone().unwrap();
    assert!(
        key.starts_with(&format!("recordings/{}/", t.stream.id)) && key.ends_with(".mp4"),
        "{key}"
    );
    assert_eq!(
        t.app.state.storage.size(&key).await.unwrap(),
        Some(done.size_bytes.unwrap())
    );

    // A holder whose pass includes replays gets a working presigned URL.
    let (holder, holder_id) = builders::user(&t.app, "holder@example.com", "Holder").await;
    let g = grant(
        &t.app,
        holder_id,
        t.channel.id,
        Some(t.stream.id),
        "-1 hour",
        "1 day",
    )
    .await;
    include_replays(&t.app, g, true).await;
    let replays = holder.get(&format!("/s/{}/replays", t.stream.id)).await;
    assert_eq!(replays.status, StatusCode::OK, "{}", replays.text);
    let src = replays
        .attr("video.replay-video", "src")
        .expect("a video with a src");
    assert!(
        src.contains("X-Amz-Signature") && src.contains("X-Amz-Expires=600"),
        "{src}"
    );
    let media = reqwest::get(&src).await.unwrap();
    assert_eq!(media.status(), StatusCode::OK);
    let body = media.bytes().await.unwrap();
    assert_eq!(&body[4..8], b"ftyp", "an MP4 starts with its ftyp box");
    // The CSP lets the browser play from S3.
    let csp = replays.header("content-security-policy").unwrap();
    let s3_origin = url::Url::parse(&t.app.services.s3_url)
        .unwrap()
        .origin()
        .ascii_serialization();
    assert!(
        csp.contains(&format!("media-src 'self' blob: {s3_origin}")),
        "{csp}"
    );

    // A holder whose pass excludes replays, and a stranger, get 403 and why.
    let (plain, plain_id) = builders::user(&t.app, "plain@example.com", "Plain").await;
    grant(
        &t.app,
        plain_id,
        t.channel.id,
        Some(t.stream.id),
        "-1 hour",
        "1 day",
    )
    .await;
    let denied = plain.get(&format!("/s/{}/replays", t.stream.id)).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert!(
        denied
            .text_of("#replays-denied")
            .contains("does not include replays")
    );
    assert!(!denied.has("video"));
    let stranger = t.app.signed_up("stranger@example.com", "Stranger").await;
    let denied = stranger.get(&format!("/s/{}/replays", t.stream.id)).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert!(!denied.has("video"));
    let anonymous = t
        .app
        .anonymous()
        .get(&format!("/s/{}/replays", t.stream.id))
        .await;
    assert_eq!(anonymous.status, StatusCode::FORBIDDEN);

    // The owner plays it too, and deletes it: object and row.
    let own = t.owner.get(&format!("/s/{}/replays", t.stream.id)).await;
    assert!(own.has("video.replay-video"));
    let deleted = t
        .owner
        .post_htmx(&format!("/studio/recordings/{}/delete", done.id), &[])
        .await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text);
    assert_eq!(t.app.state.storage.size(&key).await.unwrap(), None);
    assert!(t.rows().await.is_empty());
    t.app.stop().await;
}

#[tokio::test]
async fn racing_starts_give_one_recording() {
    let t = setup().await;
    builders::go_live(&t.owner, t.stream.id).await;
    let (a, b, c) = tokio::join!(t.start(), t.start(), t.start());
    for p in [&a, &b, &c] {
        assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    }
    let said_already = [&a, &b, &c]
        .iter()
        .filter(|p| p.text.contains("already being recorded"))
        .count();
    assert_eq!(said_already, 2, "{}\n{}\n{}", a.text, b.text, c.text);
    t.wait_status(Status::Active).await;
    assert_eq!(t.rows().await.len(), 1);
    assert_eq!(standin::egresses_in(&t.stream.room_name).len(), 1);
    t.app.stop().await;
}

#[tokio::test]
async fn ending_a_stream_stops_its_recording() {
    let t = setup().await;
    builders::go_live(&t.owner, t.stream.id).await;
    t.start().await;
    t.wait_status(Status::Active).await;
    let page = t
        .owner
        .post_htmx(&format!("/studio/streams/{}/end", t.stream.id), &[])
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let done = t.wait_status(Status::Complete).await;
    assert!(done.size_bytes.unwrap() > 0);
    t.app.stop().await;
}

#[tokio::test]
async fn record_on_live_starts_recording_when_going_live() {
    let t = setup().await;
    let page = t
        .owner
        .post_htmx(
            &format!("/studio/streams/{}/recording/settings", t.stream.id),
            &[("record_on_live", "on")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let settings = t
        .owner
        .get(&format!("/studio/streams/{}", t.stream.id))
        .await;
    assert!(
        settings.has("#record-on-live[checked]"),
        "{}",
        settings.text
    );
    builders::go_live(&t.owner, t.stream.id).await;
    t.wait_status(Status::Active).await;
    t.app.stop().await;
}

#[tokio::test]
async fn a_failed_egress_shows_its_reason_on_the_broadcast_page() {
    let t = setup().await;
    // Room names come from new_room_name; this one asks the stand-in to fail.
    let room = format!(
        "{}FAIL-{}",
        t.app.state.config.livekit.room_prefix,
        uuid::Uuid::new_v4().simple()
    );
    let new = NewStream {
        channel_id: t.channel.id,
        title: "Doomed",
        description: "",
        access: AccessKind::Pass,
        scheduled_at: None,
        room_name: &room,
    };
    let stream = streams::create(&mut *t.app.conn().await, &new)
        .await
        .unwrap();
    let t = Rec { stream, ..t };
    builders::go_live(&t.owner, t.stream.id).await;
    t.start().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The stand-in fails it once it ends; stopping ends it.
    let _ = t.stop().await;
    let failed = t.wait_status(Status::Failed).await;
    assert_eq!(failed.error.as_deref(), Some(standin::SIMULATED_FAILURE));
    let fragment = t
        .owner
        .get_htmx(&format!("/studio/streams/{}/recording", t.stream.id))
        .await;
    assert!(
        fragment
            .text_of("#recording-error")
            .contains(standin::SIMULATED_FAILURE),
        "{}",
        fragment.text
    );
    let broadcast = t
        .owner
        .get(&format!("/studio/streams/{}/broadcast", t.stream.id))
        .await;
    assert!(
        broadcast
            .text_of("#recording-error")
            .contains(standin::SIMULATED_FAILURE)
    );
    t.app.stop().await;
}

#[tokio::test]
async fn a_bucket_that_does_not_exist_gives_a_clear_error_on_the_button() {
    let t = TestApp::spawn_with(|env| {
        env.insert("S3_BUCKET".into(), "no-such-bucket".into());
    })
    .await;
    let (owner, owner_id) = builders::user(&t, "owner@example.com", "Owner").await;
    let channel = builders::channel(&t, owner_id, "rec-channel").await;
    let stream = builders::stream(&t, &channel, AccessKind::Pass).await;
    builders::go_live(&owner, stream.id).await;
    let page = owner
        .post_htmx(
            &format!("/studio/streams/{}/recording/start", stream.id),
            &[],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let message = page.text_of("#recording-message");
    assert!(
        message.contains("Recording is unavailable") && message.contains("no-such-bucket"),
        "{message}"
    );
    assert!(!page.text.contains(crate::util::services::S3_SECRET));
    t.stop().await;
}

#[tokio::test]
async fn the_retention_job_deletes_recordings_older_than_the_channels_period() {
    let t = setup().await;
    builders::go_live(&t.owner, t.stream.id).await;
    t.start().await;
    t.wait_status(Status::Active).await;
    t.stop().await;
    let done = t.wait_status(Status::Complete).await;
    let key = done.object_key.clone().unwrap();

    let page = t
        .owner
        .post_htmx(
            &format!("/studio/streams/{}/recording/retention", t.stream.id),
            &[("days", "7")],
        )
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    // Within the period: kept.
    assert_eq!(
        stagepass::recording::apply_retention(&t.app.state)
            .await
            .unwrap(),
        0
    );
    diesel::sql_query("UPDATE recordings SET created_at = now() - interval '8 days' WHERE id = $1")
        .bind::<BigInt, _>(done.id)
        .execute(&mut *t.app.conn().await)
        .await
        .unwrap();
    assert_eq!(
        stagepass::recording::apply_retention(&t.app.state)
            .await
            .unwrap(),
        1
    );
    assert!(t.rows().await.is_empty());
    assert_eq!(t.app.state.storage.size(&key).await.unwrap(), None);
    t.app.stop().await;
}

#[tokio::test]
async fn the_reconciler_settles_a_recording_whose_webhook_was_lost() {
    let t = setup().await;
    builders::go_live(&t.owner, t.stream.id).await;
    t.start().await;
    t.wait_status(Status::Active).await;
    t.stop().await;
    let done = t.wait_status(Status::Complete).await;
    // As if egress_ended had never arrived.
    diesel::sql_query(
        "UPDATE recordings SET status = 'ending', size_bytes = NULL, duration_ms = NULL WHERE id = $1",
    )
    .bind::<BigInt, _>(done.id)
    .execute(&mut *t.app.conn().await)
    .await
    .unwrap();
    let looked_at = stagepass::recording::reconcile(&t.app.state, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(looked_at, 1);
    let settled = t.rows().await.pop().unwrap();
    assert_eq!(settled.status, Status::Complete);
    assert_eq!(settled.size_bytes, done.size_bytes);
    t.app.stop().await;
}
