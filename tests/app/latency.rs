//! Glass to glass, through our own pages: LiveKit's Python SDK publishes
//! frames that carry their capture time (bench/publisher.py `stamp`), a pass
//! holder watches on the watch page in Chromium, and bench/glass.js reads
//! each presented frame's stamp (requestVideoFrameCallback). The bound is the
//! product's acceptance target, 3 s, far above what loopback shows, so the
//! test never flakes; `make bench` reports the real figures (p50/p95/p99).

use std::time::Duration;

use stagepass::db::streams::AccessKind;

use crate::util::PASSWORD;
use crate::util::browser::{Browser, TIMEOUT};
use crate::util::builders::{self, Studio};

/// The publisher of bench/publisher.py, stamping its frames, until dropped
/// (the process is killed with it).
struct StampingPublisher {
    _process: tokio::process::Child,
}

impl StampingPublisher {
    async fn start(url: &str, token: &str) -> StampingPublisher {
        use tokio::io::AsyncBufReadExt;
        let tools =
            std::env::var("STAGEPASS_TOOLS").unwrap_or_else(|_| "/root/.cache/stagepass".into());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/publisher.py");
        let mut child = tokio::process::Command::new(format!("{tools}/venv/bin/python"))
            .args([script, url, token, "640", "360", "30", "stamp"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("starting the stamping publisher (run scripts/setup)");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(TIMEOUT, lines.next_line())
            .await
            .expect("the publisher connected in time")
            .unwrap()
            .expect("the publisher said something");
        assert!(first.contains("\"published\": true"), "{first}");
        // Its later reports are not read: let them drain.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        StampingPublisher { _process: child }
    }
}

#[tokio::test]
async fn glass_to_glass_latency_on_the_watch_page_is_well_under_the_target() {
    let studio = Studio::spawn("glass", AccessKind::Pass).await;
    let app = &studio.app;
    builders::pass_holder(app, studio.channel.id, "fan@example.com", "Fay Fan").await;
    builders::go_live(&studio.owner, studio.stream.id).await;
    let token = stagepass::livekit::tokens::host(
        &app.state.config.livekit,
        studio.owner_id,
        "Owner",
        &studio.stream.room_name,
    )
    .unwrap();
    let _publisher =
        StampingPublisher::start(app.state.config.livekit.public_url.as_str(), &token).await;

    let viewer = Browser::start().await;
    viewer.sign_in(&app.url, "fan@example.com", PASSWORD).await;
    viewer
        .goto(&format!("{}/s/{}", app.url, studio.stream.id))
        .await;
    viewer
        .wait_until(
            "the stamped video to play",
            "const v = document.getElementById('stream-video'); return v.videoWidth > 0 && v.currentTime > 0",
            TIMEOUT,
        )
        .await;
    viewer
        .js(&format!(
            "{}\nreturn true",
            include_str!("../../bench/glass.js")
        ))
        .await;
    let glass = viewer
        .wait_until(
            "100 stamped frames read back",
            "return window.glass.samples.length >= 100 && window.glass",
            Duration::from_secs(60),
        )
        .await;
    let mut samples: Vec<f64> = glass["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    let (p50, p95) = (at(0.5), at(0.95));
    println!(
        "glass to glass: p50 {p50} ms, p95 {p95} ms over {} frames ({} unreadable)",
        samples.len(),
        glass["bad"]
    );
    // No frame is shown before it was captured (the clocks agree). A frame
    // may read as early when the video moved on before the callback drew it
    // (the test suite keeps both cores busy): one in a hundred was seen. A
    // clock off by more than the latency makes the low-latency frames early,
    // which is far more than this allows (their samples print above).
    let early = glass["early"].as_f64().unwrap();
    assert!(
        early <= 0.05 * glass["frames"].as_f64().unwrap(),
        "frames shown before they were captured: {glass}"
    );
    // Most frames read back (a stamp can blur in a keyframe's first moments).
    let bad = glass["bad"].as_f64().unwrap();
    assert!(
        bad <= 0.2 * glass["frames"].as_f64().unwrap(),
        "too many stamps unreadable: {glass}"
    );
    assert!(p95 < 3000.0, "p95 {p95} ms: {glass}");
    viewer.close().await;
}
