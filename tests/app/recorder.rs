//! The built-in recorder against the real things: Chromium broadcasts its fake
//! camera and microphone to the real livekit-server, the app records the room
//! as a hidden participant, the file lands in s3s-fs, ffprobe reads it, and
//! the replay plays and seeks in Chromium.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use stagepass::db::recordings::{Recording, Status};
use stagepass::db::schema::recordings;
use stagepass::db::streams::AccessKind;
use stagepass::db::streams::Stream;

use crate::util::browser::{Browser, TIMEOUT};
use crate::util::{PASSWORD, TestApp, builders};

/// Media and uploads take their time on a small machine.
const LONG: Duration = Duration::from_secs(60);

struct Studio {
    app: TestApp,
    /// The owner in Chromium, and the same owner over plain HTTP.
    owner: Browser,
    owner_http: crate::util::Browser,
    stream: Stream,
}

/// The recorder's tests encode and record real video: one at a time, so
/// that the publishing browser's frame rate is not what is measured.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A live stream broadcast from Chromium's fake camera by its owner.
async fn broadcasting() -> Studio {
    let app = TestApp::spawn().await;
    let (owner_http, owner_id) = builders::user(&app, "host@example.com", "Hana Host").await;
    let channel = builders::channel(&app, owner_id, "hana").await;
    let stream = builders::stream(&app, &channel, AccessKind::Pass).await;
    let owner = crate::util::browser::go_live_at(&app.url, "host@example.com", stream.id).await;
    Studio {
        app,
        owner,
        owner_http,
        stream,
    }
}

impl Studio {
    async fn latest(&self) -> Option<Recording> {
        recordings::table
            .filter(recordings::stream_id.eq(self.stream.id))
            .order(recordings::id.desc())
            .select(Recording::as_select())
            .first(&mut *self.app.conn().await)
            .await
            .optional()
            .unwrap()
    }

    async fn wait_status(&self, status: Status) -> Recording {
        let deadline = Instant::now() + LONG;
        loop {
            let latest = self.latest().await;
            if let Some(r) = &latest
                && r.status == status
            {
                return r.clone();
            }
            assert!(
                Instant::now() < deadline,
                "the recording did not become {status} within {LONG:?}: {latest:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The frame rate the owner's camera captures at.
    async fn camera_fps(&self) -> f64 {
        self.owner
            .js("return document.getElementById('preview').srcObject.getVideoTracks()[0].getSettings().frameRate")
            .await
            .as_f64()
            .expect("the camera's frame rate")
    }

    /// Records from the broadcast page's panel for `seconds`; answers the
    /// finished recording and how long it was active.
    async fn record_for(&self, seconds: u64) -> (Recording, Duration) {
        self.owner
            .click("#recording-start-form [type=submit]")
            .await;
        self.owner.wait_for("#recording-stop-form").await;
        self.wait_status(Status::Active).await;
        let active = Instant::now();
        self.recorder_is_no_viewer().await;
        tokio::time::sleep(Duration::from_secs(seconds).saturating_sub(active.elapsed())).await;
        self.stop_recording().await;
        let recorded = active.elapsed();
        (self.wait_status(Status::Complete).await, recorded)
    }

    /// Stops from the recording panel, which htmx re-renders every few
    /// seconds (a click through JavaScript finds the button of the moment).
    async fn stop_recording(&self) {
        self.owner
            .wait_until(
                "the stop button to be clicked",
                "const b = document.querySelector('#recording-stop-form [type=submit]'); \
                 if (b) b.click(); return b !== null",
                TIMEOUT,
            )
            .await;
    }

    /// The recorder is in the room, hidden and marked as a recorder, and
    /// nobody counts it: not the owner's viewer count, not the participants panel.
    async fn recorder_is_no_viewer(&self) {
        let participants = self
            .app
            .state
            .livekit
            .rooms
            .list_participants(&self.stream.room_name)
            .await
            .unwrap();
        let recorder = participants
            .iter()
            .find(|p| p.identity == format!("recorder-{}", self.stream.id))
            .unwrap_or_else(|| panic!("no recorder in the room: {participants:?}"));
        let permission = recorder.permission.as_ref().unwrap();
        assert!(permission.hidden, "{permission:?}");
        assert!(
            !permission.can_publish && !permission.can_publish_data,
            "{permission:?}"
        );
        let owner = &self.owner_http;
        let stats = owner
            .get_htmx(&format!("/studio/streams/{}/stats", self.stream.id))
            .await;
        assert_eq!(stats.text_of("#viewer-count"), "0", "{}", stats.text);
        let panel = owner
            .get_htmx(&format!("/studio/streams/{}/participants", self.stream.id))
            .await;
        assert!(!panel.text.contains("recorder-"), "{}", panel.text);
        assert!(!panel.text.contains("Recorder"), "{}", panel.text);
    }

    /// The recording's object, fetched from the bucket into a file.
    async fn object(&self, recording: &Recording) -> PathBuf {
        let key = recording.object_key.as_deref().expect("an object key");
        assert!(key.ends_with(".webm"), "{key}");
        let (bytes, content_type) = self
            .app
            .state
            .storage
            .get(key)
            .await
            .unwrap()
            .expect("the object is in the bucket");
        assert_eq!(content_type, "video/webm");
        assert_eq!(Some(bytes.len() as i64), recording.size_bytes);
        let path =
            std::env::temp_dir().join(format!("stagepass-rec-{}.webm", uuid::Uuid::new_v4()));
        std::fs::write(&path, bytes).unwrap();
        path
    }
}

/// What ffprobe says of a file's streams (`-count_frames`).
fn ffprobe(path: &PathBuf) -> serde_json::Value {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-count_frames",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs (scripts/setup installs ffmpeg)");
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn stream_of<'a>(probe: &'a serde_json::Value, kind: &str) -> &'a serde_json::Value {
    probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} stream: {probe}"))
}

fn within(actual: f64, expected: f64, tolerance: f64) -> bool {
    (actual - expected).abs() <= expected * tolerance
}

#[tokio::test]
async fn a_browser_broadcast_is_recorded_as_webm_that_ffprobe_reads_and_chromium_plays_and_seeks() {
    let _one = ONE_AT_A_TIME.lock().await;
    let t = broadcasting().await;
    let fps = t.camera_fps().await;
    let (done, recorded) = t.record_for(20).await;
    let seconds = recorded.as_secs_f64();

    // The row: complete with its duration and size, as the owner sees it.
    let duration_ms = done.duration_ms.expect("a duration") as f64;
    assert!(
        within(duration_ms / 1000.0, seconds, 0.10),
        "duration {duration_ms} ms for {seconds:.1} s recorded"
    );

    // The object itself.
    let path = t.object(&done).await;
    let probe = ffprobe(&path);
    let video = stream_of(&probe, "video");
    assert_eq!(video["codec_name"], "vp8", "{video}");
    assert!(video["width"].as_u64().unwrap() >= 320, "{video}");
    assert!(video["height"].as_u64().unwrap() >= 180, "{video}");
    let frames: f64 = video["nb_read_frames"].as_str().unwrap().parse().unwrap();
    assert!(
        within(frames, fps * seconds, 0.10),
        "{frames} frames in {seconds:.1} s at {fps} fps"
    );
    let audio = stream_of(&probe, "audio");
    assert_eq!(audio["codec_name"], "opus", "{audio}");
    let file_seconds: f64 = probe["format"]["duration"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(within(file_seconds, seconds, 0.10), "{probe}");
    // Seeking to the middle decodes (the file has its seek index).
    let seek = Command::new("ffmpeg")
        .args(["-v", "error", "-ss", &format!("{:.1}", seconds / 2.0), "-i"])
        .arg(&path)
        .args(["-frames:v", "5", "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(
        seek.status.success() && seek.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&seek.stderr)
    );
    let _ = std::fs::remove_file(&path);

    // The replay plays in Chromium, and plays on after a seek to the middle.
    t.owner
        .goto(&format!("{}/s/{}/replays", t.app.url, t.stream.id))
        .await;
    t.owner
        .wait_until(
            "the replay's metadata",
            "const v = document.querySelector('video.replay-video'); \
             return v && v.readyState >= 1 && v.videoWidth > 0 && Number.isFinite(v.duration)",
            LONG,
        )
        .await;
    let duration = t
        .owner
        .js("return document.querySelector('video.replay-video').duration")
        .await
        .as_f64()
        .unwrap();
    assert!(
        within(duration, seconds, 0.10),
        "the replay lasts {duration} s for {seconds:.1} s recorded"
    );
    let middle = duration / 2.0;
    t.owner
        .js(&format!(
            "const v = document.querySelector('video.replay-video'); \
             v.muted = true; v.currentTime = {middle}; v.play(); return true"
        ))
        .await;
    t.owner
        .wait_until(
            "the replay to play on from the middle",
            &format!(
                "const v = document.querySelector('video.replay-video'); \
                 return !v.seeking && v.currentTime > {middle} + 1 && v.videoWidth > 0"
            ),
            LONG,
        )
        .await;

    t.owner.close().await;
    t.app.stop().await;
}

/// The parts of the stream's latest recording, in order.
async fn parts(app: &TestApp, stream: &Stream) -> Vec<stagepass::db::recordings::Part> {
    use stagepass::db::schema::recording_parts;
    recording_parts::table
        .inner_join(recordings::table)
        .filter(recordings::stream_id.eq(stream.id))
        .order(recording_parts::part_no)
        .select(stagepass::db::recordings::Part::as_select())
        .load(&mut *app.conn().await)
        .await
        .unwrap()
}

async fn wait_parts(
    app: &TestApp,
    stream: &Stream,
    what: &str,
    timeout: Duration,
    done: impl Fn(&[stagepass::db::recordings::Part]) -> bool,
) -> Vec<stagepass::db::recordings::Part> {
    let deadline = Instant::now() + timeout;
    loop {
        let parts = parts(app, stream).await;
        if done(&parts) {
            return parts;
        }
        assert!(
            Instant::now() < deadline,
            "{what} within {timeout:?}: {parts:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test]
async fn when_the_recording_instance_is_killed_the_other_continues_and_the_replay_holds_both_parts()
{
    // Instance A runs in the test; instance B is the real binary beside it.
    let _one = ONE_AT_A_TIME.lock().await;
    let a = TestApp::spawn().await;
    let (owner_at_a, owner_id) = builders::user(&a, "host@example.com", "Hana Host").await;
    let channel = builders::channel(&a, owner_id, "hana").await;
    let stream = builders::stream(&a, &channel, AccessKind::Pass).await;
    let b = crate::util::instance::Instance::start(&a).await;

    // The owner broadcasts from B and records there: B holds the recording.
    let owner = crate::util::browser::go_live_at(&b.url, "host@example.com", stream.id).await;
    owner.click("#recording-start-form [type=submit]").await;
    owner.wait_for("#recording-stop-form").await;

    // Once a piece of the first file is in the bucket, B dies.
    wait_parts(
        &a,
        &stream,
        "a piece of part 1 uploaded",
        Duration::from_secs(150),
        |p| p.len() == 1 && p[0].upload_id.is_some() && p[0].duration_ms.unwrap_or(0) > 0,
    )
    .await;
    b.kill().await;
    let killed = Instant::now();

    // A takes the recording over within 15 s, in a second part.
    wait_parts(&a, &stream, "a second part", Duration::from_secs(15), |p| {
        p.len() == 2
    })
    .await;
    assert!(killed.elapsed() <= Duration::from_secs(15));
    let first = parts(&a, &stream).await.remove(0);
    assert_eq!(
        first.status,
        stagepass::db::recordings::PartStatus::Complete,
        "what B uploaded is kept: {first:?}"
    );
    tokio::time::sleep(Duration::from_secs(12)).await;

    // The owner stops it from A; the recording holds both parts.
    let stopped = owner_at_a
        .post_htmx(
            &format!("/studio/streams/{}/recording/stop", stream.id),
            &[],
        )
        .await;
    assert_eq!(stopped.status, reqwest::StatusCode::OK, "{}", stopped.text);
    let parts = wait_parts(&a, &stream, "both parts complete", LONG, |p| {
        p.len() == 2
            && p.iter()
                .all(|p| p.status == stagepass::db::recordings::PartStatus::Complete)
    })
    .await;
    // The row follows its parts.
    let deadline = Instant::now() + LONG;
    let done = loop {
        let done = recordings::table
            .filter(recordings::stream_id.eq(stream.id))
            .select(Recording::as_select())
            .first(&mut *a.conn().await)
            .await
            .unwrap();
        if done.status == Status::Complete {
            break done;
        }
        assert!(Instant::now() < deadline, "{done:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        done.object_key.as_deref(),
        Some(parts[0].object_key.as_str())
    );
    for part in &parts {
        let (bytes, _) = a
            .state
            .storage
            .get(&part.object_key)
            .await
            .unwrap()
            .expect("the part is in the bucket");
        assert_eq!(Some(bytes.len() as i64), part.size_bytes);
        let path =
            std::env::temp_dir().join(format!("stagepass-part-{}.webm", uuid::Uuid::new_v4()));
        std::fs::write(&path, bytes).unwrap();
        let probe = ffprobe(&path);
        let video = stream_of(&probe, "video");
        let frames: u64 = video["nb_read_frames"].as_str().unwrap().parse().unwrap();
        assert!(frames > 100, "part {}: {frames} frames", part.part_no);
        let _ = std::fs::remove_file(&path);
    }

    // The replay plays the parts in order: the first, then the second.
    // (The owner's session lives in the shared database and its cookie is
    // the host's, so Chromium is signed in at A too.)
    owner
        .goto(&format!("{}/s/{}/replays", a.url, stream.id))
        .await;
    owner.wait_for("video.replay-video").await;
    let src = owner
        .attr("video.replay-video", "src")
        .await
        .expect("a replay");
    let next = owner
        .attr("video.replay-video", "data-next")
        .await
        .expect("the second part follows");
    assert!(src.contains(&parts[0].object_key), "{src}");
    assert!(next.contains(&parts[1].object_key), "{next}");
    owner
        .wait_until(
            "the first part to play",
            "const v = document.querySelector('video.replay-video'); \
             v.muted = true; v.play(); return v.videoWidth > 0 && v.currentTime > 1",
            LONG,
        )
        .await;
    // At the end of the first part, the second plays in the same player.
    owner
        .js("document.querySelector('video.replay-video').dispatchEvent(new Event('ended')); return true")
        .await;
    owner
        .wait_until(
            "the second part to play",
            &format!(
                "const v = document.querySelector('video.replay-video'); \
                 return v.currentSrc.includes('{}') && v.videoWidth > 0 && v.currentTime > 1",
                parts[1].object_key
            ),
            LONG,
        )
        .await;

    owner.close().await;
    a.stop().await;
}

/// The times of one stream's packets (`a:0`, `v:0`), from ffprobe.
fn packet_times(path: &PathBuf, stream: &str) -> Vec<f64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream])
        .args(["-show_entries", "packet=pts_time", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs (scripts/setup installs ffmpeg)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect()
}

/// Per-frame (time, width) of the file's video, from ffprobe.
fn frame_sizes(path: &PathBuf) -> Vec<(f64, u64)> {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=best_effort_timestamp_time,width",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .output()
        .expect("ffprobe runs (scripts/setup installs ffmpeg)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(',');
            let a = fields.next()?;
            let b = fields.next()?;
            // ffprobe orders the entries its own way: the width is the integer.
            match (a.parse::<u64>(), b.parse::<f64>()) {
                (Ok(width), Ok(t)) => Some((t, width)),
                _ => Some((a.parse().ok()?, b.parse().ok()?)),
            }
        })
        .collect()
}

#[tokio::test]
async fn a_recording_follows_the_screen_share_and_plays_across_the_switch() {
    let _one = ONE_AT_A_TIME.lock().await;
    let t = broadcasting().await;
    t.owner.click("#recording-start-form [type=submit]").await;
    t.owner.wait_for("#recording-stop-form").await;
    t.wait_status(Status::Active).await;
    let active = Instant::now();
    tokio::time::sleep(Duration::from_secs(6)).await;

    // The host shares their screen: viewers see it, and so does the recording.
    t.owner.click("#toggle-screen").await;
    t.owner
        .wait_until(
            "the screen share to publish",
            "return document.getElementById('toggle-screen').getAttribute('aria-pressed') === 'true'",
            TIMEOUT,
        )
        .await;
    let shared_at = active.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(8)).await;
    t.owner.click("#toggle-screen").await;
    let unshared_at = active.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(6)).await;
    t.stop_recording().await;
    let done = t.wait_status(Status::Complete).await;

    let path = t.object(&done).await;
    let frames = frame_sizes(&path);
    // The camera and the screen come in sizes of their own (the camera's
    // simulcast layers vary with the publisher's load; the screen is not
    // simulcast at those sizes), so the frames' widths tell them apart.
    let widths_in = |from: f64, to: f64| -> std::collections::BTreeSet<u64> {
        frames
            .iter()
            .filter(|(at, _)| *at >= from && *at < to)
            .map(|(_, w)| *w)
            .collect()
    };
    let camera = widths_in(0.0, shared_at - 1.0);
    let screen = widths_in(shared_at + 2.0, unshared_at - 1.0);
    let camera_again = widths_in(unshared_at + 2.0, f64::MAX);
    assert!(
        !camera.is_empty() && !screen.is_empty() && !camera_again.is_empty(),
        "{frames:?}"
    );
    assert!(
        camera.is_disjoint(&screen),
        "the screen share is not in the recording: camera {camera:?}, then {screen:?}"
    );
    assert!(
        camera_again.is_disjoint(&screen),
        "the camera did not come back: {screen:?}, then {camera_again:?}"
    );
    // Every frame of the file decodes, across both switches (framecrc
    // decodes each frame and keeps the file's timestamps as they are).
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-y", "-f", "framecrc", "/dev/null"])
        .output()
        .unwrap();
    assert!(
        decode.status.success() && decode.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&decode.stderr)
    );
    let _ = std::fs::remove_file(&path);

    // Chromium plays on from the middle of the screen share.
    t.owner
        .goto(&format!("{}/s/{}/replays", t.app.url, t.stream.id))
        .await;
    let from = (shared_at + unshared_at) / 2.0;
    t.owner
        .wait_until(
            "the replay's metadata",
            "const v = document.querySelector('video.replay-video'); return v && v.readyState >= 1",
            LONG,
        )
        .await;
    t.owner
        .js(&format!(
            "const v = document.querySelector('video.replay-video'); \
             v.muted = true; v.currentTime = {from}; v.play(); return true"
        ))
        .await;
    t.owner
        .wait_until(
            "the replay to play across the switch back to the camera",
            &format!(
                "const v = document.querySelector('video.replay-video'); \
                 return v.currentTime > {unshared_at} + 1 && v.videoWidth > 0"
            ),
            LONG,
        )
        .await;
    t.owner.close().await;
    t.app.stop().await;
}

#[tokio::test]
async fn a_host_reloading_the_broadcast_page_is_recorded_on_after_the_reload() {
    let _one = ONE_AT_A_TIME.lock().await;
    let t = broadcasting().await;
    t.owner.click("#recording-start-form [type=submit]").await;
    t.owner.wait_for("#recording-stop-form").await;
    t.wait_status(Status::Active).await;
    let active = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;

    // The host reloads the page: the browser publishes new tracks, which
    // the media server sends the recorder on the media lines it had.
    t.owner
        .goto(&format!(
            "{}/studio/streams/{}/broadcast",
            t.app.url, t.stream.id
        ))
        .await;
    t.owner
        .wait_until(
            "the broadcast to connect again",
            "return document.getElementById('connection-state')?.dataset.state === 'live'",
            LONG,
        )
        .await;
    let back_at = active.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(10)).await;
    t.stop_recording().await;
    let done = t.wait_status(Status::Complete).await;
    let recorded = active.elapsed().as_secs_f64();

    let path = t.object(&done).await;
    let frames = frame_sizes(&path);
    let before: Vec<_> = frames
        .iter()
        .filter(|(at, _)| *at < back_at - 2.0)
        .collect();
    let after: Vec<_> = frames
        .iter()
        .filter(|(at, _)| *at > back_at + 2.0)
        .collect();
    let fps = t.camera_fps().await;
    assert!(!before.is_empty(), "nothing before the reload: {frames:?}");
    // From two seconds after the reload to the end, at least half the frames
    // the camera made (keyframes are asked at once; the rest is load).
    let expected_after = (recorded - back_at - 2.0).max(0.0) * fps;
    assert!(
        after.len() as f64 >= expected_after * 0.5,
        "{} frames after the reload (at {back_at:.1} s of {recorded:.1} s), expected about {expected_after:.0}: {frames:?}",
        after.len()
    );
    // And the sound of the new microphone track (20 ms Opus packets).
    let sound_after = packet_times(&path, "a:0")
        .into_iter()
        .filter(|at| *at > back_at + 2.0)
        .count();
    let expected_sound = (recorded - back_at - 2.0).max(0.0) * 50.0;
    assert!(
        sound_after as f64 >= expected_sound * 0.5,
        "{sound_after} audio packets after the reload, expected about {expected_sound:.0}"
    );
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-y", "-f", "framecrc", "/dev/null"])
        .output()
        .unwrap();
    assert!(
        decode.status.success() && decode.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&decode.stderr)
    );
    let _ = std::fs::remove_file(&path);
    t.owner.close().await;
    t.app.stop().await;
}

#[tokio::test]
async fn obs_sending_h264_over_whip_is_recorded_as_mp4_that_ffprobe_reads_and_chromium_plays_and_seeks()
 {
    let _one = ONE_AT_A_TIME.lock().await;
    let app = TestApp::spawn().await;
    let (owner, owner_id) = builders::user(&app, "host@example.com", "Hana Host").await;
    let channel = builders::channel(&app, owner_id, "hana").await;
    let stream = builders::stream(&app, &channel, AccessKind::Public).await;
    let (url, key) = crate::util::whip::whip_key(&owner, stream.id).await;
    let encoder = crate::util::whip::Encoder::start().await;
    assert_eq!(
        encoder.publish_as(&url, &key, Some("video/H264")).await,
        201
    );
    encoder.wait_connected().await;
    let t = Studio {
        app,
        owner: Browser::start().await,
        owner_http: owner,
        stream,
    };
    let deadline = Instant::now() + LONG;
    loop {
        let live: Stream = stagepass::db::streams::find(&mut *t.app.conn().await, t.stream.id)
            .await
            .unwrap()
            .unwrap();
        if live.status == stagepass::db::streams::Status::Live {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the encoder never took the stream live"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let recording = format!("/studio/streams/{}/recording", t.stream.id);
    let started = t
        .owner_http
        .post_htmx(&format!("{recording}/start"), &[])
        .await;
    assert!(started.status.is_success(), "{}", started.text);
    t.wait_status(Status::Active).await;
    let active = Instant::now();
    let sent_before = encoder.frames_sent().await;
    t.recorder_is_no_viewer().await;
    tokio::time::sleep(Duration::from_secs(16)).await;
    let sent = encoder.frames_sent().await - sent_before;
    let stopped = t
        .owner_http
        .post_htmx(&format!("{recording}/stop"), &[])
        .await;
    assert!(stopped.status.is_success(), "{}", stopped.text);
    let recorded = active.elapsed().as_secs_f64();
    let done = t.wait_status(Status::Complete).await;

    // The object: an MP4 of H.264 and Opus, as long as the recording.
    let key = done.object_key.as_deref().expect("an object key");
    assert!(key.ends_with(".mp4"), "{key}");
    let (bytes, content_type) = t.app.state.storage.get(key).await.unwrap().unwrap();
    assert_eq!(content_type, "video/mp4");
    assert_eq!(Some(bytes.len() as i64), done.size_bytes);
    let path = std::env::temp_dir().join(format!("stagepass-rec-{}.mp4", uuid::Uuid::new_v4()));
    std::fs::write(&path, bytes).unwrap();
    let probe = ffprobe(&path);
    let video = stream_of(&probe, "video");
    assert_eq!(video["codec_name"], "h264", "{probe}");
    assert_eq!(stream_of(&probe, "audio")["codec_name"], "opus", "{probe}");
    assert!(video["width"].as_u64().unwrap_or(0) > 0, "{probe}");
    let duration: f64 = probe["format"]["duration"]
        .as_str()
        .and_then(|d| d.parse().ok())
        .unwrap_or_else(|| panic!("no duration: {probe}"));
    assert!(
        within(duration, recorded, 0.10),
        "the file lasts {duration:.1} s, recorded {recorded:.1} s"
    );
    let frames: f64 = video["nb_read_frames"]
        .as_str()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0);
    // As many frames as the encoder sent while recording (its frame rate
    // is what the machine's load lets OpenH264 make).
    assert!(
        within(frames, sent as f64, 0.10),
        "{frames} frames in the file, the encoder sent {sent}"
    );
    // Every frame decodes (framecrc keeps the file's timestamps as they are:
    // the null muxer's constant-rate output complains of frames that an
    // encoder under load sent closer together than its nominal rate).
    let decode = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-y", "-f", "framecrc", "/dev/null"])
        .output()
        .unwrap();
    assert!(
        decode.status.success() && decode.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&decode.stderr)
    );
    let _ = std::fs::remove_file(&path);

    // Chromium plays it from the middle.
    t.owner
        .sign_in(&t.app.url, "host@example.com", PASSWORD)
        .await;
    t.owner
        .goto(&format!("{}/s/{}/replays", t.app.url, t.stream.id))
        .await;
    t.owner
        .wait_until(
            "the replay's metadata",
            "const v = document.querySelector('video.replay-video'); return v && v.readyState >= 1",
            LONG,
        )
        .await;
    let middle = duration / 2.0;
    t.owner
        .js(&format!(
            "const v = document.querySelector('video.replay-video'); \
             v.muted = true; v.currentTime = {middle}; v.play(); return true"
        ))
        .await;
    t.owner
        .wait_until(
            "the replay to play on from the middle",
            &format!(
                "const v = document.querySelector('video.replay-video'); \
                 return v.currentTime > {middle} + 1 && v.videoWidth > 0"
            ),
            LONG,
        )
        .await;
    encoder.stop().await;
    encoder.close().await;
    t.owner.close().await;
    t.app.stop().await;
}
